/**
 * Prometheus metrics over the daemon state.
 *
 * Everything the state already knows (lease counts, store counters, backend and traffic
 * health, udp counters) is read at scrape time from {@link STATE_METRICS}, so components never
 * push those: adding such a metric is one entry in that table. Only durations, which the state
 * does not keep, are observed into histograms that {@link Metrics} hands to the etcd manager and
 * the reconcile loop.
 *
 * @example
 * ```ts
 * const metrics = createMetrics(state);
 * const end = metrics.etcdRequestSeconds.startTimer({ op: "txn" });
 * await etcd.txn(...);
 * end();
 * const text = await metrics.render();
 * ```
 *
 * @module
 */
import type { DaemonState } from "../state.ts";
import { Histogram, type MetricFamily, renderExposition, type Sample } from "./exposition.ts";
import { processFamilies } from "./process_metrics.ts";
import { evaluateReadiness } from "./readiness.ts";
import { leaseSubnets } from "../subnet/lease.ts";
import type { PeerProbeReport, ProbeOutcome } from "../probe/prober.ts";
import { PEER_VERDICTS, peerVerdict, type ProbePath } from "../probe/peer_state.ts";
import { type BackendHealth } from "../backends/backend.ts";
import { type LeaseStoreCounters } from "../subnet/manager.ts";
import { type TrafficHealth } from "../traffic/manager.ts";

export { EXPOSITION_CONTENT_TYPE } from "./exposition.ts";

/** The metric objects components observe into, and the rendering `/metrics` serves. */
export interface Metrics {
  /** etcd round trips by operation (`get`, `put`, `txn`, `delete`, `grant`, `keepalive`, …). */
  readonly etcdRequestSeconds: Histogram<"op">;
  /** One reconcile pass of the backend (diff desired against kernel state and repair). */
  readonly reconcileSeconds: Histogram;
  /** Round trips of answered peer probes, by path (`underlay`, `overlay`, `full_size`). */
  readonly peerProbeRttSeconds: Histogram<"path">;
  /** The text exposition of every metric, read from the state now. */
  render(): Promise<string>;
}

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** Include the `tartan_process_*` / `tartan_nodejs_*` families (default true). */
  readonly defaultMetrics?: boolean;
}

/** A metric whose value the daemon state holds, read when scraped. */
interface StateMetric {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  /** Without label names the family always has its one series: 0 until the state knows. */
  readonly labelNames?: readonly string[];
  readonly read: (state: DaemonState) => readonly Sample[];
}

const one = (value: number): Sample[] => [{ value }];
const seconds = (date: Date | undefined): Sample[] => one(date ? date.getTime() / 1000 : 0);
const flag = (value: boolean | undefined): Sample[] => one(value ? 1 : 0);

/** Read from the backend's health; no series before the backend registers. */
const backend = (read: (health: BackendHealth) => readonly Sample[]) => (state: DaemonState) => {
  const health = state.backend?.();
  return health ? read(health) : [];
};
const dataPath = (read: (path: NonNullable<BackendHealth["dataPath"]>) => Sample[]) =>
  backend((health) => health.dataPath ? read(health.dataPath) : []);
/** Read from the traffic manager's health; no series before it starts. */
const traffic = (read: (health: TrafficHealth) => readonly Sample[]) => (state: DaemonState) => {
  const health = state.traffic?.();
  return health ? read(health) : [];
};

/** Read from the peer prober's report; no series while probing is off. */
const probes = (read: (report: PeerProbeReport) => Sample[]) => (state: DaemonState) => {
  const report = state.peerProbes?.();
  return report?.enabled ? read(report) : [];
};

/** The metric label of a probe path. */
export function probePathLabel(path: ProbePath): string {
  return path === "fullSize" ? "full_size" : path;
}

const PROBE_OUTCOMES: readonly ProbeOutcome[] = ["answered", "lost", "unsent"];

/** One series per reason of the lease gate. */
const byReason = (counts: Readonly<Record<string, number>>): Sample[] =>
  Object.entries(counts).map(([reason, value]) => ({ labels: { reason }, value }));

/** A counter the lease store keeps in `state.store`. */
const storeCounter = (
  field: keyof LeaseStoreCounters,
  name: string,
  help: string,
): StateMetric => ({ name, help, type: "counter", read: (state) => one(state.store[field]) });

