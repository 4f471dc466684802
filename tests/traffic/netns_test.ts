/**
 * Real-kernel tests of both engines inside throw-away network namespaces (topology in
 * netns_topology.ts): the rules each engine writes and the traffic they make.
 */
import assert from "node:assert/strict";
import { waitFor } from "../helpers/leases.ts";
import {
  SPEC_FWD_V4,
  SPEC_MASQ_V4,
  SPEC_MASQ_V6_TAIL,
  SPEC_NFT_POSTRTG_V4,
} from "./family_rules.ts";

import {
  assertMasqueradeTraffic,
  iptablesState,
  manager,
  nftChainRules,
  nftTables,
  nsTest,
  sameList,
  shell,
} from "./netns_topology.ts";

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
      const tookMs = await waitFor(
        "the iptables drift repaired",
        async () => {
          const v4 = await iptablesState(t.inNode);
          const v6 = await iptablesState(t.inNode, "ip6tables-save");
          return sameList(v4.rules("nat", "FLANNEL-POSTRTG"), SPEC_MASQ_V4) &&
            v4.rules("filter", "FORWARD").length === 1 &&
            v6.rules("nat", "FLANNEL-POSTRTG").length === 6;
        },
        3000,
        100,
      );
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
