/**
 * The daemon's single in-memory state: what every report (admin API, metrics, `tartan status`)
 * reads. Only the subnet manager, the backend and the traffic manager write to it. It only
 * aggregates: each component owns the shape of what it reports (`BackendHealth` in backends/,
 * `TrafficHealth` in traffic/, `LeaseStoreCounters` in subnet/, `PeerProbeReport` in probe/).
 *
 * @module
 */
import type { NetworkConfig } from "./config/network_config.ts";
import type { Lease, LeaseSubnets } from "./subnet/lease.ts";
import { type SkippedLease, type SkipReason, zeroSkipCounts } from "./subnet/lease_gate.ts";
import type { IPAddr } from "./ip/mod.ts";
import type { BackendHealth } from "./backends/backend.ts";
import { type LeaseStoreCounters, newLeaseStoreCounters } from "./subnet/manager.ts";
import type { TrafficHealth } from "./traffic/manager.ts";
import type { PeerProbeReport } from "./probe/prober.ts";

/** The daemon state. Fields are mutable for the writers; readers take what they need. */
export interface DaemonState {
  readonly version: string;
  readonly startedAt: Date;
  nodeName: string;
  mode: "etcd" | "kube";
  /** The etcd endpoints the daemon uses (etcd mode), for `tartan doctor`'s reachability check. */
  etcdEndpoints?: readonly string[];
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
