/**
 * Data-plane benchmark: pod-to-pod iperf3 TCP throughput (1 and 4 streams) and ping RTT across
 * two node namespaces, for Tartan's vxlan and host-gw (lab clusters: `tartan run` + our CNI
 * plugin), each next to its kernel baseline built by hand *in the same run* with the same shape
 * (pod ns —veth— bridge in node ns — underlay bridge — node ns — bridge —veth— pod ns):
 *
 * - vxlan   vs a hand-configured kernel VXLAN (`flannel.1` + neighbour/FDB/onlink route per peer,
 *   exactly spec §6.2), MTU 1450;
 * - host-gw vs plain veth routing (`S via P dev ul0` by hand), MTU 1500.
 *
 * Tartan adds no packet processing of its own on these paths, so the ratios should be ~1; the
 * targets are ≥ 0.97. The lab runs with `--ip-masq` (flannel's standard deployment), so its
 * nodes pass masquerade and forward rules, and with them conntrack (here also for bridged
 * frames: br_netfilter is loaded). Each baseline is therefore built twice: once with the same
 * rules copied from the Tartan nodes (the targets apply to this ratio: the backend's own data
 * path) and once without any netfilter rules (that ratio shows what the rules cost).
 * The machine is shared and noisy, so measurements are repeated: in each round every path
 * is measured back to back, and ratios are taken per round (paired) and summarised by median and
 * quartiles. An A/A control (the same-rules baseline against an identical twin) shows the noise
 * floor of the run. Node-to-node throughput on the bare underlay is printed for reference.
 *
 * Run: `deno run -A bench/dataplane.ts [--seconds 5] [--rounds 5]` (root). Prints a table, writes
 * bench/results/dataplane.json, and exports {@link main}.
 *
 * @module
 */
import { type CommandRunner, commandRunner } from "../exec.ts";
import { defaultNetConf, type LabCluster, startLab } from "../lab/cluster.ts";
import {
  addNetns,
  createNode,
  createUnderlay,
  deleteLabNetns,
  labNames,
  nodeUnderlayIP,
} from "../lab/topology.ts";
import { median, quantile, round } from "./stats.ts";
import { iperf3, pingRttMs, runLengthArgs, type TrafficPath } from "./traffic.ts";
import { saveResult } from "./results.ts";
import { randomTag } from "../lab/netns.ts";

/** Samples of one path. */
export interface PathSamples {
  /** Gbit/s received, one sample per round. */
  readonly gbps1: number[];
  readonly gbps4: number[];
  /** Average ping RTT in ms, one sample per round. */
  readonly rttMs: number[];
}

/** Per-round ratios summarised: median and quartiles (the spread is the noise of the run). */
export interface RatioStat {
  readonly median: number;
  readonly q1: number;
  readonly q3: number;
}

/**
 * Tartan / baseline, computed per round from runs made back to back (so a load change on this
 * shared machine hits both), then summarised; RTT is baseline / Tartan, so higher is better
 * everywhere.
 */
export interface Ratios {
  readonly gbps1: RatioStat;
  readonly gbps4: RatioStat;
  readonly rtt: RatioStat;
}

/** One backend against its baselines. */
export interface Comparison {
  readonly backend: "vxlan" | "host-gw";
  readonly baseline: string;
  readonly tartan: PathSamples;
  /** The hand-made path with the same netfilter rules as the Tartan nodes. */
  readonly kernel: PathSamples;
  /** The hand-made path without any netfilter rules. */
  readonly bareKernel: PathSamples;
  /** Against `kernel`: what the targets apply to (the backend's own data path). */
  readonly ratios: Ratios;
  /** Against `bareKernel`: includes the cost of the masquerade and forward rules. */
  readonly ratiosToBare: Ratios;
  /**
   * A/A control: the same-rules baseline against an identical twin built alongside it. Its
   * spread is the noise floor of this run: ratios closer to 1 than that are not resolved.
   */
  readonly control: Ratios;
  readonly target: number;
  /**
   * `meets` only when the median throughput ratios (1 and 4 streams) reach the target; otherwise
   * `misses` (the quartiles in `ratios` show by how much).
   */
  readonly verdict: "meets" | "misses";
}

