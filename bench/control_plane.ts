/**
 * Control-plane benchmark: one `tartan run` (vxlan) in a node namespace, N synthetic peer leases
 * in etcd (N = 1 000, 5 000, 10 000), measured from outside through the kernel itself:
 *
 * - burst: N leases written to etcd (pipelined transactions) while the daemon runs → time until
 *   every route, neighbour and FDB entry is in the kernel (from the first write, and from the
 *   last write's acknowledgement);
 * - event → route latency, p50/p99: one lease written at a time with N peers present; the route
 *   is seen by a netlink route monitor in the node namespace (no polling);
 * - cold start: the daemon stopped, its device (and with it every peer entry) deleted, started
 *   again with N leases present → time from process spawn until all 3N objects are programmed;
 * - baseline: the same 3N entries written by `ip -batch`/`bridge -batch` into a fresh namespace
 *   (the kernel's own cost, which dominates at 10 000: inserting IPv4 routes that each have
 *   their own gateway slows down as their number grows — measured ~4× the time for 2× the
 *   routes — for flanneld and `ip` alike);
 * - removal: all N leases deleted → time until no peer entry is left;
 * - daemon RSS (VmRSS, VmHWM from /proc) with N peers, and etcd requests per second at steady
 *   state (the daemon's own request histogram, over one resync period).
 *
 * Synthetic peers carry valid flannel vxlan lease JSON with distinct VTEP MACs and public IPs in
 * 198.19.0.0/16 (they need not exist: FDB, permanent neighbours and onlink routes need no
 * reachability). The network is 10.0.0.0/8 so that 10 000 /24 leases fit.
 *
 * Run: `deno run -A bench/control_plane.ts [--sizes 1000,5000,10000] [--samples 200]` (root).
 * Prints a table, writes bench/results/control_plane.json, and exports {@link main}.
 *
 * @module
 */
import { parseArgs } from "node:util";
import type { EtcdClient } from "../etcd/client.ts";
import type { TxnOp } from "../etcd/codec.ts";
import { type CommandRunner, commandRunner } from "../exec.ts";
import { LAB_ETCD_PREFIX } from "../lab/cluster.ts";
import { startEtcd } from "../lab/etcd.ts";
import { type NodeDaemon, startNodeDaemon } from "../lab/node.ts";
import { createNode, createUnderlay, deleteLabNetns, labNames } from "../lab/topology.ts";
import {
  NUD_PERMANENT,
  RT_TABLE_MAIN,
  RTM_NEWROUTE,
  RTNLGRP_IPV4_ROUTE,
} from "../ffi/netlink/constants.ts";
import { getLink } from "../ffi/netlink/link.ts";
import { watchEvents } from "../ffi/netlink/monitor.ts";
import { listFdb, listNeighs } from "../ffi/netlink/neigh.ts";
import { listRoutes, routeFromMessage } from "../ffi/netlink/route.ts";
import { closeNetlink, type NetlinkHandle, openNetlink } from "../ffi/netlink/socket.ts";
import { formatNet } from "../ip/mod.ts";
import { findPid, memory } from "./proc.ts";
import { percentile, round } from "./stats.ts";
import { saveResult } from "./results.ts";

/** Figures for one N. */
export interface SizeResult {
  readonly peers: number;
  /** First write → all programmed. */
  readonly burstMs: number;
  /** Last write acknowledged → all programmed. */
  readonly burstAfterLastWriteMs: number;
  readonly writeMs: number;
  readonly eventToRoute: { samples: number; p50Ms: number; p99Ms: number; maxMs: number };
  /** Process spawn → all programmed, leases present and kernel state wiped. */
  readonly coldStartMs: number;
  /** Process spawn → subnet.env written (Deno start-up, config, lease): part of `coldStartMs`. */
  readonly coldSubnetEnvMs: number;
  /**
   * Baseline: the same 3N entries written by `ip -batch` / `bridge -batch` into a fresh
   * namespace with a hand-made flannel.1: what the kernel itself needs.
   */
  readonly ipBatchMs: number;
  /** All N deleted → no peer entry left. */
  readonly removalMs: number;
  readonly rssMiB: number;
  readonly peakRssMiB: number;
  /** etcd requests per second by the daemon at steady state. */
  readonly etcdRequestsPerSecond: number;
}

/** What {@link main} measures. */
export interface ControlPlaneResult {
  readonly date: string;
  readonly kernel: string;
  readonly idleRssMiB: number;
  readonly sizes: SizeResult[];
}

/** Options of {@link main}. */
export interface ControlPlaneOptions {
  readonly sizes?: readonly number[];
  /** Event → route samples per size (default 200). */
  readonly samples?: number;
}

