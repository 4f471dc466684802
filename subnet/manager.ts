/**
 * The seam between where leases live (etcd, Kubernetes) and the rest of the daemon.
 *
 * @module
 */
import type { NetworkConfig } from "../config/network_config.ts";
import type { IPAddr } from "../ip/mod.ts";
import type { JsonValue, Lease, LeaseAttrs, LeaseEvent } from "./lease.ts";

/**
 * What a watch delivers: first a snapshot of every lease, later batches of events. A manager
 * that loses its watch (compaction, reconnect) delivers a fresh snapshot; consumers diff it
 * against what they know, so no change is ever missed.
 */
export type LeaseWatchUpdate =
  | { readonly type: "snapshot"; readonly leases: readonly Lease[] }
  | { readonly type: "events"; readonly events: readonly LeaseEvent[] };

/** Counters of the lease store (etcd or Kubernetes). */
export interface LeaseStoreCounters {
  renewals: number;
  renewFailures: number;
  reacquisitions: number;
  watchEvents: number;
  relists: number;
  watchErrors: number;
  malformedSkipped: number;
}

/** Zeroed lease store counters. */
export function newLeaseStoreCounters(): LeaseStoreCounters {
  return {
    renewals: 0,
    renewFailures: 0,
    reacquisitions: 0,
    watchEvents: 0,
    relists: 0,
    watchErrors: 0,
    malformedSkipped: 0,
  };
}

/** Implemented by `etcd.ts` and `kube.ts`. */
export interface SubnetManager {
  /** The network config; waits (with backoff) while it is absent. */
  getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig>;
  /** Reuse our lease > previous subnet.env subnet > a free candidate (spec §3.4). */
  acquireLease(attrs: LeaseAttrs, signal: AbortSignal): Promise<Lease>;
  /** Re-publish our lease with a fresh TTL. */
  renewLease(lease: Lease, signal: AbortSignal): Promise<Lease>;
  /**
   * Keep our lease until `signal` aborts (flannel's "complete lease"): etcd renews it before
   * expiry and re-acquires the same subnet when its key vanishes; kube asserts the node
   * condition. Resolves on abort; rejects with {@link LeaseLostError} when the subnet now
   * belongs to another node (the daemon must then exit non-zero, quirk 9).
   */
  maintainLease(lease: Lease, signal: AbortSignal): Promise<void>;
  /** All leases: a snapshot, then events; survives compaction and reconnects. */
  watchLeases(signal: AbortSignal): AsyncIterable<LeaseWatchUpdate>;
  /** Release client resources (never deletes our lease: flannel keeps it until TTL). */
  close(): Promise<void>;
  /**
   * The backend data this node published before, for one family (kube: its own node's
   * `backend-data` / `backend-v6-data` annotations), so a newly created vxlan device takes the
   * VTEP MAC peers already know (spec §4.2). Optional: managers that cannot tell omit it.
   */
  previousBackendData?(family: 4 | 6, signal: AbortSignal): Promise<JsonValue | undefined>;
  /**
   * Public addresses an operator pinned on this node (kube: `node-public-ip(v6)` annotations);
   * they override `--public-ip(v6)` and therefore interface selection (spec §10.1 step 6).
   */
  nodePublicIPs?(signal: AbortSignal): Promise<{ publicIP?: IPAddr; publicIPv6?: IPAddr }>;
}

/** Every candidate subnet of the network is taken. */
export class OutOfSubnetsError extends Error {
  constructor(detail: string) {
    super(`out of subnets: ${detail}`);
    this.name = "OutOfSubnetsError";
  }
}

/** Our subnet now belongs to another node, so this node cannot keep serving it. */
export class LeaseLostError extends Error {
  constructor(readonly key: string, detail: string) {
    super(`lease ${key} lost: ${detail}`);
    this.name = "LeaseLostError";
  }
}

/** Acquisition kept losing races to other nodes (spec §3.4, quirk 3: bounded retries). */
export class AcquireConflictError extends Error {
  constructor(readonly attempts: number) {
    super(`no subnet acquired after ${attempts} attempts: other nodes took each candidate first`);
    this.name = "AcquireConflictError";
  }
}
