/**
 * One daemon per public IP: a guard flannel does not have.
 *
 * flannel finds "its" lease by public IP (spec §3.4 step 2), so a second node started with the
 * same public IP silently re-puts the first node's lease with its own attributes: both serve
 * one subnet and peers flip between two VTEPs. Before touching any lease, Tartan claims the IP:
 *
 * - The claim is the key `<prefix>/tartan/owners/<public IP>` (flannel reads only `config` and
 *   `subnets` under the prefix), created by a transaction (IF version == 0) and attached to an
 *   etcd lease of {@link OWNER_TTL_SECONDS} that the holder keeps alive every TTL/3, the
 *   heartbeat rate of a kubelet's node lease. Keep-alives are not raft writes.
 * - The value names the holder's machine (boot id + network namespace). A daemon restarted on
 *   the same machine, also after SIGKILL while the old claim is still alive, takes the claim over
 *   at once, so restarts and lease reuse (conformance 10, 11) are not delayed.
 * - A claim of another machine is observed for up to its TTL: if it expires (the holder died),
 *   the newcomer proceeds; if a keep-alive refreshes it (the holder lives), the newcomer refuses
 *   with {@link PublicIPInUseError}, typically within TTL/3.
 * - A clean shutdown revokes the claim. A running holder whose claim vanished (an etcd outage
 *   longer than the TTL, etcd restored empty) re-creates it; one whose claim was taken over
 *   learns it through {@link PublicIPClaim.lost} and must stop serving (the daemon exits 1).
 *
 * @module
 */
import type { EtcdClient } from "../etcd/client.ts";
import { type KeyValue, text } from "../etcd/codec.ts";
import { isRecord, parseJsonOrUndefined } from "../json.ts";
import { errorText, type Logger } from "../log.ts";
import { sleep } from "../sleep.ts";

/** TTL of the etcd lease that carries a claim. */
export const OWNER_TTL_SECONDS = 30;
/** How long one keep-alive may take before it counts as failed. */
const KEEPALIVE_TIMEOUT_MS = 5000;
/** How long a clean shutdown waits for the revoke. */
const RELEASE_TIMEOUT_MS = 2000;

/** What a claim says about its holder. */
export interface OwnerRecord {
  readonly machine: string;
  readonly instance: string;
  readonly hostname: string;
  readonly pid: number;
  readonly since: string;
}

/** Another live daemon holds the public IP: starting would hijack its lease. */
export class PublicIPInUseError extends Error {
  constructor(readonly publicIP: string, readonly holder: OwnerRecord | undefined) {
    super(
      `public IP ${publicIP} is already in use by another tartan daemon (${
        describeHolder(holder)
      }); ` +
        "every node needs its own public IP (check --public-ip, --iface), refusing to start",
    );
    this.name = "PublicIPInUseError";
  }
}

/** A held claim. */
export interface PublicIPClaim {
  /** Resolves (never rejects) with the reason once another daemon took the claim over. */
  readonly lost: Promise<string>;
  /** Stop the keep-alive and revoke the claim, so a successor need not wait (bounded). */
  release(): Promise<void>;
}

/** Options of {@link claimPublicIP}. */
export interface ClaimOptions {
  readonly client: EtcdClient;
  /** `<prefix>/tartan/owners/<public IP>`. */
  readonly key: string;
  /** The public IP as text, for messages. */
  readonly publicIP: string;
  readonly log: Logger;
  /** Default {@link OWNER_TTL_SECONDS}. */
  readonly ttlSeconds?: number;
  /** Who we are; default {@link machineIdentity}. Tests set it to play two machines. */
  readonly machine?: string;
}

function describeHolder(holder: OwnerRecord | undefined): string {
  if (!holder) return "holder unknown: the claim key is not Tartan's";
  return `pid ${holder.pid} on host ${holder.hostname}, since ${holder.since}`;
}

