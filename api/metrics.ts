/**
 * Prometheus metrics over the daemon state, in a registry of their own.
 *
 * Everything the state already knows (lease counts, store counters, backend and traffic
 * health, udp counters) is read at scrape time by collect callbacks, so components never push
 * those. Only durations, which the state does not keep, are observed into histograms that
 * {@link Metrics} hands to the etcd manager and the reconcile loop.
 *
 * @example
 * ```ts
 * const metrics = createMetrics(state);
 * const end = metrics.etcdRequestSeconds.startTimer({ op: "txn" });
 * await etcd.txn(...);
 * end();
 * ```
 *
 * @module
 */
import client, { type Histogram, type Registry } from "prom-client";
import type { BackendHealth, DaemonState, LeaseStoreCounters, TrafficHealth } from "../state.ts";
import { evaluateReadiness, leaseSubnets } from "./readiness.ts";

/** The metric objects components observe into, and the registry `/metrics` renders. */
export interface Metrics {
  readonly registry: Registry;
  /** etcd round trips by operation (`get`, `put`, `txn`, `delete`, `grant`, `keepalive`, …). */
  readonly etcdRequestSeconds: Histogram<"op">;
  /** One reconcile pass of the backend (diff desired against kernel state and repair). */
  readonly reconcileSeconds: Histogram;
}

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Register the `tartan_process_*` / `tartan_nodejs_*` collectors (default true). */
  readonly defaultMetrics?: boolean;
}

/**
 * Default collectors that report nothing true under Deno: no `gc` performance entries arrive,
 * there are no libuv handles or requests, resource info lists only `Immediate`, and the
 * version is Deno's Node-compat version (`tartan_info` carries the Deno version instead).
 */
const UNSUPPORTED_DEFAULTS = [
  "nodejs_gc_duration_seconds",
  "nodejs_active_handles",
  "nodejs_active_handles_total",
  "nodejs_active_requests",
  "nodejs_active_requests_total",
  "nodejs_active_resources",
  "nodejs_active_resources_total",
  "nodejs_version_info",
];

/** Resolution of the event-loop lag histogram (ms): coarse enough to leave the CPU idle. */
const EVENT_LOOP_SAMPLE_MS = 1000;

/** A value read from the state at scrape time. */
interface Sample {
  readonly labels?: Record<string, string>;
  readonly value: number;
}

interface MirrorSpec {
  readonly name: string;
  readonly help: string;
  readonly labelNames?: readonly string[];
  readonly read: () => readonly Sample[];
}

function mirrorGauge(registry: Registry, spec: MirrorSpec): void {
  new client.Gauge({
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames ?? [],
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels = {}, value } of spec.read()) this.set(labels, value);
    },
  });
}

/** A counter whose total lives in the state; series of vanished labels disappear. */
function mirrorCounter(registry: Registry, spec: MirrorSpec): void {
  new client.Counter({
    name: spec.name,
    help: spec.help,
    labelNames: spec.labelNames ?? [],
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels = {}, value } of spec.read()) {
        if (Number.isFinite(value) && value >= 0) this.inc(labels, value);
      }
    },
  });
}

const one = (value: number): Sample[] => [{ value }];
const seconds = (date: Date | undefined): Sample[] => one(date ? date.getTime() / 1000 : 0);
const flag = (value: boolean | undefined): Sample[] => one(value ? 1 : 0);

const STORE_COUNTERS: ReadonlyArray<[keyof LeaseStoreCounters, string, string]> = [
  ["renewals", "tartan_lease_renewals_total", "Successful renewals of our lease."],
  ["renewFailures", "tartan_lease_renewal_failures_total", "Failed renewal attempts."],
  ["reacquisitions", "tartan_lease_reacquisitions_total", "Times our lease was acquired anew."],
  ["watchEvents", "tartan_watch_events_total", "Lease events received from the watch."],
  ["relists", "tartan_watch_relists_total", "Full re-lists (compaction, reconnect)."],
  ["watchErrors", "tartan_watch_errors_total", "Watch failures that forced a reconnect."],
  ["malformedSkipped", "tartan_malformed_leases_skipped_total", "Unparsable leases skipped."],
];

function registerLeaseMetrics(registry: Registry, state: DaemonState): void {
  mirrorGauge(registry, {
    name: "tartan_info",
    help: "Constant 1, labelled with the version, node name, subnet manager mode and Deno version.",
    labelNames: ["version", "node", "mode", "deno"],
    read: () => {
      const { version, nodeName: node, mode } = state;
      return [{ labels: { version, node, mode, deno: Deno.version.deno }, value: 1 }];
    },
  });
  mirrorGauge(registry, {
    name: "tartan_ready",
    help: "1 when /readyz reports ready, else 0.",
    read: () => flag(evaluateReadiness(state).ready),
  });
  mirrorGauge(registry, {
    name: "tartan_leases",
    help: "Leases known to this node, its own included.",
    read: () => one(state.leases.size),
  });
  mirrorGauge(registry, {
    name: "tartan_own_lease_expiry_seconds",
    help: "Seconds until our lease expires (negative once expired, +Inf when it never does).",
    labelNames: ["subnet"],
    read: () => {
      const lease = state.ownLease;
      if (!lease) return [];
      const expiry = lease.expiration;
      const value = expiry ? (expiry.getTime() - Date.now()) / 1000 : Infinity;
      return [{ labels: { subnet: leaseSubnets(lease) }, value }];
    },
  });
  mirrorGauge(registry, {
    name: "tartan_watch_last_update_timestamp_seconds",
    help: "Unix time of the last watch snapshot or event batch (0: none yet).",
    read: () => seconds(state.lastWatchUpdate),
  });
  for (const [field, name, help] of STORE_COUNTERS) {
    mirrorCounter(registry, { name, help, read: () => one(state.store[field]) });
  }
}

