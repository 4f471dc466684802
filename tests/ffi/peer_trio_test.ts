/**
 * The per-peer state of flannel's vxlan backend (spec §6.2): neighbour + FDB + onlink route,
 * programmed with our netlink and checked with the kernel's own tools, then removed. Also the
 * pipelined form that the backend uses for thousands of peers, and real traffic across it.
 */
import assert from "node:assert/strict";
import { addAddr } from "../../ffi/netlink/addr.ts";
import { addLink, type Link } from "../../ffi/netlink/link.ts";
import {
  deleteFdb,
  deleteNeigh,
  fdbRequest,
  neighRequest,
  replaceFdb,
  replaceNeigh,
} from "../../ffi/netlink/neigh.ts";
import { deleteRoute, replaceRoute, routeRequest } from "../../ffi/netlink/route.ts";
import { type NetlinkHandle, withNetlink } from "../../ffi/netlink/socket.ts";
import { type IPAddr, type IPNet, parseAddr, parseNet } from "../../ip/mod.ts";
import { bridgeJson, ipJson, nsExec, rootTest, withNetnsSet } from "../helpers/netns.ts";
import { executeBatch } from "../../ffi/netlink/batch.ts";

interface Peer {
  subnet: IPNet;
  gateway: IPAddr;
  publicIp: IPAddr;
  mac: string;
}

/** Underlay veth (198.18.0.x/24) and flannel.1 on top, like the backend sets up a node. */
function node(h: NetlinkHandle, n: number, peerNetns?: string): Link {
  const underlay = peerNetns
    ? addLink(h, {
      kind: "veth",
      name: "eth-u",
      up: true,
      peer: { name: "eth-u", netns: peerNetns },
    })
    : addLink(h, { kind: "veth", name: "eth-u", up: true, peer: { name: "eth-x" } });
  addAddr(h, { index: underlay.index, address: parseAddr(`198.18.0.${n}`), prefix: 24 });
  const vx = addLink(h, {
    kind: "vxlan",
    name: "flannel.1",
    mtu: 1450,
    mac: `0e:00:00:00:00:0${n}`,
    up: true,
    vxlan: {
      vni: 1,
      port: 8472,
      learning: false,
      local: parseAddr(`198.18.0.${n}`),
      underlayIndex: underlay.index,
    },
  });
  addAddr(h, { index: vx.index, address: parseAddr(`10.244.${n}.0`), prefix: 32 });
  return vx;
}

function trio(vx: Link, p: Peer) {
  return {
    neigh: { index: vx.index, ip: p.gateway, mac: p.mac },
    fdb: { index: vx.index, mac: p.mac, dst: p.publicIp },
    route: { dst: p.subnet, gateway: p.gateway, oif: vx.index, onlink: true },
  };
}

rootTest("vxlan per-peer trio: neigh + FDB self dst + onlink route, then deletion", async () => {
  await withNetnsSet(1, async ([ns]) => {
    await withNetlink({ netns: ns }, async (h) => {
      const vx = node(h, 1);
      const peer: Peer = {
        subnet: parseNet("10.244.2.0/24"),
        gateway: parseAddr("10.244.2.0"),
        publicIp: parseAddr("198.18.0.2"),
        mac: "0e:00:00:00:00:02",
      };
      const t = trio(vx, peer);
      for (let round = 0; round < 2; round++) { // replace is idempotent
        replaceNeigh(h, t.neigh);
        replaceFdb(h, t.fdb);
        replaceRoute(h, t.route);
      }
      // 1. 10.244.2.0 lladdr M dev flannel.1 nud permanent
      assert.deepStrictEqual(await ipJson(ns, ["neigh", "show", "dev", "flannel.1"]), [
        { dst: "10.244.2.0", lladdr: "0e:00:00:00:00:02", state: ["PERMANENT"] },
      ]);
      // 2. M dev flannel.1 dst 198.18.0.2 self permanent
      const fdb = await bridgeJson<{ mac: string }[]>(ns, ["fdb", "show", "dev", "flannel.1"]);
      assert.deepStrictEqual(fdb.filter((e) => e.mac === "0e:00:00:00:00:02"), [
        { mac: "0e:00:00:00:00:02", dst: "198.18.0.2", flags: ["self"], state: "permanent" },
      ]);
      // 3. 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink
      assert.deepStrictEqual(await ipJson(ns, ["route", "show", "10.244.2.0/24"]), [
        { dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: "flannel.1", flags: ["onlink"] },
      ]);
      deleteRoute(h, t.route);
      deleteFdb(h, t.fdb);
      deleteNeigh(h, t.neigh);
      assert.deepStrictEqual(await ipJson(ns, ["neigh", "show", "dev", "flannel.1"]), []);
      assert.deepStrictEqual(await ipJson(ns, ["route", "show", "10.244.2.0/24"]), []);
      const left = await bridgeJson<{ mac: string }[]>(ns, ["fdb", "show", "dev", "flannel.1"]);
      assert.ok(!left.some((e) => e.mac === peer.mac));
    });
  });
});

