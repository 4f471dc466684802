/**
 * Peer probing at 1 000 and 10 000 peers (`deno task bench peer_probe`): the daemon's prober,
 * with its production schedule (each peer at most once a minute, 50 peers per second at most),
 * probes N peers for real: ICMP echo from a prober namespace to a peer namespace that answers for
 * a whole /16 of "public IPs" and a /16 of "tunnel addresses" (local routes), over a veth. The
 * baseline is the same process idle for the same window, in the same run: the figure is the CPU
 * the prober adds. Also recorded: echoes per second, the share answered, the heap the per-peer
 * state takes (measured after a forced GC: the script re-runs itself with `--expose-gc`), and what
 * rendering `/v1/peers` and `/metrics` costs at that size.
 *
 * @module
 */
import process from "node:process";
import { createMetrics } from "../api/metrics.ts";
import { peersView } from "../api/views.ts";
import { inNetns } from "../ffi/netns.ts";
import { parseAddr, parseNet } from "../ip/mod.ts";
import { withNetnsSet } from "../lab/netns.ts";
import { runCommand } from "../exec.ts";
import { logger } from "../log.ts";
import { createPeerProber, type PeerProbeReport } from "../probe/prober.ts";
import type { ProbeTarget } from "../probe/targets.ts";
import { newDaemonState } from "../state.ts";
import { saveResult } from "./results.ts";
import { median, round } from "./stats.ts";

const PEER_COUNTS = [1_000, 10_000];
/** The production defaults of --peer-probe-interval and --peer-probe-rate. */
const INTERVAL_MS = 60_000;
const MAX_PER_SECOND = 50;
const WARMUP_MS = 5_000;
const WINDOW_MS = 30_000;
const RENDER_ROUNDS = 10;

/** One cluster size. */
export interface ProbeCost {
  readonly peers: number;
  /** Echo requests sent per second (three per peer visit: underlay, overlay, full size). */
  readonly echoesPerSecond: number;
  readonly peersPerSecond: number;
  /** Answered / sent over the window. */
  readonly answeredShare: number;
  /** CPU of the whole process while probing, % of one core. */
  readonly cpuPercent: number;
  /** The same minus the idle baseline: what probing adds. */
  readonly addedCpuPercent: number;
  /** JavaScript heap the prober holds at this size (its per-peer state), MiB, after a GC. */
  readonly heapMiB: number;
  /** Time to render `/v1/peers` (JSON view) and `/metrics` at this size, medians, ms. */
  readonly peersViewMs: number;
  readonly metricsRenderMs: number;
  /** How long one round (every peer once) takes at this size, s. */
  readonly roundSeconds: number;
}

/** What the benchmark records. */
export interface PeerProbeResult {
  readonly date: string;
  readonly windowSeconds: number;
  readonly intervalSeconds: number;
  readonly maxPerSecond: number;
  /** CPU of the same process idle over the same window (the baseline), % of one core. */
  readonly idleCpuPercent: number;
  readonly results: ProbeCost[];
}

/**
 * Prober namespace `a` (198.18.0.1, tunnel source 10.251.0.1) and peer namespace `p`, which
 * answers for every address of 198.19.0.0/16 and 10.250.0.0/16 (local routes).
 */
async function topology(a: string, p: string): Promise<void> {
  await runCommand([
    "ip",
    "-n",
    a,
    "link",
    "add",
    "pa",
    "type",
    "veth",
    "peer",
    "name",
    "pp",
    "netns",
    p,
  ]);
  for (const [ns, dev, addr] of [[a, "pa", "198.18.0.1/24"], [p, "pp", "198.18.0.2/24"]]) {
    await runCommand(["ip", "-n", ns, "addr", "add", addr, "dev", dev]);
    await runCommand(["ip", "-n", ns, "link", "set", dev, "up"]);
    await runCommand(["ip", "-n", ns, "link", "set", "lo", "up"]);
  }
  await runCommand(["ip", "-n", a, "addr", "add", "10.251.0.1/32", "dev", "pa"]);
  for (const net of ["198.19.0.0/16", "10.250.0.0/16"]) {
    await runCommand(["ip", "-n", a, "route", "add", net, "via", "198.18.0.2"]);
    await runCommand(["ip", "-n", p, "route", "add", "local", net, "dev", "lo"]);
  }
  await runCommand(["ip", "-n", p, "route", "add", "10.251.0.1/32", "via", "198.18.0.1"]);
}

function targets(count: number): ProbeTarget[] {
  return Array.from({ length: count }, (_, i) => {
    const low = `${i >> 8}.${i & 255}`;
    return {
      key: `10.250.${low}-32`,
      subnet: parseNet(`10.250.${low}/32`),
      publicIP: parseAddr(`198.19.${low}`),
      overlay: parseAddr(`10.250.${low}`),
    };
  });
}

/** CPU seconds of this process (user + system). */
function cpuSeconds(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1e6;
}

