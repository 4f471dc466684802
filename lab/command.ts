/**
 * `tartan lab`: the namespace cluster from the command line, and the demo.
 *
 * - `demo`: build a cluster, create pods through the CNI plugin, print the connectivity
 *   matrix and each node's admin API, then tear everything down.
 * - `up`: the same, but stay up until Ctrl-C.
 * - `down`: remove what a lab left behind (namespaces named `tl-…-`).
 * - `status`: list the lab namespaces that exist.
 * - `soak`: churn a cluster for `--minutes` (joins, departures, restarts), then report lost pings.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { commandRunner } from "../exec.ts";
import { StatusSchema } from "../api/schemas.ts";
import { defaultNetConf, type LabCluster, startLab } from "./cluster.ts";
import { allConnected, connectivityMatrix, formatMatrix } from "./pods.ts";
import { formatSoakReport, runSoak } from "./soak.ts";
import { deleteLabNetns, listLabNetns, nodeUnderlayIP } from "./topology.ts";
import { randomTag } from "./netns.ts";

/** Every lab started from the CLI names its namespaces `tl-<tag>-…`. */
const LAB_PREFIX_ROOT = "tl-";
const BACKENDS = ["vxlan", "host-gw", "udp", "wireguard", "alloc"];

export const LAB_USAGE = `usage: tartan lab demo|up|down|status|soak [options]

  demo     build a cluster in network namespaces, ping every pod from every pod, tear down
  up       the same, then stay up until Ctrl-C (nodes' admin APIs stay reachable)
  down     remove namespaces left by a lab (all tl-* namespaces, or --prefix)
  status   list lab namespaces
  soak     churn a cluster for --minutes: random joins, departures, SIGTERM and SIGKILL
           restarts, pods pinging during and after each step; report lost pings

options:
  --nodes N        number of nodes (default 3)
  --pods N         pods per node (default 2)
  --backend TYPE   vxlan | host-gw | udp | wireguard | alloc (default vxlan)
  --ip-masq        run the nodes with --ip-masq
  --prefix P       (down) only namespaces starting with P
  --minutes M      (soak) how long to churn, 0.5..1440 (default 2)
  --seed N         (soak) replay a run's sequence of steps (default random)`;

function randomPrefix(): string {
  return `${LAB_PREFIX_ROOT}${randomTag()}-`;
}

function say(line: string): void {
  console.log(line);
}

async function nodeTable(lab: LabCluster): Promise<string> {
  const rows = [["node", "underlay", "subnet", "backend", "admin API (host)"]];
  for (const [i, node] of lab.nodes.entries()) {
    const res = await fetch(`${node.adminUrl}/v1/status`).catch(() => undefined);
    const parsed = StatusSchema.safeParse(res?.ok ? await res.json() : undefined);
    const status = parsed.success ? parsed.data : undefined;
    rows.push([
      node.ns,
      nodeUnderlayIP(i + 1),
      status?.lease?.subnet ?? "?",
      status?.backend?.type ?? "?",
      node.adminUrl,
    ]);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join("  ").trimEnd())
    .join("\n");
}

