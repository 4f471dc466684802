/**
 * `vxlan` (spec §6.2): a kernel VXLAN device `flannel.<VNI>` (and `flannel-v6.<VNI>`), and per
 * peer a permanent neighbour, an FDB entry and an onlink route, kept in line by the shared
 * reconcile loop. Fixes over flannel: a deleted device is re-created and every peer replayed
 * (quirk 12); a reused device gets its MTU corrected (quirk 13); the old FDB entry goes when a
 * peer's MAC changes (quirk 11); IPv6 underlays subtract 70 bytes, not 50 (quirk 14).
 *
 * @module
 */
import { readVxlanOptions, VXLAN_OVERHEAD, type VxlanOptions } from "../config/backend_options.ts";
import type { FamilyConfig } from "../config/network_config.ts";
import { listAddrs } from "../ffi/netlink/addr.ts";
import {
  addLink,
  deleteLink,
  getLink,
  type Link,
  setLinkMtu,
  setLinkUp,
} from "../ffi/netlink/link.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import { normalizeMac } from "../ffi/mac.ts";
import { errorText, type Logger } from "../log.ts";
import {
  addrEqual,
  type Family,
  type IPAddr,
  type IPNet,
  makeNet,
  netAddr,
  netContains,
} from "../ip/mod.ts";
import type { Lease, LeaseAttrs } from "../subnet/lease.ts";
import { vtepMacOf } from "../subnet/lease_fields.ts";
import { leaseIdentity } from "../subnet/lease_set.ts";
import { type Backend, type BackendContext, BackendError, type Network } from "./backend.ts";
import { assignTunnelAddress } from "./device_address.ts";
import type { FdbObject, KernelObjects, NeighObject, RouteObject } from "./kernel_objects.ts";
import { netlinkPort } from "./netlink_port.ts";
import { createRouteSync } from "./route_sync.ts";

/** What one family's device must look like. */
interface DeviceSpec {
  readonly name: string;
  readonly vni: number;
  readonly local: IPAddr;
  readonly underlayIndex: number;
  readonly port: number;
  readonly learning: boolean;
  readonly gbp: boolean;
  readonly mtu: number;
}

/** A random locally administered unicast MAC, as flannel makes for a new device. */
export function randomVtepMac(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  bytes[0] = (bytes[0] & 0xfe) | 0x02;
  return normalizeMac([...bytes].map((b) => b.toString(16).padStart(2, "0")).join(":"));
}

function compatible(link: Link, spec: DeviceSpec): boolean {
  const v = link.vxlan;
  return link.kind === "vxlan" && v !== undefined && v.vni === spec.vni &&
    v.learning === spec.learning && v.gbp === spec.gbp && !v.l2miss && !v.l3miss &&
    v.group === undefined &&
    (v.underlayIndex === undefined || v.underlayIndex === spec.underlayIndex) &&
    (v.local === undefined || addrEqual(v.local, spec.local)) &&
    (spec.port === 0 || v.port === undefined || v.port === spec.port);
}

/**
 * Make the device exist as specified: reuse a compatible one (keeping its MAC, so peers need
 * not relearn it), fix its MTU, or replace an incompatible one. Returns the device.
 */
function ensureDevice(h: NetlinkHandle, spec: DeviceSpec, mac: string, log: Logger): Link {
  const existing = getLink(h, spec.name);
  if (existing && compatible(existing, spec)) {
    if (existing.mtu !== spec.mtu) {
      log.info("correcting device MTU", { device: spec.name, from: existing.mtu, to: spec.mtu });
      setLinkMtu(h, existing.index, spec.mtu);
    }
    if (!existing.up) setLinkUp(h, existing.index);
    return getLink(h, existing.index) ?? existing;
  }
  if (existing) {
    log.warn("replacing incompatible device", { device: spec.name });
    deleteLink(h, existing.index);
  }
  return addLink(h, {
    name: spec.name,
    kind: "vxlan",
    mtu: spec.mtu,
    mac,
    up: true,
    vxlan: {
      vni: spec.vni,
      local: spec.local,
      underlayIndex: spec.underlayIndex,
      ...(spec.port > 0 && { port: spec.port }),
      learning: spec.learning,
      gbp: spec.gbp,
    },
  });
}

