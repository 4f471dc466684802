/**
 * `host-gw` (spec §6.4): a route to each peer subnet via the peer's public IP on the external
 * interface. Needs L2 adjacency: a peer the kernel cannot reach directly is reported in the
 * backend health and logs (and retried every resync), never a silent black hole.
 *
 * @module
 */
import { addrEqual, type Family, formatAddr } from "../ip/mod.ts";
import type { Lease } from "../subnet/lease.ts";
import { leaseIdentity } from "../subnet/lease_set.ts";
import { type Backend, BackendError, type Network } from "./backend.ts";
import type { KernelObjects, RouteObject } from "./kernel_objects.ts";
import { netlinkPort } from "./netlink_port.ts";
import { createRouteSync } from "./route_sync.ts";

/** The host-gw backend. */
export const hostGwBackend: Backend = {
  type: "host-gw",
  async register(ctx): Promise<Network> {
    const { ext } = ctx;
    for (
      const [publicIP, ifaceAddr] of [[ext.publicIP, ext.ifaceAddr], [
        ext.publicIPv6,
        ext.ifaceAddrV6,
      ]]
    ) {
      if (publicIP && ifaceAddr && !addrEqual(publicIP, ifaceAddr)) {
        throw new BackendError(
          "host-gw",
          `the public IP ${formatAddr(publicIP)} differs from the interface address ` +
            `${formatAddr(ifaceAddr)}: probably you're on a NAT, which host-gw does not support`,
        );
      }
    }
    const lease = await ctx.manager.acquireLease({
      publicIP: ext.publicIP ?? { family: 4, value: 0n },
      publicIPv6: ext.publicIPv6,
      backendType: "host-gw",
    }, ctx.signal);
    const families: Family[] = [
      ...(ctx.config.ipv4 ? [4 as const] : []),
      ...(ctx.config.ipv6 ? [6 as const] : []),
    ];
    const describe = (peer: Lease): KernelObjects | undefined => {
      if (peer.attrs.backendType !== "host-gw") return undefined;
      const routes: RouteObject[] = [];
      for (const family of families) {
        const dst = family === 4 ? peer.subnet : peer.ipv6Subnet;
        const gateway = family === 4 ? peer.attrs.publicIP : peer.attrs.publicIPv6;
        if (dst && gateway) routes.push({ dst, gateway, oif: ext.index });
      }
      return { routes, neighs: [], fdb: [] };
    };
    const networks = [ctx.config.ipv4?.network, ctx.config.ipv6?.network]
      .filter((n) => n !== undefined);
    const ownSubnets = [lease.subnet, lease.ipv6Subnet].filter((n) => n !== undefined);
    const sync = createRouteSync({
      port: netlinkPort(ctx.netlink, {
        networks,
        ownSubnets,
        routeDevices: [ext.index],
        tunnelDevices: [],
      }),
      describe,
      ownKey: leaseIdentity(lease),
      leaseKey: leaseIdentity,
      resyncMs: ctx.resyncMs,
      log: ctx.log,
      onReconcile: ctx.observeReconcile,
    });
    return {
      lease,
      mtu: ext.mtu,
      run: sync.run,
      health: () => ({ type: "host-gw", ...sync.health() }),
      close: () => Promise.resolve(),
    };
  },
};