/** Every metric read from the state, in the order `/metrics` lists them. */
const STATE_METRICS: readonly StateMetric[] = [
  {
    name: "tartan_info",
    help: "Constant 1, labelled with the version, node name, subnet manager mode and Deno version.",
    type: "gauge",
    labelNames: ["version", "node", "mode", "deno"],
    read: ({ version, nodeName: node, mode }) => [
      { labels: { version, node, mode, deno: Deno.version.deno }, value: 1 },
    ],
  },
  {
    name: "tartan_ready",
    help: "1 when /readyz reports ready, else 0.",
    type: "gauge",
    read: (state) => flag(evaluateReadiness(state).ready),
  },
  {
    name: "tartan_leases",
    help: "Leases known to this node, its own included.",
    type: "gauge",
    read: (state) => one(state.leases.size),
  },
  {
    name: "tartan_own_lease_expiry_seconds",
    help: "Seconds until our lease expires (negative once expired, +Inf when it never does).",
    type: "gauge",
    labelNames: ["subnet"],
    read: ({ ownLease: lease }) => {
      if (!lease) return [];
      const expiry = lease.expiration;
      const value = expiry ? (expiry.getTime() - Date.now()) / 1000 : Infinity;
      return [{ labels: { subnet: leaseSubnets(lease) }, value }];
    },
  },
  {
    name: "tartan_watch_last_update_timestamp_seconds",
    help: "Unix time of the last watch snapshot or event batch (0: none yet).",
    type: "gauge",
    read: (state) => seconds(state.lastWatchUpdate),
  },
  storeCounter("renewals", "tartan_lease_renewals_total", "Successful renewals of our lease."),
  storeCounter("renewFailures", "tartan_lease_renewal_failures_total", "Failed renewal attempts."),
  storeCounter(
    "reacquisitions",
    "tartan_lease_reacquisitions_total",
    "Times our lease was acquired anew.",
  ),
  storeCounter("watchEvents", "tartan_watch_events_total", "Lease events received from the watch."),
  storeCounter("relists", "tartan_watch_relists_total", "Full re-lists (compaction, reconnect)."),
  storeCounter(
    "watchErrors",
    "tartan_watch_errors_total",
    "Watch failures that forced a reconnect.",
  ),
  storeCounter(
    "malformedSkipped",
    "tartan_malformed_leases_skipped_total",
    "Unparsable leases skipped.",
  ),
  {
    name: "tartan_lease_skips_total",
    help: "Peer leases the lease gate kept from the backend, by reason (each skip counted once).",
    type: "counter",
    labelNames: ["reason"],
    read: (state) => byReason(state.leaseSkips),
  },
  {
    name: "tartan_skipped_leases",
    help: "Peer leases kept from the backend now, by reason (/v1/leases says which and why).",
    type: "gauge",
    labelNames: ["reason"],
    read: (state) => byReason(state.skippedNow?.() ?? {}),
  },
  {
    name: "tartan_backend_ready",
    help: "1 when the backend created its devices and finished its first reconcile.",
    type: "gauge",
    read: backend((health) => flag(health.ready)),
  },
  {
    name: "tartan_backend_peers",
    help: "Peers by whether their kernel state matches the desired state.",
    type: "gauge",
    labelNames: ["state"],
    read: backend((health) => {
      const inSync = health.peers.filter((peer) => peer.inSync).length;
      return [
        { labels: { state: "in_sync" }, value: inSync },
        { labels: { state: "out_of_sync" }, value: health.peers.length - inSync },
      ];
    }),
  },
  {
    name: "tartan_backend_last_reconcile_timestamp_seconds",
    help: "Unix time of the last reconcile pass (0: none yet).",
    type: "gauge",
    read: backend((health) => seconds(health.lastReconcile)),
  },
  {
    name: "tartan_backend_last_reconcile_success",
    help: "1 when the last reconcile pass succeeded.",
    type: "gauge",
    read: backend((health) => flag(health.lastReconcileOk)),
  },
  {
    name: "tartan_backend_drift_repairs_total",
    help: "Kernel objects re-created or removed because they drifted from the desired state.",
    type: "counter",
    read: backend((health) => one(health.driftRepaired)),
  },
  {
    name: "tartan_udp_packets_total",
    help: "Packets forwarded by the udp backend, by direction (tx: TUN to peer, rx: peer to TUN).",
    type: "counter",
    labelNames: ["direction"],
    read: dataPath((path) => [
      { labels: { direction: "tx" }, value: path.packetsTx },
      { labels: { direction: "rx" }, value: path.packetsRx },
    ]),
  },
  {
    name: "tartan_udp_bytes_total",
    help: "Bytes of inner packets forwarded by the udp backend, by direction.",
    type: "counter",
    labelNames: ["direction"],
    read: dataPath((path) => [
      { labels: { direction: "tx" }, value: path.bytesTx },
      { labels: { direction: "rx" }, value: path.bytesRx },
    ]),
  },
  {
    name: "tartan_udp_drops_total",
    help: "Packets dropped by the udp backend, by reason.",
    type: "counter",
    labelNames: ["reason"],
    read: dataPath((path) =>
      Object.entries(path.drops).map(([reason, value]) => ({ labels: { reason }, value }))
    ),
  },
  {
    name: "tartan_traffic_repairs_total",
    help: "Masquerade/forward rules restored by the periodic resync.",
    type: "counter",
    read: traffic((health) => one(health.repairs)),
  },
  {
    name: "tartan_traffic_check_failures_total",
    help: "Masquerade/forward rule checks that failed (retried next period).",
    type: "counter",
    read: traffic((health) => one(health.failures)),
  },
  {
    name: "tartan_traffic_last_resync_timestamp_seconds",
    help: "Unix time of the last rule check (0: none yet).",
    type: "gauge",
    read: traffic((health) => seconds(health.lastCheck)),
  },
  {
    name: "tartan_traffic_last_resync_success",
    help: "1 when the last rule check succeeded.",
    type: "gauge",
    read: traffic((health) =>
      flag(health.lastResult !== undefined && health.lastResult !== "failed")
    ),
  },
  {
    name: "tartan_peer_probe_peers",
    help: "Peers by probe path and the outcome of their last probe (unknown: none yet).",
    type: "gauge",
    labelNames: ["path", "state"],
    read: probes(({ peers }) =>
      (["underlay", "overlay"] as const).flatMap((path) => {
        const counts = { reachable: 0, unreachable: 0, unknown: 0 };
        for (const peer of peers) {
          const history = peer[path];
          if (!history) continue; // no overlay (host-gw)
          const reachable = history.reachable;
          counts[reachable === undefined ? "unknown" : reachable ? "reachable" : "unreachable"]++;
        }
        return Object.entries(counts).map(([key, value]) => ({
          labels: { path, state: key },
          value,
        }));
      })
    ),
  },
  {
    name: "tartan_peer_probe_verdict_peers",
    help: "Peers by probe verdict (ok, pending, overlay-blocked, mtu-black-hole, unreachable, …).",
    type: "gauge",
    labelNames: ["verdict"],
    read: probes(({ peers }) => {
      const counts = new Map(PEER_VERDICTS.map((verdict) => [verdict, 0]));
      for (const peer of peers) {
        const verdict = peerVerdict(peer);
        counts.set(verdict, counts.get(verdict)! + 1);
      }
      return [...counts].map(([verdict, value]) => ({ labels: { verdict }, value }));
    }),
  },
  {
    name: "tartan_peer_probes_total",
    help: "Peer probes (ICMP echoes) by path and outcome (answered, lost, unsent).",
    type: "counter",
    labelNames: ["path", "outcome"],
    read: probes(({ totals }) =>
      (["underlay", "overlay", "fullSize"] as const).flatMap((path) =>
        PROBE_OUTCOMES.map((outcome) => ({
          labels: { path: probePathLabel(path), outcome },
          value: totals[path][outcome],
        }))
      )
    ),
  },
];

