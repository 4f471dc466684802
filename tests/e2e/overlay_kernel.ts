/**
 * Shared by the overlay end-to-end tests: the leases as etcd holds them, each node's kernel
 * state as `ip -j` / `bridge -j` print it, the state the spec says a node must have for those
 * leases (§6.2, §6.4, §12 items 15, 16, 22), and bounded timing helpers.
 *
 * Expectations are derived from etcd (the source of truth every node shares), never from a
 * daemon's own report, so a daemon that is wrong about itself cannot pass.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { EtcdClient } from "../../etcd/client.ts";
import { prefixEnd, text } from "../../etcd/codec.ts";
import { LAB_ETCD_PREFIX, type LabCluster } from "../../lab/cluster.ts";
import { nodeUnderlayIP } from "../../lab/topology.ts";
import { formatLeaseKey } from "../../subnet/lease.ts";
import { parseSubnetEnv } from "../../subnet/subnet_env.ts";
import { addrEqual, netEqual, parseAddr, parseNet } from "../../ip/mod.ts";
import { NUD_PERMANENT } from "../../ffi/netlink/constants.ts";
import { getLink } from "../../ffi/netlink/link.ts";
import { listFdb, listNeighs } from "../../ffi/netlink/neigh.ts";
import { listRoutes } from "../../ffi/netlink/route.ts";
import type { NetlinkHandle } from "../../ffi/netlink/socket.ts";
import { bridgeJson, ipJson, isRoot, testNeeding } from "../helpers/netns.ts";

/** One lease key as a peer sees it. */
export interface StoredLease {
  /** Key name under `<prefix>/subnets/`, e.g. `10.244.3.0-24`. */
  readonly name: string;
  /** `10.244.3.0/24`. */
  readonly subnet: string;
  /** `10.244.3.0`: the subnet's network address (vxlan neighbour and gateway). */
  readonly base: string;
  readonly publicIP: string;
  readonly backendType?: string;
  readonly vtepMac?: string;
}

/** The lab's `<prefix>/subnets/` directory. */
export const SUBNETS_DIR = `${LAB_ETCD_PREFIX}/subnets/`;

/** Parse one stored lease (flannel's JSON); throws on anything else. */
export function parseStoredLease(name: string, value: string): StoredLease {
  const json = JSON.parse(value) as {
    PublicIP: string;
    BackendType?: string;
    BackendData?: { VtepMAC?: string } | null;
  };
  const [base, len] = name.split("-");
  return {
    name,
    subnet: `${base}/${len}`,
    base,
    publicIP: json.PublicIP,
    backendType: json.BackendType,
    vtepMac: json.BackendData?.VtepMAC?.toLowerCase(),
  };
}

/** Every lease in the lab's etcd. */
export async function readLeases(client: EtcdClient): Promise<StoredLease[]> {
  const res = await client.range({ key: SUBNETS_DIR, rangeEnd: prefixEnd(SUBNETS_DIR) });
  return res.kvs.map((kv) =>
    parseStoredLease(text(kv.key).slice(SUBNETS_DIR.length), text(kv.value))
  );
}

/** Write a lease as flanneld would: literal JSON, on an etcd lease of `ttl` seconds. */
export async function putRawLease(
  client: EtcdClient,
  name: string,
  value: string,
  ttl = 86_400,
): Promise<void> {
  const { id } = await client.leaseGrant(ttl);
  await client.put({ key: SUBNETS_DIR + name, value, lease: id });
}

/** Delete a lease key. */
export async function deleteLease(client: EtcdClient, name: string): Promise<void> {
  await client.deleteRange({ key: SUBNETS_DIR + name });
}

/** A subnet of 10.244.0.0/16 no lease holds, from the top down (the lab allocates at random). */
export function freeSubnet(leases: readonly StoredLease[], skip: readonly string[] = []): string {
  for (let third = 254; third > 0; third--) {
    const name = `10.244.${third}.0-24`;
    if (!leases.some((l) => l.name === name) && !skip.includes(name)) return name;
  }
  throw new Error("no free /24 left in 10.244.0.0/16");
}

