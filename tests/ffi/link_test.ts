import assert from "node:assert/strict";
import {
  addLink,
  deleteLink,
  getLink,
  type Link,
  listLinks,
  setLinkDown,
  setLinkMac,
  setLinkMaster,
  setLinkMtu,
  setLinkNetns,
  setLinkUp,
} from "../../ffi/netlink/link.ts";
import { NetlinkError, withNetlink } from "../../ffi/netlink/socket.ts";
import { openNetns } from "../../ffi/netns.ts";
import { closeFd } from "../../ffi/libc.ts";
import { formatAddr, parseAddr } from "../../ip/mod.ts";
import { ipJson, rootTest, run, withNetns, withNetnsSet } from "../helpers/netns.ts";

interface IpLink {
  ifindex: number;
  ifname: string;
  mtu: number;
  address?: string;
  flags: string[];
  operstate: string;
  master?: string;
  link?: string;
  linkinfo?: { info_kind?: string; info_data?: Record<string, unknown> };
}

/** Check our listing against `ip -d -j link show`, field by field, in both directions. */
async function assertMatchesIp(ns: string, ours: Link[]): Promise<void> {
  const theirs = await ipJson<IpLink[]>(ns, ["-d", "link", "show"]);
  assert.deepStrictEqual(ours.map((l) => l.index).sort(), theirs.map((l) => l.ifindex).sort());
  const nameOf = new Map(theirs.map((l) => [l.ifindex, l.ifname]));
  for (const ip of theirs) {
    const link = ours.find((l) => l.index === ip.ifindex)!;
    const what = `${ip.ifname}: `;
    assert.equal(link.name, ip.ifname, what + "name");
    assert.equal(link.mtu, ip.mtu, what + "mtu");
    assert.equal(link.mac, ip.address, what + "mac");
    assert.equal(link.operState, ip.operstate, what + "operstate");
    assert.equal(link.up, ip.flags.includes("UP"), what + "up");
    assert.equal(link.masterIndex && nameOf.get(link.masterIndex), ip.master, what + "master");
    assert.equal(link.kind, ip.linkinfo?.info_kind, what + "kind");
    if (ip.linkinfo?.info_kind === "vxlan") {
      const d = ip.linkinfo.info_data!;
      const v = link.vxlan!;
      assert.equal(v.vni, d.id, what + "vni");
      assert.equal(v.local && formatAddr(v.local), d.local ?? d.local6, what + "local");
      assert.equal(v.group && formatAddr(v.group), d.group ?? d.group6, what + "group");
      assert.equal(v.underlayIndex && nameOf.get(v.underlayIndex), d.link, what + "dev");
      assert.equal(v.port, d.port, what + "port");
      assert.equal(v.learning, d.learning, what + "learning");
      assert.equal(v.gbp, d.gbp === true, what + "gbp");
      assert.equal(v.l2miss, d.l2miss === true, what + "l2miss");
      assert.equal(v.udpCsum, d.udp_csum, what + "udp_csum");
      assert.equal(v.udp6ZeroCsumTx, d.udp_zero_csum6_tx, what + "udp6zerocsumtx");
      assert.equal(v.udp6ZeroCsumRx, d.udp_zero_csum6_rx, what + "udp6zerocsumrx");
      assert.equal(v.ttl, d.ttl, what + "ttl");
      assert.equal(v.tos ?? 0, d.tos === undefined ? 0 : parseInt(String(d.tos), 16), what + "tos");
      assert.equal(v.ageing, d.ageing, what + "ageing");
    }
    if (ip.linkinfo?.info_kind === "tun") {
      const d = ip.linkinfo.info_data!;
      const t = link.tun!;
      assert.deepStrictEqual(
        [t.type, t.pi, t.vnetHdr, t.multiQueue, t.persist],
        [d.type, d.pi, d.vnet_hdr, d.multi_queue, d.persist],
        what + "tun info",
      );
    }
  }
}

