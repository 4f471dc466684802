/**
 * The udp backend's `flannel0` (spec §6.3): a non-persistent TUN without packet-info header, MTU
 * = external MTU − 28, the node's subnet base as a /32, link up, and the route for the whole
 * cluster network through it. Opened with a virtio header and TSO/checksum offload so that the
 * kernel hands over 64 KiB TCP super-packets (the header is invisible on the wire).
 *
 * Flannel never looks at the device again; here a resync puts back what was changed by hand.
 *
 * @module
 */
import { listAddrs } from "../../ffi/netlink/addr.ts";
import { RT_TABLE_MAIN } from "../../ffi/netlink/constants.ts";
import { getLink, setLinkMtu, setLinkUp } from "../../ffi/netlink/link.ts";
import { listRoutes, replaceRoute } from "../../ffi/netlink/route.ts";
import type { NetlinkHandle } from "../../ffi/netlink/socket.ts";
import { closeTun, openTun, TUN_F_CSUM, TUN_F_TSO4, type TunDevice } from "../../ffi/tun.ts";
import { addrEqual, type IPNet, netAddr, netEqual } from "../../ip/mod.ts";
import { BackendError } from "../backend.ts";
import { assignTunnelAddress } from "../device_address.ts";

/** Bytes of outer IPv4 + UDP header each inner packet costs. */
export const UDP_OVERHEAD = 28;

/** What the device must look like. */
export interface TunnelSpec {
  readonly mtu: number;
  /** Our subnet (its base goes on the device). */
  readonly subnet: IPNet;
  /** The cluster network (routed into the device). */
  readonly network: IPNet;
}

/** The open device. Closing `tun` removes it. */
export interface TunnelDevice {
  readonly tun: TunDevice;
  readonly index: number;
}

/** The name flannel asks for: the kernel picks the first free number. */
const NAME_TEMPLATE = "flannel%d";
/** The names {@link NAME_TEMPLATE} gives. */
export const TUN_DEVICE_NAMES = /^flannel\d+$/;

/** Write a per-device sysctl; a missing knob (no IPv6 in this kernel) is nothing to set. */
function setDeviceSysctl(path: string, value: string): void {
  try {
    Deno.writeTextFileSync(path, value);
  } catch { /* not present here */ }
}

/**
 * The device's sysctls. `accept_local`: our ICMP net-unreachable comes from the device's own
 * address (the subnet base, as flannel sends it), which the kernel otherwise drops as a martian
 * source, so flannel's never arrives. `disable_ipv6`: the tunnel carries IPv4 only, so no router
 * solicitations or MLD reports go into it.
 */
function tuneDevice(name: string): void {
  setDeviceSysctl(`/proc/sys/net/ipv4/conf/${name}/accept_local`, "1");
  setDeviceSysctl(`/proc/sys/net/ipv6/conf/${name}/disable_ipv6`, "1");
}

/**
 * Bring the device in line with `spec`; returns how many things had to change (0 when it was
 * already right).
 */
export function reconcileTunnelDevice(
  h: NetlinkHandle,
  device: TunnelDevice,
  spec: TunnelSpec,
): number {
  const link = getLink(h, device.index);
  if (!link) throw new BackendError("udp", `${device.tun.name} vanished`);
  let changes = 0;
  if (link.mtu !== spec.mtu) {
    setLinkMtu(h, device.index, spec.mtu);
    changes++;
  }
  const base = netAddr(spec.subnet);
  const addrs = listAddrs(h, { index: device.index, family: 4 });
  if (!(addrs.length === 1 && addrEqual(addrs[0].address, base) && addrs[0].prefix === 32)) {
    assignTunnelAddress(h, device.index, spec.subnet, spec.network);
    changes++;
  }
  if (!link.up) {
    setLinkUp(h, device.index);
    changes++;
  }
  const routes = listRoutes(h, { family: 4, table: RT_TABLE_MAIN, oif: device.index });
  if (!routes.some((r) => netEqual(r.dst, spec.network) && r.gateway === undefined)) {
    replaceRoute(h, { dst: spec.network, oif: device.index });
    changes++;
  }
  return changes;
}

/** Create and configure the device (in the calling thread's namespace). */
export function openTunnelDevice(h: NetlinkHandle, spec: TunnelSpec): TunnelDevice {
  const tun = openTun({ name: NAME_TEMPLATE, vnetHdr: true, offload: TUN_F_CSUM | TUN_F_TSO4 });
  try {
    const link = getLink(h, tun.name);
    if (!link) throw new BackendError("udp", `${tun.name} not found after creation`);
    tuneDevice(tun.name);
    const device = { tun, index: link.index };
    reconcileTunnelDevice(h, device, spec);
    return device;
  } catch (err) {
    closeTun(tun);
    throw err;
  }
}