rootTest("vxlan per-peer trio: 300 peers pipelined in one batch, per-request results", async () => {
  await withNetnsSet(1, async ([ns]) => {
    await withNetlink({ netns: ns }, async (h) => {
      const vx = node(h, 1);
      const peers: Peer[] = Array.from({ length: 300 }, (_, i) => ({
        subnet: parseNet(`10.${100 + (i >> 8)}.${i & 255}.0/24`),
        gateway: parseAddr(`10.${100 + (i >> 8)}.${i & 255}.0`),
        publicIp: parseAddr(`198.18.${1 + (i >> 8)}.${i & 255}`),
        mac: `0e:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${
          (i & 255).toString(16).padStart(2, "0")
        }`,
      }));
      const requests = peers.flatMap((p) => {
        const t = trio(vx, p);
        return [
          neighRequest("replace", t.neigh),
          fdbRequest("replace", t.fdb),
          routeRequest("replace", t.route),
        ];
      });
      // One bad request in the middle must fail alone, at its own index.
      requests.splice(
        450,
        0,
        routeRequest("replace", { dst: parseNet("10.99.0.0/24"), oif: 9999 }),
      );
      const results = executeBatch(h, requests);
      assert.equal(results.length, 901);
      assert.equal(results[450]?.code, "ENODEV");
      assert.deepStrictEqual(results.filter((r) => r !== undefined).length, 1);
      const routes = await ipJson<unknown[]>(ns, ["route", "show", "dev", "flannel.1"]);
      const neighs = await ipJson<unknown[]>(ns, ["neigh", "show", "dev", "flannel.1"]);
      const fdb = await bridgeJson<{ dst?: string }[]>(ns, ["fdb", "show", "dev", "flannel.1"]);
      assert.equal(routes.length, 300);
      assert.equal(neighs.length, 300);
      assert.equal(fdb.filter((e) => e.dst !== undefined).length, 300);
      const removal = executeBatch(
        h,
        peers.flatMap((p) => {
          const t = trio(vx, p);
          return [
            routeRequest("delete", t.route),
            fdbRequest("delete", t.fdb),
            neighRequest("delete", t.neigh),
          ];
        }),
      );
      assert.ok(removal.every((r) => r === undefined), removal.find(Boolean)?.message ?? "");
      assert.deepStrictEqual(await ipJson(ns, ["route", "show", "dev", "flannel.1"]), []);
      assert.deepStrictEqual(await ipJson(ns, ["neigh", "show", "dev", "flannel.1"]), []);
    });
  });
});

rootTest(
  "vxlan per-peer trio: 10 000 peers (30 000 requests) programmed in under 10 s",
  async () => {
    await withNetnsSet(1, async ([ns]) => {
      await withNetlink({ netns: ns }, async (h) => {
        const vx = node(h, 1);
        const hex = (n: number) => n.toString(16).padStart(2, "0");
        const started = performance.now();
        const requests = [];
        for (let i = 0; i < 10_000; i++) {
          const [x, y] = [i >> 8, i & 255];
          const t = trio(vx, {
            subnet: { family: 4, base: parseAddr(`10.${100 + x}.${y}.0`).value, prefix: 24 },
            gateway: parseAddr(`10.${100 + x}.${y}.0`),
            publicIp: parseAddr(`198.18.${1 + x}.${y}`),
            mac: `0e:00:00:00:${hex(x)}:${hex(y)}`,
          });
          requests.push(
            neighRequest("replace", t.neigh),
            fdbRequest("replace", t.fdb),
            routeRequest("replace", t.route),
          );
        }
        const results = executeBatch(h, requests);
        const elapsed = performance.now() - started;
        assert.equal(results.filter((r) => r !== undefined).length, 0);
        assert.ok(elapsed < 10_000, `took ${elapsed.toFixed(0)} ms`);
        const routes = await ipJson<unknown[]>(ns, ["route", "show", "dev", "flannel.1"]);
        assert.equal(routes.length, 10_000);
        const neighs = await ipJson<unknown[]>(ns, ["neigh", "show", "dev", "flannel.1"]);
        assert.equal(neighs.length, 10_000);
      });
    });
  },
);

rootTest("vxlan per-peer trio: two nodes ping each other's pod subnet through it", async () => {
  await withNetnsSet(2, async ([a, b]) => {
    await withNetlink({ netns: a }, async (ha) => {
      await withNetlink({ netns: b }, async (hb) => {
        const vxA = node(ha, 1, b); // the veth's other end lands in b as its underlay
        const underB = (await ipJson<{ ifindex: number }[]>(b, ["link", "show", "eth-u"]))[0];
        await nsExec(b, ["ip", "addr", "add", "198.18.0.2/24", "dev", "eth-u"]);
        await nsExec(b, ["ip", "link", "set", "eth-u", "up"]);
        const vxB = addLink(hb, {
          kind: "vxlan",
          name: "flannel.1",
          mac: "0e:00:00:00:00:02",
          up: true,
          vxlan: {
            vni: 1,
            port: 8472,
            local: parseAddr("198.18.0.2"),
            underlayIndex: underB.ifindex,
          },
        });
        addAddr(hb, { index: vxB.index, address: parseAddr("10.244.2.0"), prefix: 32 });
        const toB = trio(vxA, {
          subnet: parseNet("10.244.2.0/24"),
          gateway: parseAddr("10.244.2.0"),
          publicIp: parseAddr("198.18.0.2"),
          mac: "0e:00:00:00:00:02",
        });
        const toA = trio(vxB, {
          subnet: parseNet("10.244.1.0/24"),
          gateway: parseAddr("10.244.1.0"),
          publicIp: parseAddr("198.18.0.1"),
          mac: "0e:00:00:00:00:01",
        });
        for (const [h, t] of [[ha, toB], [hb, toA]] as const) {
          const errors = executeBatch(h, [
            neighRequest("replace", t.neigh),
            fdbRequest("replace", t.fdb),
            routeRequest("replace", t.route),
          ]);
          assert.ok(errors.every((e) => e === undefined));
        }
        const ping = await nsExec(a, ["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.244.2.0"], {
          allowFail: true,
        });
        assert.equal(ping.code, 0, ping.stdout + ping.stderr);
      });
    });
  });
});
