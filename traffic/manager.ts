/**
 * The traffic manager: one interface over both engines for the daemon and the admin API.
 *
 * Start-up (spec §10.1 step 8) is `apply()`: remove the other engine's state (quirks 25, 37),
 * then install the rule set. `startResync()` re-checks every `resyncSeconds` and repairs drift
 * (deleted, reordered or duplicated rules) atomically; flannel's nftables mode never resyncs.
 * Shutdown leaves the rules in place, as flannel does (§10.2): a restarted daemon finds them
 * already correct. `cleanup()` removes everything Tartan created (flannel has no uninstall).
 *
 * Recycling (rules of a previous FLANNEL_NETWORK/FLANNEL_SUBNET) needs no extra step: both
 * engines replace the whole content of Tartan's chains/tables in the same atomic write that
 * installs the new rules, so stale rules of any earlier network never survive `apply()`.
 *
 * The blackhole route option (§7.3) belongs to the backend layer (it is a route, not a rule).
 *
 * @module
 */
import { sleep } from "../sleep.ts";
import type { NetworkConfig } from "../config/network_config.ts";
import type { Lease } from "../subnet/lease.ts";
import type { EngineName, RuleEngine } from "./engine.ts";
import { type CommandRunner, commandRunner } from "../exec.ts";
import { createIptablesEngine } from "./iptables.ts";
import type { VariantChoice } from "./iptables_variant.ts";
import { createNftEngine } from "./nftables.ts";
import { buildRuleSet, type RuleSet } from "./rules.ts";
import { errorText } from "../log.ts";

/** Flags that control the traffic rules (spec §1.2). */
export interface TrafficOptions {
  /** `--ip-masq`. */
  readonly ipMasq: boolean;
  /** `--iptables-forward-rules`. */
  readonly forwardRules: boolean;
  /** `--ip-masq-fully-random-disable`. */
  readonly fullyRandomDisabled: boolean;
  /** `--iptables-resync`, seconds between checks; at least 1 (quirk 27). */
  readonly resyncSeconds: number;
  /** How to run iptables/nft; defaults to the current network namespace. */
  readonly run?: CommandRunner;
  /** Receives one line per repair and per failed check. */
  readonly log?: (message: string) => void;
}

/** A traffic option is out of range. */
export class TrafficOptionError extends Error {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = "TrafficOptionError";
  }
}

/** What the admin API reports about the rules. */
export interface TrafficHealth {
  readonly engine: EngineName;
  /** When the rules were last compared with the kernel (apply or resync). */
  readonly lastCheck?: Date;
  /** `in-sync`: nothing to do; `repaired`: drift fixed (or first install); `failed`: see lastError. */
  readonly lastResult?: "in-sync" | "repaired" | "failed";
  readonly lastError?: string;
  /** Resync checks that found drift and repaired it. */
  readonly repairs: number;
  /** Checks that failed (the next period tries again). */
  readonly failures: number;
}

/** Masquerade and forward rules of one node, whichever engine holds them. */
export interface TrafficManager {
  readonly engine: EngineName;
  /** In iptables mode: the variant written to (legacy or nft) and why it was chosen. */
  readonly iptablesVariant?: VariantChoice;
  /** The rules this manager keeps installed. */
  readonly rules: RuleSet;
  /** Remove the other engine's state, then install the rules. Throws on failure. */
  apply(): Promise<void>;
  /** Check and repair every `resyncSeconds` until `signal` aborts; never throws. */
  startResync(signal: AbortSignal): Promise<void>;
  /** Remove everything Tartan created with either engine. */
  cleanup(): Promise<void>;
  health(): TrafficHealth;
}

/**
 * Remove every chain, rule and table Tartan (or flanneld) created, with both engines; for
 * `tartan cleanup`. Missing tools mean there is nothing to remove.
 */
export async function removeAllTrafficState(run: CommandRunner = commandRunner()): Promise<void> {
  await removeEach(await Promise.all([createIptablesEngine(run), createNftEngine(run)]));
}

async function removeEach(engines: readonly RuleEngine[]): Promise<void> {
  for (const engine of engines) await engine.removeAll();
}

/**
 * Choose the engine from `config.enableNFTables`, probe it, and compute the rule set for
 * `lease`. Nothing is written until {@link TrafficManager.apply}.
 *
 * @example
 * ```ts
 * const traffic = await createTrafficManager(config, lease, {
 *   ipMasq: true, forwardRules: true, fullyRandomDisabled: false, resyncSeconds: 5,
 * });
 * await traffic.apply();
 * traffic.startResync(shutdown.signal);
 * ```
 */
export async function createTrafficManager(
  config: NetworkConfig,
  lease: Lease,
  options: TrafficOptions,
): Promise<TrafficManager> {
  if (!Number.isFinite(options.resyncSeconds) || options.resyncSeconds < 1) {
    throw new TrafficOptionError(
      "iptables-resync",
      `must be at least 1, got ${options.resyncSeconds}`,
    );
  }
  const run = options.run ?? commandRunner();
  const log = options.log ?? (() => {});
  const [iptables, nftables] = await Promise.all([createIptablesEngine(run), createNftEngine(run)]);
  const [engine, other]: RuleEngine[] = config.enableNFTables
    ? [nftables, iptables]
    : [iptables, nftables];
  const rules = buildRuleSet(config, lease, {
    ipMasq: options.ipMasq,
    forwardRules: options.forwardRules,
    fullyRandom: engine.fullyRandomSupported && !options.fullyRandomDisabled,
  });

  let health: TrafficHealth = { engine: engine.name, repairs: 0, failures: 0 };
  // apply() and the resync loop never write at the same time.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(task: () => Promise<T>): Promise<T> => {
    const next = queue.then(task);
    queue = next.catch(() => {});
    return next;
  };

  async function check(isRepair: boolean): Promise<void> {
    try {
      const changed = await engine.reconcile(rules);
      health = {
        ...health,
        lastCheck: new Date(),
        lastResult: changed ? "repaired" : "in-sync",
        lastError: undefined,
        repairs: health.repairs + (changed && isRepair ? 1 : 0),
      };
      if (changed && isRepair) log(`${engine.name}: rules had drifted and were restored`);
    } catch (error) {
      const message = errorText(error);
      health = {
        ...health,
        lastCheck: new Date(),
        lastResult: "failed",
        lastError: message,
        failures: health.failures + 1,
      };
      throw error;
    }
  }

  return {
    engine: engine.name,
    ...(engine === iptables && { iptablesVariant: iptables.variant }),
    rules,
    apply: () =>
      serial(async () => {
        await other.removeAll();
        await check(false);
      }),
    async startResync(signal) {
      while (!signal.aborted) {
        await sleep(options.resyncSeconds * 1000, signal);
        if (signal.aborted) break;
        await serial(() => check(true)).catch((error) => {
          log(
            `${engine.name}: rule check failed: ${error instanceof Error ? error.message : error}`,
          );
        });
      }
    },
    cleanup: () => serial(() => removeEach([iptables, nftables])),
    health: () => health,
  };
}