function registerBackendMetrics(registry: Registry, state: DaemonState): void {
  const backend = (read: (health: BackendHealth) => readonly Sample[]) => () => {
    const health = state.backend?.();
    return health ? read(health) : [];
  };
  mirrorGauge(registry, {
    name: "tartan_backend_ready",
    help: "1 when the backend created its devices and finished its first reconcile.",
    read: backend((health) => flag(health.ready)),
  });
  mirrorGauge(registry, {
    name: "tartan_backend_peers",
    help: "Peers by whether their kernel state matches the desired state.",
    labelNames: ["state"],
    read: backend((health) => {
      const inSync = health.peers.filter((peer) => peer.inSync).length;
      return [
        { labels: { state: "in_sync" }, value: inSync },
        { labels: { state: "out_of_sync" }, value: health.peers.length - inSync },
      ];
    }),
  });
  mirrorGauge(registry, {
    name: "tartan_backend_last_reconcile_timestamp_seconds",
    help: "Unix time of the last reconcile pass (0: none yet).",
    read: backend((health) => seconds(health.lastReconcile)),
  });
  mirrorGauge(registry, {
    name: "tartan_backend_last_reconcile_success",
    help: "1 when the last reconcile pass succeeded.",
    read: backend((health) => flag(health.lastReconcileOk)),
  });
  mirrorCounter(registry, {
    name: "tartan_backend_drift_repairs_total",
    help: "Kernel objects re-created or removed because they drifted from the desired state.",
    read: backend((health) => one(health.driftRepaired)),
  });
  const dataPath = (read: (path: NonNullable<BackendHealth["dataPath"]>) => Sample[]) =>
    backend((health) => health.dataPath ? read(health.dataPath) : []);
  mirrorCounter(registry, {
    name: "tartan_udp_packets_total",
    help: "Packets forwarded by the udp backend, by direction (tx: TUN to peer, rx: peer to TUN).",
    labelNames: ["direction"],
    read: dataPath((path) => [
      { labels: { direction: "tx" }, value: path.packetsTx },
      { labels: { direction: "rx" }, value: path.packetsRx },
    ]),
  });
  mirrorCounter(registry, {
    name: "tartan_udp_bytes_total",
    help: "Bytes of inner packets forwarded by the udp backend, by direction.",
    labelNames: ["direction"],
    read: dataPath((path) => [
      { labels: { direction: "tx" }, value: path.bytesTx },
      { labels: { direction: "rx" }, value: path.bytesRx },
    ]),
  });
  mirrorCounter(registry, {
    name: "tartan_udp_drops_total",
    help: "Packets dropped by the udp backend, by reason.",
    labelNames: ["reason"],
    read: dataPath((path) =>
      Object.entries(path.drops).map(([reason, value]) => ({ labels: { reason }, value }))
    ),
  });
}

function registerTrafficMetrics(registry: Registry, state: DaemonState): void {
  const traffic = (read: (health: TrafficHealth) => readonly Sample[]) => () => {
    const health = state.traffic?.();
    return health ? read(health) : [];
  };
  mirrorCounter(registry, {
    name: "tartan_traffic_repairs_total",
    help: "Masquerade/forward rules restored by the periodic resync.",
    read: traffic((health) => one(health.repairs)),
  });
  mirrorCounter(registry, {
    name: "tartan_traffic_check_failures_total",
    help: "Masquerade/forward rule checks that failed (retried next period).",
    read: traffic((health) => one(health.failures)),
  });
  mirrorGauge(registry, {
    name: "tartan_traffic_last_resync_timestamp_seconds",
    help: "Unix time of the last rule check (0: none yet).",
    read: traffic((health) => seconds(health.lastCheck)),
  });
  mirrorGauge(registry, {
    name: "tartan_traffic_last_resync_success",
    help: "1 when the last rule check succeeded.",
    read: traffic((health) =>
      flag(health.lastResult !== undefined && health.lastResult !== "failed")
    ),
  });
}

/**
 * Build the registry: state mirrors, the two duration histograms and (by default) the
 * process/runtime collectors, all prefixed `tartan_`.
 */
export function createMetrics(state: DaemonState, options: MetricsOptions = {}): Metrics {
  const registry = new client.Registry();
  registerLeaseMetrics(registry, state);
  registerBackendMetrics(registry, state);
  registerTrafficMetrics(registry, state);
  const etcdRequestSeconds = new client.Histogram({
    name: "tartan_etcd_request_duration_seconds",
    help: "Latency of etcd requests by operation.",
    labelNames: ["op"] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const reconcileSeconds = new client.Histogram({
    name: "tartan_reconcile_duration_seconds",
    help: "Duration of one backend reconcile pass.",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  if (options.defaultMetrics ?? true) {
    // The event-loop lag monitor samples on a timer: at prom-client's default 10 ms it wakes the
    // main thread 100 times a second, which on 2 vCPUs delays the udp data-path Worker's wake-ups.
    client.collectDefaultMetrics({
      register: registry,
      prefix: "tartan_",
      eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
    });
    for (const name of UNSUPPORTED_DEFAULTS) registry.removeSingleMetric(`tartan_${name}`);
  }
  return { registry, etcdRequestSeconds, reconcileSeconds };
}
