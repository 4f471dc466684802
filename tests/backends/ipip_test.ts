/**
 * The ipip backend (spec §6.5, §12 items 23, 35). This kernel has no ipip module, so what runs
 * here is the pure part (options, the per-peer route) and the start-up errors; the device test
 * runs only on a kernel that has the module (ignored here as UNVERIFIED).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { BackendError } from "../../backends/backend.ts";
import { IPIP_DEVICE, ipipBackend, ipipPeerObjects } from "../../backends/ipip.ts";
import { addLink } from "../../ffi/netlink/link.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import {
  addrEqual,
  formatAddr,
  type IPAddr,
  ipv4,
  makeNet,
  parseAddr,
  parseNet,
} from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { ipJson, linkKindTest, rootTest, withNetns } from "../helpers/netns.ts";
import { backendContext, networkConfig, OWN_SUBNET } from "./backend_context.ts";

const DEVICES = { tunnelIndex: 9, externalIndex: 2 };

function peer(subnet: string, publicIP: string, backendType?: string): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: { publicIP: parseAddr(publicIP), ...(backendType && { backendType }) },
  };
}

Deno.test("ipip peer: S via P dev flannel.ipip onlink, or the external device when direct", () => {
  const p = peer("10.244.3.0/24", "198.18.0.12", "ipip");
  assert.deepEqual(ipipPeerObjects(p, DEVICES, () => false), {
    routes: [{ dst: p.subnet, gateway: p.attrs.publicIP, oif: 9, onlink: true }],
    neighs: [],
    fdb: [],
  });
  const direct = ipipPeerObjects(p, DEVICES, () => true);
  assert.equal(direct?.routes[0].oif, 2);
  assert.equal(direct?.routes[0].onlink, true);
});

Deno.test("ipip peer: leases of other backend types are ignored (§12 item 35)", () => {
  for (const type of ["vxlan", "host-gw", "IPIP", undefined]) {
    assert.equal(
      ipipPeerObjects(peer("10.244.3.0/24", "1.2.3.4", type), DEVICES, () => false),
      undefined,
    );
  }
});

Deno.test("ipip peer: property — one route for the peer's subnet via its public IP", () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 8, max: 30 }),
    fc.integer({ min: 1, max: 0xfffffffe }),
    fc.boolean(),
    (base, len, gateway, direct) => {
      const lease: Lease = {
        subnet: makeNet(ipv4(base), len),
        attrs: { publicIP: ipv4(gateway), backendType: "ipip" },
      };
      let asked: IPAddr | undefined;
      const objects = ipipPeerObjects(lease, DEVICES, (a) => (asked = a, direct))!;
      const [route] = objects.routes;
      return objects.routes.length === 1 && objects.neighs.length === 0 &&
        route.dst === lease.subnet && addrEqual(route.gateway!, ipv4(gateway)) &&
        addrEqual(asked!, ipv4(gateway)) && route.onlink === true &&
        route.oif === (direct ? DEVICES.externalIndex : DEVICES.tunnelIndex);
    },
  ));
});

rootTest(
  "ipip start-up: a non-ipip device named flannel.ipip is fatal, before any lease",
  () =>
    withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ctx = backendContext(h, networkConfig("ipip"));
        addLink(h, { kind: "veth", name: IPIP_DEVICE, peer: { name: "other" } });
        await assert.rejects(ipipBackend.register(ctx), (err: Error) => {
          assert.ok(err instanceof BackendError);
          assert.match(err.message, /flannel\.ipip exists but is a veth device, not ipip/);
          return true;
        });
        assert.deepEqual(ctx.manager.published, []);
      });
    }),
);

rootTest("ipip start-up: IPv6 networks are refused", () =>
  withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const config = networkConfig("ipip");
      const ctx = backendContext(h, { ...config, ipv6: { ...config.ipv4!, subnetLen: 64 } });
      await assert.rejects(ipipBackend.register(ctx), /ipip carries IPv4 only/);
    });
  }));

await linkKindTest(
  "ipip",
  "missing",
  "ipip start-up without the kernel module: a clear error naming it, nothing published",
  () =>
    withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ctx = backendContext(h, networkConfig("ipip"));
        const err = await ipipBackend.register(ctx).then(() => undefined, (e) => e);
        assert.ok(err instanceof BackendError, String(err));
        assert.match(
          err.message,
          /the kernel has no ipip module: creating flannel\.ipip .*EOPNOTSUPP/,
        );
        assert.deepEqual(ctx.manager.published, []);
      });
    }),
);

await linkKindTest(
  "ipip",
  "present",
  "ipip start-up with the kernel module: the device, its MTU, address and lease are right",
  () =>
    withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ctx = backendContext(h, networkConfig("ipip"));
        const network = await ipipBackend.register(ctx);
        const [dev] = await ipJson<
          {
            mtu: number;
            linkinfo: { info_kind: string; info_data: { local?: string; remote?: string } };
          }[]
        >(ns, ["-d", "link", "show", IPIP_DEVICE]);
        assert.equal(dev.linkinfo.info_kind, "ipip");
        assert.equal(dev.linkinfo.info_data.local, "198.18.0.11");
        assert.equal(dev.mtu, 1480);
        assert.equal(network.mtu, 1480);
        assert.equal(ctx.manager.published[0].backendType, "ipip");
        assert.equal(formatAddr(ctx.manager.published[0].publicIP), "198.18.0.11");
        const addrs = await ipJson<{ addr_info: { local: string; prefixlen: number }[] }[]>(
          ns,
          ["-4", "addr", "show", "dev", IPIP_DEVICE],
        );
        assert.deepEqual(addrs[0].addr_info.map((a) => `${a.local}/${a.prefixlen}`), [
          OWN_SUBNET.replace("/24", "/32"),
        ]);
      });
    }),
);
