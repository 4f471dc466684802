/**
 * The daemon's single in-memory state: what every report (admin API, metrics, `tartan status`)
 * reads. Only the subnet manager, the backend and the traffic manager write to it.
 *
 * @module
 */
import type { NetworkConfig } from "./config/network_config.ts";
import type { Lease, LeaseSubnets } from "./subnet/lease.ts";
import { type SkippedLease, type SkipReason, zeroSkipCounts } from "./subnet/lease_gate.ts";
import type { IPAddr } from "./ip/mod.ts";
import type { TrafficHealth } from "./traffic/manager.ts";
import type { PeerProbeReport } from "./probe/prober.ts";

export type { TrafficHealth };

/** One peer's kernel state as the backend last saw it. */
export interface PeerHealth {
  /** The peer's subnet(s) as text, e.g. `10.244.3.0/24`. */
  readonly subnet: string;
  readonly publicIP: string;
  /** Whether every kernel object the peer needs is present and correct. */
  readonly inSync: boolean;
  /** Why not, when not (e.g. `network is unreachable`). */
  readonly error?: string;
}

/** Packet counters of a userspace data path (udp backend). */
export interface DataPathCounters {
  readonly packetsTx: number;
  readonly packetsRx: number;
  readonly bytesTx: number;
  readonly bytesRx: number;
  /** Dropped packets by reason (`no_route`, `ttl`, `bad_source`, `malformed`, …). */
  readonly drops: Readonly<Record<string, number>>;
}

/** What a backend reports about itself. */
export interface BackendHealth {
  readonly type: string;
  /** Devices created and the first reconcile done. */
  readonly ready: boolean;
  readonly lastReconcile?: Date;
  readonly lastReconcileOk?: boolean;
  readonly lastError?: string;
  /** Kernel objects re-created or removed because they differed from the desired state. */
  readonly driftRepaired: number;
  readonly peers: readonly PeerHealth[];
  readonly dataPath?: DataPathCounters;
}

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

/** The daemon state. Fields are mutable for the writers; readers take what they need. */
export interface DaemonState {
  readonly version: string;
  readonly startedAt: Date;
  nodeName: string;
  mode: "etcd" | "kube";
  publicIP?: IPAddr;
  publicIPv6?: IPAddr;
  config?: NetworkConfig;
  ownLease?: Lease;
  /** Every known lease (ours included), by lease key (`10.244.3.0-24`). */
  readonly leases: Map<string, Lease>;
  /** When the last watch update arrived (snapshot or events). */
  lastWatchUpdate?: Date;
  /** Set once subnet.env has been written: flannel's readiness condition. */
  subnetEnvWritten: boolean;
  /** Why a known lease is kept from the backend (the lease gate), undefined when it is not. */
  skipOf?: (lease: LeaseSubnets) => SkippedLease | undefined;
  /** Leases skipped now, by reason. */
  skippedNow?: () => Readonly<Record<SkipReason, number>>;
  /** Skip decisions since start, by reason (a lease is counted again only for a new reason). */
  readonly leaseSkips: Record<SkipReason, number>;
  backend?: () => BackendHealth;
  traffic?: () => TrafficHealth;
  /** The peer prober's results (absent when probing is off). */
  peerProbes?: () => PeerProbeReport;
  readonly store: LeaseStoreCounters;
}

/** A fresh state for a daemon that has just started. */
export function newDaemonState(
  version: string,
  nodeName: string,
  mode: "etcd" | "kube",
): DaemonState {
  return {
    version,
    startedAt: new Date(),
    nodeName,
    mode,
    leases: new Map(),
    subnetEnvWritten: false,
    leaseSkips: zeroSkipCounts(),
    store: newLeaseStoreCounters(),
  };
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
