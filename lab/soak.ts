/**
 * `tartan lab soak --minutes M`: churn a namespace cluster for M minutes with random node joins,
 * departures (daemon stopped, lease deleted), re-joins, and daemon restarts by SIGTERM and by
 * SIGKILL. Pods ping each other during every step (data path continuity) and all pairs after it
 * (the cluster converged, nothing stale); the final report counts the lost pings.
 *
 * Randomness comes from a seeded generator, so a failing run can be replayed with `--seed`.
 *
 * @module
 */
import { BackendSchema } from "../api/schemas.ts";
import { formatLeaseKey } from "../subnet/lease.ts";
import { readPreviousSubnets } from "../subnet/subnet_env.ts";
import { defaultNetConf, LAB_ETCD_PREFIX, type LabCluster, startLab } from "./cluster.ts";
import type { NodeDaemon } from "./node.ts";
import { type LabPod, ping } from "./pods.ts";

/** What {@link runSoak} does. */
export interface SoakOptions {
  /** Namespace prefix, `t?-<tag>-`. */
  readonly prefix: string;
  readonly minutes: number;
  readonly backend: string;
  /** Nodes at the start; joins add up to three more. */
  readonly nodes: number;
  /** Seed of the step sequence. */
  readonly seed: number;
  /** Where progress lines go. */
  readonly say: (line: string) => void;
  /** Ends the soak early (the cluster is still torn down). */
  readonly signal?: AbortSignal;
}

/** The kinds of step. */
export type SoakAction = "join" | "leave" | "rejoin" | "restart-term" | "restart-kill";

/** One step and what was seen during and after it. */
export interface SoakStep {
  readonly action: SoakAction;
  readonly node: string;
  /** Pings around a ring of pods until the step settled (a leaving node's pods excluded). */
  readonly during: PingCount;
  /** All pairs of pods on running nodes, once converged. */
  readonly after: PingCount;
  /**
   * From the start of the step until every running node was ready with exactly the running
   * nodes as peers, all in sync; undefined if that never happened.
   */
  readonly convergedMs?: number;
  /** Problems other than lost pings (a non-zero exit, stale peers, no convergence). */
  readonly problems: readonly string[];
}

/** Sent and lost pings. */
export interface PingCount {
  sent: number;
  lost: number;
}

/** The outcome of a soak. */
export interface SoakReport {
  readonly seed: number;
  readonly seconds: number;
  readonly steps: readonly SoakStep[];
  readonly ok: boolean;
}

/** The most nodes a soak adds beyond its initial ones. */
const EXTRA_NODES = 3;
const CONVERGE_TIMEOUT_MS = 60_000;
/** A step is not started when less than this remains. */
const STEP_RESERVE_MS = 15_000;

/** mulberry32: a small seeded generator, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Each pod pings the next one (a ring) every 500 ms until `stop` aborts. */
async function pingRing(pods: readonly LabPod[], stop: AbortSignal): Promise<PingCount> {
  const count = { sent: 0, lost: 0 };
  if (pods.length < 2) return count;
  while (!stop.aborted) {
    const due = Date.now() + 500;
    const results = await Promise.all(
      pods.map((from, i) => ping(from.ns, pods[(i + 1) % pods.length].ip)),
    );
    count.sent += results.length;
    count.lost += results.filter((ok) => !ok).length;
    await new Promise((r) => setTimeout(r, Math.max(0, due - Date.now())));
  }
  return count;
}

/** Every pod pings every other pod once. */
async function pingAll(pods: readonly LabPod[]): Promise<PingCount> {
  const results = await Promise.all(
    pods.flatMap((from) => pods.filter((to) => to !== from).map((to) => ping(from.ns, to.ip))),
  );
  return { sent: results.length, lost: results.filter((ok) => !ok).length };
}

/** Running nodes whose backend reports a peer count other than the running nodes, minus one. */
async function stalePeers(nodes: readonly NodeDaemon[]): Promise<string[]> {
  const running = nodes.filter((n) => n.running());
  const wrong: string[] = [];
  for (const node of running) {
    const res = await fetch(`${node.adminUrl}/v1/backend`, { signal: AbortSignal.timeout(2000) })
      .catch(() => undefined);
    const parsed = BackendSchema.safeParse(res?.ok ? await res.json() : undefined);
    if (!parsed.success) {
      wrong.push(`${node.ns}: no backend report`);
    } else if (parsed.data.type !== "alloc" && parsed.data.peers.length !== running.length - 1) {
      wrong.push(`${node.ns}: ${parsed.data.peers.length} peers, ${running.length - 1} expected`);
    }
  }
  return wrong;
}

