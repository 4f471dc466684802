/**
 * udp backend benchmark: pod-to-pod iperf3 TCP (1 and 4 streams) and ping RTT across two node
 * namespaces of a Tartan lab running the udp backend, next to plain veth between the same two
 * node namespaces, measured in the same run and interleaved (udp, veth, udp, …) so that drift of
 * this shared 2-core machine hits both alike.
 *
 * Targets (issue 12): single-stream throughput ≥ 0.30× veth (flannel's C proxy: ~0.06×), ping
 * RTT ≤ 200 µs on an idle path. CPU per Gbit/s is the whole machine's busy CPU during the run
 * (cores, from /proc/stat) divided by the throughput; the two daemons' share (their Workers do
 * the forwarding) is given separately.
 *
 * Run: `deno run -A bench/udp_bench.ts [--seconds 10] [--rounds 1]` (root). Prints a table,
 * writes bench/results/udp.json, and exports {@link main}.
 *
 * @module
 */
import { type CommandRunner, commandRunner } from "../exec.ts";
import { defaultNetConf, type LabCluster, startLab } from "../lab/cluster.ts";
import { labNames } from "../lab/topology.ts";
import { median, round } from "./stats.ts";
import { iperf3, pingRttMs, runLengthArgs, type TrafficPath } from "./traffic.ts";
import { saveResult } from "./results.ts";

/** One iperf3 run with the CPU it cost. */
export interface ThroughputSample {
  readonly gbps: number;
  readonly retransmits: number;
  /** Busy CPU of the whole machine during the run, in cores (2 = both saturated). */
  readonly machineCores: number;
  /** CPU of the two Tartan daemons (Workers included), in cores; 0 for veth. */
  readonly daemonCores: number;
}

/** Samples of one path. */
export interface PathResult {
  readonly streams1: ThroughputSample[];
  readonly streams4: ThroughputSample[];
  /** Average ping RTT per round, in µs. */
  readonly rttMicros: number[];
}

/** What {@link main} measures (medians where one number is given). */
export interface UdpBenchResult {
  readonly date: string;
  readonly kernel: string;
  readonly secondsPerRun: number;
  readonly rounds: number;
  readonly udp: PathResult;
  readonly veth: PathResult;
  readonly summary: {
    readonly udpGbps1: number;
    readonly vethGbps1: number;
    readonly udpGbps4: number;
    readonly vethGbps4: number;
    readonly ratio1: number;
    readonly ratio4: number;
    readonly udpRttMicros: number;
    readonly vethRttMicros: number;
    /** Machine cores per Gbit/s, single stream. */
    readonly udpCoresPerGbps: number;
    readonly vethCoresPerGbps: number;
    /** The daemons' (data path) cores per Gbit/s, single stream. */
    readonly udpDaemonCoresPerGbps: number;
    readonly meetsThroughputTarget: boolean;
    readonly meetsRttTarget: boolean;
  };
}

/** Options of {@link main}. */
export interface UdpBenchOptions {
  /** iperf3 duration per run (default 10). */
  readonly seconds?: number;
  /** Interleaved repetitions (default 1). */
  readonly rounds?: number;
}

const RATIO_TARGET = 0.30;
const RTT_TARGET_MICROS = 200;
/** 50 pings 20 ms apart: an idle path between pings. */
const PING = { count: 50, interval: 0.02 };
const VETH = { client: "198.19.255.1", server: "198.19.255.2" };
const CLOCK_TICKS = 100; // USER_HZ: /proc times are in 1/100 s

/** Busy jiffies of the whole machine (everything but idle and iowait). */
async function machineBusy(): Promise<number> {
  const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
  const fields = line.split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields;
  return user + nice + system + irq + softirq + steal;
}

