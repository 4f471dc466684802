/**
 * Neighbours (ARP / NDP entries) and bridge forwarding-database (FDB) entries.
 *
 * Both are RTM_*NEIGH messages: neighbours with family AF_INET/AF_INET6 keyed by IP, FDB
 * entries with family AF_BRIDGE keyed by MAC. On a vxlan device an FDB entry with NTF_SELF and
 * NDA_DST tells the device which underlay IP a MAC lives behind (`bridge fdb ... dst P self`).
 *
 * @module
 */
import type { Family, IPAddr } from "../../ip/mod.ts";
import { formatMac, parseMac } from "../mac.ts";
import {
  addrAttr,
  type Attr,
  attrAddr,
  attrBe16,
  attrMap,
  attrU16,
  attrU32,
  be16Attr,
  bytesAttr,
  NetlinkDecodeError,
  type NetlinkMessage,
  u32Attr,
} from "./codec.ts";
import {
  NDA_DST,
  NDA_IFINDEX,
  NDA_LLADDR,
  NDA_MASTER,
  NDA_PORT,
  NDA_VLAN,
  NDA_VNI,
  NLM_F_APPEND,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  NTF_SELF,
  NUD_PERMANENT,
  RTM_DELNEIGH,
  RTM_GETNEIGH,
  RTM_NEWNEIGH,
} from "./constants.ts";
import { dump, execute, type NetlinkHandle, type NetlinkRequest } from "./socket.ts";
import { AF_BRIDGE, AF_INET, AF_INET6 } from "../unix.ts";

/** A neighbour entry (IP -> MAC on an interface). */
export interface Neigh {
  index: number;
  family: Family;
  ip: IPAddr;
  /** Absent for unresolved entries (INCOMPLETE, FAILED). */
  mac?: string;
  /** NUD_* bits. */
  state: number;
  /** NTF_* bits. */
  flags: number;
}

/** A neighbour to add, replace or delete (`mac` is ignored by delete). */
export interface NeighSpec {
  index: number;
  ip: IPAddr;
  mac?: string;
  /** NUD_* (default NUD_PERMANENT). */
  state?: number;
  flags?: number;
}

/** A bridge FDB entry. */
export interface FdbEntry {
  index: number;
  mac: string;
  /** Remote (underlay) IP of a vxlan entry. */
  dst?: IPAddr;
  vni?: number;
  port?: number;
  vlan?: number;
  /** Bridge the port belongs to (NTF_MASTER entries). */
  master?: number;
  /** Outgoing interface of a vxlan remote. */
  via?: number;
  state: number;
  flags: number;
}

/** An FDB entry to add, replace or delete. */
export interface FdbSpec {
  index: number;
  mac: string;
  dst?: IPAddr;
  vni?: number;
  port?: number;
  /** NUD_* (default NUD_PERMANENT). */
  state?: number;
  /** NTF_* (default NTF_SELF: the device's own table, not a bridge master's). */
  flags?: number;
}

/** Which entries the list functions return. */
export interface NeighFilter {
  index?: number;
  family?: Family;
}

function familyOf(f: Family): number {
  return f === 4 ? AF_INET : AF_INET6;
}

/** Turn an RTM_NEWNEIGH message of family AF_INET/AF_INET6 into a {@link Neigh}. */
export function neighFromMessage(m: NetlinkMessage): Neigh {
  if (m.body.kind !== "neigh") throw new NetlinkDecodeError("not a neighbour message", 0);
  const { msg } = m.body;
  if (msg.family !== AF_INET && msg.family !== AF_INET6) {
    throw new NetlinkDecodeError(`neighbour family ${msg.family}`, 0);
  }
  const a = attrMap(m.body.attrs);
  const dst = a.get(NDA_DST);
  if (!dst) throw new NetlinkDecodeError("neighbour without NDA_DST", 0);
  const ip = attrAddr(dst);
  const out: Neigh = {
    index: msg.index,
    family: ip.family,
    ip,
    state: msg.state,
    flags: msg.flags,
  };
  const ll = a.get(NDA_LLADDR);
  if (ll && ll.data.length > 0) out.mac = formatMac(ll.data);
  return out;
}

/** Turn an RTM_NEWNEIGH message of family AF_BRIDGE into an {@link FdbEntry}. */
export function fdbFromMessage(m: NetlinkMessage): FdbEntry {
  if (m.body.kind !== "neigh" || m.body.msg.family !== AF_BRIDGE) {
    throw new NetlinkDecodeError("not an FDB message", 0);
  }
  const { msg } = m.body;
  const a = attrMap(m.body.attrs);
  const ll = a.get(NDA_LLADDR);
  if (!ll || ll.data.length === 0) throw new NetlinkDecodeError("FDB entry without MAC", 0);
  const out: FdbEntry = {
    index: msg.index,
    mac: formatMac(ll.data),
    state: msg.state,
    flags: msg.flags,
  };
  const read = <K extends keyof FdbEntry>(key: K, type: number, f: (x: Attr) => FdbEntry[K]) => {
    const x = a.get(type);
    if (x) out[key] = f(x);
  };
  read("dst", NDA_DST, attrAddr);
  read("vni", NDA_VNI, attrU32);
  read("port", NDA_PORT, attrBe16);
  read("vlan", NDA_VLAN, attrU16);
  read("master", NDA_MASTER, attrU32);
  read("via", NDA_IFINDEX, attrU32);
  return out;
}

