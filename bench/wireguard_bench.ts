/**
 * wireguard backend benchmark: pod-to-pod iperf3 TCP (1 and 4 streams) across two node
 * namespaces of a Tartan lab on the wireguard backend (here wireguard-go: this kernel has no
 * wireguard module), next to the same pod-to-pod path on the udp backend (a second lab) and plain
 * veth between the wireguard lab's two node namespaces, all measured in the same run and
 * interleaved (wireguard, udp, veth, …) so that drift of this shared 2-core machine hits all
 * alike. CPU per Gbit/s is the whole machine's busy CPU during a run (cores, from /proc/stat)
 * divided by its throughput; the data path's own share (wireguard-go processes, or the udp
 * daemons' Workers) is given separately.
 *
 * Run: `deno task bench wireguard`, or `deno run -A bench/wireguard_bench.ts [--seconds 5]
 * [--rounds 2]` (root; about 6 × seconds × rounds plus ~20 s). Prints a table and writes
 * bench/results/wireguard.json.
 *
 * @module
 */
import { type CommandRunner, commandRunner } from "../exec.ts";
import { defaultNetConf, type LabCluster, startLab } from "../lab/cluster.ts";
import {
  connectNodesByVeth,
  daemonPids,
  iperfWithCpu,
  type ThroughputSample,
} from "./cpu_throughput.ts";
import { saveResult } from "./results.ts";
import { median, round } from "./stats.ts";
import { runLengthArgs, type TrafficPath } from "./traffic.ts";

/** The samples of one path. */
interface PathSamples {
  readonly streams1: ThroughputSample[];
  readonly streams4: ThroughputSample[];
}

/** Medians of one path. */
interface PathSummary {
  readonly gbps1: number;
  readonly gbps4: number;
  /** Machine cores per Gbit/s. */
  readonly coresPerGbps1: number;
  readonly coresPerGbps4: number;
  /** Data-path processes' cores per Gbit/s (0 for veth: the kernel's work is not a process's). */
  readonly dataPathCoresPerGbps1: number;
}

/** What {@link main} measures. */
export interface WireguardBenchResult {
  readonly date: string;
  readonly kernel: string;
  readonly secondsPerRun: number;
  readonly rounds: number;
  /** The machine's 1-minute load average when the run started (other work shares the 2 cores). */
  readonly loadAverageAtStart: number;
  /** Which WireGuard the wireguard lab's nodes ran (`/v1/backend` implementation). */
  readonly implementation: string;
  readonly wireguard: PathSamples;
  readonly udp: PathSamples;
  readonly veth: PathSamples;
  readonly summary: {
    readonly wireguard: PathSummary;
    readonly udp: PathSummary;
    readonly veth: PathSummary;
    readonly wireguardOverVeth1: number;
    readonly wireguardOverVeth4: number;
    readonly wireguardOverUdp1: number;
    readonly wireguardOverUdp4: number;
  };
}

function summarize(path: PathSamples): PathSummary {
  const med = (samples: ThroughputSample[], pick: (s: ThroughputSample) => number) =>
    round(median(samples.map(pick)));
  return {
    gbps1: med(path.streams1, (s) => s.gbps),
    gbps4: med(path.streams4, (s) => s.gbps),
    coresPerGbps1: med(path.streams1, (s) => s.machineCores / s.gbps),
    coresPerGbps4: med(path.streams4, (s) => s.machineCores / s.gbps),
    dataPathCoresPerGbps1: med(path.streams1, (s) => s.daemonCores / s.gbps),
  };
}

/** A two-node lab on `backend` with one pod per node: the pod-to-pod path and its processes. */
async function podLab(run: CommandRunner, backend: string) {
  const prefix = `tb-${crypto.randomUUID().replaceAll("-", "").slice(0, 6)}-`;
  const lab = await startLab({ prefix, nodes: 2, netConf: defaultNetConf(backend) });
  try {
    await lab.waitConverged();
    const [a] = await lab.addPods(0, 1);
    const [b] = await lab.addPods(1, 1);
    const path: TrafficPath = { client: a.ns, server: b.ns, serverIP: b.ip };
    const processes = await daemonPids(run, lab, ["wireguard-go"]);
    return { lab, prefix, path, processes };
  } catch (err) {
    await lab.stop();
    throw err;
  }
}