rootTest("link: vxlan/veth/bridge we create are what ip sees", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const veth = addLink(h, {
        kind: "veth",
        name: "ve0",
        mtu: 1500,
        mac: "0A:58:00:00:00:01",
        peer: { name: "ve1", mac: "0a:58:00:00:00:02" },
      });
      assert.equal(veth.kind, "veth");
      assert.equal(veth.mac, "0a:58:00:00:00:01");
      const bridge = addLink(h, { kind: "bridge", name: "br0", up: true });
      // Flannel's device: VNI 1, port 8472, nolearning, local = public IP, dev = underlay.
      const vx = addLink(h, {
        kind: "vxlan",
        name: "flannel.1",
        mtu: 1450,
        mac: "0e:00:00:00:00:01",
        vxlan: {
          vni: 1,
          port: 8472,
          learning: false,
          local: parseAddr("198.18.0.1"),
          underlayIndex: veth.index,
        },
      });
      assert.deepStrictEqual(
        [vx.vxlan?.vni, vx.vxlan?.port, vx.vxlan?.learning, vx.vxlan?.underlayIndex],
        [1, 8472, false, veth.index],
      );
      const gbp = addLink(h, {
        kind: "vxlan",
        name: "vx-gbp",
        vxlan: { vni: 7, learning: true, gbp: true, udpCsum: false, ttl: 9, tos: 16 },
      });
      assert.equal(gbp.vxlan?.port, 8472, "kernel default port when none is given");
      const ours = listLinks(h);
      await assertMatchesIp(ns, ours);
      const [ip] = await ipJson<IpLink[]>(ns, ["-d", "link", "show", "flannel.1"]);
      assert.deepStrictEqual(
        [ip.mtu, ip.address, ip.linkinfo?.info_data?.id, ip.linkinfo?.info_data?.port],
        [1450, "0e:00:00:00:00:01", 1, 8472],
      );
      assert.equal(ip.linkinfo?.info_data?.learning, false);
      assert.equal(ip.linkinfo?.info_data?.local, "198.18.0.1");
      assert.equal(ip.linkinfo?.info_data?.link, "ve0");
      const [g] = await ipJson<IpLink[]>(ns, ["-d", "link", "show", "vx-gbp"]);
      assert.equal(g.linkinfo?.info_data?.gbp, true);
      assert.equal(g.linkinfo?.info_data?.udp_csum, false);
      assert.equal(bridge.up, true);
      assert.ok((await ipJson<IpLink[]>(ns, ["link", "show", "br0"]))[0].flags.includes("UP"));
    });
  });
});

rootTest(
  "link: what ip creates, we list identically (incl. vxlan v6, tun, bridge port)",
  async () => {
    await withNetns(async (ns) => {
      const ip = (...args: string[]) => run(["ip", "-n", ns, ...args]);
      await ip("link", "add", "ve0", "mtu", "9000", "type", "veth", "peer", "name", "ve1");
      await ip("link", "add", "br0", "type", "bridge");
      await ip("link", "set", "ve1", "master", "br0");
      await ip("link", "set", "br0", "up");
      await ip("link", "set", "ve0", "up");
      await ip(
        ..."link add vx6 type vxlan id 42 local 2001:db8::1 dstport 4789 group ff05::100 dev ve0"
          .split(" "),
        ..."ttl 10 tos 0x10 udp6zerocsumtx udp6zerocsumrx l2miss".split(" "),
      );
      await ip(..."link add vx4 type vxlan id 16777215 local 198.18.0.9 nolearning gbp".split(" "));
      await ip(..."tuntap add dev tt0 mode tun multi_queue vnet_hdr".split(" "));
      await withNetlink({ netns: ns }, async (h) => {
        const ours = listLinks(h);
        await assertMatchesIp(ns, ours);
        const vx6 = ours.find((l) => l.name === "vx6")!;
        assert.equal(vx6.vxlan?.vni, 42);
        assert.equal(vx6.vxlan?.local && formatAddr(vx6.vxlan.local), "2001:db8::1");
        assert.equal(ours.find((l) => l.name === "vx4")?.vxlan?.vni, 16777215);
        const tun = ours.find((l) => l.name === "tt0")!;
        assert.deepStrictEqual(tun.tun, {
          type: "tun",
          pi: false,
          vnetHdr: true,
          persist: true,
          multiQueue: true,
          queues: 0,
        });
        const ve1 = ours.find((l) => l.name === "ve1")!;
        assert.equal(ve1.masterIndex, ours.find((l) => l.name === "br0")!.index);
        assert.equal(ve1.parentIndex, ours.find((l) => l.name === "ve0")!.index);
      });
    });
  },
);

