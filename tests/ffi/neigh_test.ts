import assert from "node:assert/strict";
import { NTF_SELF, NUD_NOARP, NUD_PERMANENT, NUD_STALE } from "../../ffi/netlink/constants.ts";
import { addLink } from "../../ffi/netlink/link.ts";
import {
  addNeigh,
  deleteFdb,
  deleteNeigh,
  type FdbEntry,
  fdbRequest,
  listFdb,
  listNeighs,
  type Neigh,
  replaceFdb,
  replaceNeigh,
} from "../../ffi/netlink/neigh.ts";
import { execute, withNetlink } from "../../ffi/netlink/socket.ts";
import { formatAddr, parseAddr } from "../../ip/mod.ts";
import { bridgeJson, ipJson, rootTest, run, withNetns } from "../helpers/netns.ts";

async function indexByName(ns: string): Promise<Map<string, number>> {
  const links = await ipJson<{ ifindex: number; ifname: string }[]>(ns, ["link", "show"]);
  return new Map(links.map((l) => [l.ifname, l.ifindex]));
}

async function ipNeighView(ns: string): Promise<string[]> {
  const index = await indexByName(ns);
  const entries = await ipJson<{ dst: string; dev: string; lladdr?: string; state: string[] }[]>(
    ns,
    ["neigh", "show"],
  );
  return entries.map((n) => `${index.get(n.dev)} ${n.dst} ${n.lladdr ?? "-"} ${n.state.join(",")}`)
    .sort();
}

const NUD_NAMES: [number, string][] = [[NUD_PERMANENT, "PERMANENT"], [NUD_STALE, "STALE"], [
  NUD_NOARP,
  "NOARP",
]];

function ourNeighView(neighs: Neigh[]): string[] {
  return neighs.map((n) => {
    const state = NUD_NAMES.filter(([bit]) => n.state & bit).map(([, name]) => name).join(",");
    return `${n.index} ${formatAddr(n.ip)} ${n.mac ?? "-"} ${state}`;
  }).sort();
}

interface BridgeFdb {
  mac: string;
  ifname: string;
  dst?: string;
  vni?: number;
  port?: number;
  master?: string;
  flags: string[];
  state: string;
}

async function bridgeView(ns: string): Promise<string[]> {
  const index = await indexByName(ns);
  const entries = await bridgeJson<BridgeFdb[]>(ns, ["fdb", "show"]);
  return entries.map((e) =>
    [
      index.get(e.ifname),
      e.mac,
      e.dst ?? "-",
      e.vni ?? "-",
      e.port ?? "-",
      e.master ? index.get(e.master) : "-",
      e.flags.includes("self"),
      e.state,
    ].join(" ")
  ).sort();
}

function fdbState(state: number): string {
  if (state & NUD_PERMANENT) return "permanent";
  if (state & NUD_NOARP) return "static";
  if (state & NUD_STALE) return "stale";
  return "";
}

function ourFdbView(entries: FdbEntry[]): string[] {
  return entries.map((e) =>
    [
      e.index,
      e.mac,
      e.dst ? formatAddr(e.dst) : "-",
      e.vni ?? "-",
      e.port ?? "-",
      e.master ?? "-",
      (e.flags & NTF_SELF) !== 0,
      fdbState(e.state),
    ].join(" ")
  ).sort();
}

rootTest("neigh: permanent v4/v6 entries, ours and ip's, listed identically", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" } });
      addNeigh(h, { index: ve0.index, ip: parseAddr("10.244.2.0"), mac: "0a:58:0a:f4:02:00" });
      replaceNeigh(h, { index: ve0.index, ip: parseAddr("fd00::2"), mac: "0a:58:0a:f4:02:01" });
      const ip = (...args: string[]) => run(["ip", "-n", ns, ...args]);
      await ip(..."neigh add 10.0.0.9 lladdr 0a:00:00:00:00:01 dev ve1".split(" "));
      await ip(..."neigh add 2001:db8::9 lladdr 0a:00:00:00:00:02 dev ve1 nud stale".split(" "));
      assert.deepStrictEqual(ourNeighView(listNeighs(h)), await ipNeighView(ns));
      assert.equal(listNeighs(h, { family: 6 }).length, 2);
      assert.equal(listNeighs(h, { index: ve0.index }).length, 2);
      const [mine] = await ipJson<{ lladdr: string; state: string[] }[]>(
        ns,
        ["neigh", "show", "10.244.2.0", "dev", "ve0"],
      );
      assert.deepStrictEqual(mine, {
        dst: "10.244.2.0",
        lladdr: "0a:58:0a:f4:02:00",
        state: ["PERMANENT"],
      });
    });
  });
});

