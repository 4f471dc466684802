/**
 * What the route-based backends may touch in a real kernel (issue 18), with the lease gate
 * bypassed: the kernel port itself refuses routes outside the Network, over our own subnet, or
 * where the kernel holds someone else's route (`proto kernel`, another device's), so the
 * underlay's connected route survives a hostile lease for the underlay /24 being added and
 * removed. Resyncs of an unchanged state write nothing (no drift repairs at rest), IPv6 and
 * DirectRouting included. And the vxlan interop items: local address = public IP, 70 bytes for
 * an IPv6 underlay, FLANNEL_MTU in dual stack as flannel's.
 */
import assert from "node:assert/strict";
import type { Network } from "../../backends/backend.ts";
import { hostGwBackend } from "../../backends/hostgw.ts";
import { vxlanBackend } from "../../backends/vxlan.ts";
import { IFA_F_NODAD } from "../../ffi/netlink/constants.ts";
import { addAddr } from "../../ffi/netlink/addr.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";
import { ipJson, rootTest, run, withNetns } from "../helpers/netns.ts";
import { backendContext, fixedLeaseManager, networkConfig } from "./backend_context.ts";
import { waitFor } from "../helpers/leases.ts";

/** Short, so "at rest" means several full resyncs within a fraction of a second. */
const RESYNC_MS = 100;

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
  protocol?: string;
  type?: string;
  flags?: string[];
}

function routeText(r: IpRoute): string {
  return `${r.type && r.type !== "unicast" ? `${r.type} ` : ""}${r.dst}` +
    `${r.gateway ? ` via ${r.gateway}` : ""}${r.dev ? ` dev ${r.dev}` : ""}` +
    `${r.protocol ? ` proto ${r.protocol}` : ""}${r.flags?.includes("onlink") ? " onlink" : ""}`;
}

async function routes(ns: string, family: "-4" | "-6" = "-4"): Promise<string[]> {
  return (await ipJson<IpRoute[]>(ns, [family, "route", "show", "table", "main"]))
    .map(routeText).sort();
}

function hostGwLease(subnet: string, publicIP: string): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: { publicIP: parseAddr(publicIP), backendType: "host-gw" },
  };
}

/** Run `network` over updates pushed by the test, until the returned stop is called. */
function runNetwork(network: Network) {
  const pending: LeaseWatchUpdate[] = [];
  const controller = new AbortController();
  let wake = () => {};
  async function* updates(): AsyncIterable<LeaseWatchUpdate> {
    while (!controller.signal.aborted) {
      const next = pending.shift();
      if (next) yield next;
      else await new Promise<void>((resolve) => wake = resolve);
    }
  }
  const done = network.run(updates(), controller.signal);
  return {
    push(update: LeaseWatchUpdate) {
      pending.push(update);
      wake();
    },
    async stop() {
      controller.abort();
      wake();
      await done;
    },
  };
}

/** Wait (bounded) until `count` more reconcile passes have finished than at the call. */
async function reconciles(network: Network, count: number): Promise<void> {
  const seen = new Set<number>();
  const first = network.health().lastReconcile?.getTime();
  await waitFor(
    `${count} reconcile passes`,
    () => {
      const at = network.health().lastReconcile?.getTime();
      if (at !== undefined && at !== first) seen.add(at);
      return seen.size >= count;
    },
    5000,
    10,
  );
}