/** Build the lab, create pods, print what a newcomer wants to see; returns the lab. */
async function bringUp(nodes: number, pods: number, backend: string, ipMasq: boolean) {
  const prefix = randomPrefix();
  say(`starting etcd on the host loopback and ${nodes} ${backend} nodes (namespaces ${prefix}*)`);
  const started = performance.now();
  const lab = await startLab({
    prefix,
    nodes,
    netConf: defaultNetConf(backend),
    flags: ipMasq ? ["--ip-masq"] : [],
  });
  try {
    await lab.waitConverged(60_000);
    say(`nodes converged in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
    say(await nodeTable(lab));
    say(`\ncreating ${pods} pods per node through the flannel CNI plugin (bridge + host-local)`);
    for (let i = 0; i < lab.nodes.length; i++) await lab.addPods(i, pods);
    const matrix = await connectivityMatrix(lab.pods);
    say(`\nconnectivity (every pod pings every other pod):\n${formatMatrix(matrix)}\n`);
    const ok = allConnected(matrix);
    say(ok ? "all pods reach each other" : "SOME PODS CANNOT REACH EACH OTHER");
    return { lab, ok };
  } catch (err) {
    await lab.stop();
    throw err;
  }
}

async function waitForInterrupt(): Promise<void> {
  await new Promise<void>((resolve) => {
    const stop = () => {
      Deno.removeSignalListener("SIGINT", stop);
      Deno.removeSignalListener("SIGTERM", stop);
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
}

/** Run `tartan lab …`; resolves to the exit status. */
export async function labCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        nodes: { type: "string", default: "3" },
        pods: { type: "string", default: "2" },
        backend: { type: "string", default: "vxlan" },
        "ip-masq": { type: "boolean", default: false },
        prefix: { type: "string" },
        minutes: { type: "string", default: "2" },
        seed: { type: "string" },
      },
    });
  } catch (err) {
    console.error(`${(err as Error).message}\n\n${LAB_USAGE}`);
    return 2;
  }
  const [action] = parsed.positionals;
  const nodes = Number(parsed.values.nodes);
  const pods = Number(parsed.values.pods);
  const backend = parsed.values.backend;
  if (
    !["demo", "up", "down", "status", "soak"].includes(action) || !Number.isInteger(nodes) ||
    nodes < 1 || nodes > 50 || !Number.isInteger(pods) || pods < 0 || pods > 20 ||
    !BACKENDS.includes(backend)
  ) {
    console.error(LAB_USAGE);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("tartan lab needs root: it creates network namespaces");
    return 1;
  }
  const run = commandRunner();
  if (action === "status") {
    const names = await listLabNetns(run, parsed.values.prefix ?? LAB_PREFIX_ROOT);
    say(names.length ? names.join("\n") : "no lab namespaces");
    return 0;
  }
  if (action === "down") {
    const roots = parsed.values.prefix ? [parsed.values.prefix] : await labPrefixes(run);
    for (const prefix of roots) say(`removed ${(await deleteLabNetns(run, prefix)).join(" ")}`);
    return 0;
  }
  if (action === "soak") {
    return await soak(nodes, backend, parsed.values.minutes, parsed.values.seed);
  }
  const { lab, ok } = await bringUp(nodes, pods, backend, parsed.values["ip-masq"]);
  try {
    if (action === "up") {
      say("\nthe lab is up; try: tartan status --url <admin API>. Ctrl-C tears it down.");
      await waitForInterrupt();
    }
  } finally {
    say("tearing down");
    await lab.stop();
  }
  return ok ? 0 : 1;
}

/** `tartan lab soak`: runs until the minutes are up or Ctrl-C; the lab is always torn down. */
async function soak(
  nodes: number,
  backend: string,
  minutesText: string,
  seedText: string | undefined,
): Promise<number> {
  const minutes = Number(minutesText);
  const seed = seedText === undefined
    ? crypto.getRandomValues(new Uint32Array(1))[0]
    : Number(seedText);
  if (!(minutes >= 0.5 && minutes <= 1440) || !Number.isInteger(seed) || seed < 0) {
    console.error(LAB_USAGE);
    return 2;
  }
  const interrupted = new AbortController();
  const stop = () => interrupted.abort();
  Deno.addSignalListener("SIGINT", stop);
  try {
    const report = await runSoak({
      prefix: randomPrefix(),
      minutes,
      backend,
      nodes,
      seed,
      say,
      signal: interrupted.signal,
    });
    say(`\n${formatSoakReport(report)}`);
    return report.ok ? 0 : 1;
  } finally {
    Deno.removeSignalListener("SIGINT", stop);
  }
}

/** The distinct `tl-<tag>-` prefixes of existing lab namespaces. */
async function labPrefixes(run: ReturnType<typeof commandRunner>): Promise<string[]> {
  const names = await listLabNetns(run, LAB_PREFIX_ROOT);
  return [...new Set(names.map((n) => n.slice(0, n.indexOf("-", LAB_PREFIX_ROOT.length) + 1)))];
}
