/**
 * The namespace topology and helpers of the real-kernel engine tests (netns_test.ts and
 * netns_resync_test.ts).
 *
 * Topology per test (all names carry the run's unique prefix; nothing touches the root netns):
 *
 *   pod  10.244.1.2 ──p0 10.244.1.1┐                ┌ outside 198.18.0.2 (route 10.244/16 via node)
 *                                  node ── u0 198.18.0.1
 *   rpod 10.244.2.2 ──r0 10.244.2.1┘
 *
 * `node` holds the rules (C = 10.244.0.0/16, S = 10.244.1.0/24); `rpod` stands in for a pod on
 * another node. UDP recorders (node:dgram under `deno eval`) report the source they see.
 *
 * Namespaces come from the shared fixture (tests/helpers/netns.ts); each engine's commands run
 * there through `commandRunner({ netns })`, exactly as the daemon would run them in its own.
 */
import assert from "node:assert/strict";
import type { NetworkConfig } from "../../config/network_config.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { type CommandRunner, commandRunner } from "../../exec.ts";
import { parseIptablesSave } from "../../traffic/iptables.ts";
import { createTrafficManager } from "../../traffic/manager.ts";
import { decodeNftTable, renderNftRule } from "../../traffic/nftables.ts";
import { removeLeftovers, rootTest, run, withNetnsSet } from "../helpers/netns.ts";

export interface Topology {
  readonly node: string;
  readonly outside: string;
  readonly pod: string;
  readonly rpod: string;
  /** Runs a command inside the node namespace. */
  readonly inNode: CommandRunner;
}

