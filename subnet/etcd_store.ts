/**
 * The lease keys under `<prefix>/subnets/` as etcd holds them: reading and decoding them
 * (malformed ones counted and logged once, quirk 1) and the guarded transactions that create,
 * take over and delete one. Acquisition (etcd_acquire.ts) and the manager (etcd.ts) decide what
 * to do; this module only knows how etcd does it.
 *
 * @module
 */
import type { EtcdClient } from "../etcd/client.ts";
import { type Compare, type KeyValue, prefixEnd, text } from "../etcd/codec.ts";
import { errorText, type Logger } from "../log.ts";
import { formatNet, type IPNet } from "../ip/mod.ts";
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  formatLeaseKey,
  type Lease,
  type LeaseAttrs,
  type LeaseSubnets,
  parseLeaseKey,
  rangesInKeyName,
} from "./lease.ts";
import { type LeaseStoreCounters } from "./manager.ts";

const MAX_MALFORMED_LOGGED = 1000;

/** Our lease as held in etcd. */
export interface OwnLease {
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
export interface ListedKey {
  readonly kv: KeyValue;
  /** The key below `subnets/`. */
  readonly name: string;
  /** Undefined when the key or the value is malformed. */
  readonly lease?: Lease;
  /** Ranges the key occupies, read out of its name even when malformed (quirk 2). */
  readonly ranges: IPNet[];
}

/** Options of {@link EtcdLeaseStore}. */
export interface EtcdLeaseStoreOptions {
  readonly client: EtcdClient;
  /** `<prefix>/subnets/`, with the trailing slash. */
  readonly subnetsDir: string;
  /** TTL of the etcd leases granted to our key. */
  readonly ttlSeconds: number;
  /** `malformedSkipped` is counted here. */
  readonly counters: Pick<LeaseStoreCounters, "malformedSkipped">;
  /** Start timing one etcd request (`grant`, `txn`, `range`, …); call the result when done. */
  readonly timeRequest?: (op: string) => () => void;
  readonly log: Logger;
}

/** The lease as the manager hands it out. */
export function toLease(own: OwnLease): Lease {
  return {
    ...own.subnets,
    attrs: own.attrs,
    ...(own.expiration && { expiration: own.expiration }),
    ...(own.leaseId === undefined && { reserved: true }),
  };
}

/** Just the subnets of a lease, without undefined members. */
export function subnetsOf({ subnet, ipv6Subnet }: LeaseSubnets): LeaseSubnets {
  return { ...(subnet && { subnet }), ...(ipv6Subnet && { ipv6Subnet }) };
}

/** The subnets for a log line: `10.244.1.0/24,fd00::/64`. */
export function describeSubnets(subnets: LeaseSubnets): string {
  const nets = [subnets.subnet, subnets.ipv6Subnet].filter((n): n is IPNet => n !== undefined);
  return nets.map(formatNet).join(",");
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

/** A transaction condition: `kv` is still at the revision it was read at. */
function unchanged(kv: KeyValue): Compare {
  return { key: kv.key, target: "MOD", result: "EQUAL", modRevision: kv.modRevision };
}

/** The keys under `<prefix>/subnets/`: reads, decoding and guarded writes. */
export class EtcdLeaseStore {
  readonly client: EtcdClient;
  readonly subnetsDir: string;
  readonly #ttlSeconds: number;
  readonly #counters: Pick<LeaseStoreCounters, "malformedSkipped">;
  readonly #timeRequest?: (op: string) => () => void;
  readonly #log: Logger;
  readonly #malformedLogged = new Set<string>();

  constructor(options: EtcdLeaseStoreOptions) {
    this.client = options.client;
    this.subnetsDir = options.subnetsDir;
    this.#ttlSeconds = options.ttlSeconds;
    this.#counters = options.counters;
    this.#timeRequest = options.timeRequest;
    this.#log = options.log;
  }

  /** The etcd key of a lease: `<prefix>/subnets/<lease key>`. */
  leaseKey(subnets: LeaseSubnets): string {
    return this.subnetsDir + formatLeaseKey(subnets);
  }

  /** Every key under `subnets/`, decoded, at one revision. */
  async list(): Promise<ListedKey[]> {
    const { kvs } = await this.timed("range", () => this.client.rangeAll(this.subnetsDir, true));
    return kvs.map((kv) => this.decode(kv));
  }

  /** One key exactly; empty when absent. */
  async read(key: string): Promise<KeyValue[]> {
    const { kvs } = await this.timed("range", () => this.client.rangeAll(key, false));
    return kvs;
  }

  /** Decode one key (`keyOnly` for DELETE events); malformed ones are counted, logged once. */
  decode(kv: KeyValue, keyOnly = false): ListedKey {
    const name = text(kv.key).slice(this.subnetsDir.length);
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
      const lease: Lease = {
        ...subnets,
        attrs,
        ...(kv.lease === "0" && { reserved: true }),
        created: kv.createRevision,
      };
      return { kv, name, lease, ranges };
    } catch (error) {
      this.#skipped(name, error);
      return { kv, name, ranges };
    }
  }

  /** Create a new lease key, only if it and every key for the same IPv4 subnet are absent. */
  async create(subnets: LeaseSubnets, attrs: LeaseAttrs): Promise<OwnLease | undefined> {
    const key = this.leaseKey(subnets);
    const value = encodeLeaseAttrs(attrs);
    const compare: Compare[] = [{ key, target: "VERSION", result: "EQUAL", version: 0 }];
    if (subnets.subnet) {
      // A dual-stack key for the same IPv4 subnet but another IPv6 one has a different name.
      const sameIPv4 = this.subnetsDir + formatLeaseKey({ subnet: subnets.subnet });
      compare.push({
        key: sameIPv4,
        rangeEnd: prefixEnd(sameIPv4),
        target: "VERSION",
        result: "EQUAL",
        version: 0,
      });
    }
    const grant = await this.#grant();
    const res = await this.timed(
      "txn",
      () => this.client.txn({ compare, success: [{ put: { key, value, lease: grant.id } }] }),
    );
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
  async claim(
    kv: KeyValue,
    subnets: LeaseSubnets,
    attrs: LeaseAttrs,
  ): Promise<OwnLease | undefined> {
    const key = text(kv.key);
    const value = encodeLeaseAttrs(attrs);
    const reserved = kv.lease === "0";
    const own = { key, subnets, attrs, value };
    if (reserved && text(kv.value) === value) return own;
    const grant = reserved ? undefined : await this.#grant();
    const res = await this.timed("txn", () =>
      this.client.txn({
        compare: [unchanged(kv)],
        success: [{ put: { key: kv.key, value, ...(grant && { lease: grant.id }) } }],
      }));
    if (!res.succeeded) {
      if (grant) await this.#revoke(grant.id);
      return undefined;
    }
    if (!grant) return own;
    if (kv.lease !== grant.id) await this.#revoke(kv.lease); // no orphan leases (quirk 5)
    return { ...own, leaseId: grant.id, expiration: grant.expiration };
  }

  /** Delete `kv` unless it changed since it was read; whether it was deleted. */
  async deleteIfUnchanged(kv: KeyValue): Promise<boolean> {
    const res = await this.timed(
      "txn",
      () =>
        this.client.txn({ compare: [unchanged(kv)], success: [{ deleteRange: { key: kv.key } }] }),
    );
    return res.succeeded;
  }

  /** Run one etcd request, timed when the owner asked for timings. */
  async timed<T>(op: string, request: () => Promise<T>): Promise<T> {
    const done = this.#timeRequest?.(op);
    try {
      return await request();
    } finally {
      done?.();
    }
  }

  async #grant(): Promise<{ id: string; expiration: Date }> {
    const start = Date.now();
    const res = await this.timed("grant", () => this.client.leaseGrant(this.#ttlSeconds));
    return { id: res.id, expiration: new Date(start + res.ttl * 1000) };
  }

  /** Best effort: a lease we fail to revoke only lingers until its TTL. */
  async #revoke(id: string): Promise<void> {
    try {
      await this.timed("revoke", () => this.client.leaseRevoke(id));
    } catch (error) {
      this.#log.warn("could not revoke an etcd lease", { lease: id, error: errorText(error) });
    }
  }

  #skipped(name: string, error: unknown): void {
    this.#counters.malformedSkipped++;
    if (this.#malformedLogged.size < MAX_MALFORMED_LOGGED && !this.#malformedLogged.has(name)) {
      this.#malformedLogged.add(name);
      this.#log.warn("skipping malformed lease", { key: name, error: errorText(error) });
    }
  }
}
