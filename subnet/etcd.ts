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
import { Buffer } from "node:buffer";
import type { Etcd3, ICompare, IKeyValue } from "etcd3";
import { ConfigError, parseNetConfig } from "../config/netconf.ts";
import type { NetworkConfig } from "../config/network_config.ts";
import { errorText, type Logger, logger } from "../log.ts";
import { type LeaseStoreCounters, newLeaseStoreCounters } from "../state.ts";
import { fitsConfig, fitsFamily, isFree, pickFreeSubnet } from "./allocate.ts";
import { Backoff } from "./backoff.ts";
import { sleep } from "../sleep.ts";
import {
  createEtcdClient,
  type EtcdConnection,
  EtcdOptionsError,
  keyBytes,
  prefixEnd,
  readRange,
} from "./etcd_client.ts";
import { claimPublicIP, type PublicIPClaim } from "./etcd_owner.ts";
import { listWatch, type ListWatchItem, type WatchFailure } from "./etcd_watch.ts";
import { addrEqual, formatAddr, formatNet, type IPNet } from "../ip/mod.ts";
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  formatLeaseKey,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type LeaseSubnets,
  parseLeaseKey,
  rangesInKeyName,
} from "./lease.ts";
import {
  AcquireConflictError,
  LeaseLostError,
  type LeaseWatchUpdate,
  OutOfSubnetsError,
  type SubnetManager,
} from "./manager.ts";
import { readPreviousSubnets } from "./subnet_env.ts";

/** flanneld's default `--etcd-prefix`. */
export const DEFAULT_ETCD_PREFIX = "/coreos.com/network";
/** flanneld's default `--subnet-file`. */
export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";
/** TTL flannel grants every lease it writes (spec §3.2). */
export const LEASE_TTL_SECONDS = 86_400;

const MAX_ACQUIRE_ATTEMPTS = 10;
const MAX_MALFORMED_LOGGED = 1000;

