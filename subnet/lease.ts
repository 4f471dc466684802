/**
 * Lease types shared by subnet managers, backends and the API.
 *
 * @module
 */
import type { IPAddr, IPNet } from "./ip/mod.ts";

/** JSON value as stored in BackendData (embedded verbatim, compacted). */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** What a node publishes about itself (spec §3.3). */
export interface LeaseAttrs {
  /** IPv4 public address; 0.0.0.0 when the node has none. */
  readonly publicIP: IPAddr;
  readonly publicIPv6?: IPAddr;
  /** Absent for udp and alloc, as flannel writes it. */
  readonly backendType?: string;
  readonly backendData?: JsonValue;
  readonly backendV6Data?: JsonValue;
}

/** One node's lease: its subnet(s), attributes and expiry. */
export interface Lease {
  /** IPv4 subnet (absent in IPv6-only). */
  readonly subnet?: IPNet;
  /** IPv6 subnet (dual stack or IPv6-only). */
  readonly ipv6Subnet?: IPNet;
  readonly attrs: LeaseAttrs;
  /** When the lease expires; undefined for a reservation (a key with no etcd lease) or kube. */
  readonly expiration?: Date;
}

/** A change to the set of leases, as backends consume it (spec §6.1). */
export type LeaseEvent =
  | { readonly type: "added"; readonly lease: Lease }
  | { readonly type: "removed"; readonly lease: Lease };