async function implementationOf(lab: LabCluster): Promise<string> {
  const res = await fetch(`${lab.nodes[0].adminUrl}/v1/backend`);
  return ((await res.json()) as { implementation: string | null }).implementation ?? "?";
}

/** Run the benchmark; cleans up even on failure. */
export async function main(
  options: { seconds?: number; rounds?: number } = {},
): Promise<WireguardBenchResult> {
  const seconds = options.seconds ?? 5;
  const rounds = options.rounds ?? 2;
  const run = commandRunner({ timeoutMs: (seconds + 20) * 1000 });
  const loadAverageAtStart = round(Deno.loadavg()[0], 2);
  const labs: LabCluster[] = [];
  try {
    const wg = await podLab(run, "wireguard");
    labs.push(wg.lab);
    const udp = await podLab(run, "udp");
    labs.push(udp.lab);
    const vethPath = await connectNodesByVeth(run, wg.prefix);
    const samples = {
      wireguard: { streams1: [], streams4: [] } as PathSamples,
      udp: { streams1: [], streams4: [] } as PathSamples,
      veth: { streams1: [], streams4: [] } as PathSamples,
    };
    const paths = [
      { into: samples.wireguard, path: wg.path, processes: wg.processes },
      { into: samples.udp, path: udp.path, processes: udp.processes },
      { into: samples.veth, path: vethPath, processes: [] },
    ];
    for (let r = 0; r < rounds; r++) {
      for (const { into, path, processes } of paths) {
        into.streams1.push(await iperfWithCpu(run, path, 1, seconds, processes));
        into.streams4.push(await iperfWithCpu(run, path, 4, seconds, processes));
      }
    }
    const summary = {
      wireguard: summarize(samples.wireguard),
      udp: summarize(samples.udp),
      veth: summarize(samples.veth),
    };
    return {
      date: new Date().toISOString(),
      kernel: Deno.osRelease(),
      secondsPerRun: seconds,
      rounds,
      loadAverageAtStart,
      implementation: await implementationOf(wg.lab),
      ...samples,
      summary: {
        ...summary,
        wireguardOverVeth1: round(summary.wireguard.gbps1 / summary.veth.gbps1),
        wireguardOverVeth4: round(summary.wireguard.gbps4 / summary.veth.gbps4),
        wireguardOverUdp1: round(summary.wireguard.gbps1 / summary.udp.gbps1),
        wireguardOverUdp4: round(summary.wireguard.gbps4 / summary.udp.gbps4),
      },
    };
  } finally {
    for (const lab of labs) await lab.stop();
  }
}

function printTable(r: WireguardBenchResult): void {
  const s = r.summary;
  const row = (name: string, p: PathSummary) => [
    name,
    p.gbps1.toFixed(2),
    p.gbps4.toFixed(2),
    `${p.coresPerGbps1}`,
    `${p.coresPerGbps4}`,
    `${p.dataPathCoresPerGbps1}`,
  ];
  const rows = [
    [
      "path (pod→pod unless noted)",
      "1 stream Gbit/s",
      "4 streams Gbit/s",
      "cores/Gbit/s (1)",
      "cores/Gbit/s (4)",
      "data path cores/Gbit/s (1)",
    ],
    row(`tartan wireguard (${r.implementation})`, s.wireguard),
    row("tartan udp", s.udp),
    row("plain veth (node→node)", s.veth),
    ["wireguard / veth", `${s.wireguardOverVeth1}`, `${s.wireguardOverVeth4}`, "", "", ""],
    ["wireguard / udp", `${s.wireguardOverUdp1}`, `${s.wireguardOverUdp4}`, "", "", ""],
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((x) => x[i].length)));
  for (const x of rows) {
    console.log(
      x.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  "),
    );
  }
  console.log(
    `(${r.rounds} rounds of ${r.secondsPerRun} s per iperf3 run, medians; ` +
      `load average ${r.loadAverageAtStart} at start)`,
  );
}

if (import.meta.main) {
  const args = runLengthArgs(Deno.args);
  const result = await main({ seconds: args.seconds, rounds: args.rounds });
  printTable(result);
  await saveResult("wireguard", result);
}
