/**
 * `ipip` (spec §6.5): an IPv4-in-IPv4 tunnel `flannel.ipip` (local = interface address, remote
 * any), and per peer an onlink route via the peer's public IP, kept in line by the shared
 * reconcile loop (flannel re-checks every 10 s; we also remove the routes of vanished peers).
 * With `DirectRouting`, peers on a directly connected network are routed over the external
 * interface instead. Fixes over flannel: a reused device gets its MTU corrected, and a deleted
 * device is re-created with every peer replayed.
 *
 * UNVERIFIED: the kernel this was developed on has no ipip module; only option parsing, the
 * per-peer description and the missing-module error are tested here.
 *
 * @module
 */
import { readIpipOptions } from "../config/backend_options.ts";
import { deleteLink, getLink, type Link, setLinkMtu, setLinkUp } from "../ffi/netlink/link.ts";
import { getRoute } from "../ffi/netlink/route.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import type { Logger } from "../log.ts";
import { addrEqual, type IPAddr } from "../ip/mod.ts";
import type { Lease } from "../subnet/lease.ts";
import { leaseIdentity } from "../subnet/lease_set.ts";
import { type Backend, BackendError, type Network } from "./backend.ts";
import { assignTunnelAddress } from "./device_address.ts";
import { createTunnelLink } from "./kernel_module.ts";
import type { KernelObjects } from "./kernel_objects.ts";
import { netlinkPort } from "./netlink_port.ts";
import { createRouteSync } from "./route_sync.ts";

/** The device flannel names its ipip tunnel. */
export const IPIP_DEVICE = "flannel.ipip";
/** Outer IPv4 header. */
export const IPIP_OVERHEAD = 20;

/** Interfaces a peer route can use. */
export interface IpipDevices {
  readonly tunnelIndex: number;
  readonly externalIndex: number;
}

/**
 * The route a peer lease needs (spec §6.5): `S via P dev flannel.ipip onlink`, or with
 * DirectRouting and P directly reachable `S via P dev <external> onlink`. Undefined for leases
 * of other backend types (spec §12 item 35) and leases without an IPv4 subnet.
 */
export function ipipPeerObjects(
  peer: Lease,
  devices: IpipDevices,
  directlyReachable: (ip: IPAddr) => boolean,
): KernelObjects | undefined {
  if (peer.attrs.backendType !== "ipip" || !peer.subnet) return undefined;
  const gateway = peer.attrs.publicIP;
  const oif = directlyReachable(gateway) ? devices.externalIndex : devices.tunnelIndex;
  return { routes: [{ dst: peer.subnet, gateway, oif, onlink: true }], neighs: [], fdb: [] };
}

/**
 * Whether the kernel reaches `ip` without a gateway over the external interface (the peer is on
 * a connected network), as flannel's DirectRouting decides it.
 */
function onConnectedNetwork(h: NetlinkHandle, externalIndex: number, ip: IPAddr): boolean {
  try {
    const route = getRoute(h, ip);
    return route.gateway === undefined && route.oif === externalIndex;
  } catch {
    return false; // no route at all: certainly not directly reachable
  }
}

/** Same endpoints as flannel's: local = our interface address, remote any. */
function compatible(link: Link, local: IPAddr): boolean {
  const t = link.ipip;
  return t?.local !== undefined && addrEqual(t.local, local) && t.remote === undefined;
}

/**
 * Make `flannel.ipip` exist as specified: reuse a compatible one (fixing its MTU), replace an ipip
 * device with other endpoints, refuse a device of another kind.
 */
function ensureDevice(h: NetlinkHandle, local: IPAddr, mtu: number, log: Logger): Link {
  const existing = getLink(h, IPIP_DEVICE);
  if (existing && existing.kind !== "ipip") {
    throw new BackendError(
      "ipip",
      `${IPIP_DEVICE} exists but is a ${existing.kind ?? "kind-less"} device, not ipip`,
    );
  }
  if (existing && compatible(existing, local)) {
    if (existing.mtu !== mtu) {
      log.info("correcting device MTU", { device: IPIP_DEVICE, from: existing.mtu, to: mtu });
      setLinkMtu(h, existing.index, mtu);
    }
    if (!existing.up) setLinkUp(h, existing.index);
    return getLink(h, existing.index) ?? existing;
  }
  if (existing) {
    log.warn("replacing ipip device with other endpoints", { device: IPIP_DEVICE });
    deleteLink(h, existing.index);
  }
  return createTunnelLink(
    h,
    { name: IPIP_DEVICE, kind: "ipip", mtu, up: true, ipip: { local } },
    "ipip",
    "ipip",
  );
}

/** The ipip backend. */
export const ipipBackend: Backend = {
  type: "ipip",
  devices: new RegExp(`^${IPIP_DEVICE.replaceAll(".", "\\.")}$`),
  tunnelAddress: true,
  async register(ctx): Promise<Network> {
    const config = readIpipOptions(ctx.config.backend.options);
    const { ext } = ctx;
    const network = ctx.config.ipv4?.network;
    if (!network || ctx.config.ipv6) {
      throw new BackendError("ipip", "ipip carries IPv4 only: configure Network, not IPv6Network");
    }
    const local = ext.ifaceAddr;
    if (!local) throw new BackendError("ipip", `${ext.name} has no IPv4 address`);
    const h = ctx.netlink;
    const mtu = ext.mtu - IPIP_OVERHEAD;
    let device = ensureDevice(h, local, mtu, ctx.log);
    const lease = await ctx.manager.acquireLease(
      { publicIP: ext.publicIP ?? local, backendType: "ipip" },
      ctx.signal,
    );
    if (!lease.subnet) throw new BackendError("ipip", "the lease has no IPv4 subnet");
    const ownSubnet = lease.subnet;
    assignTunnelAddress(h, device.index, ownSubnet, network);

    const directlyReachable = config.directRouting
      ? (ip: IPAddr) => onConnectedNetwork(h, ext.index, ip)
      : () => false;
    const sync = createRouteSync({
      port: netlinkPort(h, {
        networks: [network],
        ownSubnets: [ownSubnet],
        get routeDevices() {
          return [ext.index, device.index];
        },
        tunnelDevices: [],
      }),
      describe: (peer) =>
        ipipPeerObjects(
          peer,
          { tunnelIndex: device.index, externalIndex: ext.index },
          directlyReachable,
        ),
      ownKey: leaseIdentity(lease),
      leaseKey: leaseIdentity,
      resyncMs: ctx.resyncMs,
      log: ctx.log,
      // A device deleted by hand is re-created and every peer replayed (flannel's quirk 12).
      beforeResync: () => {
        const before = device.index;
        device = ensureDevice(h, local, mtu, ctx.log);
        assignTunnelAddress(h, device.index, ownSubnet, network);
        if (device.index !== before) ctx.log.warn("device re-created; replaying every peer");
        return Promise.resolve(device.index !== before);
      },
      onReconcile: ctx.observeReconcile,
    });
    return {
      lease,
      mtu,
      run: sync.run,
      health: () => ({ type: "ipip", ...sync.health() }),
      close: () => Promise.resolve(),
    };
  },
};
