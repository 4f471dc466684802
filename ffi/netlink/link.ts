/**
 * Network interfaces (links): list, look up, create (vxlan, ipip, bridge, veth, dummy,
 * wireguard), delete, and change state, MTU, MAC, master or namespace. Listing reads back the
 * kind-specific data of vxlan, ipip and tun devices.
 *
 * @module
 */
import type { IPAddr } from "../../ip/mod.ts";
import { closeFd } from "../libc.ts";
import { formatMac, parseMac } from "../mac.ts";
import { openNetns } from "../netns.ts";
import {
  addrAttr,
  type Attr,
  attrAddr,
  attrBe16,
  attrI32,
  attrMap,
  attrString,
  attrU32,
  attrU8,
  be16Attr,
  bytesAttr,
  decodeAttrs,
  encodeBody,
  i32Attr,
  type IfInfoMsg,
  nestAttr,
  NetlinkDecodeError,
  type NetlinkMessage,
  strAttr,
  u32Attr,
  u8Attr,
} from "./codec.ts";
import {
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_IPTUN_LINK,
  IFLA_IPTUN_LOCAL,
  IFLA_IPTUN_PMTUDISC,
  IFLA_IPTUN_REMOTE,
  IFLA_IPTUN_TTL,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_LINKINFO,
  IFLA_MASTER,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_OPERSTATE,
  IFLA_TUN_MULTI_QUEUE,
  IFLA_TUN_NUM_QUEUES,
  IFLA_TUN_PERSIST,
  IFLA_TUN_PI,
  IFLA_TUN_TYPE,
  IFLA_TUN_VNET_HDR,
  IFLA_VXLAN_AGEING,
  IFLA_VXLAN_GBP,
  IFLA_VXLAN_GROUP,
  IFLA_VXLAN_GROUP6,
  IFLA_VXLAN_ID,
  IFLA_VXLAN_L2MISS,
  IFLA_VXLAN_L3MISS,
  IFLA_VXLAN_LEARNING,
  IFLA_VXLAN_LINK,
  IFLA_VXLAN_LOCAL,
  IFLA_VXLAN_LOCAL6,
  IFLA_VXLAN_PORT,
  IFLA_VXLAN_TOS,
  IFLA_VXLAN_TTL,
  IFLA_VXLAN_UDP_CSUM,
  IFLA_VXLAN_UDP_ZERO_CSUM6_RX,
  IFLA_VXLAN_UDP_ZERO_CSUM6_TX,
  NLM_F_CREATE,
  NLM_F_EXCL,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  VETH_INFO_PEER,
} from "./constants.ts";
import { dump, execute, NetlinkError, type NetlinkHandle } from "./socket.ts";
import { AF_UNSPEC } from "../unix.ts";

/** Kind-specific data of a vxlan device, as the kernel reports it. */
export interface VxlanInfo {
  vni: number;
  local?: IPAddr;
  group?: IPAddr;
  /** Index of the underlay device (`dev` in `ip link add ... type vxlan`). */
  underlayIndex?: number;
  /** UDP destination port. */
  port?: number;
  learning: boolean;
  gbp: boolean;
  l2miss: boolean;
  l3miss: boolean;
  udpCsum?: boolean;
  udp6ZeroCsumTx?: boolean;
  udp6ZeroCsumRx?: boolean;
  ttl?: number;
  tos?: number;
  ageing?: number;
}

/** How to create a vxlan device; unset fields are left to the kernel's defaults. */
export interface VxlanOptions {
  vni: number;
  local?: IPAddr;
  group?: IPAddr;
  underlayIndex?: number;
  /** UDP destination port; unset means the kernel default (8472). */
  port?: number;
  /** Source-address learning; default false ("nolearning"), as flannel configures it. */
  learning?: boolean;
  gbp?: boolean;
  l2miss?: boolean;
  l3miss?: boolean;
  udpCsum?: boolean;
  udp6ZeroCsumTx?: boolean;
  udp6ZeroCsumRx?: boolean;
  ttl?: number;
  tos?: number;
}

/** Kind-specific data of an ipip (IPv4-in-IPv4) tunnel; unset addresses mean "any". */
export interface IpTunnelInfo {
  local?: IPAddr;
  remote?: IPAddr;
  /** Index of the device the tunnel is bound to. */
  underlayIndex?: number;
  /** 0 means inherit the inner packet's TTL. */
  ttl?: number;
  pmtuDiscovery?: boolean;
}

