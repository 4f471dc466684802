/**
 * Subnet leases in etcd, interoperable with flanneld (spec §3): the config under
 * `<prefix>/config`, one key per node under `<prefix>/subnets/`, flannel's value JSON and TTLs.
 *
 * Fixes over flannel: lost create races are retried (quirk 3), reservations stay reservations
 * (quirk 4), a renewal revokes the etcd lease it replaces so none are orphaned (quirk 5: we
 * keep flannel's visible behaviour, a fresh 24 h lease per re-put, rather than keep-alive), a
 * vanished key is re-acquired in-process (quirk 9), malformed keys are skipped without
 * disturbing the others but still count as occupied (quirks 1, 2), allocation is uniform over
 * the whole range (quirk 30), IPv6-only nodes match their lease by PublicIPv6 (quirk 20), and the
 * watch covers `<prefix>/subnets/` only (quirk 31). Failed renewals are retried after 1 s,
 * doubling up to flannel's minute or a tenth of the margin, so an outage delays a renewal by
 * seconds after etcd is back (flannel gets a single retry inside a one-minute margin). With
 * `publicIPClaim`, a second daemon with the same public IP refuses to start instead of hijacking
 * the lease (see etcd_owner.ts).
 *
 * @module
 */
import { DEFAULTS } from "../config/flags.ts";
import { ConfigError, parseNetConfig } from "../config/netconf.ts";
import type { NetworkConfig } from "../config/network_config.ts";
import { errorText, type Logger, logger } from "../log.ts";
import { Backoff } from "../backoff.ts";
import { sleep } from "../sleep.ts";
import { acquire, isOurs } from "./etcd_acquire.ts";
import { EtcdClient, type EtcdConnection, EtcdOptionsError } from "../etcd/client.ts";
import { text } from "../etcd/codec.ts";
import { claimPublicIP, type PublicIPClaim } from "./etcd_owner.ts";
import { describeSubnets, EtcdLeaseStore, type OwnLease, toLease } from "./etcd_store.ts";
import { listWatch, type ListWatchItem, type WatchFailure } from "./etcd_watch.ts";
import { formatAddr } from "../ip/mod.ts";
import { encodeLeaseAttrs, type Lease, type LeaseAttrs, type LeaseSubnets } from "./lease.ts";
import { type LeaseChange, LeaseTracker } from "./lease_tracker.ts";
import {
  LeaseLostError,
  type LeaseStoreCounters,
  type LeaseWatchUpdate,
  newLeaseStoreCounters,
  type SubnetManager,
} from "./manager.ts";
import { readPreviousSubnets } from "./subnet_env.ts";

/** TTL flannel grants every lease it writes (spec §3.2). */
export const LEASE_TTL_SECONDS = 86_400;

/** Options of {@link EtcdSubnetManager}. */
export interface EtcdManagerOptions extends EtcdConnection {
  /** Key prefix (`--etcd-prefix`); flanneld's default when absent. */
  readonly prefix?: string;
  /** Where a previous run left `subnet.env` (`--subnet-file`), read for its subnet. */
  readonly subnetFile?: string;
  /** Renew this long before expiry (`--subnet-lease-renew-margin`), default 60. */
  readonly renewMarginMinutes?: number;
  /** Counters to update, e.g. the daemon state's `store`; a fresh set by default. */
  readonly counters?: LeaseStoreCounters;
  /**
   * Told our lease each time it is written (acquired, renewed, re-acquired), so the daemon's
   * copy (readiness, metrics) carries the current expiry.
   */
  readonly onOwnLease?: (lease: Lease) => void;
  /** Start timing one etcd request (`grant`, `txn`, `range`, …); call the result when done. */
  readonly timeRequest?: (op: string) => () => void;
  readonly log?: Logger;
  /** Tests only: the TTL of the etcd leases we grant (default 86 400 s, as flannel). */
  readonly leaseTtlSeconds?: number;
  /**
   * The longest wait after a failed renewal (default 1 min, flannel's fixed retry period; never
   * more than a tenth of the renew margin).
   */
  readonly renewRetryMs?: number;
  /**
   * Claim the public IP before acquiring, so a second daemon with the same IP refuses to start
   * (etcd_owner.ts; the daemon sets it). `ttlSeconds` and `machine` are for tests.
   */
  readonly publicIPClaim?: { readonly ttlSeconds?: number; readonly machine?: string };
}