const SUBNETS = `${LAB_ETCD_PREFIX}/subnets/`;
/** etcd's default --max-txn-ops. */
const TXN_OPS = 128;
const PROGRAM_TIMEOUT_MS = 60_000;

/** Synthetic peer `i` (0-based): subnet, key name and flannel's vxlan JSON. */
function peer(i: number) {
  const n = i + 1; // 10.0.0.0/24 is never allocated (spec §12 item 8)
  const subnet = `10.${n >> 8}.${n & 255}.0`;
  const mac = `0e:00:00:${((n >> 16) & 255).toString(16).padStart(2, "0")}:` +
    `${((n >> 8) & 255).toString(16).padStart(2, "0")}:${(n & 255).toString(16).padStart(2, "0")}`;
  const publicIP = `198.19.${n >> 8}.${n & 255}`;
  return {
    key: `${SUBNETS}${subnet}-24`,
    subnet: `${subnet}/24`,
    mac,
    publicIP,
    value: `{"PublicIP":"${publicIP}","PublicIPv6":null,"BackendType":"vxlan",` +
      `"BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`,
  };
}

async function putPeers(
  client: EtcdClient,
  from: number,
  to: number,
  lease: string,
): Promise<void> {
  const batches: Promise<unknown>[] = [];
  for (let start = from; start < to; start += TXN_OPS) {
    const success: TxnOp[] = [];
    for (let i = start; i < Math.min(to, start + TXN_OPS); i++) {
      const p = peer(i);
      success.push({ put: { key: p.key, value: p.value, lease } });
    }
    batches.push(client.txn({ compare: [], success }));
  }
  await Promise.all(batches);
}

async function deletePeers(client: EtcdClient, from: number, to: number): Promise<void> {
  const batches: Promise<unknown>[] = [];
  for (let start = from; start < to; start += TXN_OPS) {
    const success: TxnOp[] = [];
    for (let i = start; i < Math.min(to, start + TXN_OPS); i++) {
      success.push({ deleteRange: { key: peer(i).key } });
    }
    batches.push(client.txn({ compare: [], success }));
  }
  await Promise.all(batches);
}

/** Peer entries on flannel.1: main-table routes, permanent neighbours, FDB entries with a dst. */
function countEntries(h: NetlinkHandle, routesOnly = false): [number, number, number] {
  const dev = getLink(h, "flannel.1");
  if (!dev) return [0, 0, 0];
  const routes = listRoutes(h, { family: 4, oif: dev.index, table: RT_TABLE_MAIN }).length;
  if (routesOnly) return [routes, -1, -1];
  const neighs = listNeighs(h, { index: dev.index, family: 4 })
    .filter((n) => (n.state & NUD_PERMANENT) !== 0).length;
  const fdb = listFdb(h, { index: dev.index }).filter((f) => f.dst !== undefined).length;
  return [routes, neighs, fdb];
}

/**
 * Poll (every 100 ms: a dump of 10 000 routes is not free, and this process shares the two
 * cores with the daemon) until the routes reach `n`, then check neighbours and FDB agree.
 */