/** How to create an ipip tunnel; unset fields are left to the kernel's defaults. */
export interface IpTunnelOptions {
  local?: IPAddr;
  /** Unset: one-to-many (remote any), as flannel's ipip backend uses it. */
  remote?: IPAddr;
  underlayIndex?: number;
  ttl?: number;
}

/** Kind-specific data of a tun/tap device (read only: create TUNs with `ffi/tun.ts`). */
export interface TunInfo {
  type: "tun" | "tap";
  pi: boolean;
  vnetHdr: boolean;
  persist: boolean;
  multiQueue: boolean;
  queues?: number;
}

/** A network interface as the kernel reports it. */
export interface Link {
  index: number;
  name: string;
  /** `IFLA_INFO_KIND` ("vxlan", "veth", "bridge", "tun", ...); absent for e.g. loopback. */
  kind?: string;
  mtu: number;
  /** Link-layer address in lower-case colon hex, when the device has one. */
  mac?: string;
  /** `ifi_flags` (IFF_*). */
  flags: number;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** RFC 2863 state as `ip` prints it: "UP", "DOWN", "UNKNOWN", "LOWERLAYERDOWN", ... */
  operState: string;
  masterIndex?: number;
  /** `IFLA_LINK`: e.g. the peer index of a veth. */
  parentIndex?: number;
  /** Set when `parentIndex` refers to another namespace. */
  linkNetnsId?: number;
  vxlan?: VxlanInfo;
  ipip?: IpTunnelInfo;
  tun?: TunInfo;
}

/** A namespace for a new or moved link: a name under /run/netns, a path, or an open fd. */
export type NetnsRef = string | number;

interface LinkBase {
  name: string;
  mtu?: number;
  mac?: string;
  /** Bring it up as part of creation. */
  up?: boolean;
}

/** What {@link addLink} creates. */
export type LinkSpec =
  | LinkBase & { kind: "vxlan"; vxlan: VxlanOptions }
  | LinkBase & { kind: "ipip"; ipip: IpTunnelOptions }
  | LinkBase & { kind: "wireguard" }
  | LinkBase & { kind: "bridge" }
  | LinkBase & { kind: "dummy" }
  | LinkBase & { kind: "veth"; peer: VethPeer };

/** The other end of a veth. It cannot be brought up at creation (the kernel says ENOTCONN). */
export interface VethPeer {
  name: string;
  mtu?: number;
  mac?: string;
  netns?: NetnsRef;
}

/** A link by index or by name. */
export type LinkRef = number | string;

const OPER_STATES = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"];

function decodeVxlan(data: Attr[]): VxlanInfo {
  const a = attrMap(data);
  const id = a.get(IFLA_VXLAN_ID);
  if (!id) throw new NetlinkDecodeError("vxlan info without IFLA_VXLAN_ID", 0);
  const bool = (type: number) => {
    const x = a.get(type);
    return x === undefined ? undefined : attrU8(x) !== 0;
  };
  const num = (type: number, read: (x: Attr) => number) => {
    const x = a.get(type);
    return x === undefined ? undefined : read(x);
  };
  const nonZeroAddr = (type: number) => {
    const x = a.get(type);
    if (x === undefined) return undefined;
    const addr = attrAddr(x);
    return addr.value === 0n ? undefined : addr;
  };
  const info: VxlanInfo = {
    vni: attrU32(id),
    learning: bool(IFLA_VXLAN_LEARNING) ?? false,
    gbp: a.has(IFLA_VXLAN_GBP),
    l2miss: bool(IFLA_VXLAN_L2MISS) ?? false,
    l3miss: bool(IFLA_VXLAN_L3MISS) ?? false,
  };
  const optional: Partial<VxlanInfo> = {
    local: nonZeroAddr(IFLA_VXLAN_LOCAL) ?? nonZeroAddr(IFLA_VXLAN_LOCAL6),
    group: nonZeroAddr(IFLA_VXLAN_GROUP) ?? nonZeroAddr(IFLA_VXLAN_GROUP6),
    underlayIndex: num(IFLA_VXLAN_LINK, attrU32),
    port: num(IFLA_VXLAN_PORT, attrBe16),
    udpCsum: bool(IFLA_VXLAN_UDP_CSUM),
    udp6ZeroCsumTx: bool(IFLA_VXLAN_UDP_ZERO_CSUM6_TX),
    udp6ZeroCsumRx: bool(IFLA_VXLAN_UDP_ZERO_CSUM6_RX),
    ttl: num(IFLA_VXLAN_TTL, attrU8),
    tos: num(IFLA_VXLAN_TOS, attrU8),
    ageing: num(IFLA_VXLAN_AGEING, attrU32),
  };
  for (const [key, value] of Object.entries(optional)) {
    if (value !== undefined) Object.assign(info, { [key]: value });
  }
  return info;
}