/** A counter never goes down or becomes NaN: such readings are left out. */
const countable = ({ value }: Sample) => Number.isFinite(value) && value >= 0;

function stateFamily(state: DaemonState, metric: StateMetric): MetricFamily {
  const { name, help, type, labelNames = [], read } = metric;
  const samples = () => {
    const readings = type === "counter" ? read(state).filter(countable) : read(state);
    return readings.length === 0 && labelNames.length === 0 ? one(0) : readings;
  };
  return { name, help, type, samples };
}

/**
 * Build the metrics: state mirrors, the two duration histograms and (by default) the
 * process/runtime families, all prefixed `tartan_`.
 */
export function createMetrics(state: DaemonState, options: MetricsOptions = {}): Metrics {
  const etcdRequestSeconds = new Histogram<"op">({
    name: "tartan_etcd_request_duration_seconds",
    help: "Latency of etcd requests by operation.",
    labelNames: ["op"],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  });
  const reconcileSeconds = new Histogram({
    name: "tartan_reconcile_duration_seconds",
    help: "Duration of one backend reconcile pass.",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  });
  const peerProbeRttSeconds = new Histogram<"path">({
    name: "tartan_peer_probe_rtt_seconds",
    help: "Round-trip time of answered peer probes, by path (underlay, overlay, full_size).",
    labelNames: ["path"],
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
  });
  const families: MetricFamily[] = [
    ...STATE_METRICS.map((metric) => stateFamily(state, metric)),
    etcdRequestSeconds,
    reconcileSeconds,
    peerProbeRttSeconds,
    ...(options.defaultMetrics ?? true ? processFamilies("tartan_") : []),
  ];
  return {
    etcdRequestSeconds,
    reconcileSeconds,
    peerProbeRttSeconds,
    render: () => renderExposition(families),
  };
}