async function waitProgrammed(h: NetlinkHandle, n: number, since: number): Promise<number> {
  const deadline = performance.now() + PROGRAM_TIMEOUT_MS;
  for (;;) {
    if (countEntries(h, true)[0] === n) {
      const at = performance.now();
      const [routes, neighs, fdb] = countEntries(h);
      if (routes === n && neighs === n && fdb === n) return at - since;
    }
    if (performance.now() > deadline) {
      throw new Error(`not programmed after ${PROGRAM_TIMEOUT_MS} ms: ${countEntries(h)} of ${n}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Route-add notifications in the node namespace, awaited by destination. */
function routeMonitor(netns: string, signal: AbortSignal) {
  const waiters = new Map<string, (at: number) => void>();
  const done = (async () => {
    for await (const batch of watchEvents({ groups: [RTNLGRP_IPV4_ROUTE], netns }, signal)) {
      const at = performance.now();
      for (const m of batch) {
        if (m.header.type !== RTM_NEWROUTE) continue;
        const key = formatNet(routeFromMessage(m).dst);
        waiters.get(key)?.(at);
        waiters.delete(key);
      }
    }
  })();
  return {
    /** Resolves with the time the route for `subnet` was added. */
    next(subnet: string): Promise<number> {
      return new Promise((resolve) => waiters.set(subnet, resolve));
    },
    done,
  };
}

/** Event → route latency: `samples` leases written one at a time (after index `base`). */
async function eventLatency(
  client: EtcdClient,
  netns: string,
  base: number,
  samples: number,
  lease: string,
) {
  const controller = new AbortController();
  const monitor = routeMonitor(netns, controller.signal);
  const latencies: number[] = [];
  try {
    await new Promise((r) => setTimeout(r, 100)); // monitor subscribed
    for (let i = base; i < base + samples; i++) {
      const p = peer(i);
      const seen = monitor.next(p.subnet);
      const timeout = new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error(`no route for ${p.subnet} within 5 s`)), 5000)
      );
      const started = performance.now();
      await client.put({ key: p.key, value: p.value, lease });
      latencies.push(await Promise.race([seen, timeout]) - started);
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    controller.abort();
    await monitor.done.catch(() => {});
  }
  await deletePeers(client, base, base + samples);
  return {
    samples,
    p50Ms: round(percentile(latencies, 50), 1),
    p99Ms: round(percentile(latencies, 99), 1),
    maxMs: round(Math.max(...latencies), 1),
  };
}

/** The daemon's pid: the process whose command line names this node's subnet file. */
function daemonPid(node: NodeDaemon): Promise<number> {
  return findPid(`--subnet-file=${node.subnetFile}`);
}

/** Sum of the daemon's etcd request counts from /metrics. */
async function etcdRequests(node: NodeDaemon): Promise<number> {
  const text = await (await fetch(`${node.adminUrl}/metrics`)).text();
  return text.split("\n")
    .filter((l) => l.startsWith("tartan_etcd_request_duration_seconds_count"))
    .reduce((sum, l) => sum + Number(l.split(" ").at(-1)), 0);
}

/** Poll (every 20 ms) until `path` is modified after `since` (epoch ms); ms from `started`. */
async function waitRewritten(path: string, since: number, started: number): Promise<number> {
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    const mtime = await Deno.stat(path).then((s) => s.mtime?.getTime() ?? 0, () => 0);
    if (mtime >= since) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${path} not rewritten`);
}

async function waitReady(node: NodeDaemon, since: number): Promise<number> {
  const deadline = performance.now() + 60_000;
  while (performance.now() < deadline) {
    const ok = await fetch(`${node.adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) })
      .then(async (r) => (await r.body?.cancel(), r.ok), () => false);
    if (ok) return performance.now() - since;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${node.ns} not ready`);
}

/** Write the N peers' entries with iproute2's batch mode into a throw-away namespace; ms. */
async function ipBatchBaseline(run: CommandRunner, ns: string, n: number, dir: string) {
  const neigh: string[] = [];
  const fdb: string[] = [];
  const routes: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = peer(i);
    const base = p.subnet.split("/")[0];
    neigh.push(`neigh replace ${base} lladdr ${p.mac} dev flannel.1 nud permanent`);
    fdb.push(`fdb replace ${p.mac} dev flannel.1 dst ${p.publicIP} self permanent`);
    routes.push(`route replace ${p.subnet} via ${base} dev flannel.1 onlink`);
  }
  await run(["ip", "netns", "add", ns]);
  try {
    const ip = (args: string) => run(["ip", "-n", ns, ...args.split(" ")]);
    await ip("link add ul0 type veth peer name ul1");
    await ip("addr add 198.18.0.11/24 dev ul0");
    await ip("link set ul0 up");
    await ip(
      "link add flannel.1 type vxlan id 1 local 198.18.0.11 dev ul0 nolearning dstport 8472",
    );
    await ip("link set flannel.1 up");
    for (const [name, lines] of [["neigh", neigh], ["fdb", fdb], ["route", routes]] as const) {
      await Deno.writeTextFile(`${dir}/${name}.batch`, lines.join("\n") + "\n");
    }
    const started = performance.now();
    await run(["ip", "-n", ns, "-batch", `${dir}/neigh.batch`]);
    await run(["bridge", "-n", ns, "-batch", `${dir}/fdb.batch`]);
    await run(["ip", "-n", ns, "-batch", `${dir}/route.batch`]);
    return performance.now() - started;
  } finally {
    await run(["ip", "netns", "del", ns]);
  }
}

/** Run the benchmark; everything it creates is removed even on failure. */
export async function main(options: ControlPlaneOptions = {}): Promise<ControlPlaneResult> {
  const sizes = options.sizes ?? [1000, 5000, 10_000];
  const samples = options.samples ?? 200;
  const run = commandRunner();
  const prefix = `tb-${crypto.randomUUID().slice(0, 6)}c-`;
  const names = labNames(prefix);
  const etcd = await startEtcd();
  const workDir = await Deno.makeTempDir({ prefix: "tartan-cp-bench-" });
  let node: NodeDaemon | undefined;
  let h: NetlinkHandle | undefined;
  try {
    const client = etcd.client();
    await client.put({
      key: `${LAB_ETCD_PREFIX}/config`,
      // Our own lease comes from above the synthetic peers' 10.0.1.0 … 10.40.x.0 range.
      value: JSON.stringify({
        Network: "10.0.0.0/8",
        SubnetMin: "10.200.0.0",
        Backend: { Type: "vxlan" },
      }),
    });
    const { id: lease } = await client.leaseGrant(86_400);
    await createUnderlay(run, names.underlay);
    await createNode(run, names.underlay, names.node(1), 1);
    node = await startNodeDaemon({
      ns: names.node(1),
      dir: `${workDir}/n1`,
      etcdPort: Number(new URL(etcd.endpoint).port),
    });
    await waitReady(node, performance.now());
    h = openNetlink({ netns: node.ns });
    const idle = await memory(await daemonPid(node));
    const results: SizeResult[] = [];
    for (const n of sizes) {
      const started = performance.now();
      await putPeers(client, 0, n, lease);
      const written = performance.now();
      const burstMs = await waitProgrammed(h, n, started);
      const eventToRoute = await eventLatency(client, node.ns, n, samples, lease);
      await waitProgrammed(h, n, 0);
      const before = await etcdRequests(node);
      await new Promise((r) => setTimeout(r, 10_000)); // one full resync period
      const etcdRequestsPerSecond = round((await etcdRequests(node) - before) / 10, 1);
      const mem = await memory(await daemonPid(node));

      await node.stop();
      await run(["ip", "-n", node.ns, "link", "del", "flannel.1"]);
      const spawnedAt = Date.now();
      const spawned = performance.now();
      await node.start();
      const coldSubnetEnvMs = await waitRewritten(node.subnetFile, spawnedAt, spawned);
      const coldStartMs = await waitProgrammed(h, n, spawned);

      const ipBatchMs = await ipBatchBaseline(run, names.node(2), n, workDir);

      const removing = performance.now();
      await deletePeers(client, 0, n);
      const removalMs = await waitProgrammed(h, 0, removing);
      results.push({
        peers: n,
        burstMs: round(burstMs, 1),
        burstAfterLastWriteMs: round(burstMs - (written - started), 1),
        writeMs: round(written - started, 1),
        eventToRoute,
        coldStartMs: round(coldStartMs, 1),
        coldSubnetEnvMs: round(coldSubnetEnvMs, 1),
        ipBatchMs: round(ipBatchMs, 1),
        removalMs: round(removalMs, 1),
        rssMiB: mem.rssMiB,
        peakRssMiB: mem.peakRssMiB,
        etcdRequestsPerSecond,
      });
      console.error(`done: ${n} peers`);
    }
    return {
      date: new Date().toISOString(),
      kernel: Deno.osRelease(),
      idleRssMiB: idle.rssMiB,
      sizes: results,
    };
  } finally {
    if (h) closeNetlink(h);
    await node?.close();
    await deleteLabNetns(run, prefix);
    await etcd.stop();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}

function printTable(r: ControlPlaneResult): void {
  const rows: string[][] = [[
    "peers",
    "burst ms",
    "after last write",
    "event→route p50/p99 ms",
    "cold start ms (subnet.env)",
    "ip -batch ms",
    "removal ms",
    "RSS MiB (peak)",
    "etcd req/s",
  ]];
  for (const s of r.sizes) {
    rows.push([
      `${s.peers}`,
      `${s.burstMs}`,
      `${s.burstAfterLastWriteMs}`,
      `${s.eventToRoute.p50Ms} / ${s.eventToRoute.p99Ms}`,
      `${s.coldStartMs} (${s.coldSubnetEnvMs})`,
      `${s.ipBatchMs}`,
      `${s.removalMs}`,
      `${s.rssMiB} (${s.peakRssMiB})`,
      `${s.etcdRequestsPerSecond}`,
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
  for (const row of rows) console.log(row.map((c, i) => c.padStart(widths[i])).join("  "));
  console.log(`idle daemon RSS (no peers): ${r.idleRssMiB} MiB`);
}

if (import.meta.main) {
  const args = parseArgs({
    args: Deno.args,
    options: { sizes: { type: "string" }, samples: { type: "string" } },
  });
  const result = await main({
    sizes: args.values.sizes?.split(",").map(Number),
    samples: args.values.samples ? Number(args.values.samples) : undefined,
  });
  printTable(result);
  await saveResult("control_plane", result);
}