export async function buildTopology([node, outside, pod, rpod]: string[]): Promise<Topology> {
  const ip = (ns: string, ...args: string[]) => run(["ip", "-n", ns, ...args]);
  for (const ns of [node, outside, pod, rpod]) await ip(ns, "link", "set", "lo", "up");
  /** A veth from the node (`dev`, with `addr`) into `peerNs` (`peerDev`), both ends up. */
  const wire = async (dev: string, addr: string, peerNs: string, peerDev: string) => {
    await ip(node, "link", "add", dev, "type", "veth", "peer", "name", peerDev, "netns", peerNs);
    await ip(node, "addr", "add", addr, "dev", dev);
    await ip(node, "link", "set", dev, "up");
    await ip(peerNs, "link", "set", peerDev, "up");
  };
  await wire("u0", "198.18.0.1/24", outside, "u1");
  await ip(outside, "addr", "add", "198.18.0.2/24", "dev", "u1");
  await ip(outside, "route", "add", "10.244.0.0/16", "via", "198.18.0.1");
  await wire("p0", "10.244.1.1/24", pod, "eth0");
  await ip(pod, "addr", "add", "10.244.1.2/24", "dev", "eth0");
  await ip(pod, "route", "add", "default", "via", "10.244.1.1");
  await wire("r0", "10.244.2.1/24", rpod, "eth0");
  await ip(rpod, "addr", "add", "10.244.2.2/24", "dev", "eth0");
  await ip(rpod, "route", "add", "default", "via", "10.244.2.1");
  const inNode = commandRunner({ netns: node });
  await inNode(["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  return { node, outside, pod, rpod, inNode };
}

/** Run a shell command line inside the node namespace. */
export function shell(t: Topology, command: string): Promise<string> {
  return t.inNode(["sh", "-c", command]);
}

/** A root-only test with a fresh topology, removed afterwards even on failure. */
export function nsTest(name: string, body: (t: Topology) => Promise<void>): void {
  rootTest(name, async () => {
    await removeLeftovers();
    await withNetnsSet(4, async (names) => body(await buildTopology(names)), "traffic");
  });
}

const RECORDER = `
import dgram from "node:dgram";
const [host, port] = Deno.args;
const socket = dgram.createSocket("udp4");
setTimeout(() => Deno.exit(2), 4000);
socket.on("message", (_msg, peer) => { console.log("from " + peer.address); Deno.exit(0); });
socket.bind(Number(port), host, () => console.log("ready"));
`;

/** The source address `receiver` sees for UDP sent from `sender` to `address`. */
export async function sourceSeen(
  sender: string,
  receiver: string,
  address: string,
): Promise<string> {
  const port = String(20000 + Math.floor(Math.random() * 10000));
  const recorder = new Deno.Command("ip", {
    args: ["netns", "exec", receiver, Deno.execPath(), "eval", RECORDER, address, port],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).spawn();
  const reader = recorder.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  while (!output.includes("ready\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  // A few datagrams, in case the first waits on neighbour resolution; all failures ignored.
  await commandRunner({ netns: sender })([
    "bash",
    "-c",
    `for i in 1 2 3; do echo x >/dev/udp/${address}/${port} 2>/dev/null; sleep 0.2; done; true`,
  ]);
  for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
    output += chunk.value;
  }
  await recorder.status;
  await recorder.stderr.cancel();
  const seen = /from (\S+)/.exec(output);
  assert.ok(seen, `${receiver} received nothing on ${address}:${port}`);
  return seen[1];
}

export function netConfig(network: string, enableNFTables: boolean): NetworkConfig {
  const family = (net: string) => ({
    network: parseNet(net),
    subnetLen: 24,
    subnetMin: parseAddr(net.split("/")[0]),
    subnetMax: parseAddr(net.split("/")[0]),
  });
  return {
    ipv4: family(network),
    ipv6: family("fd00:10:244::/56"),
    enableNFTables,
    backend: { type: "vxlan", options: {} },
  };
}

export function lease(subnet: string): Lease {
  return {
    subnet: parseNet(subnet),
    ipv6Subnet: parseNet("fd00:10:244:1::/64"),
    attrs: { publicIP: parseAddr("198.18.0.1") },
  };
}

/** A manager for the node namespace with every rule on and a 1 s resync period. */
export function manager(
  t: Topology,
  nft: boolean,
  [network, subnet] = ["10.244.0.0/16", "10.244.1.0/24"],
) {
  return createTrafficManager(netConfig(network, nft), lease(subnet), {
    ipMasq: true,
    forwardRules: true,
    fullyRandomDisabled: false,
    resyncSeconds: 1,
    run: t.inNode,
  });
}

export async function iptablesState(run: CommandRunner, tool = "iptables-save") {
  const tables = parseIptablesSave(await run([tool]));
  const rules = (table: string, chain: string) => tables.get(table)?.rules.get(chain) ?? [];
  const chains = (table: string) => [...(tables.get(table)?.chains ?? [])];
  return { rules, chains };
}

export async function nftTables(run: CommandRunner): Promise<string[]> {
  const listing = JSON.parse(await run(["nft", "-j", "list", "tables"])) as {
    nftables: Array<{ table?: { family: string; name: string } }>;
  };
  return listing.nftables.flatMap((i) => (i.table ? [`${i.table.family} ${i.table.name}`] : []));
}

export async function nftChainRules(
  run: CommandRunner,
  family: 4 | 6,
  chain: string,
): Promise<string[]> {
  const table = decodeNftTable(await run(["nft", "-j", "list", "ruleset"]), family);
  return (table.get(chain)?.rules ?? []).map((r) => (r ? renderNftRule(family, r) : "<foreign>"));
}

export const sameList = (a: string[], b: string[]) => JSON.stringify(a) === JSON.stringify(b);

export async function assertMasqueradeTraffic(t: Topology): Promise<void> {
  assert.equal(
    await sourceSeen(t.pod, t.outside, "198.18.0.2"),
    "198.18.0.1",
    "pod → outside is masqueraded",
  );
  assert.equal(
    await sourceSeen(t.pod, t.rpod, "10.244.2.2"),
    "10.244.1.2",
    "pod → pod keeps the pod address",
  );
  assert.equal(
    await sourceSeen(t.outside, t.pod, "10.244.1.2"),
    "198.18.0.2",
    "outside → local pod is not NATed",
  );
  // host/outside → remote pod is masqueraded (quirk 24: flannel's nftables rules did not)
  assert.equal(await sourceSeen(t.outside, t.rpod, "10.244.2.2"), "10.244.2.1");
}