/** `path.Join` for etcd keys: parts joined by `/`, runs of slashes collapsed. */
function joinKey(...parts: string[]): string {
  return parts.join("/").replace(/\/{2,}/g, "/").replace(/(.)\/$/, "$1");
}

/**
 * The etcd subnet manager.
 *
 * @example
 * ```ts
 * const manager = new EtcdSubnetManager({ endpoints: ["http://127.0.0.1:2379"] });
 * const config = await manager.getNetworkConfig(signal);
 * const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
 * await manager.maintainLease(lease, signal); // until signal aborts
 * ```
 */
export class EtcdSubnetManager implements SubnetManager {
  /** Counters for metrics and tests. */
  readonly stats: LeaseStoreCounters;
  readonly #client: EtcdClient;
  readonly #store: EtcdLeaseStore;
  readonly #log: Logger;
  readonly #configKey: string;
  readonly #subnetFile: string;
  readonly #renewMarginMs: number;
  readonly #renewRetryMs: number;
  readonly #claimOptions?: EtcdManagerOptions["publicIPClaim"];
  readonly #ownersDir: string;
  #ipClaim?: PublicIPClaim;
  readonly #onOwnLease?: (lease: Lease) => void;
  /** Aborted by close(): ends every loop still running. */
  readonly #closed = new AbortController();
  #config?: NetworkConfig;
  #own?: OwnLease;

