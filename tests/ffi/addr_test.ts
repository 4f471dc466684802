import assert from "node:assert/strict";
import { addAddr, type Addr, deleteAddr, listAddrs, replaceAddr } from "../../ffi/netlink/addr.ts";
import { IFA_F_NODAD, RT_SCOPE_HOST, RT_SCOPE_LINK } from "../../ffi/netlink/constants.ts";
import { addLink } from "../../ffi/netlink/link.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import { formatAddr, parseAddr } from "../../ip/mod.ts";
import { ipJson, rootTest, run, withNetns } from "../helpers/netns.ts";

interface IpAddrInfo {
  family: "inet" | "inet6";
  local: string;
  address?: string;
  prefixlen: number;
  broadcast?: string;
  scope: string;
  label?: string;
}

const SCOPES: Record<number, string> = {
  0: "global",
  [RT_SCOPE_LINK]: "link",
  [RT_SCOPE_HOST]: "host",
};

/** One comparable line per address, built from ip's view and from ours. */
async function ipView(ns: string): Promise<string[]> {
  const links = await ipJson<{ ifindex: number; addr_info: IpAddrInfo[] }[]>(ns, ["addr", "show"]);
  return links.flatMap((l) =>
    l.addr_info.map((a) =>
      [l.ifindex, a.family, a.local, a.address ?? "-", a.prefixlen, a.broadcast ?? "-", a.scope]
        .join(" ")
    )
  ).sort();
}

function ourView(addrs: Addr[]): string[] {
  return addrs.map((a) =>
    [
      a.index,
      a.family === 4 ? "inet" : "inet6",
      formatAddr(a.address),
      a.peer ? formatAddr(a.peer) : "-",
      a.prefix,
      a.broadcast ? formatAddr(a.broadcast) : "-",
      SCOPES[a.scope] ?? a.scope,
    ].join(" ")
  ).sort();
}

rootTest("addr: what we add, ip sees; what ip adds, we list identically (v4 and v6)", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" }, up: true });
      const ve1 = ve0.index - 1;
      // Ours: flannel's device address convention (network address /32) plus v6 and a peer.
      addAddr(h, { index: ve0.index, address: parseAddr("10.244.1.0"), prefix: 32 });
      addAddr(h, {
        index: ve0.index,
        address: parseAddr("198.18.0.1"),
        prefix: 24,
        broadcast: parseAddr("198.18.0.255"),
        label: "ve0:u",
      });
      addAddr(h, {
        index: ve0.index,
        address: parseAddr("fd00:0:0:22::"),
        prefix: 128,
        flags: IFA_F_NODAD,
      });
      addAddr(h, {
        index: ve0.index,
        address: parseAddr("10.0.0.1"),
        peer: parseAddr("10.0.0.2"),
        prefix: 32,
      });
      // Theirs.
      const ip = (...args: string[]) => run(["ip", "-n", ns, ...args]);
      await ip(..."addr add 198.19.0.1/16 dev ve1 scope link".split(" "));
      await ip(..."addr add 2001:db8::7/64 dev ve1 nodad".split(" "));
      await ip(..."addr add 127.0.0.2/8 dev lo".split(" "));
      assert.deepStrictEqual(ourView(listAddrs(h)), await ipView(ns));
      const labelled = listAddrs(h, { index: ve0.index, family: 4 })
        .find((a) => formatAddr(a.address) === "198.18.0.1");
      assert.equal(labelled?.label, "ve0:u");
      assert.ok(listAddrs(h, { family: 6 }).every((a) => a.family === 6));
      assert.ok(listAddrs(h, { index: ve1 }).every((a) => a.index === ve1));
      const v6 = listAddrs(h, { index: ve0.index, family: 6 })
        .find((a) => formatAddr(a.address) === "fd00:0:0:22::");
      assert.ok(v6 && v6.flags & IFA_F_NODAD);
    });
  });
});

rootTest(
  "addr: add is exclusive, replace is idempotent, delete removes (typed errors)",
  async () => {
    await withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" } });
        const spec = { index: ve0.index, address: parseAddr("10.244.7.0"), prefix: 32 };
        addAddr(h, spec);
        assert.throws(() => addAddr(h, spec), { name: "NetlinkError", code: "EEXIST" });
        replaceAddr(h, spec);
        replaceAddr(h, { ...spec, address: parseAddr("2001:db8::9"), prefix: 64 });
        assert.equal(listAddrs(h, { index: ve0.index }).filter((a) => a.family === 4).length, 1);
        deleteAddr(h, spec);
        deleteAddr(h, { ...spec, address: parseAddr("2001:db8::9"), prefix: 64 });
        assert.throws(() => deleteAddr(h, spec), { name: "NetlinkError", code: "EADDRNOTAVAIL" });
        const left = await ipView(ns);
        assert.ok(
          !left.some((l) => l.includes("10.244.7.0") || l.includes("2001:db8::9")),
          left.join(),
        );
      });
    });
  },
);
