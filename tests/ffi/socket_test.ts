import assert from "node:assert/strict";
import { addAddr } from "../../ffi/netlink/addr.ts";
import { RTM_DELLINK, RTM_NEWLINK, RTNLGRP_LINK } from "../../ffi/netlink/constants.ts";
import { addLink, linkFromMessage, listLinks } from "../../ffi/netlink/link.ts";
import { watchEvents } from "../../ffi/netlink/monitor.ts";
import { listRoutes, routeRequest } from "../../ffi/netlink/route.ts";
import {
  closeNetlink,
  NetlinkError,
  openNetlink,
  readEvents,
  withNetlink,
} from "../../ffi/netlink/socket.ts";
import { type IPNet, parseAddr } from "../../ip/mod.ts";
import { waitFor } from "../helpers/leases.ts";
import { ipJson, rootTest, run, withNetns, withNetnsSet } from "../helpers/netns.ts";
import { executeBatch } from "../../ffi/netlink/batch.ts";

function subnet(i: number): IPNet {
  return { family: 4, base: (10n << 24n) | (BigInt(i) << 8n), prefix: 24 };
}

rootTest("socket: a handle is bound to its namespace only", async () => {
  await withNetnsSet(2, async ([a, b]) => {
    await run(["ip", "-n", b, "link", "add", "only-b", "type", "veth", "peer", "name", "only-b2"]);
    await withNetlink({ netns: a }, (h) => {
      assert.ok(h.portId > 0);
      assert.deepStrictEqual(listLinks(h).map((l) => l.name), ["lo"]);
    });
    await withNetlink({ netns: b }, (h) => {
      assert.deepStrictEqual(listLinks(h).map((l) => l.name).sort(), ["lo", "only-b", "only-b2"]);
    });
  });
});

rootTest(
  "socket: refusals are NetlinkErrors with errno name, message type and extack",
  async () => {
    await withNetns(async (ns) => {
      await withNetlink({ netns: ns }, (h) => {
        try {
          addLink(h, { kind: "dummy", name: "d0" });
          assert.fail("dummy links are not supported here");
        } catch (e) {
          assert.ok(e instanceof NetlinkError);
          assert.equal(e.code, "EOPNOTSUPP");
          assert.equal(e.errno, 95);
          assert.equal(e.messageType, RTM_NEWLINK);
          assert.match(e.extAck ?? "", /device type/i);
          assert.match(e.message, /^RTM_NEWLINK: EOPNOTSUPP \(Operation not supported\)/);
        }
      });
    });
  },
);

rootTest("socket: 2000 pipelined route replaces, failures reported at their index", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" }, up: true });
      addAddr(h, { index: ve0.index, address: parseAddr("198.18.0.1"), prefix: 24 });
      const bad = new Set([0, 777, 1999]);
      const requests = Array.from({ length: 2000 }, (_, i) =>
        routeRequest("replace", {
          dst: subnet(i),
          gateway: parseAddr(bad.has(i) ? "203.0.113.1" : "198.18.0.2"),
        }));
      const results = executeBatch(h, requests);
      assert.equal(results.length, 2000);
      results.forEach((r, i) =>
        assert.equal(r?.code, bad.has(i) ? "ENETUNREACH" : undefined, `#${i}`)
      );
      const viaIp = await ipJson<unknown[]>(ns, ["route", "show", "via", "198.18.0.2"]);
      assert.equal(viaIp.length, 1997);
      assert.equal(listRoutes(h, { family: 4, table: 254, oif: ve0.index }).length, 1997 + 1);
      const removal = executeBatch(
        h,
        requests.map((_, i) => routeRequest("delete", { dst: subnet(i) })),
      );
      results.forEach((_, i) => assert.equal(removal[i]?.code, bad.has(i) ? "ESRCH" : undefined));
      assert.equal((await ipJson<unknown[]>(ns, ["route", "show", "via", "198.18.0.2"])).length, 0);
    });
  });
});

rootTest(
  "socket: a call that times out leaves the handle usable (stale replies drained)",
  async () => {
    await withNetns(async (ns) => {
      await withNetlink({ netns: ns }, (h) => {
        const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" }, up: true });
        addAddr(h, { index: ve0.index, address: parseAddr("198.18.0.1"), prefix: 24 });
        executeBatch(
          h,
          Array.from(
            { length: 1500 },
            (_, i) => routeRequest("replace", { dst: subnet(i), gateway: parseAddr("198.18.0.2") }),
          ),
        );
        h.timeoutMs = 0; // every wait now expires at once: the dump is abandoned half-read
        assert.throws(() => listRoutes(h), { name: "NetlinkError", code: "ETIMEDOUT" });
        h.timeoutMs = 5000;
        const routes = listRoutes(h, { family: 4, table: 254 });
        assert.equal(routes.length, 1501);
        assert.equal(listLinks(h).length, 3);
      });
    });
  },
);

rootTest("socket: multicast events arrive; readEvents waits at most its timeout", async () => {
  await withNetns(async (ns) => {
    const h = openNetlink({ netns: ns, groups: [RTNLGRP_LINK] });
    try {
      const started = performance.now();
      assert.deepStrictEqual(readEvents(h, 150), []);
      const waited = performance.now() - started;
      assert.ok(waited >= 140 && waited < 1000, `waited ${waited} ms`);
      await run(["ip", "-n", ns, "link", "add", "ev0", "type", "veth", "peer", "name", "ev1"]);
      const events = readEvents(h, 1000).filter((m) => m.header.type === RTM_NEWLINK);
      assert.deepStrictEqual(events.map((m) => linkFromMessage(m).name).sort(), ["ev0", "ev1"]);
    } finally {
      closeNetlink(h);
      closeNetlink(h); // idempotent
    }
    assert.throws(() => listLinks(h), /closed/);
  });
});

rootTest("monitor: watchEvents streams link deletion and stops on abort", async () => {
  await withNetns(async (ns) => {
    await run([
      "ip",
      "-n",
      ns,
      "link",
      "add",
      "flannel.1",
      "type",
      "vxlan",
      "id",
      "1",
      "dstport",
      "8472",
    ]);
    const stop = new AbortController();
    const deleted: string[] = [];
    let changesSeen = 0;
    const watching = (async () => {
      for await (const batch of watchEvents({ netns: ns, groups: [RTNLGRP_LINK] }, stop.signal)) {
        for (const m of batch) {
          if (m.header.type === RTM_NEWLINK) changesSeen++;
          if (m.header.type === RTM_DELLINK) deleted.push(linkFromMessage(m).name);
        }
        if (deleted.length > 0) stop.abort();
      }
    })();
    // The monitor is subscribed once it reports a change: make harmless ones until it does.
    let mtu = 1400;
    await waitFor("the monitor to subscribe", async () => {
      await run(["ip", "-n", ns, "link", "set", "flannel.1", "mtu", `${mtu++}`]);
      return changesSeen > 0;
    });
    await run(["ip", "-n", ns, "link", "del", "flannel.1"]);
    const timeout = setTimeout(() => stop.abort(), 5000);
    await watching;
    clearTimeout(timeout);
    assert.deepStrictEqual(deleted, ["flannel.1"]);
  });
});