/** Options of {@link EtcdSubnetManager}. */
export interface EtcdManagerOptions extends EtcdConnection {
  /** Key prefix (`--etcd-prefix`), default `/coreos.com/network`. */
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

/** Our lease as held in etcd. */
interface OwnLease {
  readonly key: string;
  readonly subnets: LeaseSubnets;
  readonly attrs: LeaseAttrs;
  /** The value JSON we wrote. */
  readonly value: string;
  /** The etcd lease the key is attached to; undefined for a reservation. */
  readonly leaseId?: string;
  readonly expiration?: Date;
}

/** One listed key, read as far as it goes. */
interface ListedKey {
  readonly kv: IKeyValue;
  readonly name: string;
  /** Undefined when the key or the value is malformed. */
  readonly lease?: Lease;
  /** Ranges the key occupies, read out of its name even when malformed (quirk 2). */
  readonly ranges: IPNet[];
}

/** `path.Join` for etcd keys: parts joined by `/`, runs of slashes collapsed. */
function joinKey(...parts: string[]): string {
  return parts.join("/").replace(/\/{2,}/g, "/").replace(/(.)\/$/, "$1");
}

function toLease(own: OwnLease): Lease {
  return {
    ...own.subnets,
    attrs: own.attrs,
    ...(own.expiration && { expiration: own.expiration }),
    ...(own.leaseId === undefined && { reserved: true }),
  };
}

/** Just the subnets of a lease, without undefined members. */
function subnetsOf({ subnet, ipv6Subnet }: LeaseSubnets): LeaseSubnets {
  return { ...(subnet && { subnet }), ...(ipv6Subnet && { ipv6Subnet }) };
}

function describe(subnets: LeaseSubnets): string {
  const nets = [subnets.subnet, subnets.ipv6Subnet].filter((n): n is IPNet => n !== undefined);
  return nets.map(formatNet).join(",");
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

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
  readonly #client: Etcd3;
  readonly #log: Logger;
  readonly #configKey: string;
  readonly #subnetsDir: string;
  readonly #subnetFile: string;
  readonly #ttlSeconds: number;
  readonly #renewMarginMs: number;
  readonly #renewRetryMs: number;
  readonly #claimOptions?: EtcdManagerOptions["publicIPClaim"];
  readonly #ownersDir: string;
  #ipClaim?: PublicIPClaim;
  readonly #timeRequest?: (op: string) => () => void;
  readonly #onOwnLease?: (lease: Lease) => void;
  readonly #malformedLogged = new Set<string>();
  /** Aborted by close(): ends every loop still running. */
  readonly #closed = new AbortController();
  #config?: NetworkConfig;
  #own?: OwnLease;

  constructor(options: EtcdManagerOptions) {
    const prefix = options.prefix ?? DEFAULT_ETCD_PREFIX;
    this.#configKey = joinKey(prefix, "config");
    this.#subnetsDir = `${joinKey(prefix, "subnets")}/`;
    this.#ownersDir = `${joinKey(prefix, "tartan", "owners")}/`;
    this.#claimOptions = options.publicIPClaim;
    this.#subnetFile = options.subnetFile ?? DEFAULT_SUBNET_FILE;
    this.#ttlSeconds = options.leaseTtlSeconds ?? LEASE_TTL_SECONDS;
    this.#renewMarginMs = (options.renewMarginMinutes ?? 60) * 60_000;
    this.#renewRetryMs = options.renewRetryMs ?? 60_000;
    if (!(this.#renewMarginMs > 0 && this.#renewMarginMs < this.#ttlSeconds * 1000)) {
      throw new EtcdOptionsError(
        `subnet lease renew margin must be above 0 and below the lease TTL (${this.#ttlSeconds} s)`,
      );
    }
    this.stats = options.counters ?? newLeaseStoreCounters();
    this.#timeRequest = options.timeRequest;
    this.#onOwnLease = options.onOwnLease;
    this.#log = options.log ?? logger("etcd");
    this.#client = createEtcdClient(options);
  }

  /** Our lease as last written, once acquired. */
  get ownLease(): Lease | undefined {
    return this.#own && toLease(this.#own);
  }

  /** The etcd key of a lease: `<prefix>/subnets/<lease key>`. */
  leaseKey(subnets: LeaseSubnets): string {
    return this.#subnetsDir + formatLeaseKey(subnets);
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
        const { kvs } = await this.#timed(
          "range",
          () => readRange(this.#client, this.#configKey, false),
        );
        if (kvs.length === 0) {
          problem = `flannel config not found in etcd store at ${this.#configKey}. ` +
            "Did you create your config using etcdv3 API?";
        } else {
          const { config, warnings } = parseNetConfig(kvs[0].value.toString("utf8"), "etcd");
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
    const backoff = new Backoff(100, 5000);
    let attempts = 0;
    while (attempts < MAX_ACQUIRE_ATTEMPTS) {
      signal.throwIfAborted();
      let own: OwnLease | undefined;
      try {
        const { kvs } = await this.#timed(
          "range",
          () => readRange(this.#client, this.#subnetsDir, true),
        );
        own = await this.#tryAcquire(config, attrs, previous, kvs.map((kv) => this.#listed(kv)));
      } catch (error) {
        if (error instanceof OutOfSubnetsError) throw error;
        this.#log.warn("lease acquisition failed; retrying", { error: errorText(error) });
        await sleep(backoff.next(), signal);
        continue;
      }
      if (own) {
        this.#own = own;
        this.#onOwnLease?.(toLease(own));
        this.#log.info("lease acquired", {
          subnet: describe(own.subnets),
          reserved: own.leaseId === undefined,
        });
        return toLease(own);
      }
      attempts++;
      this.#log.info("another node took the chosen subnet first; retrying", { attempts });
      await sleep(Math.random() * 20 * attempts, signal); // spread out contending nodes
    }
    throw new AcquireConflictError(attempts);
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
    const known = new Map<string, Lease>(); // by key name: DELETE events carry only the key
    let snapshots = 0;
    const items = listWatch({
      client: this.#client,
      key: this.#subnetsDir,
      prefix: true,
      onFailure: (failure) => this.#onWatchFailure("leases", failure),
    }, signal);
    for await (const item of items) {
      if (item.type === "snapshot") {
        if (snapshots++ > 0) this.stats.relists++;
        known.clear();
        for (const kv of item.kvs) {
          const listed = this.#listed(kv);
          if (listed.lease) known.set(listed.name, listed.lease);
        }
        yield { type: "snapshot", leases: [...known.values()] };
        continue;
      }
      const events: LeaseEvent[] = [];
      for (const event of item.events) {
        const listed = this.#listed(event.kv, event.type === "Delete");
        const before = known.get(listed.name);
        if (event.type === "Put" && listed.lease) {
          known.set(listed.name, listed.lease);
          events.push({ type: "added", lease: listed.lease });
        } else if (event.type === "Delete" && before) {
          known.delete(listed.name);
          events.push({ type: "removed", lease: before });
        }
      }
      this.stats.watchEvents += events.length;
      if (events.length > 0) yield { type: "events", events };
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

  /** One pass of spec §3.4 over a listing; undefined when another node won a race. */
  async #tryAcquire(
    config: NetworkConfig,
    attrs: LeaseAttrs,
    previous: LeaseSubnets,
    listed: ListedKey[],
  ): Promise<OwnLease | undefined> {
    let others = listed;
    const mine = listed.find((entry) => entry.lease && this.#isOurs(entry.lease.attrs, attrs));
    if (mine?.lease) {
      if (fitsConfig(config, mine.lease)) {
        return await this.#claim(mine.kv, subnetsOf(mine.lease), attrs);
      }
      if (mine.lease.reserved) {
        this.#log.warn("a reservation with our public IP does not fit the config; left alone", {
          key: mine.name,
        });
      } else {
        this.#log.warn("deleting our lease: it does not fit the config", { key: mine.name });
        if (!await this.#deleteIfUnchanged(mine.kv)) return undefined;
        others = listed.filter((entry) => entry !== mine);
      }
    }
    const occupied = others.flatMap((entry) => entry.ranges);
    const choose = (family: "ipv4" | "ipv6", prev: IPNet | undefined): IPNet | undefined => {
      const fam = config[family];
      if (!fam) return undefined;
      if (prev && fitsFamily(fam, prev) && isFree(prev, occupied)) return prev;
      const subnet = pickFreeSubnet(fam, occupied);
      if (!subnet) {
        throw new OutOfSubnetsError(
          `no free /${fam.subnetLen} in ${formatNet(fam.network)} between ` +
            `${formatAddr(fam.subnetMin)} and ${formatAddr(fam.subnetMax)}`,
        );
      }
      return subnet;
    };
    const subnet = choose("ipv4", previous.subnet);
    const ipv6Subnet = choose("ipv6", previous.ipv6Subnet);
    return await this.#create(subnetsOf({ subnet, ipv6Subnet }), attrs);
  }

  /** Whether a lease was published by this node: same PublicIP (PublicIPv6 when IPv6-only). */
  #isOurs(theirs: LeaseAttrs, ours: LeaseAttrs): boolean {
    if (this.#config?.ipv4) return addrEqual(theirs.publicIP, ours.publicIP);
    return !!theirs.publicIPv6 && !!ours.publicIPv6 &&
      addrEqual(theirs.publicIPv6, ours.publicIPv6);
  }

  /** Create a new lease key, only if it and every key for the same IPv4 subnet are absent. */
  async #create(subnets: LeaseSubnets, attrs: LeaseAttrs): Promise<OwnLease | undefined> {
    const key = this.leaseKey(subnets);
    const value = encodeLeaseAttrs(attrs);
    const compare: ICompare[] = [
      { key: keyBytes(key), target: "Version", result: "Equal", version: 0 },
    ];
    if (subnets.subnet) {
      // A dual-stack key for the same IPv4 subnet but another IPv6 one has a different name.
      const sameIPv4 = this.#subnetsDir + formatLeaseKey({ subnet: subnets.subnet });
      compare.push({
        key: keyBytes(sameIPv4),
        range_end: prefixEnd(sameIPv4),
        target: "Version",
        result: "Equal",
        version: 0,
      });
    }
    const grant = await this.#grant();
    const res = await this.#timed("txn", () =>
      this.#client.kv.txn({
        compare,
        success: [{
          request_put: { key: keyBytes(key), value: Buffer.from(value), lease: grant.id },
        }],
      }));
    if (!res.succeeded) {
      await this.#revoke(grant.id);
      return undefined;
    }
    return { key, subnets, attrs, value, leaseId: grant.id, expiration: grant.expiration };
  }

  /**
   * Take over `kv` (ours) with `attrs`, unless it changed since it was read: a fresh etcd lease
   * and the old one revoked, or, for a reservation, the value only and no lease (quirk 4).
   */
  async #claim(
    kv: IKeyValue,
    subnets: LeaseSubnets,
    attrs: LeaseAttrs,
  ): Promise<OwnLease | undefined> {
    const key = kv.key.toString("utf8");
    const value = encodeLeaseAttrs(attrs);
    const reserved = kv.lease === "0";
    const own = { key, subnets, attrs, value };
    if (reserved && kv.value.toString("utf8") === value) return own;
    const grant = reserved ? undefined : await this.#grant();
    const res = await this.#timed("txn", () =>
      this.#client.kv.txn({
        compare: [{ key: kv.key, target: "Mod", result: "Equal", mod_revision: kv.mod_revision }],
        success: [{
          request_put: {
            key: kv.key,
            value: Buffer.from(value),
            ...(grant && { lease: grant.id }),
          },
        }],
      }));
    if (!res.succeeded) {
      if (grant) await this.#revoke(grant.id);
      return undefined;
    }
    if (!grant) return own;
    if (kv.lease !== grant.id) await this.#revoke(kv.lease); // no orphan leases (quirk 5)
    return { ...own, leaseId: grant.id, expiration: grant.expiration };
  }

  async #deleteIfUnchanged(kv: IKeyValue): Promise<boolean> {
    const res = await this.#timed("txn", () =>
      this.#client.kv.txn({
        compare: [{ key: kv.key, target: "Mod", result: "Equal", mod_revision: kv.mod_revision }],
        success: [{ request_delete_range: { key: kv.key } }],
      }));
    return res.succeeded;
  }

  async #grant(): Promise<{ id: string; expiration: Date }> {
    const start = Date.now();
    const res = await this.#timed(
      "grant",
      () => this.#client.leaseClient.leaseGrant({ TTL: this.#ttlSeconds }),
    );
    return { id: res.ID, expiration: new Date(start + Number(res.TTL) * 1000) };
  }

  /** Best effort: a lease we fail to revoke only lingers until its TTL. */
  async #revoke(id: string): Promise<void> {
    try {
      await this.#timed("revoke", () => this.#client.leaseClient.leaseRevoke({ ID: id }));
    } catch (error) {
      this.#log.warn("could not revoke an etcd lease", { lease: id, error: errorText(error) });
    }
  }

  // --- keeping our lease ---------------------------------------------------------------------

  /**
   * Re-read our key and make it ours again: renew it, re-create it when it vanished (counted as a
   * re-acquisition), or fail with LeaseLostError when another node holds it now.
   */
  async #refresh(own: OwnLease, attrs: LeaseAttrs): Promise<OwnLease> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const { kvs } = await this.#timed("range", () => readRange(this.#client, own.key, false));
      if (kvs.length === 0) {
        const created = await this.#create(own.subnets, attrs);
        if (created) {
          this.stats.reacquisitions++;
          this.#log.warn("our lease key had vanished (expired or deleted); re-acquired it", {
            subnet: describe(own.subnets),
          });
          return created;
        }
        continue;
      }
      // A value nobody can read is nobody's lease: we take our key back.
      const lease = this.#listed(kvs[0]).lease;
      if (lease && !this.#isOurs(lease.attrs, attrs)) {
        throw new LeaseLostError(own.key, `now held by ${formatAddr(lease.attrs.publicIP)}`);
      }
      const claimed = await this.#claim(kvs[0], own.subnets, attrs);
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
      : item.events.at(-1)?.type === "Put"
      ? item.events.at(-1)?.kv
      : undefined;
    if (!last) {
      this.#log.warn("our lease key vanished (expired or deleted)", { key: own.key });
      return true;
    }
    return last.lease !== (own.leaseId ?? "0") || last.value.toString("utf8") !== own.value;
  }

  // --- shared --------------------------------------------------------------------------------

  /** Decode one key; malformed ones are counted and logged once (quirk 1). */
  #listed(kv: IKeyValue, keyOnly = false): ListedKey {
    const name = kv.key.toString("utf8").slice(this.#subnetsDir.length);
    let subnets: LeaseSubnets;
    try {
      subnets = parseLeaseKey(name);
    } catch (error) {
      this.#skipped(name, error);
      return { kv, name, ranges: rangesInKeyName(name) };
    }
    const ranges = [subnets.subnet, subnets.ipv6Subnet].filter((n): n is IPNet => !!n);
    if (keyOnly) return { kv, name, ranges };
    try {
      const attrs = decodeLeaseAttrs(UTF8.decode(kv.value));
      const lease: Lease = { ...subnets, attrs, ...(kv.lease === "0" && { reserved: true }) };
      return { kv, name, lease, ranges };
    } catch (error) {
      this.#skipped(name, error);
      return { kv, name, ranges };
    }
  }

  #skipped(name: string, error: unknown): void {
    this.stats.malformedSkipped++;
    if (this.#malformedLogged.size < MAX_MALFORMED_LOGGED && !this.#malformedLogged.has(name)) {
      this.#malformedLogged.add(name);
      this.#log.warn("skipping malformed lease", { key: name, error: errorText(error) });
    }
  }

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

  async #timed<T>(op: string, request: () => Promise<T>): Promise<T> {
    const done = this.#timeRequest?.(op);
    try {
      return await request();
    } finally {
      done?.();
    }
  }
}