/** A node's subnet.env as a map (read as the daemon and doctor read it). */
export async function readSubnetEnv(path: string): Promise<Map<string, string>> {
  return parseSubnetEnv(await Deno.readTextFile(path));
}

/** The lease name of a node, from its subnet.env (`10.244.3.1/24` → `10.244.3.0-24`). */
export async function ownLeaseName(subnetFile: string): Promise<string> {
  const subnet = (await readSubnetEnv(subnetFile)).get("FLANNEL_SUBNET");
  assert.ok(subnet, `${subnetFile} has no FLANNEL_SUBNET`);
  return formatLeaseKey({ subnet: parseNet(subnet) });
}

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  flags?: string[];
}
interface IpNeigh {
  dst: string;
  lladdr?: string;
  state?: string[];
}
interface FdbJson {
  mac: string;
  dst?: string;
  flags?: string[];
  state?: string;
}

/** What a node holds: per-peer entries as `ip route` would print them, sorted. */
export interface PeerEntries {
  readonly routes: string[];
  readonly neighs: string[];
  readonly fdb: string[];
}

function inClusterNetwork(dst: string): boolean {
  return dst.startsWith("10.244.") && dst !== "10.244.0.0/16";
}

/**
 * Routes into the cluster network other than the node's own (kernel-made) bridge route, and
 * every neighbour and FDB entry of `flannel.1` (none when the device is absent).
 */
export async function peerEntries(ns: string): Promise<PeerEntries> {
  const routes = (await ipJson<IpRoute[]>(ns, ["route", "show"]))
    .filter((r) => inClusterNetwork(r.dst) && r.protocol !== "kernel")
    .map((r) =>
      `${r.dst} via ${r.gateway} dev ${r.dev}${r.flags?.includes("onlink") ? " onlink" : ""}`
    );
  const links = await ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
  if (!links.some((l) => l.ifname === "flannel.1")) {
    return { routes: routes.sort(), neighs: [], fdb: [] };
  }
  const neighs = (await ipJson<IpNeigh[]>(ns, ["neigh", "show", "dev", "flannel.1"]))
    .map((n) => `${n.dst} lladdr ${n.lladdr} ${(n.state ?? []).join(",")}`);
  const fdb = (await bridgeJson<FdbJson[]>(ns, ["fdb", "show", "dev", "flannel.1"]))
    .map((f) => `${f.mac} dst ${f.dst} ${(f.flags ?? []).join(",")} ${f.state}`);
  return { routes: routes.sort(), neighs: neighs.sort(), fdb: fdb.sort() };
}

/** Spec §12 item 16: what a vxlan node holds for its vxlan peers, and nothing else. */
export function expectedVxlanEntries(peers: readonly StoredLease[]): PeerEntries {
  const vxlan = peers.filter((p) => p.backendType === "vxlan");
  return {
    routes: vxlan.map((p) => `${p.subnet} via ${p.base} dev flannel.1 onlink`).sort(),
    neighs: vxlan.map((p) => `${p.base} lladdr ${p.vtepMac} PERMANENT`).sort(),
    fdb: vxlan.map((p) => `${p.vtepMac} dst ${p.publicIP} self permanent`).sort(),
  };
}

/** Spec §12 item 22: what a host-gw node holds for its host-gw peers. */
export function expectedHostGwEntries(peers: readonly StoredLease[]): PeerEntries {
  return {
    routes: peers.filter((p) => p.backendType === "host-gw")
      .map((p) => `${p.subnet} via ${p.publicIP} dev ul0`).sort(),
    neighs: [],
    fdb: [],
  };
}

/** The lab's running nodes with their namespace, lease name and underlay address. */
export async function runningNodes(lab: LabCluster) {
  const out = [];
  for (const [i, node] of lab.nodes.entries()) {
    if (!node.running()) continue;
    out.push({
      node,
      ns: node.ns,
      ip: nodeUnderlayIP(i + 1),
      lease: await ownLeaseName(node.subnetFile),
    });
  }
  return out;
}

/**
 * Wait until every running node holds exactly the entries `expected` derives from the leases in
 * etcd (minus its own); fails with a diff of the first node that does not. Returns the ms taken
 * (whole).
 */
