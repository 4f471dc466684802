/**
 * Real-kernel tests of both engines inside throw-away network namespaces.
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
import { createTrafficManager, type TrafficManager } from "../../traffic/manager.ts";
import { createNftEngine, decodeNftTable, renderNftRule } from "../../traffic/nftables.ts";
import { removeLeftovers, rootTest, run, withNetnsSet } from "../helpers/netns.ts";
import {
  SPEC_FWD_V4,
  SPEC_MASQ_V4,
  SPEC_MASQ_V6_TAIL,
  SPEC_NFT_POSTRTG_V4,
} from "./family_rules.ts";

interface Topology {
  readonly node: string;
  readonly outside: string;
  readonly pod: string;
  readonly rpod: string;
  /** Runs a command inside the node namespace. */
  readonly inNode: CommandRunner;
}

async function buildTopology([node, outside, pod, rpod]: string[]): Promise<Topology> {
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
function shell(t: Topology, command: string): Promise<string> {
  return t.inNode(["sh", "-c", command]);
}

/** A root-only test with a fresh topology, removed afterwards even on failure. */
function nsTest(name: string, body: (t: Topology) => Promise<void>): void {
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
async function sourceSeen(sender: string, receiver: string, address: string): Promise<string> {
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

function netConfig(network: string, enableNFTables: boolean): NetworkConfig {
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

function lease(subnet: string): Lease {
  return {
    subnet: parseNet(subnet),
    ipv6Subnet: parseNet("fd00:10:244:1::/64"),
    attrs: { publicIP: parseAddr("198.18.0.1") },
  };
}

/** A manager for the node namespace with every rule on and a 1 s resync period. */
function manager(
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

async function iptablesState(run: CommandRunner, tool = "iptables-save") {
  const tables = parseIptablesSave(await run([tool]));
  const rules = (table: string, chain: string) => tables.get(table)?.rules.get(chain) ?? [];
  const chains = (table: string) => [...(tables.get(table)?.chains ?? [])];
  return { rules, chains };
}

async function nftTables(run: CommandRunner): Promise<string[]> {
  const listing = JSON.parse(await run(["nft", "-j", "list", "tables"])) as {
    nftables: Array<{ table?: { family: string; name: string } }>;
  };
  return listing.nftables.flatMap((i) => (i.table ? [`${i.table.family} ${i.table.name}`] : []));
}

async function nftChainRules(run: CommandRunner, family: 4 | 6, chain: string): Promise<string[]> {
  const table = decodeNftTable(await run(["nft", "-j", "list", "ruleset"]), family);
  return (table.get(chain)?.rules ?? []).map((r) => (r ? renderNftRule(family, r) : "<foreign>"));
}

/** Poll `check` every 100 ms for at most `ms`; returns the time it took. */
async function waitFor(ms: number, check: () => Promise<boolean>): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (await check()) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`condition not met within ${ms} ms`);
}

const sameList = (a: string[], b: string[]) => JSON.stringify(a) === JSON.stringify(b);

async function assertMasqueradeTraffic(t: Topology): Promise<void> {
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

nsTest(
  "iptables: spec rules in order, jumps appended, real masquerade and forward accept",
  async (t) => {
    const traffic = await manager(t, false);
    await traffic.apply();
    const state = await iptablesState(t.inNode);
    assert.deepEqual(state.rules("nat", "FLANNEL-POSTRTG"), SPEC_MASQ_V4);
    assert.deepEqual(state.rules("filter", "FLANNEL-FWD"), SPEC_FWD_V4);
    assert.deepEqual(state.rules("nat", "POSTROUTING"), [
      `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`,
    ]);
    assert.deepEqual(state.rules("filter", "FORWARD"), [
      `-m comment --comment "flanneld forward" -j FLANNEL-FWD`,
    ]);
    // conformance 25 literally: `iptables -t nat -S FLANNEL-POSTRTG`
    assert.equal(
      await t.inNode(["iptables", "-t", "nat", "-S", "FLANNEL-POSTRTG"]),
      ["-N FLANNEL-POSTRTG", ...SPEC_MASQ_V4.map((r) => `-A FLANNEL-POSTRTG ${r}`), ""].join("\n"),
    );
    const v6 = await iptablesState(t.inNode, "ip6tables-save");
    assert.equal(v6.rules("nat", "FLANNEL-POSTRTG").length, 6);
    assert.equal(v6.rules("nat", "FLANNEL-POSTRTG")[4], SPEC_MASQ_V6_TAIL);
    assert.equal(v6.rules("filter", "FLANNEL-FWD").length, 2);
    assert.ok(
      !(await nftTables(t.inNode)).some((n) => n.includes("flannel")),
      "no nftables tables in iptables mode",
    );

    // Applying again finds nothing to do.
    await traffic.apply();
    assert.equal(traffic.health().lastResult, "in-sync");

    // Forward rules matter: with a DROP policy only FLANNEL-FWD lets pod traffic through.
    await t.inNode(["iptables", "-P", "FORWARD", "DROP"]);
    await assertMasqueradeTraffic(t);
  },
);

nsTest(
  "nftables: §7.2 tables with quirk-24 fix, no FLANNEL iptables chains, real masquerade",
  async (t) => {
    const traffic = await manager(t, true);
    assert.equal(traffic.engine, "nftables");
    await traffic.apply();
    assert.deepEqual(await nftChainRules(t.inNode, 4, "postrtg"), SPEC_NFT_POSTRTG_V4);
    assert.deepEqual(await nftChainRules(t.inNode, 4, "forward"), [
      "ip saddr 10.244.0.0/16 accept",
      "ip daddr 10.244.0.0/16 accept",
    ]);
    assert.equal(
      (await nftChainRules(t.inNode, 6, "postrtg"))[4],
      "ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade fully-random",
    );
    // conformance 27: the text nft prints, with comments and priorities
    const listed = (await t.inNode(["nft", "list", "chain", "ip", "flannel-ipv4", "postrtg"]))
      .split("\n").map((l) => l.trim()).filter(Boolean);
    assert.deepEqual(listed, [
      "table ip flannel-ipv4 {",
      "chain postrtg {",
      'comment "chain to manage traffic masquerading by flannel"',
      "type nat hook postrouting priority srcnat; policy accept;",
      ...SPEC_NFT_POSTRTG_V4,
      "}",
      "}",
    ]);
    const table = await t.inNode(["nft", "list", "table", "ip", "flannel-ipv4"]);
    assert.match(table, /comment "rules for flannel-ipv4"/);
    assert.match(
      table,
      /chain forward \{\n\s+comment "chain to accept flannel traffic"\n\s+type filter hook forward priority filter; policy accept;/,
    );
    assert.deepEqual((await nftTables(t.inNode)).sort(), ["ip flannel-ipv4", "ip6 flannel-ipv6"]);
    assert.equal((await t.inNode(["iptables-save"])).includes("FLANNEL"), false);

    await traffic.apply();
    assert.equal(
      traffic.health().lastResult,
      "in-sync",
      "the JSON read-back matches what was written",
    );
    await assertMasqueradeTraffic(t);
  },
);

nsTest(
  "iptables resync: deleted, reordered and duplicated rules are restored within one period",
  async (t) => {
    const traffic = await manager(t, false);
    await traffic.apply();
    const stop = new AbortController();
    const loop = traffic.startResync(stop.signal);
    try {
      await shell(t, "iptables -t nat -D FLANNEL-POSTRTG 3");
      await shell(t, "iptables -t nat -I POSTROUTING 1 -s 192.0.2.1/32 -j RETURN");
      await shell(t, 'iptables -A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD');
      await shell(t, "ip6tables -t nat -F FLANNEL-POSTRTG");
      const tookMs = await waitFor(3000, async () => {
        const v4 = await iptablesState(t.inNode);
        const v6 = await iptablesState(t.inNode, "ip6tables-save");
        return sameList(v4.rules("nat", "FLANNEL-POSTRTG"), SPEC_MASQ_V4) &&
          v4.rules("filter", "FORWARD").length === 1 &&
          v6.rules("nat", "FLANNEL-POSTRTG").length === 6;
      });
      console.log(`iptables drift repaired after ${Math.round(tookMs)} ms (period 1 s)`);
      const after = await iptablesState(t.inNode);
      // The rule inserted above our jump stays above it (quirk 26).
      assert.deepEqual(after.rules("nat", "POSTROUTING"), [
        "-s 192.0.2.1/32 -j RETURN",
        `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`,
      ]);
      assert.ok(traffic.health().repairs >= 1);
      assert.ok(traffic.health().lastCheck instanceof Date);
    } finally {
      stop.abort();
      await loop;
    }
    // Shutdown leaves the rules in place, as flannel does.
    assert.deepEqual((await iptablesState(t.inNode)).rules("nat", "FLANNEL-POSTRTG"), SPEC_MASQ_V4);
  },
);

/** Resolve once the resync loop has compared the rules with the kernel `count` more times. */
async function afterChecks(traffic: TrafficManager, count: number): Promise<void> {
  let seen = traffic.health().lastCheck?.getTime();
  for (let left = count; left > 0;) {
    await waitFor(5000, () => Promise.resolve(traffic.health().lastCheck?.getTime() !== seen));
    seen = traffic.health().lastCheck?.getTime();
    left--;
  }
}

const CALICO_FORWARD = '-m comment --comment "cali:wUHhoiAYhphO9Mso" -j cali-FORWARD';
const DOCKER_USER = "-j DOCKER-USER";
const CALICO_POSTROUTING = '-m comment --comment "cali:O3lYWMrLQYEMJtB5" -j cali-POSTROUTING';
const OUR_FORWARD = `-m comment --comment "flanneld forward" -j FLANNEL-FWD`;
const OUR_MASQ = `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`;

nsTest(
  "iptables: other agents' FORWARD and POSTROUTING jumps stay above ours across resyncs",
  async (t) => {
    // Calico and Docker were here first, with their jumps on top of the built-in chains.
    await shell(
      t,
      "iptables -N cali-FORWARD && iptables -N DOCKER-USER && " +
        `iptables -A FORWARD ${CALICO_FORWARD} && iptables -A FORWARD ${DOCKER_USER} && ` +
        `iptables -t nat -N cali-POSTROUTING && iptables -t nat -A POSTROUTING ${CALICO_POSTROUTING}`,
    );
    const traffic = await manager(t, false);
    await traffic.apply();
    const order = async () => {
      const state = await iptablesState(t.inNode);
      return [state.rules("filter", "FORWARD"), state.rules("nat", "POSTROUTING")];
    };
    assert.deepEqual(await order(), [
      [CALICO_FORWARD, DOCKER_USER, OUR_FORWARD],
      [CALICO_POSTROUTING, OUR_MASQ],
    ]);
    const stop = new AbortController();
    const loop = traffic.startResync(stop.signal);
    try {
      // In sync: resyncs write nothing and move nothing.
      await afterChecks(traffic, 2);
      assert.equal(traffic.health().repairs, 0);
      assert.deepEqual(await order(), [
        [CALICO_FORWARD, DOCKER_USER, OUR_FORWARD],
        [CALICO_POSTROUTING, OUR_MASQ],
      ]);
      // Calico re-asserts its place (delete and insert first); we damage our own chain and
      // leave a duplicate of our jump on top. The repair refills our chain, drops our duplicate
      // (the first copy; the one below Calico's stays) and leaves every foreign rule alone.
      await shell(
        t,
        `iptables -D FORWARD ${CALICO_FORWARD} && iptables -I FORWARD 1 ${CALICO_FORWARD} && ` +
          `iptables -F FLANNEL-FWD && iptables -t nat -I POSTROUTING 1 ${OUR_MASQ}`,
      );
      await waitFor(5000, () => Promise.resolve(traffic.health().repairs >= 1));
      await afterChecks(traffic, 2);
      assert.deepEqual(await order(), [
        [CALICO_FORWARD, DOCKER_USER, OUR_FORWARD],
        [CALICO_POSTROUTING, OUR_MASQ],
      ]);
      assert.deepEqual((await iptablesState(t.inNode)).rules("filter", "FLANNEL-FWD"), SPEC_FWD_V4);
      // A jump of ours found above another agent's is left there too: never moved, either way.
      await shell(t, `iptables -D FORWARD ${OUR_FORWARD} && iptables -I FORWARD 1 ${OUR_FORWARD}`);
      const repairs = traffic.health().repairs;
      await afterChecks(traffic, 2);
      assert.equal(traffic.health().repairs, repairs, "nothing to repair");
      assert.deepEqual((await order())[0], [OUR_FORWARD, CALICO_FORWARD, DOCKER_USER]);
    } finally {
      stop.abort();
      await loop;
    }
  },
);

nsTest(
  "nftables resync: a deleted rule and a deleted table come back within one period",
  async (t) => {
    const traffic = await manager(t, true);
    await traffic.apply();
    const stop = new AbortController();
    const loop = traffic.startResync(stop.signal);
    try {
      const listing = JSON.parse(
        await t.inNode(["nft", "-a", "-j", "list", "chain", "ip", "flannel-ipv4", "postrtg"]),
      ) as {
        nftables: Array<{ rule?: { handle: number } }>;
      };
      const handles = listing.nftables.flatMap((i) => (i.rule ? [i.rule.handle] : []));
      await shell(t, `nft delete rule ip flannel-ipv4 postrtg handle ${handles[3]}`);
      await t.inNode(["nft", "delete", "table", "ip6", "flannel-ipv6"]);
      assert.equal((await nftChainRules(t.inNode, 4, "postrtg")).length, 5);
      const tookMs = await waitFor(
        3000,
        async () =>
          sameList(await nftChainRules(t.inNode, 4, "postrtg"), SPEC_NFT_POSTRTG_V4) &&
          (await nftChainRules(t.inNode, 6, "postrtg")).length === 6,
      );
      console.log(`nftables drift repaired after ${Math.round(tookMs)} ms (period 1 s)`);
      assert.ok(traffic.health().repairs >= 1);
      assert.equal(traffic.health().engine, "nftables");
    } finally {
      stop.abort();
      await loop;
    }
  },
);

nsTest("engine switch removes the other engine's state; cleanup leaves no trace", async (t) => {
  await t.inNode(["iptables", "-A", "FORWARD", "-s", "192.0.2.9/32", "-j", "ACCEPT"]); // foreign
  const ipt = await manager(t, false);
  await ipt.apply();
  const nft = await manager(t, true);
  await nft.apply();
  // quirk 25 fixed: jumps deleted first, FLANNEL-FWD removed from the filter table
  const afterSwitch = await iptablesState(t.inNode);
  assert.equal(afterSwitch.chains("nat").includes("FLANNEL-POSTRTG"), false);
  assert.equal(afterSwitch.chains("filter").includes("FLANNEL-FWD"), false);
  assert.deepEqual(afterSwitch.rules("filter", "FORWARD"), ["-s 192.0.2.9/32 -j ACCEPT"]);
  assert.equal((await t.inNode(["ip6tables-save"])).includes("FLANNEL"), false);
  assert.deepEqual((await nftTables(t.inNode)).filter((n) => n.includes("flannel")).sort(), [
    "ip flannel-ipv4",
    "ip6 flannel-ipv6",
  ]);

  await ipt.apply();
  assert.deepEqual((await nftTables(t.inNode)).filter((n) => n.includes("flannel")), []);
  assert.deepEqual((await iptablesState(t.inNode)).rules("filter", "FLANNEL-FWD"), SPEC_FWD_V4);

  // Both engines' state at once (as after a crash mid-switch): cleanup removes all of it.
  await (await createNftEngine(t.inNode)).reconcile(nft.rules);
  assert.equal((await nftTables(t.inNode)).filter((n) => n.includes("flannel")).length, 2);
  await ipt.cleanup();
  assert.equal((await t.inNode(["iptables-save"])).includes("FLANNEL"), false);
  assert.equal((await t.inNode(["ip6tables-save"])).includes("FLANNEL"), false);
  assert.equal(
    await t.inNode(["nft", "list", "ruleset"]).then((r) => r.includes("flannel")),
    false,
  );
  assert.deepEqual((await iptablesState(t.inNode)).rules("filter", "FORWARD"), [
    "-s 192.0.2.9/32 -j ACCEPT",
  ]);
});

nsTest(
  "recycling: a new network/subnet replaces the previous masquerade rules (both engines)",
  async (t) => {
    for (const nft of [false, true]) {
      await (await manager(t, nft)).apply();
      const next = await manager(t, nft, ["10.245.0.0/16", "10.245.3.0/24"]);
      await next.apply();
      const dump = nft
        ? await t.inNode(["nft", "list", "ruleset"])
        : await t.inNode(["iptables-save"]);
      assert.equal(
        dump.includes("10.244.0.0/16"),
        false,
        "no rule of the previous network survives",
      );
      assert.ok(dump.includes("10.245.3.0/24"));
    }
  },
);