function decodeIpTunnel(data: Attr[]): IpTunnelInfo {
  const a = attrMap(data);
  const info: IpTunnelInfo = {};
  for (const [type, key] of [[IFLA_IPTUN_LOCAL, "local"], [IFLA_IPTUN_REMOTE, "remote"]] as const) {
    const x = a.get(type);
    // Four zero bytes is how the kernel reports "any".
    if (x && x.data.length === 4 && x.data.some((b) => b !== 0)) info[key] = attrAddr(x);
  }
  const link = a.get(IFLA_IPTUN_LINK);
  if (link && attrU32(link) !== 0) info.underlayIndex = attrU32(link);
  const ttl = a.get(IFLA_IPTUN_TTL);
  if (ttl) info.ttl = attrU8(ttl);
  const pmtu = a.get(IFLA_IPTUN_PMTUDISC);
  if (pmtu) info.pmtuDiscovery = attrU8(pmtu) !== 0;
  return info;
}

function ipTunnelAttrs(o: IpTunnelOptions): Attr[] {
  const out: Attr[] = [];
  if (o.local) out.push(addrAttr(IFLA_IPTUN_LOCAL, o.local));
  if (o.remote) out.push(addrAttr(IFLA_IPTUN_REMOTE, o.remote));
  if (o.underlayIndex !== undefined) out.push(u32Attr(IFLA_IPTUN_LINK, o.underlayIndex));
  if (o.ttl !== undefined) out.push(u8Attr(IFLA_IPTUN_TTL, o.ttl));
  return out;
}

function decodeTun(data: Attr[]): TunInfo {
  const a = attrMap(data);
  const flag = (type: number) => {
    const x = a.get(type);
    return x !== undefined && attrU8(x) !== 0;
  };
  const type = a.get(IFLA_TUN_TYPE);
  const queues = a.get(IFLA_TUN_NUM_QUEUES);
  const info: TunInfo = {
    type: type !== undefined && attrU8(type) === 2 ? "tap" : "tun",
    pi: flag(IFLA_TUN_PI),
    vnetHdr: flag(IFLA_TUN_VNET_HDR),
    persist: flag(IFLA_TUN_PERSIST),
    multiQueue: flag(IFLA_TUN_MULTI_QUEUE),
  };
  if (queues !== undefined) info.queues = attrU32(queues);
  return info;
}

/**
 * Turn an RTM_NEWLINK message into a {@link Link}. Throws {@link NetlinkDecodeError} when
 * required attributes are missing or have the wrong size.
 */
export function linkFromMessage(m: NetlinkMessage): Link {
  if (m.body.kind !== "link") throw new NetlinkDecodeError(`not a link message`, 0);
  const { msg } = m.body;
  const a = attrMap(m.body.attrs);
  const name = a.get(IFLA_IFNAME);
  const mtu = a.get(IFLA_MTU);
  if (!name || !mtu) throw new NetlinkDecodeError(`link ${msg.index} without name or MTU`, 0);
  const oper = a.get(IFLA_OPERSTATE);
  const link: Link = {
    index: msg.index,
    name: attrString(name),
    mtu: attrU32(mtu),
    flags: msg.flags,
    up: (msg.flags & IFF_UP) !== 0,
    operState: oper ? OPER_STATES[attrU8(oper)] ?? `STATE_${attrU8(oper)}` : "UNKNOWN",
  };
  const mac = a.get(IFLA_ADDRESS);
  if (mac && mac.data.length > 0) link.mac = formatMac(mac.data);
  const master = a.get(IFLA_MASTER);
  if (master) link.masterIndex = attrU32(master);
  const parent = a.get(IFLA_LINK);
  if (parent) link.parentIndex = attrI32(parent);
  const netnsId = a.get(IFLA_LINK_NETNSID);
  if (netnsId) link.linkNetnsId = attrI32(netnsId);
  const info = a.get(IFLA_LINKINFO);
  if (info) {
    const li = attrMap(decodeAttrs(info.data));
    const kind = li.get(IFLA_INFO_KIND);
    const data = li.get(IFLA_INFO_DATA);
    if (kind) link.kind = attrString(kind);
    if (link.kind === "vxlan" && data) link.vxlan = decodeVxlan(decodeAttrs(data.data));
    if (link.kind === "ipip" && data) link.ipip = decodeIpTunnel(decodeAttrs(data.data));
    if (link.kind === "tun" && data) link.tun = decodeTun(decodeAttrs(data.data));
  }
  return link;
}

