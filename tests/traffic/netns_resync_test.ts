/**
 * Real-kernel tests of both engines inside throw-away network namespaces (topology in
 * netns_topology.ts): resync after tampering, other agents' rules, engine switches, recycling.
 */
import assert from "node:assert/strict";
import { waitFor } from "../helpers/leases.ts";
import { type TrafficManager } from "../../traffic/manager.ts";
import { createNftEngine } from "../../traffic/nftables.ts";
import { SPEC_FWD_V4, SPEC_NFT_POSTRTG_V4 } from "./family_rules.ts";

import {
  iptablesState,
  manager,
  nftChainRules,
  nftTables,
  nsTest,
  sameList,
  shell,
} from "./netns_topology.ts";

async function afterChecks(traffic: TrafficManager, count: number): Promise<void> {
  let seen = traffic.health().lastCheck?.getTime();
  for (let left = count; left > 0;) {
    await waitFor("a rule check", () => traffic.health().lastCheck?.getTime() !== seen, 5000, 100);
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
      await waitFor("a repair", () => traffic.health().repairs >= 1, 5000, 100);
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
        "the nftables drift repaired",
        async () =>
          sameList(await nftChainRules(t.inNode, 4, "postrtg"), SPEC_NFT_POSTRTG_V4) &&
          (await nftChainRules(t.inNode, 6, "postrtg")).length === 6,
        3000,
        100,
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
