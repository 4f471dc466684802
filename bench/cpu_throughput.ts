/**
 * Throughput with its CPU cost, for the data-path benchmarks: one iperf3 run with the busy CPU of
 * the whole machine and of chosen processes over exactly that run, the PIDs of a lab's daemons
 * (and of what they run, such as wireguard-go), and the plain veth baseline between two lab nodes.
 *
 * @module
 */
import type { CommandRunner } from "../exec.ts";
import type { LabCluster } from "../lab/cluster.ts";
import { labNames } from "../lab/topology.ts";
import { round } from "./stats.ts";
import { iperf3, type TrafficPath } from "./traffic.ts";

/** One iperf3 run with the CPU it cost. */
export interface ThroughputSample {
  readonly gbps: number;
  readonly retransmits: number;
  /** Busy CPU of the whole machine during the run, in cores (2 = both saturated). */
  readonly machineCores: number;
  /** CPU of the data-path processes (daemons with their Workers, wireguard-go), in cores; 0 for veth. */
  readonly daemonCores: number;
}

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

/** PIDs of the Tartan daemons of the lab's nodes, and of the `helpers` programs they run there. */
export async function daemonPids(
  run: CommandRunner,
  lab: LabCluster,
  helpers: readonly string[] = [],
): Promise<number[]> {
  const pids: number[] = [];
  for (const node of lab.nodes) {
    for (const pid of (await run(["ip", "netns", "pids", node.ns])).split("\n").filter(Boolean)) {
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`).catch(() => "");
      const program = cmdline.split("\0")[0].split("/").pop() ?? "";
      if (cmdline.includes(node.subnetFile) || helpers.includes(program)) pids.push(Number(pid));
    }
  }
  return pids;
}

/** One iperf3 run from `path.client`, with the CPU the machine and the daemons spent. */
export async function iperfWithCpu(
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

/** Plain veth between the two node namespaces (the baseline path). */
export async function connectNodesByVeth(run: CommandRunner, prefix: string): Promise<TrafficPath> {
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
