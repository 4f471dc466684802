import assert from "node:assert/strict";
import { addAddr } from "../../ffi/netlink/addr.ts";
import {
  RT_SCOPE_LINK,
  RTN_BLACKHOLE,
  RTN_UNREACHABLE,
  RTPROT_STATIC,
} from "../../ffi/netlink/constants.ts";
import { addLink, type Link } from "../../ffi/netlink/link.ts";
import {
  addRoute,
  deleteRoute,
  getRoute,
  listRoutes,
  replaceRoute,
  type Route,
} from "../../ffi/netlink/route.ts";
import { type NetlinkHandle, withNetlink } from "../../ffi/netlink/socket.ts";
import { formatAddr, formatNet, parseAddr, parseNet } from "../../ip/mod.ts";
import { ipJson, rootTest, run, withNetns } from "../helpers/netns.ts";

interface IpRoute {
  type?: string;
  dst: string;
  gateway?: string;
  dev?: string;
  table?: string;
  protocol?: string;
  scope?: string;
  prefsrc?: string;
  metric?: number;
  flags: string[];
}

function normalizeDst(dst: string, family: 4 | 6): string {
  if (dst === "default") return family === 4 ? "0.0.0.0/0" : "::/0";
  return dst.includes("/") ? dst : `${dst}/${family === 4 ? 32 : 128}`;
}

/** ip's view (`ip -N`: numbers, defaults omitted) as one comparable line per route. */
async function ipView(ns: string): Promise<string[]> {
  const links = await ipJson<{ ifindex: number; ifname: string }[]>(ns, ["link", "show"]);
  const indexOf = new Map(links.map((l) => [l.ifname, l.ifindex]));
  const lines: string[] = [];
  for (const family of [4, 6] as const) {
    const routes = await ipJson<IpRoute[]>(ns, [
      `-${family}`,
      "-N",
      "route",
      "show",
      "table",
      "all",
    ]);
    for (const r of routes) {
      lines.push([
        family,
        r.type ?? 1,
        normalizeDst(r.dst, family),
        r.gateway ?? "-",
        r.dev ? indexOf.get(r.dev) : "-",
        r.table ?? 254,
        r.protocol ?? 3,
        r.scope ?? 0,
        r.prefsrc ?? "-",
        r.metric ?? "-",
        r.flags.includes("onlink"),
      ].join(" "));
    }
  }
  return lines.sort();
}

function ourView(routes: Route[]): string[] {
  return routes.map((r) =>
    [
      r.family,
      r.type,
      formatNet(r.dst),
      r.gateway ? formatAddr(r.gateway) : "-",
      r.oif ?? "-",
      r.table,
      r.protocol,
      r.scope,
      r.prefsrc ? formatAddr(r.prefsrc) : "-",
      r.priority ?? "-",
      r.onlink,
    ].join(" ")
  ).sort();
}

/** A namespace with an up veth pair: ve0 198.18.0.1/24 and 2001:db8::1/64. */
async function underlay(h: NetlinkHandle): Promise<Link> {
  const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" }, up: true });
  await run(["ip", "-n", h.netns!, "link", "set", "ve1", "up"]);
  addAddr(h, { index: ve0.index, address: parseAddr("198.18.0.1"), prefix: 24 });
  addAddr(h, { index: ve0.index, address: parseAddr("2001:db8::1"), prefix: 64, flags: 0x02 });
  return ve0;
}