rootTest(
  "host-gw: hostile leases never touch routes Tartan does not own",
  () =>
    withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ctx = { ...backendContext(h, networkConfig("host-gw")), resyncMs: RESYNC_MS };
        // Someone else's routes inside the Network: a connected one and one on another device.
        await run(["ip", "-n", ns, "link", "add", "other0", "type", "veth", "peer", "other1"]);
        await run(["ip", "-n", ns, "link", "set", "other0", "up"]);
        await run(["ip", "-n", ns, "addr", "add", "10.244.200.1/24", "dev", "other0"]);
        await run(["ip", "-n", ns, "route", "add", "10.244.201.0/24", "dev", "other0"]);
        await run(["ip", "-n", ns, "link", "set", "ul0-peer", "up"]);
        const before = await routes(ns);
        assert.ok(before.includes("198.18.0.0/24 dev ul0 proto kernel"), before.join("\n"));

        const network = await hostGwBackend.register(ctx);
        const hostile = [
          hostGwLease("198.18.0.0/24", "198.18.0.12"), // the underlay's own /24
          hostGwLease("0.0.0.0/1", "198.18.0.12"),
          hostGwLease("10.244.0.0/16", "198.18.0.12"), // the Network itself
          hostGwLease("10.244.7.128/25", "198.18.0.12"), // half of our own subnet
          hostGwLease("10.244.200.0/24", "198.18.0.12"), // a proto kernel route is there
          hostGwLease("10.244.202.0/24", "0.0.0.0"), // no PublicIP: a direct route onto ul0
        ];
        const valid = hostGwLease("10.244.3.0/24", "198.18.0.12");
        const runner = runNetwork(network);
        try {
          runner.push({ type: "snapshot", leases: [...hostile, valid] });
          await reconciles(network, 3);
          // Another device's route, met after the first full resync: refused on the event path.
          const late = hostGwLease("10.244.201.0/24", "198.18.0.12");
          runner.push({ type: "events", events: [{ type: "added", lease: late }] });
          await reconciles(network, 3);
          const wanted = [...before, "10.244.3.0/24 via 198.18.0.12 dev ul0"].sort();
          assert.deepEqual(await routes(ns), wanted);
          const health = network.health();
          assert.equal(health.driftRepaired, 0, "refused routes are not drift repairs");
          const refused = health.peers.filter((p) => !p.inSync).map((p) => p.subnet).sort();
          assert.deepEqual(refused, [
            "0.0.0.0/1",
            "10.244.0.0/16",
            "10.244.200.0/24",
            "10.244.201.0/24",
            "10.244.202.0/24",
            "10.244.7.128/25",
            "198.18.0.0/24",
          ]);
          for (const peer of health.peers.filter((p) => !p.inSync)) {
            assert.match(peer.error ?? "", /refused/, `${peer.subnet}: ${peer.error}`);
          }
          // Removing them all deletes nothing but our own route.
          runner.push({
            type: "events",
            events: [...hostile, late, valid].map((lease) => ({ type: "removed" as const, lease })),
          });
          await reconciles(network, 3);
          assert.deepEqual(await routes(ns), before, "the underlay's connected route is intact");
          assert.equal(network.health().driftRepaired, 0);
        } finally {
          await runner.stop();
        }
      });
    }),
);

function dualConfig(backend: string, options: Record<string, unknown> = {}) {
  const config = networkConfig(backend, options);
  return {
    ...config,
    ipv6: {
      network: parseNet("fd00:244::/48"),
      subnetLen: 64,
      subnetMin: parseAddr("fd00:244:0:1::"),
      subnetMax: parseAddr("fd00:244:0:ff::"),
    },
  };
}

function dualVxlanPeer(n: number): Lease {
  return {
    subnet: parseNet(`10.244.${n}.0/24`),
    ipv6Subnet: parseNet(`fd00:244:0:${n}::/64`),
    attrs: {
      publicIP: parseAddr(`198.18.0.${n}`),
      publicIPv6: parseAddr(`2001:db8::${n}`),
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: `0e:00:00:00:04:${n}` },
      backendV6Data: { VNI: 1, VtepMAC: `0e:00:00:00:06:${n}` },
    },
  };
}

interface LinkJson {
  mtu: number;
  linkinfo: { info_data: { local?: string; local6?: string } };
}