function linkMsg(index: number, flags = 0, change = 0): IfInfoMsg {
  return { family: AF_UNSPEC, type: 0, index, flags, change };
}

/** Header index and attributes that name a link (by index, or IFLA_IFNAME with index 0). */
function refParts(ref: LinkRef): { index: number; attrs: Attr[] } {
  return typeof ref === "number"
    ? { index: ref, attrs: [] }
    : { index: 0, attrs: [strAttr(IFLA_IFNAME, ref)] };
}

function vxlanAttrs(o: VxlanOptions): Attr[] {
  const out: Attr[] = [
    u32Attr(IFLA_VXLAN_ID, o.vni),
    u8Attr(IFLA_VXLAN_LEARNING, o.learning ? 1 : 0),
  ];
  if (o.local) {
    out.push(addrAttr(o.local.family === 4 ? IFLA_VXLAN_LOCAL : IFLA_VXLAN_LOCAL6, o.local));
  }
  if (o.group) {
    out.push(addrAttr(o.group.family === 4 ? IFLA_VXLAN_GROUP : IFLA_VXLAN_GROUP6, o.group));
  }
  if (o.underlayIndex !== undefined) out.push(u32Attr(IFLA_VXLAN_LINK, o.underlayIndex));
  if (o.port !== undefined) out.push(be16Attr(IFLA_VXLAN_PORT, o.port));
  if (o.gbp) out.push(bytesAttr(IFLA_VXLAN_GBP, new Uint8Array(0)));
  const u8s: [number, boolean | number | undefined][] = [
    [IFLA_VXLAN_L2MISS, o.l2miss],
    [IFLA_VXLAN_L3MISS, o.l3miss],
    [IFLA_VXLAN_UDP_CSUM, o.udpCsum],
    [IFLA_VXLAN_UDP_ZERO_CSUM6_TX, o.udp6ZeroCsumTx],
    [IFLA_VXLAN_UDP_ZERO_CSUM6_RX, o.udp6ZeroCsumRx],
    [IFLA_VXLAN_TTL, o.ttl],
    [IFLA_VXLAN_TOS, o.tos],
  ];
  for (const [type, value] of u8s) if (value !== undefined) out.push(u8Attr(type, Number(value)));
  return out;
}

/** The common attributes of a new link; opened namespace fds are pushed to `fds`. */
function baseAttrs(spec: VethPeer, fds: number[]): Attr[] {
  const out = [strAttr(IFLA_IFNAME, spec.name)];
  if (spec.mtu !== undefined) out.push(u32Attr(IFLA_MTU, spec.mtu));
  if (spec.mac !== undefined) out.push(bytesAttr(IFLA_ADDRESS, parseMac(spec.mac)));
  if (spec.netns !== undefined) out.push(i32Attr(IFLA_NET_NS_FD, netnsFd(spec.netns, fds)));
  return out;
}

function netnsFd(ref: NetnsRef, fds: number[]): number {
  if (typeof ref === "number") return ref;
  const fd = openNetns(ref);
  fds.push(fd);
  return fd;
}

function upFlags(spec: LinkBase): [number, number] {
  return spec.up ? [IFF_UP, IFF_UP] : [0, 0];
}

function linkInfo(spec: LinkSpec, fds: number[]): Attr {
  const kind = strAttr(IFLA_INFO_KIND, spec.kind);
  switch (spec.kind) {
    case "vxlan":
      return nestAttr(IFLA_LINKINFO, [kind, nestAttr(IFLA_INFO_DATA, vxlanAttrs(spec.vxlan))]);
    case "ipip":
      return nestAttr(IFLA_LINKINFO, [kind, nestAttr(IFLA_INFO_DATA, ipTunnelAttrs(spec.ipip))]);
    case "veth": {
      const peer = encodeBody({
        kind: "link",
        msg: linkMsg(0),
        attrs: baseAttrs(spec.peer, fds),
      });
      // The peer is an ifinfomsg followed by attributes, not a plain attribute list.
      const peerAttr: Attr = { type: VETH_INFO_PEER, nested: true, data: peer };
      return nestAttr(IFLA_LINKINFO, [kind, nestAttr(IFLA_INFO_DATA, [peerAttr])]);
    }
    default:
      return nestAttr(IFLA_LINKINFO, [kind]);
  }
}