/** What {@link main} measures. */
export interface DataplaneResult {
  readonly date: string;
  readonly kernel: string;
  readonly secondsPerRun: number;
  readonly rounds: number;
  readonly comparisons: Comparison[];
  /** Node-to-node on the bare underlay (no pods, no tunnel): the machine's veth limit. */
  readonly underlay: PathSamples;
}

/** Options of {@link main}. */
export interface DataplaneOptions {
  /** iperf3 duration per run (default 5: long enough for TCP to leave slow start). */
  readonly seconds?: number;
  /** Interleaved repetitions of every measurement (default 10; medians are reported). */
  readonly rounds?: number;
}

const TARGET = 0.97;
/** 100 pings 5 ms apart: an average RTT under light load. */
const PING = { count: 100, interval: 0.005 };

function ratioStat(ratios: readonly number[]): RatioStat {
  return {
    median: round(median(ratios)),
    q1: round(quantile(ratios, 0.25)),
    q3: round(quantile(ratios, 0.75)),
  };
}

/**
 * Measure several paths `rounds` times, each measurement of one round run back to back for all
 * paths (in alternating order, so neither side is always first).
 */
async function measure(
  run: CommandRunner,
  pairs: readonly TrafficPath[],
  seconds: number,
  rounds: number,
): Promise<PathSamples[]> {
  const samples = pairs.map(() => ({
    gbps1: [] as number[],
    gbps4: [] as number[],
    rttMs: [] as number[],
  }));
  const gbps = async (i: number, streams: number) =>
    (await iperf3(run, pairs[i], { streams, seconds })).gbps;
  for (let r = 0; r < rounds; r++) {
    const order = [...pairs.keys()];
    if (r % 2) order.reverse();
    for (const i of order) samples[i].gbps1.push(await gbps(i, 1));
    for (const i of order) samples[i].gbps4.push(await gbps(i, 4));
    for (const i of order) samples[i].rttMs.push(await pingRttMs(run, pairs[i], PING));
  }
  return samples;
}

/**
 * The hand-made baseline: two nodes on an underlay bridge (the lab's own topology helpers), one
 * pod per node behind a `cni0` bridge, connected either by kernel VXLAN configured per spec §6.2
 * or by plain routes via the peer's underlay address.
 */
async function buildBaseline(
  run: CommandRunner,
  prefix: string,
  kind: "vxlan" | "routed",
): Promise<TrafficPath> {
  const names = labNames(prefix);
  await createUnderlay(run, names.underlay);
  const mtu = kind === "vxlan" ? 1450 : 1500;
  const ip = (argv: string) => run(["ip", ...argv.split(" ")]);
  for (const i of [1, 2]) {
    const ns = names.node(i);
    const pod = names.pod(i, 1);
    await createNode(run, names.underlay, ns, i);
    await addNetns(run, pod);
    await ip(`-n ${ns} link add cni0 mtu ${mtu} type bridge`);
    await ip(`-n ${ns} addr add 10.244.${i}.1/24 dev cni0`);
    await ip(`-n ${ns} link set cni0 up`);
    await ip(`-n ${ns} link add veth0 mtu ${mtu} type veth peer name eth0 netns ${pod}`);
    await ip(`-n ${ns} link set veth0 master cni0 up`);
    await ip(`-n ${pod} addr add 10.244.${i}.2/24 dev eth0`);
    await ip(`-n ${pod} link set eth0 up`);
    await ip(`-n ${pod} route add default via 10.244.${i}.1`);
    if (kind === "vxlan") {
      await ip(
        `-n ${ns} link add flannel.1 address 0e:00:00:00:00:0${i} mtu 1450 type vxlan id 1 ` +
          `local ${nodeUnderlayIP(i)} dev ul0 dstport 8472 nolearning`,
      );
      await ip(`-n ${ns} addr add 10.244.${i}.0/32 dev flannel.1`);
      await ip(`-n ${ns} link set flannel.1 up`);
    }
  }
  for (const [i, j] of [[1, 2], [2, 1]]) {
    const ns = names.node(i);
    if (kind === "vxlan") {
      const mac = `0e:00:00:00:00:0${j}`;
      await ip(`-n ${ns} neigh replace 10.244.${j}.0 lladdr ${mac} dev flannel.1 nud permanent`);
      await run([
        "bridge",
        "-n",
        ns,
        ..."fdb replace".split(" "),
        mac,
        "dev",
        "flannel.1",
        "dst",
        nodeUnderlayIP(j),
        "self",
        "permanent",
      ]);
      await ip(`-n ${ns} route replace 10.244.${j}.0/24 via 10.244.${j}.0 dev flannel.1 onlink`);
    } else {
      await ip(`-n ${ns} route replace 10.244.${j}.0/24 via ${nodeUnderlayIP(j)} dev ul0`);
    }
  }
  return { client: names.pod(1, 1), server: names.pod(2, 1), serverIP: "10.244.2.2" };
}