/** How many nodes there are, run and have left: all that decides which steps are possible. */
export interface SoakCounts {
  readonly nodes: number;
  readonly running: number;
  readonly left: number;
  readonly maxNodes: number;
}

/** Actions possible now: at least two nodes keep running, at most `maxNodes` exist. */
export function soakChoices(c: SoakCounts): SoakAction[] {
  return [
    ...(c.nodes < c.maxNodes ? ["join" as const] : []),
    ...(c.running > 2 ? ["leave" as const] : []),
    ...(c.left > 0 ? ["rejoin" as const] : []),
    "restart-term",
    "restart-kill",
  ];
}

/**
 * The next step: an action among those possible, and for all but a join the index of its target
 * in the pool it acts on (the nodes that left for a rejoin, the running ones otherwise).
 */
export function nextStep(
  c: SoakCounts,
  random: () => number,
): { action: SoakAction; target?: number } {
  const choices = soakChoices(c);
  const action = choices[Math.floor(random() * choices.length)];
  if (action === "join") return { action };
  const pool = action === "rejoin" ? c.left : c.running;
  return { action, target: Math.floor(random() * pool) };
}

/** The soak's view of the lab: which nodes are in, and their pods. */
class Cluster {
  /** Nodes that left (daemon stopped, lease deleted) and may re-join. */
  readonly left = new Set<NodeDaemon>();

  constructor(readonly lab: LabCluster, readonly maxNodes: number) {}

  running(): NodeDaemon[] {
    return this.lab.nodes.filter((n) => n.running());
  }

  podsOf(nodes: readonly NodeDaemon[]): LabPod[] {
    const names = new Set(nodes.map((n) => n.ns));
    return this.lab.pods.filter((p) => names.has(p.node));
  }

  counts(): SoakCounts {
    return {
      nodes: this.lab.nodes.length,
      running: this.running().length,
      left: this.left.size,
      maxNodes: this.maxNodes,
    };
  }
}

/**
 * Wait until the lab converged and no node keeps a departed peer; the time since `since`, or the
 * problems seen at the deadline.
 */