rootTest(
  "vxlan dual stack: local = public IP, IPv6 underlay −70, FLANNEL_MTU as flannel's, no drift at rest",
  () =>
    withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const base = backendContext(h, dualConfig("vxlan"));
        const ul0 = base.ext.index;
        const v6 = parseAddr("2001:db8::11");
        addAddr(h, { index: ul0, address: v6, prefix: 64, flags: IFA_F_NODAD });
        const ctx = {
          ...base,
          resyncMs: RESYNC_MS,
          // --public-ip names an address that is not the interface's (NAT), as flannel allows.
          ext: { ...base.ext, publicIP: parseAddr("198.18.0.99"), ifaceAddrV6: v6, publicIPv6: v6 },
          manager: fixedLeaseManager({
            subnet: parseNet("10.244.7.0/24"),
            ipv6Subnet: parseNet("fd00:244:0:7::/64"),
          }),
        };
        const network = await vxlanBackend.register(ctx);
        const [v4dev] = await ipJson<LinkJson[]>(ns, ["-d", "link", "show", "flannel.1"]);
        const [v6dev] = await ipJson<LinkJson[]>(ns, ["-d", "link", "show", "flannel-v6.1"]);
        assert.equal(v4dev.linkinfo.info_data.local, "198.18.0.99", "local is --public-ip");
        assert.equal(v6dev.linkinfo.info_data.local6, "2001:db8::11");
        assert.equal(v4dev.mtu, 1450, "IPv4 underlay: 50 bytes");
        assert.equal(v6dev.mtu, 1430, "IPv6 underlay: 70 bytes");
        assert.equal(network.mtu, 1450, "FLANNEL_MTU in dual stack is flannel's (underlay − 50)");

        const runner = runNetwork(network);
        try {
          runner.push({ type: "snapshot", leases: [dualVxlanPeer(12), dualVxlanPeer(13)] });
          await reconciles(network, 5);
          const v6routes = await routes(ns, "-6");
          for (const n of [12, 13]) {
            assert.ok(
              v6routes.includes(
                `fd00:244:0:${n}::/64 via fd00:244:0:${n}:: dev flannel-v6.1 onlink`,
              ),
              v6routes.join("\n"),
            );
          }
          const health = network.health();
          assert.deepEqual(
            health.peers.map((p) => p.inSync),
            [true, true],
            JSON.stringify(health.peers),
          );
          assert.equal(health.driftRepaired, 0, "an unchanged state is written once, not repaired");

          // IPv6 too: a peer claiming the whole IPv6 network gets no IPv6 route.
          const before = await routes(ns, "-6");
          const greedy = { ...dualVxlanPeer(14), ipv6Subnet: parseNet("fd00:244::/48") };
          runner.push({ type: "events", events: [{ type: "added", lease: greedy }] });
          await reconciles(network, 3);
          const after = await routes(ns, "-6");
          assert.deepEqual(after.filter((r) => !before.includes(r)), [], "no IPv6 route added");
          const peer = network.health().peers.find((p) => p.subnet.includes("fd00:244::/48"));
          assert.match(peer?.error ?? "", /refused/);
          assert.equal(network.health().driftRepaired, 0);
        } finally {
          await runner.stop();
        }
      });
    }),
);

rootTest(
  "vxlan DirectRouting: routes via the underlay cause no drift repairs at rest",
  () =>
    withNetns(async (ns) => {
      await withNetlink({ netns: ns }, async (h) => {
        const ctx = {
          ...backendContext(h, networkConfig("vxlan", { directrouting: true })),
          resyncMs: RESYNC_MS,
        };
        const network = await vxlanBackend.register(ctx);
        const runner = runNetwork(network);
        try {
          const direct = dualVxlanPeer(12); // 198.18.0.12 is on ul0's network: a direct route
          const far = {
            ...dualVxlanPeer(13),
            attrs: { ...dualVxlanPeer(13).attrs, publicIP: parseAddr("203.0.113.13") },
          };
          runner.push({ type: "snapshot", leases: [direct, far] });
          await reconciles(network, 5);
          const now = await routes(ns);
          assert.ok(
            now.includes("10.244.12.0/24 via 198.18.0.12 dev ul0"),
            now.join("\n"),
          );
          assert.ok(now.includes("10.244.13.0/24 via 10.244.13.0 dev flannel.1 onlink"));
          assert.equal(network.health().driftRepaired, 0);
        } finally {
          await runner.stop();
        }
      });
    }),
);