/** Dump one family's neighbour table, turning each wanted entry into a `T` while reading. */
function dumpNeigh<T extends { index: number }>(
  h: NetlinkHandle,
  family: number,
  index: number | undefined,
  decode: (m: NetlinkMessage) => T,
): T[] {
  return dump(h, {
    type: RTM_GETNEIGH,
    body: { kind: "neigh", msg: { family, index: 0, state: 0, flags: 0, type: 0 }, attrs: [] },
  }, (m) => {
    if (m.body.kind !== "neigh" || m.body.msg.family !== family) return undefined;
    const entry = decode(m);
    return index === undefined || entry.index === index ? entry : undefined;
  });
}

/** List IPv4 and/or IPv6 neighbours. */
export function listNeighs(h: NetlinkHandle, filter: NeighFilter = {}): Neigh[] {
  const families = filter.family ? [filter.family] : [4, 6] as const;
  return families.flatMap((f) => dumpNeigh(h, familyOf(f), filter.index, neighFromMessage));
}

/** List bridge FDB entries, optionally of one device. */
export function listFdb(h: NetlinkHandle, filter: { index?: number } = {}): FdbEntry[] {
  return dumpNeigh(h, AF_BRIDGE, filter.index, fdbFromMessage);
}

const OPS = {
  add: { type: RTM_NEWNEIGH, flags: NLM_F_CREATE | NLM_F_EXCL },
  append: { type: RTM_NEWNEIGH, flags: NLM_F_CREATE | NLM_F_APPEND },
  replace: { type: RTM_NEWNEIGH, flags: NLM_F_CREATE | NLM_F_REPLACE },
  delete: { type: RTM_DELNEIGH, flags: 0 },
} as const;

/** An RTM_*NEIGH request for `op` (state NUD_PERMANENT unless the spec says otherwise). */
function neighMessage(
  op: keyof typeof OPS,
  family: number,
  spec: { readonly index: number; readonly state?: number },
  flags: number,
  attrs: Attr[],
): NetlinkRequest {
  const msg = { family, index: spec.index, state: spec.state ?? NUD_PERMANENT, flags, type: 0 };
  return { type: OPS[op].type, flags: OPS[op].flags, body: { kind: "neigh", msg, attrs } };
}

/** Neighbour operations. */
export type NeighOp = "add" | "replace" | "delete";

/** The request for one neighbour operation, for batches (`executeBatch` in batch.ts). */
export function neighRequest(op: NeighOp, spec: NeighSpec): NetlinkRequest {
  const attrs = [addrAttr(NDA_DST, spec.ip)];
  if (spec.mac !== undefined && op !== "delete") {
    attrs.push(bytesAttr(NDA_LLADDR, parseMac(spec.mac)));
  }
  return neighMessage(op, familyOf(spec.ip.family), spec, spec.flags ?? 0, attrs);
}

/** Add a neighbour (`EEXIST` if present). */
export function addNeigh(h: NetlinkHandle, spec: NeighSpec): void {
  execute(h, neighRequest("add", spec));
}

/**
 * Add or overwrite a neighbour (`ip neigh replace`).
 *
 * @example
 * ```ts
 * replaceNeigh(h, { index, ip: parseAddr("10.244.2.0"), mac: "0a:58:0a:f4:02:00" });
 * ```
 */
export function replaceNeigh(h: NetlinkHandle, spec: NeighSpec): void {
  execute(h, neighRequest("replace", spec));
}

/** Delete a neighbour (`ENOENT` if absent). */
export function deleteNeigh(h: NetlinkHandle, spec: NeighSpec): void {
  execute(h, neighRequest("delete", spec));
}

/** FDB operations; "append" adds another remote for the same MAC (flood lists). */
export type FdbOp = keyof typeof OPS;

/** The request for one FDB operation, for batches (`executeBatch` in batch.ts). */
export function fdbRequest(op: FdbOp, spec: FdbSpec): NetlinkRequest {
  const attrs: Attr[] = [bytesAttr(NDA_LLADDR, parseMac(spec.mac))];
  if (spec.dst) attrs.push(addrAttr(NDA_DST, spec.dst));
  if (spec.vni !== undefined) attrs.push(u32Attr(NDA_VNI, spec.vni));
  if (spec.port !== undefined) attrs.push(be16Attr(NDA_PORT, spec.port));
  return neighMessage(op, AF_BRIDGE, spec, spec.flags ?? NTF_SELF, attrs);
}

/**
 * Add or overwrite an FDB entry (`bridge fdb replace`).
 *
 * @example
 * ```ts
 * replaceFdb(h, { index: vxlan.index, mac: peerVtepMac, dst: parseAddr("198.18.0.2") });
 * ```
 */
export function replaceFdb(h: NetlinkHandle, spec: FdbSpec): void {
  execute(h, fdbRequest("replace", spec));
}

/** Delete an FDB entry (with `dst`, only that remote of a vxlan entry). */
export function deleteFdb(h: NetlinkHandle, spec: FdbSpec): void {
  execute(h, fdbRequest("delete", spec));
}