rootTest("link: up/down, MTU, MAC, master, lookups and typed errors", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" } });
      const br = addLink(h, { kind: "bridge", name: "br0" });
      setLinkUp(h, ve0.index);
      setLinkUp(h, "ve1");
      setLinkMtu(h, "ve0", 1280);
      setLinkMac(h, ve0.index, "02:11:22:33:44:55");
      setLinkMaster(h, "ve1", br.index);
      let [ip] = await ipJson<IpLink[]>(ns, ["link", "show", "ve0"]);
      assert.ok(ip.flags.includes("UP"));
      assert.equal(ip.mtu, 1280);
      assert.equal(ip.address, "02:11:22:33:44:55");
      assert.equal((await ipJson<IpLink[]>(ns, ["link", "show", "ve1"]))[0].master, "br0");
      setLinkDown(h, "ve0");
      setLinkMaster(h, "ve1", 0);
      [ip] = await ipJson<IpLink[]>(ns, ["link", "show", "ve0"]);
      assert.ok(!ip.flags.includes("UP"));
      assert.equal((await ipJson<IpLink[]>(ns, ["link", "show", "ve1"]))[0].master, undefined);
      assert.equal(getLink(h, ve0.index)?.name, "ve0");
      assert.equal(getLink(h, "ve0")?.index, ve0.index);
      assert.equal(getLink(h, "nope0"), undefined);
      assert.equal(getLink(h, 99999), undefined);
      assert.throws(
        () => addLink(h, { kind: "bridge", name: "br0" }),
        (e: unknown) => e instanceof NetlinkError && e.code === "EEXIST",
      );
      assert.throws(() => deleteLink(h, "nope0"), { name: "NetlinkError", code: "ENODEV" });
      assert.throws(() => setLinkMtu(h, "ve0", 10), { name: "NetlinkError", code: "EINVAL" });
      deleteLink(h, "br0");
      deleteLink(h, ve0.index);
      const left = await ipJson<IpLink[]>(ns, ["link", "show"]);
      assert.deepStrictEqual(left.map((l) => l.ifname), ["lo"]);
      assert.deepStrictEqual(listLinks(h).map((l) => l.name), ["lo"]);
    });
  });
});

rootTest("link: veth peer created in, and links moved to, another namespace", async () => {
  await withNetnsSet(3, async ([a, b, c]) => {
    await withNetlink({ netns: a }, (h) => {
      addLink(h, { kind: "veth", name: "to-b", peer: { name: "from-a", netns: b } });
      const fd = openNetns(c);
      try {
        addLink(h, { kind: "veth", name: "to-c", peer: { name: "from-a", netns: fd } });
      } finally {
        closeFd(fd);
      }
      addLink(h, { kind: "veth", name: "mover", peer: { name: "stay" } });
      setLinkNetns(h, "mover", b);
    });
    const names = async (ns: string) =>
      (await ipJson<IpLink[]>(ns, ["link", "show"])).map((l) => l.ifname).sort();
    assert.deepStrictEqual(await names(a), ["lo", "stay", "to-b", "to-c"]);
    assert.deepStrictEqual(await names(b), ["from-a", "lo", "mover"]);
    assert.deepStrictEqual(await names(c), ["from-a", "lo"]);
    await withNetlink({ netns: a }, (h) => {
      const toB = getLink(h, "to-b")!;
      assert.ok(toB.linkNetnsId !== undefined, "a cross-namespace peer carries a netns id");
    });
  });
});

rootTest(
  "link: dummy is encoded and refused by this kernel (or created if it has it)",
  async () => {
    await withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ipCan = (await run(["ip", "-n", ns, "link", "add", "d1", "type", "dummy"], {
          allowFail: true,
        })).code === 0;
        if (ipCan) {
          assert.equal(addLink(h, { kind: "dummy", name: "d0" }).kind, "dummy");
        } else {
          assert.throws(() => addLink(h, { kind: "dummy", name: "d0" }), { code: "EOPNOTSUPP" });
        }
      });
    });
  },
);