/**
 * Create a link (fails with `EEXIST` if the name is taken) and return it as the kernel sees it.
 *
 * @example
 * ```ts
 * addLink(h, { kind: "vxlan", name: "flannel.1", vxlan: { vni: 1, port: 8472, local } });
 * ```
 */
export function addLink(h: NetlinkHandle, spec: LinkSpec): Link {
  const fds: number[] = [];
  try {
    execute(h, {
      type: RTM_NEWLINK,
      flags: NLM_F_CREATE | NLM_F_EXCL,
      body: {
        kind: "link",
        msg: linkMsg(0, ...upFlags(spec)),
        attrs: [...baseAttrs(spec, fds), linkInfo(spec, fds)],
      },
    });
  } finally {
    for (const fd of fds) closeFd(fd);
  }
  const link = getLink(h, spec.name);
  if (!link) throw new NetlinkError(19, /* ENODEV */ RTM_GETLINK, `${spec.name} vanished`);
  return link;
}

/** Delete a link (`ENODEV` if absent). */
export function deleteLink(h: NetlinkHandle, ref: LinkRef): void {
  const { index, attrs } = refParts(ref);
  execute(h, { type: RTM_DELLINK, body: { kind: "link", msg: linkMsg(index), attrs } });
}

/** Every link of the handle's namespace. */
export function listLinks(h: NetlinkHandle): Link[] {
  return dump(h, { type: RTM_GETLINK, body: { kind: "link", msg: linkMsg(0), attrs: [] } })
    .filter((m) => m.body.kind === "link")
    .map(linkFromMessage);
}

/** One link by index or name, or undefined when there is none. */
export function getLink(h: NetlinkHandle, ref: LinkRef): Link | undefined {
  const { index, attrs } = refParts(ref);
  try {
    const replies = execute(h, {
      type: RTM_GETLINK,
      body: { kind: "link", msg: linkMsg(index), attrs },
    });
    const reply = replies.find((m) => m.body.kind === "link");
    return reply && linkFromMessage(reply);
  } catch (err) {
    if (err instanceof NetlinkError && err.code === "ENODEV") return undefined;
    throw err;
  }
}

function changeLink(h: NetlinkHandle, ref: LinkRef, attrs: Attr[], flags = 0, change = 0) {
  const target = refParts(ref);
  execute(h, {
    type: RTM_NEWLINK,
    body: {
      kind: "link",
      msg: linkMsg(target.index, flags, change),
      attrs: [...target.attrs, ...attrs],
    },
  });
}

/** Set a link administratively up. */
export function setLinkUp(h: NetlinkHandle, ref: LinkRef): void {
  changeLink(h, ref, [], IFF_UP, IFF_UP);
}

/** Set a link administratively down. */
export function setLinkDown(h: NetlinkHandle, ref: LinkRef): void {
  changeLink(h, ref, [], 0, IFF_UP);
}

/** Change a link's MTU. */
export function setLinkMtu(h: NetlinkHandle, ref: LinkRef, mtu: number): void {
  changeLink(h, ref, [u32Attr(IFLA_MTU, mtu)]);
}

/** Change a link's MAC address. */
export function setLinkMac(h: NetlinkHandle, ref: LinkRef, mac: string): void {
  changeLink(h, ref, [bytesAttr(IFLA_ADDRESS, parseMac(mac))]);
}

/** Enslave a link to a bridge (`masterIndex` 0 releases it). */
export function setLinkMaster(h: NetlinkHandle, ref: LinkRef, masterIndex: number): void {
  changeLink(h, ref, [u32Attr(IFLA_MASTER, masterIndex)]);
}

/** Move a link into another namespace (it gets a new index there). */
export function setLinkNetns(h: NetlinkHandle, ref: LinkRef, netns: NetnsRef): void {
  const fds: number[] = [];
  try {
    changeLink(h, ref, [i32Attr(IFLA_NET_NS_FD, netnsFd(netns, fds))]);
  } finally {
    for (const fd of fds) closeFd(fd);
  }
}
