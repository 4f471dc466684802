/**
 * Traffic measurements between two network namespaces for the data-path benchmarks: one iperf3
 * TCP run (server started for that run only) and the average ping RTT.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { CommandRunner } from "../exec.ts";

/** `--seconds S --rounds N` of the data-path benchmark scripts (absent: their defaults). */
export function runLengthArgs(args: string[]): { seconds?: number; rounds?: number } {
  const { values } = parseArgs({
    args,
    options: { seconds: { type: "string" }, rounds: { type: "string" } },
  });
  return {
    seconds: values.seconds ? Number(values.seconds) : undefined,
    rounds: values.rounds ? Number(values.rounds) : undefined,
  };
}

/** A path to measure: from namespace `client` to `serverIP`, an address in namespace `server`. */
export interface TrafficPath {
  readonly client: string;
  readonly server: string;
  readonly serverIP: string;
}

/** Options of {@link iperf3}. */
export interface IperfOptions {
  /** Parallel TCP streams (`-P`). */
  readonly streams: number;
  /** Duration of the run (`-t`). */
  readonly seconds: number;
  /**
   * Called right before each client attempt, so that a caller's own counters (e.g. CPU) can be
   * started over exactly the attempt that succeeds.
   */
  readonly beforeAttempt?: () => Promise<void>;
}

/** The outcome of one iperf3 run. */
export interface IperfResult {
  /** Received Gbit/s, all streams together. */
  readonly gbps: number;
  /** TCP retransmits on the sending side. */
  readonly retransmits: number;
}

const ATTEMPTS = 20;

/**
 * One iperf3 TCP run from `path.client` to a one-shot server on `path.serverIP`. The client is
 * retried (20 times, 100 ms apart) until the server listens; throws if it never connects.
 */
export async function iperf3(
  run: CommandRunner,
  path: TrafficPath,
  options: IperfOptions,
): Promise<IperfResult> {
  const server = new Deno.Command("ip", {
    args: ["netns", "exec", path.server, "iperf3", "-s", "-1", "-B", path.serverIP],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout((options.seconds + 20) * 1000),
  }).spawn();
  try {
    let out = "";
    for (let attempt = 0; attempt < ATTEMPTS && !out; attempt++) {
      await new Promise((r) => setTimeout(r, 100)); // the server needs a moment to listen
      await options.beforeAttempt?.();
      out = await run([
        ..."ip netns exec".split(" "),
        path.client,
        ...["iperf3", "-c", path.serverIP, "-t", `${options.seconds}`],
        ...["-P", `${options.streams}`, "-J", "--connect-timeout", "1000"],
      ]).catch(() => "");
    }
    if (!out) throw new Error(`iperf3 to ${path.serverIP} never connected`);
    const json = JSON.parse(out) as {
      end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
    };
    return {
      gbps: json.end.sum_received.bits_per_second / 1e9,
      retransmits: json.end.sum_sent.retransmits ?? 0,
    };
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited after its one test */ }
    await server.status;
  }
}

/** Options of {@link pingRttMs}. */
export interface PingOptions {
  readonly count: number;
  /** Seconds between pings (`-i`; below 0.2 needs root). */
  readonly interval: number;
}

/** Average RTT in ms of `count` pings from `path.client` to `path.serverIP`. */
export async function pingRttMs(
  run: CommandRunner,
  path: TrafficPath,
  options: PingOptions,
): Promise<number> {
  const out = await run([
    ..."ip netns exec".split(" "),
    path.client,
    ...["ping", "-q", "-c", `${options.count}`, "-i", `${options.interval}`, "-W", "1"],
    path.serverIP,
  ]);
  const m = out.match(/= [\d.]+\/([\d.]+)\//);
  if (!m) throw new Error(`unexpected ping output: ${out}`);
  return Number(m[1]);
}