  constructor(options: EtcdManagerOptions) {
    const prefix = options.prefix ?? DEFAULTS.etcdPrefix;
    this.#configKey = joinKey(prefix, "config");
    this.#ownersDir = `${joinKey(prefix, "tartan", "owners")}/`;
    this.#claimOptions = options.publicIPClaim;
    this.#subnetFile = options.subnetFile ?? DEFAULTS.subnetFile;
    const ttlSeconds = options.leaseTtlSeconds ?? LEASE_TTL_SECONDS;
    this.#renewMarginMs = (options.renewMarginMinutes ?? 60) * 60_000;
    this.#renewRetryMs = options.renewRetryMs ?? 60_000;
    if (!(this.#renewMarginMs > 0 && this.#renewMarginMs < ttlSeconds * 1000)) {
      throw new EtcdOptionsError(
        `subnet lease renew margin must be above 0 and below the lease TTL (${ttlSeconds} s)`,
      );
    }
    this.stats = options.counters ?? newLeaseStoreCounters();
    this.#onOwnLease = options.onOwnLease;
    this.#log = options.log ?? logger("etcd");
    this.#client = new EtcdClient(options);
    this.#store = new EtcdLeaseStore({
      client: this.#client,
      subnetsDir: `${joinKey(prefix, "subnets")}/`,
      ttlSeconds,
      counters: this.stats,
      timeRequest: options.timeRequest,
      log: this.#log,
    });
  }

  /** Our lease as last written, once acquired. */
  get ownLease(): Lease | undefined {
    return this.#own && toLease(this.#own);
  }

  /** The etcd key of a lease: `<prefix>/subnets/<lease key>`. */
  leaseKey(subnets: LeaseSubnets): string {
    return this.#store.leaseKey(subnets);
  }

  async getNetworkConfig(callerSignal: AbortSignal): Promise<NetworkConfig> {
    const signal = this.#until(callerSignal);
    const backoff = new Backoff(100, 1000);
    let lastProblem = "";
    let lastLogged = 0;
    for (;;) {
      signal.throwIfAborted();
      let problem: string;
      try {
        const kvs = await this.#store.read(this.#configKey);
        if (kvs.length === 0) {
          problem = `flannel config not found in etcd store at ${this.#configKey}. ` +
            "Did you create your config using etcdv3 API?";
        } else {
          const { config, warnings } = parseNetConfig(text(kvs[0].value), "etcd");
          for (const warning of warnings) this.#log.warn(warning, { key: this.#configKey });
          this.#config = config;
          return config;
        }
      } catch (error) {
        problem = error instanceof ConfigError
          ? `invalid network config at ${this.#configKey}: ${error.message}`
          : `cannot read ${this.#configKey}: ${errorText(error)}`;
      }
      if (problem !== lastProblem || Date.now() - lastLogged > 30_000) {
        this.#log.error(`${problem} (retrying)`);
        [lastProblem, lastLogged] = [problem, Date.now()];
      }
      await sleep(backoff.next(), signal);
    }
  }

  async acquireLease(attrs: LeaseAttrs, callerSignal: AbortSignal): Promise<Lease> {
    const signal = this.#until(callerSignal);
    encodeLeaseAttrs(attrs); // invalid attributes fail here, not after a grant
    const config = this.#config ?? await this.getNetworkConfig(signal);
    await this.#claimPublicIP(config, attrs, signal);
    const previous = await readPreviousSubnets(this.#subnetFile);
    const own = await acquire(this.#store, config, attrs, previous, this.#log, signal);
    this.#own = own;
    this.#onOwnLease?.(toLease(own));
    this.#log.info("lease acquired", {
      subnet: describeSubnets(own.subnets),
      reserved: own.leaseId === undefined,
    });
    return toLease(own);
  }

  async renewLease(lease: Lease, signal: AbortSignal): Promise<Lease> {
    signal.throwIfAborted();
    const own = this.#own;
    if (!own || own.key !== this.leaseKey(lease)) {
      throw new LeaseLostError(this.leaseKey(lease), "not the lease this manager acquired");
    }
    const next = await this.#refresh(own, lease.attrs);
    this.#own = next;
    this.#onOwnLease?.(toLease(next));
    this.stats.renewals++;
    return toLease(next);
  }

  async maintainLease(lease: Lease, callerSignal: AbortSignal): Promise<void> {
    const signal = this.#until(callerSignal);
    const key = this.leaseKey(lease);
    if (this.#own?.key !== key) {
      throw new LeaseLostError(key, "not the lease this manager acquired");
    }
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    const watch = listWatch({
      client: this.#client,
      key,
      prefix: false,
      onFailure: (failure) => this.#onWatchFailure("own lease", failure),
    }, stop.signal)[Symbol.asyncIterator]();
    let pending = watch.next();
    let retryAt: number | undefined;
    // At least ~10 retries fit in the margin (flannel: one a minute, so one in a 1 min margin).
    const retryCap = Math.min(this.#renewRetryMs, this.#renewMarginMs / 10);
    const retry = new Backoff(Math.min(1000, retryCap), retryCap);
    // Another daemon took our public IP over: stop serving the lease (the daemon exits 1).
    let claimLost: string | undefined;
    this.#ipClaim?.lost.then((reason) => {
      claimLost = reason;
      stop.abort();
    });
    try {
      while (!signal.aborted && !stop.signal.aborted) {
        const due = retryAt ?? this.#renewTime();
        const timer = new AbortController();
        const item = await Promise.race([
          pending,
          sleep(due - Date.now(), AbortSignal.any([stop.signal, timer.signal])).then(() =>
            "due" as const
          ),
        ]);
        timer.abort();
        if (signal.aborted) break;
        if (item !== "due") {
          if (item.done) break;
          pending = watch.next();
          if (!this.#ownKeyChanged(item.value)) continue;
        }
        try {
          await this.renewLease(this.ownLease ?? lease, signal);
          retryAt = undefined;
          retry.reset();
        } catch (error) {
          if (error instanceof LeaseLostError) throw error;
          if (signal.aborted) break;
          this.stats.renewFailures++;
          const wait = retry.next();
          retryAt = Date.now() + wait;
          this.#log.warn("lease renewal failed; will retry", {
            error: errorText(error),
            retryInSeconds: wait / 1000,
          });
        }
      }
    } finally {
      stop.abort();
      signal.removeEventListener("abort", onAbort);
      await watch.return(undefined);
    }
    if (claimLost !== undefined) throw new LeaseLostError(key, claimLost);
  }

  async *watchLeases(callerSignal: AbortSignal): AsyncGenerator<LeaseWatchUpdate> {
    const signal = this.#until(callerSignal);
    const tracker = new LeaseTracker(this.stats);
    const items = listWatch({
      client: this.#client,
      key: this.#store.subnetsDir,
      prefix: true,
      onFailure: (failure) => this.#onWatchFailure("leases", failure),
    }, signal);
    for await (const item of items) {
      if (item.type === "snapshot") {
        yield tracker.snapshot(item.kvs.map((kv) => {
          const { name, lease } = this.#store.decode(kv);
          return [name, lease];
        }));
        continue;
      }
      // A Put nobody can read is left out: the key keeps its last good lease (quirk 1).
      const changes = item.events.flatMap((event): LeaseChange[] => {
        const deleted = event.type === "delete";
        const { name, lease } = this.#store.decode(event.kv, deleted);
        return deleted ? [{ name, lease: undefined }] : lease ? [{ name, lease }] : [];
      });
      const update = tracker.changes(changes);
      if (update) yield update;
    }
  }

  /** Ends every loop, revokes the public IP claim (bounded wait) and closes the client. */
  async close(): Promise<void> {
    this.#closed.abort();
    await this.#ipClaim?.release();
    this.#client.close();
  }

  // --- acquisition ---------------------------------------------------------------------------

  /** With `publicIPClaim`: make sure no other live daemon serves our public IP (once). */
  async #claimPublicIP(config: NetworkConfig, attrs: LeaseAttrs, signal: AbortSignal) {
    if (!this.#claimOptions || this.#ipClaim) return;
    const ip = config.ipv4 ? attrs.publicIP : attrs.publicIPv6;
    if (!ip) return;
    const publicIP = formatAddr(ip);
    this.#ipClaim = await claimPublicIP({
      client: this.#client,
      key: this.#ownersDir + publicIP,
      publicIP,
      log: this.#log,
      ...this.#claimOptions,
    }, signal);
  }

  // --- keeping our lease ---------------------------------------------------------------------

  /**
   * Re-read our key and make it ours again: renew it, re-create it when it vanished (counted as a
   * re-acquisition), or fail with LeaseLostError when another node holds it now.
   */
  async #refresh(own: OwnLease, attrs: LeaseAttrs): Promise<OwnLease> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const kvs = await this.#store.read(own.key);
      if (kvs.length === 0) {
        const created = await this.#store.create(own.subnets, attrs);
        if (created) {
          this.stats.reacquisitions++;
          this.#log.warn("our lease key had vanished (expired or deleted); re-acquired it", {
            subnet: describeSubnets(own.subnets),
          });
          return created;
        }
        continue;
      }
      // A value nobody can read is nobody's lease: we take our key back.
      const lease = this.#store.decode(kvs[0]).lease;
      if (lease && !isOurs(this.#config, lease.attrs, attrs)) {
        throw new LeaseLostError(own.key, `now held by ${formatAddr(lease.attrs.publicIP)}`);
      }
      const claimed = await this.#store.claim(kvs[0], own.subnets, attrs);
      if (claimed) return claimed;
    }
    throw new Error(`lease key ${own.key} kept changing under us`);
  }

  /** When our lease is due for renewal (never for a reservation). */
  #renewTime(): number {
    const expiration = this.#own?.expiration;
    if (this.#own?.leaseId === undefined || !expiration) return Infinity;
    return expiration.getTime() - this.#renewMarginMs;
  }

  /** Whether the own-key watch shows a state other than the one we wrote. */
  #ownKeyChanged(item: ListWatchItem): boolean {
    const own = this.#own!;
    const last = item.type === "snapshot"
      ? item.kvs[0]
      : item.events.at(-1)?.type === "put"
      ? item.events.at(-1)?.kv
      : undefined;
    if (!last) {
      this.#log.warn("our lease key vanished (expired or deleted)", { key: own.key });
      return true;
    }
    return last.lease !== (own.leaseId ?? "0") || text(last.value) !== own.value;
  }

  // --- shared --------------------------------------------------------------------------------

  #onWatchFailure(what: string, failure: WatchFailure): void {
    this.stats.watchErrors++;
    this.#log.warn(`${what} watch failed; retrying`, {
      stage: failure.stage,
      compacted: failure.compacted,
      error: failure.error,
    });
  }

  /** `signal`, also aborted when the manager is closed. */
  #until(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, this.#closed.signal]);
  }
}