rootTest("neigh: replace overwrites, add is exclusive, delete removes (typed errors)", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" } });
      const spec = { index: ve0.index, ip: parseAddr("10.244.3.0"), mac: "0a:00:00:00:00:01" };
      addNeigh(h, spec);
      assert.throws(() => addNeigh(h, spec), { name: "NetlinkError", code: "EEXIST" });
      replaceNeigh(h, { ...spec, mac: "0a:00:00:00:00:02" });
      assert.deepStrictEqual(await ipNeighView(ns), [
        `${ve0.index} 10.244.3.0 0a:00:00:00:00:02 PERMANENT`,
      ]);
      deleteNeigh(h, spec);
      assert.throws(() => deleteNeigh(h, spec), { name: "NetlinkError", code: "ENOENT" });
      assert.deepStrictEqual(await ipNeighView(ns), []);
    });
  });
});

rootTest("fdb: vxlan self entries with dst/vni/port and bridge entries, both ways", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" } });
      const br = addLink(h, { kind: "bridge", name: "br0" });
      await run(["ip", "-n", ns, "link", "set", "ve1", "master", "br0"]);
      const vx = addLink(h, {
        kind: "vxlan",
        name: "vx0",
        up: true,
        vxlan: { vni: 5, port: 8472, local: parseAddr("198.18.0.1") },
      });
      replaceFdb(h, { index: vx.index, mac: "0a:58:0a:f4:02:00", dst: parseAddr("198.18.0.2") });
      replaceFdb(h, {
        index: vx.index,
        mac: "0a:58:0a:f4:03:00",
        dst: parseAddr("198.18.0.3"),
        vni: 77,
        port: 4789,
      });
      const b = (...args: string[]) => run(["bridge", "-n", ns, ...args]);
      await b(..."fdb append 00:00:00:00:00:00 dev vx0 dst 198.18.0.5".split(" "));
      await b(..."fdb add 0a:00:00:00:00:0a dev ve1 master static".split(" "));
      assert.deepStrictEqual(ourFdbView(listFdb(h)), await bridgeView(ns));
      const flood = { index: vx.index, mac: "00:00:00:00:00:00" };
      execute(h, fdbRequest("append", { ...flood, dst: parseAddr("198.18.0.6") }));
      assert.equal(listFdb(h, { index: vx.index }).filter((e) => e.mac === flood.mac).length, 2);
      // Deleting with a dst removes only that remote.
      deleteFdb(h, { ...flood, dst: parseAddr("198.18.0.5") });
      const left = listFdb(h, { index: vx.index }).filter((e) => e.mac === flood.mac);
      assert.deepStrictEqual(left.map((e) => e.dst && formatAddr(e.dst)), ["198.18.0.6"]);
      const bridgePort = listFdb(h).find((e) => e.mac === "0a:00:00:00:00:0a");
      assert.equal(bridgePort?.master, br.index);
      assert.deepStrictEqual(ourFdbView(listFdb(h)), await bridgeView(ns));
      deleteFdb(h, { index: vx.index, mac: "0a:58:0a:f4:02:00", dst: parseAddr("198.18.0.2") });
      assert.throws(
        () => deleteFdb(h, { index: vx.index, mac: "0a:58:0a:f4:02:00" }),
        { name: "NetlinkError", code: "ENOENT" },
      );
      const after = await bridgeJson<BridgeFdb[]>(ns, ["fdb", "show", "dev", "vx0"]);
      assert.ok(!after.some((e) => e.mac === "0a:58:0a:f4:02:00"));
    });
  });
});