/** A 2-node Tartan lab with one pod per node. */
async function tartanPods(lab: LabCluster): Promise<TrafficPath> {
  await lab.waitConverged();
  const [a] = await lab.addPods(0, 1);
  const [b] = await lab.addPods(1, 1);
  return { client: a.ns, server: b.ns, serverIP: b.ip };
}

/**
 * Give baseline node `i` the netfilter rules Tartan installed on lab node `i` (masquerade and
 * forward rules), with the lab node's subnet rewritten to the baseline node's `10.244.<i>.0/24`,
 * so that both paths cross identical rule sets.
 */
async function copyRules(run: CommandRunner, lab: LabCluster, baselinePrefix: string) {
  for (const [index, node] of lab.nodes.entries()) {
    const env = await Deno.readTextFile(node.subnetFile);
    const subnet = env.match(/^FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.1\/24$/m)?.[1];
    if (!subnet) throw new Error(`unexpected subnet file: ${env}`);
    const rules = (await run(["ip", "netns", "exec", node.ns, "iptables-save"]))
      .replaceAll(`${subnet}.0/24`, `10.244.${index + 1}.0/24`);
    const target = labNames(baselinePrefix).node(index + 1);
    await run(["ip", "netns", "exec", target, "iptables-restore"], rules);
  }
}

function ratios(tartan: PathSamples, kernel: PathSamples): Ratios {
  const perRound = (a: readonly number[], b: readonly number[]) => a.map((x, i) => x / b[i]);
  return {
    gbps1: ratioStat(perRound(tartan.gbps1, kernel.gbps1)),
    gbps4: ratioStat(perRound(tartan.gbps4, kernel.gbps4)),
    rtt: ratioStat(perRound(kernel.rttMs, tartan.rttMs)),
  };
}

function verdict(throughput: readonly RatioStat[]): Comparison["verdict"] {
  return throughput.every((r) => r.median >= TARGET) ? "meets" : "misses";
}

/** One backend's lab against its baselines (same rules, a twin of it, no rules), per round. */
async function compareBackend(
  run: CommandRunner,
  backend: Comparison["backend"],
  tag: string,
  seconds: number,
  rounds: number,
): Promise<{ comparison: Comparison; underlay?: PathSamples }> {
  const kind = backend === "vxlan" ? "vxlan" : "routed";
  const prefixes = {
    lab: `tb-${tag}l-`,
    rules: `tb-${tag}f-`,
    twin: `tb-${tag}t-`,
    bare: `tb-${tag}b-`,
  };
  const lab = await startLab({
    prefix: prefixes.lab,
    nodes: 2,
    netConf: defaultNetConf(backend),
    flags: ["--ip-masq"],
  });
  try {
    const tartanPair = await tartanPods(lab);
    const rulesPair = await buildBaseline(run, prefixes.rules, kind);
    await copyRules(run, lab, prefixes.rules);
    const twinPair = await buildBaseline(run, prefixes.twin, kind);
    await copyRules(run, lab, prefixes.twin);
    const barePair = await buildBaseline(run, prefixes.bare, kind);
    const [tartan, kernel, twin, bare] = await measure(
      run,
      [tartanPair, rulesPair, twinPair, barePair],
      seconds,
      rounds,
    );
    const toKernel = ratios(tartan, kernel);
    const comparison: Comparison = {
      backend,
      baseline: BASELINES[backend],
      tartan,
      kernel,
      bareKernel: bare,
      ratios: toKernel,
      ratiosToBare: ratios(tartan, bare),
      control: ratios(twin, kernel),
      target: TARGET,
      verdict: verdict([toKernel.gbps1, toKernel.gbps4]),
    };
    if (kind === "vxlan") return { comparison };
    // The machine's veth limit: node to node on the bare underlay, no pods, no tunnel.
    const nodes = labNames(prefixes.bare);
    const [underlay] = await measure(
      run,
      [{ client: nodes.node(1), server: nodes.node(2), serverIP: nodeUnderlayIP(2) }],
      seconds,
      3,
    );
    return { comparison, underlay };
  } finally {
    await lab.stop();
    for (const prefix of Object.values(prefixes)) await deleteLabNetns(run, prefix);
  }
}

