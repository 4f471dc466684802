/**
 * Admin API latency (`deno task bench admin_api`): the real Hono app behind the real server on
 * loopback, with a state of N peer leases (all in sync), fetched by a client in the same process.
 * Each endpoint is asked `ROUNDS` times after a warm-up; medians and 90th percentiles in ms. The
 * baseline is our own previous run (bench/results/admin_api.json before it is overwritten):
 * ratios below 1 are faster than last time.
 *
 * @module
 */
import { createApp } from "../api/app.ts";
import type { PeerHealth } from "../backends/backend.ts";
import { createMetrics } from "../api/metrics.ts";
import { serveAdmin } from "../api/server.ts";
import { parseNetConfig } from "../config/netconf.ts";
import { formatNet, parseAddr, parseNet } from "../ip/mod.ts";
import { newDaemonState } from "../state.ts";
import type { Lease } from "../subnet/lease.ts";
import { saveResult } from "./results.ts";
import { median, percentile, round } from "./stats.ts";

const PEER_COUNTS = [100, 1_000, 5_000];
const ENDPOINTS = ["/healthz", "/readyz", "/v1/status", "/v1/leases", "/v1/backend", "/metrics"];
const WARMUP = 3;
const ROUNDS = 30;

/** One endpoint at one cluster size. */
export interface EndpointLatency {
  readonly peers: number;
  readonly path: string;
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly bytes: number;
  /** medianMs / the previous run's medianMs, when there was one. */
  readonly ratioToPrevious?: number;
}

/** What the benchmark records. */
export interface AdminApiResult {
  readonly date: string;
  readonly rounds: number;
  readonly results: EndpointLatency[];
}

function vxlanLease(subnet: string, publicIP: string): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: {
      publicIP: parseAddr(publicIP),
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "0e:00:00:00:00:01" },
    },
  };
}

/** A ready vxlan node in etcd mode holding 10.0.0.0/24 with `peers` peers, all in sync. */
function stateWith(peers: number) {
  const state = newDaemonState("bench", "bench-node", "etcd");
  state.config = parseNetConfig(
    JSON.stringify({ Network: "10.0.0.0/8", Backend: { Type: "vxlan" } }),
    "etcd",
  ).config;
  state.publicIP = parseAddr("198.18.0.1");
  state.ownLease = vxlanLease("10.0.0.0/24", "198.18.0.1");
  state.leases.set("10.0.0.0-24", state.ownLease);
  const peerHealth: PeerHealth[] = [];
  for (let i = 1; i <= peers; i++) {
    const subnet = formatNet(parseNet(`10.${i >> 8}.${i & 255}.0/24`));
    const publicIP = `198.18.${(i >> 8) & 255}.${i & 255}`;
    state.leases.set(subnet.replace("/", "-"), vxlanLease(subnet, publicIP));
    peerHealth.push({ subnet, publicIP, inSync: true });
  }
  state.lastWatchUpdate = new Date();
  state.subnetEnvWritten = true;
  state.backend = () => ({
    type: "vxlan",
    ready: true,
    lastReconcile: new Date(),
    lastReconcileOk: true,
    driftRepaired: 0,
    peers: peerHealth,
  });
  return state;
}

async function previousMedians(): Promise<Map<string, number>> {
  const file = new URL("./results/admin_api.json", import.meta.url);
  const text = await Deno.readTextFile(file).catch(() => undefined);
  if (!text) return new Map();
  const previous = JSON.parse(text) as AdminApiResult;
  return new Map(previous.results.map((r) => [`${r.peers} ${r.path}`, r.medianMs]));
}

async function measure(peers: number, previous: Map<string, number>): Promise<EndpointLatency[]> {
  const state = stateWith(peers);
  const app = createApp(state, createMetrics(state));
  const stop = new AbortController();
  const server = serveAdmin(app, { hostname: "127.0.0.1", port: 0, signal: stop.signal });
  try {
    const out: EndpointLatency[] = [];
    for (const path of ENDPOINTS) {
      const times: number[] = [];
      let bytes = 0;
      for (let i = 0; i < WARMUP + ROUNDS; i++) {
        const started = performance.now();
        const res = await fetch(`http://127.0.0.1:${server.port}${path}`);
        bytes = (await res.arrayBuffer()).byteLength;
        if (i >= WARMUP) times.push(performance.now() - started);
      }
      const medianMs = round(median(times));
      const before = previous.get(`${peers} ${path}`);
      out.push({
        peers,
        path,
        medianMs,
        p90Ms: round(percentile(times, 90)),
        bytes,
        ...(before && { ratioToPrevious: round(medianMs / before) }),
      });
    }
    return out;
  } finally {
    stop.abort();
    await server.finished;
  }
}

/** Run the benchmark. */
export async function main(): Promise<AdminApiResult> {
  const previous = await previousMedians();
  const results: EndpointLatency[] = [];
  for (const peers of PEER_COUNTS) results.push(...await measure(peers, previous));
  return { date: new Date().toISOString(), rounds: ROUNDS, results };
}

if (import.meta.main) {
  const result = await main();
  console.log("peers  endpoint      median ms  p90 ms   bytes  vs previous");
  for (const r of result.results) {
    console.log(
      `${String(r.peers).padStart(5)}  ${r.path.padEnd(12)} ${String(r.medianMs).padStart(9)} ` +
        `${String(r.p90Ms).padStart(7)} ${String(r.bytes).padStart(7)}  ${
          r.ratioToPrevious ?? "-"
        }`,
    );
  }
  await saveResult("admin_api", result);
}