function readFirstLine(path: string): string | undefined {
  try {
    return Deno.readTextFileSync(path).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * This machine as a claim names it: the kernel's boot id and our network namespace, stable across
 * daemon restarts, different for another host, a reboot or another namespace (lab nodes).
 */
export function machineIdentity(): string {
  const boot = readFirstLine("/proc/sys/kernel/random/boot_id") ?? Deno.hostname();
  let netns = "?";
  try {
    netns = Deno.readLinkSync("/proc/self/ns/net");
  } catch { /* no procfs: the boot id alone */ }
  return `${boot}/${netns}`;
}

/** The holder a claim names; undefined when its value is not a record of ours. */
function parseRecord(kv: KeyValue): OwnerRecord | undefined {
  const value = parseJsonOrUndefined(text(kv.value));
  if (!isRecord(value)) return undefined;
  const { machine, instance, hostname, pid, since } = value;
  if (
    typeof machine !== "string" || typeof instance !== "string" ||
    typeof hostname !== "string" || typeof since !== "string" || typeof pid !== "number"
  ) return undefined;
  return { machine, instance, hostname, pid, since };
}

/**
 * One keep-alive; resolves to the remaining TTL (0 when etcd no longer knows the lease). Rejects
 * after a timeout, or at once when `signal` aborts.
 */
function keepAliveOnce(client: EtcdClient, id: string, signal: AbortSignal): Promise<number> {
  return client.leaseKeepAlive(
    id,
    AbortSignal.any([signal, AbortSignal.timeout(KEEPALIVE_TIMEOUT_MS)]),
  );
}

/** The claim key and the requests on it. */
class OwnerKey {
  readonly #value: string;

  constructor(
    readonly client: EtcdClient,
    readonly key: string,
    readonly record: OwnerRecord,
    readonly ttlSeconds: number,
    readonly log: Logger,
  ) {
    this.#value = JSON.stringify(record);
  }

  async read(): Promise<KeyValue | undefined> {
    return (await this.client.range({ key: this.key })).kvs[0];
  }

  /** Write our record on a fresh lease if the key is still as `seen` (undefined: absent). */
  async write(seen: KeyValue | undefined): Promise<string | undefined> {
    const key = this.key;
    const grant = await this.client.leaseGrant(this.ttlSeconds);
    const res = await this.client.txn({
      compare: [
        seen
          ? { key, target: "MOD", result: "EQUAL", modRevision: seen.modRevision }
          : { key, target: "VERSION", result: "EQUAL", version: 0 },
      ],
      success: [{ put: { key, value: this.#value, lease: grant.id } }],
    });
    if (res.succeeded) return grant.id;
    await this.revoke(grant.id);
    return undefined;
  }

  /** Best effort: a lease we fail to revoke only lingers until its TTL. */
  async revoke(id: string): Promise<void> {
    if (id === "0") return;
    await this.client.leaseRevoke(id).catch((error) =>
      this.log.debug("could not revoke an owner lease", { lease: id, error: errorText(error) })
    );
  }
}

/**
 * Claim the public IP for this daemon, waiting up to the TTL when another machine holds it;
 * throws {@link PublicIPInUseError} when that holder is alive. The claim is kept alive until
 * `release()`.
 *
 * @example
 * ```ts
 * const claim = await claimPublicIP({
 *   client,
 *   key: "/coreos.com/network/tartan/owners/198.18.0.11",
 *   publicIP: "198.18.0.11",
 *   log,
 * }, signal);
 * try { await serve(); } finally { await claim.release(); }
 * ```
 */
export async function claimPublicIP(
  options: ClaimOptions,
  signal: AbortSignal,
): Promise<PublicIPClaim> {
  const { publicIP, log } = options;
  const ttl = options.ttlSeconds ?? OWNER_TTL_SECONDS;
  const owner = new OwnerKey(
    options.client,
    options.key,
    {
      machine: options.machine ?? machineIdentity(),
      instance: crypto.randomUUID(),
      hostname: Deno.hostname(),
      pid: Deno.pid,
      since: new Date().toISOString(),
    },
    ttl,
    log,
  );
  const deadline = Date.now() + (ttl + 2) * 1000;
  /** The first expiry seen of the holder's lease: it is no later than `to`. */
  let observed: { lease: string; to: number } | undefined;
  for (;;) {
    signal.throwIfAborted();
    const current = await owner.read();
    if (!current) {
      const id = await owner.write(undefined);
      if (id) return holdClaim(owner, id, publicIP);
      continue;
    }
    const holder = parseRecord(current);
    if (holder?.machine === owner.record.machine) {
      const id = await owner.write(current);
      if (!id) continue;
      log.info("took over the public IP claim of a previous run on this machine", {
        publicIP,
        previousPid: holder.pid,
      });
      await owner.revoke(current.lease);
      return holdClaim(owner, id, publicIP);
    }
    // Another machine's claim: alive once a keep-alive moves its expiry, dead once it expires.
    if (current.lease === "0") throw new PublicIPInUseError(publicIP, holder);
    const sent = Date.now();
    const res = await options.client.leaseTimeToLive(current.lease);
    // etcd truncates the remaining TTL to whole seconds (toward zero: an overdue lease reads
    // 0), so the expiry lies in [sent + TTL, received + TTL + 1 s).
    const left = res.ttl;
    const expiry = { lease: current.lease, from: sent + left * 1000 };
    const to = Date.now() + (left + 1) * 1000;
    if (left > 0 && observed?.lease === expiry.lease && expiry.from > observed.to) {
      throw new PublicIPInUseError(publicIP, holder);
    }
    if (Date.now() > deadline) throw new PublicIPInUseError(publicIP, holder);
    if (observed?.lease !== expiry.lease) {
      log.warn("public IP claimed by another machine; waiting for that claim to expire", {
        publicIP,
        holder: describeHolder(holder),
        waitSeconds: ttl,
      });
      observed = { lease: expiry.lease, to };
    }
    await sleep(1000, signal);
  }
}

/** Keep the claim alive, re-create it when it vanished, report it when taken over. */
function holdClaim(owner: OwnerKey, firstLease: string, publicIP: string): PublicIPClaim {
  const { log } = owner;
  const stop = new AbortController();
  let leaseId = firstLease;
  let reportLost: (reason: string) => void = () => {};
  const lost = new Promise<string>((resolve) => reportLost = resolve);

  /** Our lease is gone: re-create the claim, or say why we may not. */
  async function reclaim(): Promise<string | undefined> {
    const current = await owner.read();
    const holder = current && parseRecord(current);
    if (current && holder?.instance !== owner.record.instance) {
      return `public IP ${publicIP} was claimed by another tartan daemon (${
        describeHolder(holder)
      })`;
    }
    const id = await owner.write(current);
    if (id) {
      leaseId = id;
      log.warn("the public IP claim had vanished (etcd outage or restore); re-created it", {
        publicIP,
      });
    }
    return undefined;
  }

  const loop = (async () => {
    let failing = false;
    while (!stop.signal.aborted) {
      await sleep((owner.ttlSeconds * 1000) / 3, stop.signal);
      if (stop.signal.aborted) break;
      try {
        const left = await keepAliveOnce(owner.client, leaseId, stop.signal);
        if (stop.signal.aborted) break;
        const reason = left > 0 ? undefined : await reclaim();
        if (reason) {
          log.error(reason);
          reportLost(reason);
          return;
        }
        failing = false;
      } catch (error) {
        if (!failing) {
          log.warn("public IP claim keep-alive failed; retrying", { error: errorText(error) });
        }
        failing = true;
      }
    }
  })();

  return {
    lost,
    async release() {
      stop.abort();
      await loop;
      const done = new AbortController();
      await Promise.race([
        owner.revoke(leaseId).finally(() => done.abort()),
        sleep(RELEASE_TIMEOUT_MS, done.signal),
      ]);
    },
  };
}
