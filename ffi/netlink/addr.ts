/**
 * Interface addresses (IPv4 and IPv6): list, add, replace, delete.
 *
 * @module
 */
import type { Family, IPAddr } from "../../ip/mod.ts";
import {
  addrAttr,
  type Attr,
  attrAddr,
  attrMap,
  attrString,
  attrU32,
  NetlinkDecodeError,
  type NetlinkMessage,
  strAttr,
  u32Attr,
} from "./codec.ts";
import {
  IFA_ADDRESS,
  IFA_BROADCAST,
  IFA_FLAGS,
  IFA_LABEL,
  IFA_LOCAL,
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RT_SCOPE_UNIVERSE,
  RTM_DELADDR,
  RTM_GETADDR,
  RTM_NEWADDR,
} from "./constants.ts";
import { dump, execute, type NetlinkHandle, type NetlinkRequest } from "./socket.ts";
import { AF_INET, AF_INET6, AF_UNSPEC } from "../unix.ts";

/** An address on an interface, as the kernel reports it. */
export interface Addr {
  index: number;
  family: Family;
  /** The interface's own address (IFA_LOCAL, or IFA_ADDRESS when there is no IFA_LOCAL). */
  address: IPAddr;
  prefix: number;
  /** The far end of a point-to-point address (IFA_ADDRESS when it differs from IFA_LOCAL). */
  peer?: IPAddr;
  broadcast?: IPAddr;
  /** RT_SCOPE_*. */
  scope: number;
  /** IFA_F_* (the 32-bit IFA_FLAGS when present). */
  flags: number;
  label?: string;
}

/** An address to add, replace or delete. */
export interface AddrSpec {
  index: number;
  address: IPAddr;
  prefix: number;
  peer?: IPAddr;
  broadcast?: IPAddr;
  /** RT_SCOPE_* (default universe). */
  scope?: number;
  /** IFA_F_* such as IFA_F_NODAD. */
  flags?: number;
  label?: string;
}

/** Which addresses {@link listAddrs} returns. */
export interface AddrFilter {
  index?: number;
  family?: Family;
}

function familyOf(f: Family): number {
  return f === 4 ? AF_INET : AF_INET6;
}

/** Turn an RTM_NEWADDR message into an {@link Addr} ({@link NetlinkDecodeError} if malformed). */
export function addrFromMessage(m: NetlinkMessage): Addr {
  if (m.body.kind !== "addr") throw new NetlinkDecodeError("not an address message", 0);
  const { msg } = m.body;
  if (msg.family !== AF_INET && msg.family !== AF_INET6) {
    throw new NetlinkDecodeError(`address family ${msg.family}`, 0);
  }
  const a = attrMap(m.body.attrs);
  const local = a.get(IFA_LOCAL);
  const remote = a.get(IFA_ADDRESS);
  const own = local ?? remote;
  if (!own) throw new NetlinkDecodeError("address message without an address", 0);
  const address = attrAddr(own);
  const out: Addr = {
    index: msg.index,
    family: address.family,
    address,
    prefix: msg.prefixLen,
    scope: msg.scope,
    flags: a.has(IFA_FLAGS) ? attrU32(a.get(IFA_FLAGS)!) : msg.flags,
  };
  if (local && remote) {
    const peer = attrAddr(remote);
    if (peer.value !== address.value) out.peer = peer;
  }
  const broadcast = a.get(IFA_BROADCAST);
  if (broadcast) out.broadcast = attrAddr(broadcast);
  const label = a.get(IFA_LABEL);
  if (label) out.label = attrString(label);
  return out;
}

/** List addresses, optionally of one interface and/or one family. */
export function listAddrs(h: NetlinkHandle, filter: AddrFilter = {}): Addr[] {
  const family = filter.family ? familyOf(filter.family) : AF_UNSPEC;
  return dump(h, {
    type: RTM_GETADDR,
    body: { kind: "addr", msg: { family, prefixLen: 0, flags: 0, scope: 0, index: 0 }, attrs: [] },
  })
    .filter((m) => m.body.kind === "addr")
    .map(addrFromMessage)
    .filter((a) => filter.index === undefined || a.index === filter.index)
    .filter((a) => filter.family === undefined || a.family === filter.family);
}

const OPS = {
  add: { type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_EXCL },
  replace: { type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_REPLACE },
  delete: { type: RTM_DELADDR, flags: 0 },
} as const;

/** The request for one address operation, for {@link executeBatch}. */
export function addrRequest(op: keyof typeof OPS, spec: AddrSpec): NetlinkRequest {
  // Like iproute2: IFA_LOCAL is our address, IFA_ADDRESS the peer (or the same address).
  const attrs: Attr[] = [
    addrAttr(IFA_LOCAL, spec.address),
    addrAttr(IFA_ADDRESS, spec.peer ?? spec.address),
  ];
  if (spec.broadcast) attrs.push(addrAttr(IFA_BROADCAST, spec.broadcast));
  if (spec.label !== undefined) attrs.push(strAttr(IFA_LABEL, spec.label));
  if (spec.flags !== undefined) attrs.push(u32Attr(IFA_FLAGS, spec.flags));
  return {
    type: OPS[op].type,
    flags: OPS[op].flags,
    body: {
      kind: "addr",
      msg: {
        family: familyOf(spec.address.family),
        prefixLen: spec.prefix,
        flags: (spec.flags ?? 0) & 0xff,
        scope: spec.scope ?? RT_SCOPE_UNIVERSE,
        index: spec.index,
      },
      attrs,
    },
  };
}

/**
 * Add an address (`EEXIST` if present).
 *
 * @example
 * ```ts
 * addAddr(h, { index: link.index, address: parseAddr("10.244.1.0"), prefix: 32 });
 * ```
 */
export function addAddr(h: NetlinkHandle, spec: AddrSpec): void {
  execute(h, addrRequest("add", spec));
}

/** Add an address or update the existing one. */
export function replaceAddr(h: NetlinkHandle, spec: AddrSpec): void {
  execute(h, addrRequest("replace", spec));
}

/** Delete an address (`EADDRNOTAVAIL` if absent). */
export function deleteAddr(h: NetlinkHandle, spec: AddrSpec): void {
  execute(h, addrRequest("delete", spec));
}