rootTest("route: what we add, ip sees; what ip adds, we list identically", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = await underlay(h);
      addRoute(h, { dst: parseNet("10.1.0.0/16"), gateway: parseAddr("198.18.0.2") });
      addRoute(h, {
        dst: parseNet("10.4.0.0/16"),
        gateway: parseAddr("198.18.0.3"),
        oif: ve0.index,
        priority: 100,
        protocol: RTPROT_STATIC,
      });
      addRoute(h, { dst: parseNet("10.2.0.0/16"), type: RTN_BLACKHOLE });
      addRoute(h, { dst: parseNet("10.9.0.0/16"), type: RTN_UNREACHABLE });
      // udp backend style: <Network> dev flannel0, scope global; and a scope-link one with src.
      addRoute(h, { dst: parseNet("10.5.0.0/16"), oif: ve0.index });
      addRoute(h, {
        dst: parseNet("10.6.0.0/24"),
        oif: ve0.index,
        scope: RT_SCOPE_LINK,
        prefsrc: parseAddr("198.18.0.1"),
      });
      addRoute(h, {
        dst: parseNet("10.3.0.0/24"),
        gateway: parseAddr("10.3.0.0"),
        oif: ve0.index,
        onlink: true,
        table: 1000,
      });
      addRoute(h, { dst: parseNet("0.0.0.0/0"), gateway: parseAddr("198.18.0.254") });
      addRoute(h, { dst: parseNet("2001:db8:5::/64"), gateway: parseAddr("2001:db8::2") });
      addRoute(h, {
        dst: parseNet("2001:db8:6::/64"),
        gateway: parseAddr("fe80::1"),
        oif: ve0.index,
        protocol: 99,
        priority: 5,
      });
      const ip = (...args: string[]) => run(["ip", "-n", ns, ...args]);
      await ip(..."route add 10.7.0.0/16 via 198.18.0.9 metric 7 proto static".split(" "));
      await ip(..."route add 10.8.0.0/24 via 10.8.0.0 dev ve0 onlink table 2000".split(" "));
      await ip(..."route add blackhole 10.10.0.0/16 table 3".split(" "));
      await ip(..."-6 route add 2001:db8:7::/48 dev ve0 metric 9".split(" "));
      assert.deepStrictEqual(ourView(listRoutes(h)), await ipView(ns));
      const onlink = listRoutes(h, { family: 4, table: 1000 });
      assert.equal(onlink.length, 1);
      assert.equal(onlink[0].onlink, true);
      assert.equal(formatAddr(onlink[0].gateway!), "10.3.0.0");
      assert.ok(listRoutes(h, { family: 6 }).every((r) => r.family === 6));
      assert.ok(listRoutes(h, { oif: ve0.index }).every((r) => r.oif === ve0.index));
      assert.equal(listRoutes(h, { table: 3 })[0].type, RTN_BLACKHOLE);
    });
  });
});

rootTest("route: add is exclusive, replace updates, delete removes (typed errors)", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = await underlay(h);
      const dst = parseNet("10.244.2.0/24");
      addRoute(h, { dst, gateway: parseAddr("198.18.0.2") });
      assert.throws(() => addRoute(h, { dst, gateway: parseAddr("198.18.0.2") }), {
        name: "NetlinkError",
        code: "EEXIST",
      });
      replaceRoute(h, { dst, gateway: parseAddr("198.18.0.3"), oif: ve0.index });
      replaceRoute(h, { dst, gateway: parseAddr("198.18.0.3"), oif: ve0.index });
      let mine = await ipJson<IpRoute[]>(ns, ["route", "show", "10.244.2.0/24"]);
      assert.equal(mine.length, 1);
      assert.equal(mine[0].gateway, "198.18.0.3");
      // host-gw requires L2 adjacency: an off-link gateway is refused.
      assert.throws(() => replaceRoute(h, { dst, gateway: parseAddr("203.0.113.1") }), {
        code: "ENETUNREACH",
      });
      deleteRoute(h, { dst });
      assert.throws(() => deleteRoute(h, { dst }), { name: "NetlinkError", code: "ESRCH" });
      mine = await ipJson<IpRoute[]>(ns, ["route", "show", "10.244.2.0/24"]);
      assert.deepStrictEqual(mine, []);
      // Delete matches the given attributes only.
      replaceRoute(h, { dst, gateway: parseAddr("198.18.0.3") });
      assert.throws(() => deleteRoute(h, { dst, gateway: parseAddr("198.18.0.4") }), {
        code: "ESRCH",
      });
      deleteRoute(h, { dst, gateway: parseAddr("198.18.0.3") });
      const v6 = parseNet("2001:db8:9::/64");
      replaceRoute(h, { dst: v6, gateway: parseAddr("2001:db8::2") });
      deleteRoute(h, { dst: v6 });
      assert.deepStrictEqual(await ipJson(ns, ["-6", "route", "show", "2001:db8:9::/64"]), []);
    });
  });
});

rootTest("route: getRoute answers like `ip route get` (oif, gateway, prefsrc)", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = await underlay(h);
      replaceRoute(h, { dst: parseNet("10.1.0.0/16"), gateway: parseAddr("198.18.0.2") });
      for (const dst of ["198.18.0.7", "10.1.2.3", "2001:db8::42"]) {
        const ours = getRoute(h, parseAddr(dst));
        const [theirs] = await ipJson<IpRoute[]>(ns, ["route", "get", dst]);
        assert.equal(ours.oif, ve0.index, dst);
        assert.equal(theirs.dev, "ve0", dst);
        assert.equal(ours.gateway && formatAddr(ours.gateway), theirs.gateway, dst);
        assert.equal(ours.prefsrc && formatAddr(ours.prefsrc), theirs.prefsrc, dst);
        assert.equal(formatAddr({ family: ours.family, value: ours.dst.base }), dst);
      }
      // DirectRouting's test: a directly connected peer yields a route without gateway.
      assert.equal(getRoute(h, parseAddr("198.18.0.7")).gateway, undefined);
      assert.throws(() => getRoute(h, parseAddr("203.0.113.5")), { code: "ENETUNREACH" });
    });
  });
});