async function cpuPercentOver(ms: number): Promise<number> {
  const start = cpuSeconds();
  const t0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, ms));
  return ((cpuSeconds() - start) / ((performance.now() - t0) / 1000)) * 100;
}

function sent(report: PeerProbeReport): { sent: number; answered: number } {
  let total = 0;
  let answered = 0;
  for (const path of Object.values(report.totals)) {
    total += path.answered + path.lost + path.unsent;
    answered += path.answered;
  }
  return { sent: total, answered };
}

function medianMs(fn: () => unknown): number {
  const times: number[] = [];
  for (let i = 0; i < RENDER_ROUNDS; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  return round(median(times), 2);
}

/** The live heap after a full collection, MiB. */
function liveHeapMiB(): number {
  (globalThis as unknown as { gc: () => void }).gc();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

async function measure(a: string, peers: number, idleCpu: number): Promise<ProbeCost> {
  const list = targets(peers);
  const heapBefore = liveHeapMiB();
  const prober = createPeerProber({
    intervalMs: INTERVAL_MS,
    maxPerSecond: MAX_PER_SECOND,
    families: [{
      underlaySource: parseAddr("198.18.0.1"),
      overlaySource: parseAddr("10.251.0.1"),
      fullSizeBytes: 1450,
    }],
    targets: () => list,
    log: logger("probe"),
  });
  const stop = new AbortController();
  let running: Promise<void> | undefined;
  // The sockets are opened synchronously at the start of run(): inside the prober namespace.
  inNetns(a, () => void (running = prober.run(stop.signal)));
  try {
    await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
    const before = sent(prober.report());
    const t0 = performance.now();
    const cpu = await cpuPercentOver(WINDOW_MS);
    const seconds = (performance.now() - t0) / 1000;
    const after = sent(prober.report());
    const echoes = after.sent - before.sent;
    const state = newDaemonState("bench", "bench", "etcd");
    state.peerProbes = prober.report;
    const metrics = createMetrics(state, { defaultMetrics: false });
    const renderTimes: number[] = [];
    for (let i = 0; i < RENDER_ROUNDS; i++) {
      const r0 = performance.now();
      await metrics.render();
      renderTimes.push(performance.now() - r0);
    }
    return {
      peers,
      echoesPerSecond: round(echoes / seconds, 1),
      peersPerSecond: round(echoes / 3 / seconds, 1),
      answeredShare: round((after.answered - before.answered) / Math.max(1, echoes), 4),
      cpuPercent: round(cpu, 2),
      addedCpuPercent: round(cpu - idleCpu, 2),
      // Every peer has been visited once the round is over: measured at the end of the window
      // at 1 000 peers; at 10 000 (a 200 s round) about 1 750 of them carry probe history.
      heapMiB: round(liveHeapMiB() - heapBefore, 1),
      peersViewMs: medianMs(() => JSON.stringify(peersView(prober.report()))),
      metricsRenderMs: round(median(renderTimes), 2),
      roundSeconds: prober.report().roundDurationMs / 1000,
    };
  } finally {
    stop.abort();
    await running;
  }
}

if (import.meta.main && typeof (globalThis as { gc?: unknown }).gc !== "function") {
  // Heap figures need a forced collection: run again with V8's gc() exposed.
  const self = new URL(import.meta.url).pathname;
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--v8-flags=--expose-gc", self],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  Deno.exit(code);
} else if (import.meta.main) {
  const result = await withNetnsSet(2, async ([a, p]) => {
    await topology(a, p);
    const idleCpuPercent = round(await cpuPercentOver(WINDOW_MS), 2);
    const results: ProbeCost[] = [];
    for (const peers of PEER_COUNTS) results.push(await measure(a, peers, idleCpuPercent));
    return {
      date: new Date().toISOString(),
      windowSeconds: WINDOW_MS / 1000,
      intervalSeconds: INTERVAL_MS / 1000,
      maxPerSecond: MAX_PER_SECOND,
      idleCpuPercent,
      results,
    } satisfies PeerProbeResult;
  }, "probe");
  console.log(`idle process: ${result.idleCpuPercent} % of a core over ${result.windowSeconds} s`);
  console.log(
    "peers   echoes/s  answered  CPU %  added CPU %  heap MiB  round s  " +
      "/v1/peers ms  /metrics ms",
  );
  for (const r of result.results) {
    console.log(
      [
        String(r.peers).padEnd(6),
        String(r.echoesPerSecond).padStart(9),
        String(r.answeredShare).padStart(9),
        String(r.cpuPercent).padStart(6),
        String(r.addedCpuPercent).padStart(12),
        String(r.heapMiB).padStart(9),
        String(r.roundSeconds).padStart(8),
        String(r.peersViewMs).padStart(13),
        String(r.metricsRenderMs).padStart(12),
      ].join(" "),
    );
  }
  console.log(`wrote ${await saveResult("peer_probe", result)}`);
}