async function settle(
  cluster: Cluster,
  since: number,
): Promise<{ ms?: number; problems: string[] }> {
  const deadline = Date.now() + CONVERGE_TIMEOUT_MS;
  for (;;) {
    try {
      await cluster.lab.waitConverged(Math.max(1, deadline - Date.now()));
    } catch (error) {
      return { problems: [(error as Error).message] };
    }
    const stale = await stalePeers(cluster.lab.nodes);
    if (stale.length === 0) return { ms: Date.now() - since, problems: [] };
    if (Date.now() > deadline) return { problems: stale };
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Perform one action on `target` (undefined for a join); returns problems seen. */
async function act(
  cluster: Cluster,
  action: SoakAction,
  target: NodeDaemon | undefined,
): Promise<{ node: NodeDaemon; problems: string[] }> {
  const { lab } = cluster;
  const problems: string[] = [];
  const stopped = async (node: NodeDaemon) => {
    const code = await node.stop();
    if (code !== 0) problems.push(`${node.ns} exited ${code} on SIGTERM`);
  };
  switch (action) {
    case "join": {
      const node = await lab.addNode();
      await lab.waitConverged(CONVERGE_TIMEOUT_MS);
      await lab.addPods(lab.nodes.indexOf(node), 1);
      return { node, problems };
    }
    case "leave": {
      const node = target!;
      await stopped(node);
      const key = formatLeaseKey(await readPreviousSubnets(node.subnetFile));
      await lab.etcd.client().deleteRange({ key: `${LAB_ETCD_PREFIX}/subnets/${key}` });
      cluster.left.add(node);
      return { node, problems };
    }
    case "rejoin": {
      const node = target!;
      cluster.left.delete(node);
      await node.start();
      return { node, problems };
    }
    case "restart-term":
      await stopped(target!);
      await target!.start();
      return { node: target!, problems };
    case "restart-kill":
      await target!.kill();
      await target!.start();
      return { node: target!, problems };
  }
}

/** Run one step: the action with pings alongside, then convergence and the all-pairs check. */
async function step(cluster: Cluster, random: () => number) {
  const next = nextStep(cluster.counts(), random);
  const action = next.action;
  const pool = action === "rejoin" ? [...cluster.left] : cluster.running();
  const target = next.target === undefined ? undefined : pool[next.target];
  // Pods keep reaching each other throughout, also on a node whose daemon restarts (the kernel
  // state outlives the daemon); only a leaving node's pods are let go.
  const steady = cluster.running().filter((n) => action !== "leave" || n !== target);
  const stop = new AbortController();
  const ring = pingRing(cluster.podsOf(steady), stop.signal);
  const started = Date.now();
  let outcome: { node: NodeDaemon; problems: string[] };
  let settled: { ms?: number; problems: string[] };
  try {
    outcome = await act(cluster, action, target);
    settled = await settle(cluster, started);
  } finally {
    stop.abort();
  }
  const during = await ring;
  const after = await pingAll(cluster.podsOf(cluster.running()));
  return {
    action,
    node: outcome.node.ns,
    during,
    after,
    convergedMs: settled.ms,
    problems: [...outcome.problems, ...settled.problems],
  };
}

function describeStep(n: number, elapsedMs: number, s: SoakStep): string {
  const converged = s.convergedMs === undefined
    ? "NOT converged"
    : `converged in ${s.convergedMs} ms`;
  const pings = `pings during ${s.during.sent - s.during.lost}/${s.during.sent}, ` +
    `after ${s.after.sent - s.after.lost}/${s.after.sent}`;
  const problems = s.problems.length ? `; PROBLEMS: ${s.problems.join("; ")}` : "";
  const at = (elapsedMs / 1000).toFixed(1).padStart(6);
  return `[${at}s] step ${n} ${s.action} ${s.node}: ${converged}, ${pings}${problems}`;
}

/** The final report's lines. */
export function formatSoakReport(report: SoakReport): string {
  const total = (pick: (s: SoakStep) => PingCount) =>
    report.steps.reduce((acc, s) => {
      const c = pick(s);
      return { sent: acc.sent + c.sent, lost: acc.lost + c.lost };
    }, { sent: 0, lost: 0 });
  const during = total((s) => s.during);
  const after = total((s) => s.after);
  const byAction = new Map<string, number>();
  for (const s of report.steps) byAction.set(s.action, (byAction.get(s.action) ?? 0) + 1);
  const times = report.steps.flatMap((s) => s.convergedMs ?? []).sort((a, b) => a - b);
  const problems = report.steps.reduce((n, s) => n + s.problems.length, 0);
  return [
    `soak (seed ${report.seed}): ${report.steps.length} steps in ${report.seconds.toFixed(0)} s ` +
    `(${[...byAction].map(([a, n]) => `${a} ${n}`).join(", ")})`,
    `lost pings during steps: ${during.lost} of ${during.sent}`,
    `lost pings after steps:  ${after.lost} of ${after.sent}`,
    `convergence: median ${times[Math.floor(times.length / 2)] ?? "-"} ms, ` +
    `max ${times.at(-1) ?? "-"} ms`,
    `other problems: ${problems}`,
    report.ok ? "SOAK PASSED" : "SOAK FAILED",
  ].join("\n");
}

/**
 * Build a lab, churn it until `minutes` are up (or `signal` aborts), tear it down; returns what
 * happened. `ok` means no ping was lost and no other problem was seen.
 */
export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const { say } = options;
  const random = seededRandom(options.seed);
  const started = Date.now();
  const deadline = started + options.minutes * 60_000;
  const steps: SoakStep[] = [];
  say(
    `soak: ${options.nodes} ${options.backend} nodes, ${options.minutes} min, seed ${options.seed}`,
  );
  const lab = await startLab({
    prefix: options.prefix,
    nodes: options.nodes,
    netConf: defaultNetConf(options.backend),
  });
  try {
    await lab.waitConverged(CONVERGE_TIMEOUT_MS);
    for (let i = 0; i < lab.nodes.length; i++) await lab.addPods(i, 1);
    const cluster = new Cluster(lab, options.nodes + EXTRA_NODES);
    // Bounded by time, and by count in case steps are unexpectedly instant.
    while (Date.now() < deadline - STEP_RESERVE_MS && steps.length < options.minutes * 120) {
      if (options.signal?.aborted) break;
      const result = await step(cluster, random);
      steps.push(result);
      say(describeStep(steps.length, Date.now() - started, result));
    }
  } finally {
    await lab.stop();
  }
  const ok = steps.every((s) => s.during.lost === 0 && s.after.lost === 0 && !s.problems.length);
  return { seed: options.seed, seconds: (Date.now() - started) / 1000, steps, ok };
}