/** utime + stime (jiffies, all threads) of the processes `pids`. */
async function processBusy(pids: readonly number[]): Promise<number> {
  let total = 0;
  for (const pid of pids) {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`).catch(() => "");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    total += Number(fields[11] ?? 0) + Number(fields[12] ?? 0);
  }
  return total;
}

/** PIDs of the Tartan daemons of the lab's nodes. */
async function daemonPids(run: CommandRunner, lab: LabCluster): Promise<number[]> {
  const pids: number[] = [];
  for (const node of lab.nodes) {
    for (const pid of (await run(["ip", "netns", "pids", node.ns])).split("\n").filter(Boolean)) {
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
      if (cmdline.includes(node.subnetFile)) pids.push(Number(pid));
    }
  }
  return pids;
}

/** One iperf3 run from `path.client`, with the CPU the machine and the daemons spent. */
async function iperfWithCpu(
  run: CommandRunner,
  path: TrafficPath,
  streams: number,
  seconds: number,
  daemons: readonly number[],
): Promise<ThroughputSample> {
  let machine = 0;
  let daemon = 0;
  let started = 0;
  // Counters restart with every client attempt: they cover exactly the run that succeeds.
  const beforeAttempt = async () => {
    machine = await machineBusy();
    daemon = await processBusy(daemons);
    started = performance.now();
  };
  const result = await iperf3(run, path, { streams, seconds, beforeAttempt });
  const elapsed = (performance.now() - started) / 1000;
  return {
    gbps: round(result.gbps),
    retransmits: result.retransmits,
    machineCores: round((await machineBusy() - machine) / CLOCK_TICKS / elapsed),
    daemonCores: round((await processBusy(daemons) - daemon) / CLOCK_TICKS / elapsed),
  };
}

/** Average RTT in µs of {@link PING}'s pings. */
async function rttMicros(run: CommandRunner, path: TrafficPath): Promise<number> {
  return round(await pingRttMs(run, path, PING) * 1000, 1);
}

/** Plain veth between the two node namespaces (the baseline path). */
async function connectNodesByVeth(run: CommandRunner, prefix: string): Promise<TrafficPath> {
  const names = labNames(prefix);
  const [a, b] = [names.node(1), names.node(2)];
  const ip = (args: string) => run(["ip", ...args.split(" ")]);
  await ip(`-n ${a} link add bench0 type veth peer name bench0 netns ${b}`);
  await ip(`-n ${a} addr add ${VETH.client}/30 dev bench0`);
  await ip(`-n ${b} addr add ${VETH.server}/30 dev bench0`);
  await ip(`-n ${a} link set bench0 up`);
  await ip(`-n ${b} link set bench0 up`);
  return { client: a, server: b, serverIP: VETH.server };
}

function summarize(udp: PathResult, veth: PathResult): UdpBenchResult["summary"] {
  const med = (samples: ThroughputSample[], pick: (s: ThroughputSample) => number) =>
    median(samples.map(pick));
  const udpGbps1 = med(udp.streams1, (s) => s.gbps);
  const vethGbps1 = med(veth.streams1, (s) => s.gbps);
  const ratio1 = round(udpGbps1 / vethGbps1);
  const udpRtt = median(udp.rttMicros);
  return {
    udpGbps1,
    vethGbps1,
    udpGbps4: med(udp.streams4, (s) => s.gbps),
    vethGbps4: med(veth.streams4, (s) => s.gbps),
    ratio1,
    ratio4: round(med(udp.streams4, (s) => s.gbps) / med(veth.streams4, (s) => s.gbps)),
    udpRttMicros: udpRtt,
    vethRttMicros: median(veth.rttMicros),
    udpCoresPerGbps: round(med(udp.streams1, (s) => s.machineCores / s.gbps)),
    vethCoresPerGbps: round(med(veth.streams1, (s) => s.machineCores / s.gbps)),
    udpDaemonCoresPerGbps: round(med(udp.streams1, (s) => s.daemonCores / s.gbps)),
    meetsThroughputTarget: ratio1 >= RATIO_TARGET,
    meetsRttTarget: udpRtt <= RTT_TARGET_MICROS,
  };
}

/** Run the benchmark (about 4 × seconds × rounds plus ~15 s); cleans up even on failure. */
export async function main(options: UdpBenchOptions = {}): Promise<UdpBenchResult> {
  const seconds = options.seconds ?? 10;
  const rounds = options.rounds ?? 1;
  const run = commandRunner({ timeoutMs: (seconds + 20) * 1000 });
  const prefix = `tb-${crypto.randomUUID().replaceAll("-", "").slice(0, 6)}-`;
  const lab = await startLab({ prefix, nodes: 2, netConf: defaultNetConf("udp") });
  try {
    await lab.waitConverged();
    const [a] = await lab.addPods(0, 1);
    const [b] = await lab.addPods(1, 1);
    const udpPath: TrafficPath = { client: a.ns, server: b.ns, serverIP: b.ip };
    const vethPath = await connectNodesByVeth(run, prefix);
    const daemons = await daemonPids(run, lab);
    const results = [udpPath, vethPath].map(() => ({
      streams1: [] as ThroughputSample[],
      streams4: [] as ThroughputSample[],
      rttMicros: [] as number[],
    }));
    for (let r = 0; r < rounds; r++) {
      for (const [i, path] of [udpPath, vethPath].entries()) {
        const pids = i === 0 ? daemons : [];
        results[i].rttMicros.push(await rttMicros(run, path));
        results[i].streams1.push(await iperfWithCpu(run, path, 1, seconds, pids));
        results[i].streams4.push(await iperfWithCpu(run, path, 4, seconds, pids));
      }
    }
    const [udp, veth] = results;
    return {
      date: new Date().toISOString(),
      kernel: Deno.osRelease(),
      secondsPerRun: seconds,
      rounds,
      udp,
      veth,
      summary: summarize(udp, veth),
    };
  } finally {
    await lab.stop();
  }
}

function printTable(r: UdpBenchResult): void {
  const s = r.summary;
  const rows = [
    ["path", "1 stream Gbit/s", "4 streams Gbit/s", "RTT µs", "cores per Gbit/s (1 stream)"],
    [
      "tartan udp (pod→pod)",
      s.udpGbps1.toFixed(2),
      s.udpGbps4.toFixed(2),
      s.udpRttMicros.toFixed(0),
      `${s.udpCoresPerGbps} (daemons ${s.udpDaemonCoresPerGbps})`,
    ],
    [
      "plain veth (node→node)",
      s.vethGbps1.toFixed(2),
      s.vethGbps4.toFixed(2),
      s.vethRttMicros.toFixed(0),
      `${s.vethCoresPerGbps}`,
    ],
    ["ratio udp / veth", `${s.ratio1}`, `${s.ratio4}`, "", ""],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) {
    console.log(
      row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  "),
    );
  }
  console.log(
    `(${r.rounds} round(s) of ${r.secondsPerRun} s per iperf3 run, medians; ` +
      `targets: ratio ≥ ${RATIO_TARGET} — ${s.meetsThroughputTarget ? "met" : "MISSED"}; ` +
      `RTT ≤ ${RTT_TARGET_MICROS} µs — ${s.meetsRttTarget ? "met" : "MISSED"})`,
  );
}

if (import.meta.main) {
  const result = await main(runLengthArgs(Deno.args));
  printTable(result);
  await saveResult("udp", result);
}