const BASELINES = {
  vxlan: "hand-made kernel VXLAN",
  "host-gw": "plain veth routing",
} as const;

/** Run the whole benchmark (a few minutes with the defaults); cleans up even on failure. */
export async function main(options: DataplaneOptions = {}): Promise<DataplaneResult> {
  const seconds = options.seconds ?? 5;
  const rounds = options.rounds ?? 5;
  const run = commandRunner({ timeoutMs: (seconds + 20) * 1000 });
  const tag = randomTag();
  const vxlan = await compareBackend(run, "vxlan", tag, seconds, rounds);
  const hostGw = await compareBackend(run, "host-gw", tag, seconds, rounds);
  return {
    date: new Date().toISOString(),
    kernel: Deno.osRelease(),
    secondsPerRun: seconds,
    rounds,
    comparisons: [vxlan.comparison, hostGw.comparison],
    underlay: hostGw.underlay!,
  };
}

function printTable(r: DataplaneResult): void {
  const cells = (name: string, p: PathSamples) => [
    name,
    median(p.gbps1).toFixed(2),
    median(p.gbps4).toFixed(2),
    median(p.rttMs).toFixed(3),
  ];
  const stat = (x: RatioStat) => `${x.median.toFixed(2)} (${x.q1.toFixed(2)}–${x.q3.toFixed(2)})`;
  const ratioCells = (name: string, x: Ratios) => [name, stat(x.gbps1), stat(x.gbps4), stat(x.rtt)];
  const rows: string[][] = [["path", "1 stream Gbit/s", "4 streams Gbit/s", "RTT ms"]];
  for (const c of r.comparisons) {
    rows.push(cells(`tartan ${c.backend}`, c.tartan));
    rows.push(cells(`  ${c.baseline}, same rules`, c.kernel));
    rows.push(cells(`  ${c.baseline}, no rules`, c.bareKernel));
    rows.push(ratioCells(`  ratio to same rules (target ≥ ${c.target})`, c.ratios));
    rows.push(ratioCells(`  ratio to no rules`, c.ratiosToBare));
    rows.push(ratioCells(`  A/A control: same-rules twin / same rules`, c.control));
  }
  rows.push(cells("underlay node↔node (reference)", r.underlay));
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) {
    console.log(
      row.map((cell, i) => i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])).join("  "),
    );
  }
  console.log(
    `(${r.rounds} rounds of ${r.secondsPerRun} s iperf3 runs; figures are medians; ratios are ` +
      `medians of per-round ratios with their quartiles; RTT ratio = baseline/tartan)`,
  );
  for (const c of r.comparisons) {
    const q = (x: RatioStat) => `median ${x.median}, quartiles ${x.q1}–${x.q3}`;
    console.log(
      `${c.backend}: ${c.verdict} (target ≥ ${c.target} at the median; ` +
        `1 stream ${q(c.ratios.gbps1)}; 4 streams ${q(c.ratios.gbps4)})`,
    );
  }
}

if (import.meta.main) {
  const result = await main(runLengthArgs(Deno.args));
  printTable(result);
  await saveResult("dataplane", result);
}