export async function waitForExactState(
  lab: LabCluster,
  expected: (peers: readonly StoredLease[]) => PeerEntries,
  timeoutMs: number,
): Promise<number> {
  const started = performance.now();
  for (;;) {
    const leases = await readLeases(lab.etcd.client());
    const nodes = await runningNodes(lab);
    const views = await Promise.all(nodes.map(async (n) => ({
      ns: n.ns,
      actual: await peerEntries(n.ns),
      wanted: expected(leases.filter((l) => l.name !== n.lease)),
    })));
    const wrong = views.find((v) => JSON.stringify(v.actual) !== JSON.stringify(v.wanted));
    if (!wrong) return Math.round(performance.now() - started);
    if (performance.now() - started > timeoutMs) {
      assert.deepEqual(wrong.actual, wrong.wanted, `kernel state of ${wrong.ns}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** GET a node's admin endpoint as JSON. */
export async function adminJson<T>(adminUrl: string, path: string): Promise<T> {
  const res = await fetch(`${adminUrl}${path}`, { signal: AbortSignal.timeout(2000) });
  assert.equal(res.status, 200, `${path} answered ${res.status}`);
  return await res.json() as T;
}

/** `/v1/backend` as the tests read it. */
export interface BackendReport {
  type: string;
  ready: boolean;
  peers: Array<{ subnet: string; publicIP: string; inSync: boolean; error: string | null }>;
}

/**
 * A root-only test whose steps share one lab. Without root, or with `missing` naming something
 * else it lacks (a tool), {@link testNeeding} decides (fail under CI=true, visible skip
 * otherwise) and `fn` never runs.
 */
export function rootSuite(
  name: string,
  fn: (t: Deno.TestContext) => Promise<void>,
  missing?: string,
): void {
  const lacking = isRoot() ? missing : "root";
  if (lacking !== undefined) return testNeeding(name, lacking, () => {});
  Deno.test(name, fn);
}

/**
 * How many of a vxlan peer's three kernel objects (route, permanent neighbour, FDB entry) a node
 * holds, read through netlink: cheap enough to poll every few milliseconds for latency figures.
 */
export function vxlanPeerObjects(h: NetlinkHandle, peer: StoredLease): number {
  const dev = getLink(h, "flannel.1");
  if (!dev || !peer.vtepMac) return 0;
  const subnet = parseNet(peer.subnet);
  const base = parseAddr(peer.base);
  const publicIP = parseAddr(peer.publicIP);
  const route = listRoutes(h, { family: 4, oif: dev.index }).some((r) =>
    netEqual(r.dst, subnet) && r.gateway !== undefined && addrEqual(r.gateway, base) && r.onlink
  );
  const neigh = listNeighs(h, { index: dev.index, family: 4 }).some((n) =>
    addrEqual(n.ip, base) && n.mac === peer.vtepMac && (n.state & NUD_PERMANENT) !== 0
  );
  const fdb = listFdb(h, { index: dev.index }).some((f) =>
    f.mac === peer.vtepMac && f.dst !== undefined && addrEqual(f.dst, publicIP)
  );
  return Number(route) + Number(neigh) + Number(fdb);
}

/**
 * Poll every node (netlink handles into their namespaces) until `done` holds for each; returns
 * per node the `performance.now()` at which it first did. Fails after `timeoutMs`.
 */
export async function whenEachNode(
  handles: readonly NetlinkHandle[],
  done: (h: NetlinkHandle) => boolean,
  timeoutMs: number,
): Promise<number[]> {
  const at: (number | undefined)[] = handles.map(() => undefined);
  const deadline = performance.now() + timeoutMs;
  while (at.some((t) => t === undefined)) {
    handles.forEach((h, i) => {
      if (at[i] === undefined && done(h)) at[i] = performance.now();
    });
    if (performance.now() > deadline) {
      throw new Error(`nodes ${at.flatMap((t, i) => t === undefined ? [i] : [])} not done`);
    }
    await new Promise((r) => setTimeout(r, 2));
  }
  return at as number[];
}