/** One address family's tunnel: device, our subnet and what we publish. */
interface Tunnel {
  readonly family: Family;
  readonly spec: DeviceSpec;
  readonly network: FamilyConfig;
  device: Link;
}

function disableRouterAdvertisements(device: string, log: Logger): void {
  try {
    Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${device}/accept_ra`, "0");
  } catch (err) {
    log.debug("accept_ra not set", { device, error: errorText(err) });
  }
}

/** flannel's device names: `flannel.<VNI>`, and `flannel-v6.<VNI>` for IPv6. */
export function vxlanDeviceName(family: Family, vni: number): string {
  return family === 4 ? `flannel.${vni}` : `flannel-v6.${vni}`;
}

function deviceSpec(
  family: Family,
  ctx: BackendContext,
  config: VxlanOptions,
  local: IPAddr,
): DeviceSpec {
  const underlayMtu = config.mtu || ctx.ext.mtu;
  return {
    name: vxlanDeviceName(family, config.vni),
    vni: config.vni,
    local,
    underlayIndex: ctx.ext.index,
    port: config.port,
    learning: config.learning,
    gbp: config.gbp,
    // flannel subtracts 50 for an IPv6 underlay too, which is 20 bytes short (quirk 14).
    mtu: underlayMtu - VXLAN_OVERHEAD[local.family],
  };
}

/** Networks the external interface is directly attached to (for DirectRouting). */
function connectedNetworks(h: NetlinkHandle, index: number): IPNet[] {
  return listAddrs(h, { index }).map((a) => makeNet(a.address, a.prefix));
}

/**
 * FLANNEL_MTU: flannel's (underlay − 50) whenever there is an IPv4 tunnel, dual stack included,
 * so pods on Tartan and flannel nodes agree; IPv6 pod traffic too large for the IPv6 device
 * (underlay − 70) gets "packet too big" from the node. IPv6-only: the IPv6 device's MTU.
 */
function podMtu(tunnels: readonly Tunnel[]): number {
  return (tunnels.find((t) => t.family === 4) ?? tunnels[0]).spec.mtu;
}

/** The vxlan backend. */
export const vxlanBackend: Backend = {
  type: "vxlan",
  devices: /^flannel(-v6)?\.\d+$/,
  tunnelAddress: true,
  async register(ctx): Promise<Network> {
    const config = readVxlanOptions(ctx.config.backend.options);
    const h = ctx.netlink;
    const tunnels: Tunnel[] = [];
    const families: Array<[Family, FamilyConfig | undefined, IPAddr | undefined]> = [
      [4, ctx.config.ipv4, ctx.ext.publicIP],
      [6, ctx.config.ipv6, ctx.ext.publicIPv6],
    ];
    for (const [family, network, publicIP] of families) {
      if (!network) continue;
      // The device's local address is the public IP (`--public-ip` when set), as flannel's;
      // re-creation uses the same spec, so it never changes to the interface address (quirk 35).
      const local = publicIP ?? (family === 4 ? ctx.ext.ifaceAddr : ctx.ext.ifaceAddrV6);
      if (!local) throw new BackendError("vxlan", `IPv${family} is enabled but has no address`);
      const spec = deviceSpec(family, ctx, config, local);
      // A new device takes the MAC we published before (kube annotations), so peers keep theirs.
      const previousMac = vtepMacOf(await ctx.manager.previousBackendData?.(family, ctx.signal));
      const device = ensureDevice(h, spec, previousMac ?? randomVtepMac(), ctx.log);
      if (family === 6) disableRouterAdvertisements(spec.name, ctx.log);
      tunnels.push({ family, spec, network, device });
    }
    const dataOf = (family: Family) => {
      const tunnel = tunnels.find((t) => t.family === family);
      return tunnel && { VNI: config.vni, VtepMAC: tunnel.device.mac ?? "" };
    };
    const attrs: LeaseAttrs = {
      publicIP: ctx.ext.publicIP ?? { family: 4, value: 0n },
      publicIPv6: ctx.ext.publicIPv6,
      backendType: "vxlan",
      backendData: dataOf(4),
      backendV6Data: dataOf(6),
    };
    const lease = await ctx.manager.acquireLease(attrs, ctx.signal);
    const ownSubnetOf = (family: Family) => family === 4 ? lease.subnet : lease.ipv6Subnet;
    for (const tunnel of tunnels) {
      const own = ownSubnetOf(tunnel.family);
      if (!own) throw new BackendError("vxlan", `the lease has no IPv${tunnel.family} subnet`);
      assignTunnelAddress(h, tunnel.device.index, own, tunnel.network.network);
    }

    const connected = config.directRouting ? connectedNetworks(h, ctx.ext.index) : [];
    const describe = (peer: Lease): KernelObjects | undefined => {
      if (peer.attrs.backendType !== "vxlan") return undefined;
      const routes: RouteObject[] = [];
      const neighs: NeighObject[] = [];
      const fdb: FdbObject[] = [];
      for (const tunnel of tunnels) {
        const v4 = tunnel.family === 4;
        const subnet = v4 ? peer.subnet : peer.ipv6Subnet;
        const publicIP = v4 ? peer.attrs.publicIP : peer.attrs.publicIPv6;
        if (!subnet || !publicIP) continue;
        if (connected.some((net) => netContains(net, publicIP))) {
          routes.push({ dst: subnet, gateway: publicIP, oif: ctx.ext.index });
          continue;
        }
        const mac = vtepMacOf(v4 ? peer.attrs.backendData : peer.attrs.backendV6Data);
        if (!mac) {
          ctx.log.warn("peer lease has no valid VtepMAC; skipped", { peer: leaseIdentity(peer) });
          continue;
        }
        const index = tunnel.device.index;
        const vtep = netAddr(subnet);
        neighs.push({ index, ip: vtep, mac });
        fdb.push({ index, mac, dst: publicIP });
        routes.push({ dst: subnet, gateway: vtep, oif: index, onlink: true });
      }
      return { routes, neighs, fdb };
    };

    /** Re-create a device that vanished and fix MTU drift; true when an index changed. */
    const ensureDevices = () => {
      let recreated = false;
      for (const tunnel of tunnels) {
        const before = tunnel.device;
        tunnel.device = ensureDevice(h, tunnel.spec, before.mac ?? randomVtepMac(), ctx.log);
        if (tunnel.device.index !== before.index) {
          ctx.log.warn("device re-created; replaying every peer", { device: tunnel.spec.name });
          recreated = true;
        }
        const own = ownSubnetOf(tunnel.family)!;
        assignTunnelAddress(h, tunnel.device.index, own, tunnel.network.network);
      }
      return Promise.resolve(recreated);
    };

    const sync = createRouteSync({
      port: netlinkPort(h, {
        networks: tunnels.map((t) => t.network.network),
        ownSubnets: tunnels.map((t) => ownSubnetOf(t.family)!),
        get routeDevices() {
          return [ctx.ext.index, ...tunnels.map((t) => t.device.index)];
        },
        get tunnelDevices() {
          return tunnels.map((t) => t.device.index);
        },
      }),
      describe,
      ownKey: leaseIdentity(lease),
      leaseKey: leaseIdentity,
      resyncMs: ctx.resyncMs,
      log: ctx.log,
      beforeResync: ensureDevices,
      onReconcile: ctx.observeReconcile,
    });
    return {
      lease,
      mtu: podMtu(tunnels),
      run: sync.run,
      health: () => ({ type: "vxlan", ...sync.health() }),
      close: () => Promise.resolve(),
    };
  },
};
