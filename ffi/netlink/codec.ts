/**
 * Strict encoder and decoder for rtnetlink and generic netlink messages: `nlmsghdr`, the four
 * rtnetlink family headers (`ifinfomsg`, `ifaddrmsg`, `rtmsg`, `ndmsg`), `genlmsghdr`,
 * `nlmsgerr` and `rtattr` lists. Message types mean different bodies per protocol (type 16 is
 * RTM_NEWLINK on NETLINK_ROUTE but the nlctrl family on NETLINK_GENERIC), so encoding and
 * decoding take the socket's protocol (default NETLINK_ROUTE).
 *
 * Attributes stay raw (`type`, `nested` flag, bytes): the kernel does not always mark nests
 * with NLA_F_NESTED, so only the object modules know which attribute holds a nest, and
 * decode it with {@link decodeAttrs}. Every integer is host-endian (little on x86-64) except
 * where an attribute says otherwise (`IFLA_VXLAN_PORT`, see {@link be16Attr}).
 *
 * Decoding never reads out of bounds: malformed or truncated input raises
 * {@link NetlinkDecodeError}. Encoding out-of-range values raises RangeError.
 *
 * @module
 */
import { addrFromBytes, addrToBytes, type IPAddr } from "../../ip/mod.ts";
import {
  NETLINK_GENERIC,
  NETLINK_ROUTE,
  NLA_F_NESTED,
  NLA_TYPE_MASK,
  NLM_F_ACK_TLVS,
  NLM_F_CAPPED,
  NLMSG_DONE,
  NLMSG_ERROR,
  NLMSGERR_ATTR_MSG,
} from "./constants.ts";

/** Bytes that are not a well-formed netlink message or attribute. */
export class NetlinkDecodeError extends Error {
  constructor(message: string, readonly offset: number) {
    super(`netlink decode: ${message} (at byte ${offset})`);
    this.name = "NetlinkDecodeError";
  }
}

/** `struct nlmsghdr` without the length, which the encoder computes. */
export interface NlHeader {
  type: number;
  flags: number;
  seq: number;
  pid: number;
}

/** One `rtattr`: the type without flag bits, whether NLA_F_NESTED was set, the payload. */
export interface Attr {
  type: number;
  nested: boolean;
  data: Uint8Array;
}

/** `struct ifinfomsg` (links). */
export interface IfInfoMsg {
  family: number;
  type: number;
  index: number;
  flags: number;
  change: number;
}

/** `struct ifaddrmsg` (addresses). */
export interface IfAddrMsg {
  family: number;
  prefixLen: number;
  flags: number;
  scope: number;
  index: number;
}

/** `struct rtmsg` (routes). */
export interface RtMsg {
  family: number;
  dstLen: number;
  srcLen: number;
  tos: number;
  table: number;
  protocol: number;
  scope: number;
  type: number;
  flags: number;
}

/** `struct ndmsg` (neighbours and FDB entries). */
export interface NdMsg {
  family: number;
  index: number;
  state: number;
  flags: number;
  type: number;
}

/** `struct genlmsghdr` (the reserved u16 is written as 0 and ignored when read). */
export interface GenlMsgHdr {
  cmd: number;
  version: number;
}

/**
 * A message body. The kind follows from the header type and the protocol: NLMSG_ERROR error
 * (errno 0 is an ACK), NLMSG_DONE done; on NETLINK_ROUTE 16-19 link, 20-23 addr, 24-27 route,
 * 28-31 neigh; on NETLINK_GENERIC every type from 16 (a family id) genl; anything else raw.
 * `errno` values are positive (the kernel sends them negated).
 */
export type NetlinkBody =
  | { kind: "link"; msg: IfInfoMsg; attrs: Attr[] }
  | { kind: "addr"; msg: IfAddrMsg; attrs: Attr[] }
  | { kind: "route"; msg: RtMsg; attrs: Attr[] }
  | { kind: "neigh"; msg: NdMsg; attrs: Attr[] }
  | { kind: "genl"; msg: GenlMsgHdr; attrs: Attr[] }
  | { kind: "error"; errno: number; request: NlHeader; extAck?: string }
  | { kind: "done"; errno: number }
  | { kind: "raw"; payload: Uint8Array };

/** One netlink message. */
export interface NetlinkMessage {
  header: NlHeader;
  body: NetlinkBody;
}

type BodyKind = NetlinkBody["kind"];

const HEADER_LEN = 16;
const ATTR_HEADER_LEN = 4;
const FAMILY_HEADER_LEN = { link: 16, addr: 8, route: 12, neigh: 12, genl: 4 } as const;
/** NLMSG_MIN_TYPE: types below it are netlink's own control messages. */
const MIN_TYPE = 16;

/** The body kind a message type carries on a socket of `protocol` (NETLINK_ROUTE by default). */
export function bodyKindOf(type: number, protocol: number = NETLINK_ROUTE): BodyKind {
  if (type === NLMSG_ERROR) return "error";
  if (type === NLMSG_DONE) return "done";
  if (protocol === NETLINK_GENERIC && type >= MIN_TYPE) return "genl";
  if (protocol === NETLINK_ROUTE && type >= MIN_TYPE && type < 32) {
    return (["link", "addr", "route", "neigh"] as const)[(type - MIN_TYPE) >> 2];
  }
  return "raw";
}

function align4(n: number): number {
  return (n + 3) & ~3;
}

function checkInt(value: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`netlink encode: ${what} = ${value} is outside [${min}, ${max}]`);
  }
  return value;
}

/** A growable little-endian byte writer. */
class Writer {
  bytes = new Uint8Array(512);
  view = new DataView(this.bytes.buffer);
  pos = 0;

  reserve(n: number): number {
    const at = this.pos;
    const need = at + n;
    if (need > this.bytes.length) {
      const grown = new Uint8Array(Math.max(need, this.bytes.length * 2));
      grown.set(this.bytes.subarray(0, at));
      this.bytes = grown;
      this.view = new DataView(grown.buffer);
    }
    this.pos = need;
    return at;
  }
  // reserve() first: it may replace `view`, so never write `this.view.set*(this.reserve(n))`.
  u8(v: number, what: string): void {
    const at = this.reserve(1);
    this.view.setUint8(at, checkInt(v, 0, 0xff, what));
  }
  u16(v: number, what: string): void {
    const at = this.reserve(2);
    this.view.setUint16(at, checkInt(v, 0, 0xffff, what), true);
  }
  u32(v: number, what: string): void {
    const at = this.reserve(4);
    this.view.setUint32(at, checkInt(v, 0, 0xffffffff, what), true);
  }
  i32(v: number, what: string): void {
    const at = this.reserve(4);
    this.view.setInt32(at, checkInt(v, -0x80000000, 0x7fffffff, what), true);
  }
  raw(data: Uint8Array): void {
    const at = this.reserve(data.length);
    this.bytes.set(data, at);
  }
  pad(): void {
    this.reserve(align4(this.pos) - this.pos);
  }
  result(): Uint8Array<ArrayBuffer> {
    return this.bytes.slice(0, this.pos);
  }
}

function writeAttrs(w: Writer, attrs: readonly Attr[]): void {
  for (const a of attrs) {
    w.u16(checkInt(ATTR_HEADER_LEN + a.data.length, 0, 0xffff, "attribute length"), "nla_len");
    w.u16(checkInt(a.type, 0, NLA_TYPE_MASK, "attribute type") | (a.nested ? NLA_F_NESTED : 0), "");
    w.raw(a.data);
    w.pad();
  }
}

function writeHeader(w: Writer, h: NlHeader, flags = h.flags): void {
  w.u32(0, "nlmsg_len"); // patched once the body is written
  w.u16(h.type, "nlmsg_type");
  w.u16(flags, "nlmsg_flags");
  w.u32(h.seq, "nlmsg_seq");
  w.u32(h.pid, "nlmsg_pid");
}

function writeBody(w: Writer, body: NetlinkBody): void {
  switch (body.kind) {
    case "link": {
      const m = body.msg;
      w.u8(m.family, "ifi_family");
      w.u8(0, "");
      w.u16(m.type, "ifi_type");
      w.i32(m.index, "ifi_index");
      w.u32(m.flags, "ifi_flags");
      w.u32(m.change, "ifi_change");
      return writeAttrs(w, body.attrs);
    }
    case "addr": {
      const m = body.msg;
      w.u8(m.family, "ifa_family");
      w.u8(m.prefixLen, "ifa_prefixlen");
      w.u8(m.flags, "ifa_flags");
      w.u8(m.scope, "ifa_scope");
      w.u32(m.index, "ifa_index");
      return writeAttrs(w, body.attrs);
    }
    case "route": {
      const m = body.msg;
      w.u8(m.family, "rtm_family");
      w.u8(m.dstLen, "rtm_dst_len");
      w.u8(m.srcLen, "rtm_src_len");
      w.u8(m.tos, "rtm_tos");
      w.u8(m.table, "rtm_table");
      w.u8(m.protocol, "rtm_protocol");
      w.u8(m.scope, "rtm_scope");
      w.u8(m.type, "rtm_type");
      w.u32(m.flags, "rtm_flags");
      return writeAttrs(w, body.attrs);
    }
    case "neigh": {
      const m = body.msg;
      w.u8(m.family, "ndm_family");
      w.u8(0, "");
      w.u16(0, "");
      w.i32(m.index, "ndm_ifindex");
      w.u16(m.state, "ndm_state");
      w.u8(m.flags, "ndm_flags");
      w.u8(m.type, "ndm_type");
      return writeAttrs(w, body.attrs);
    }
    case "genl":
      w.u8(body.msg.cmd, "genl cmd");
      w.u8(body.msg.version, "genl version");
      w.u16(0, "");
      return writeAttrs(w, body.attrs);
    case "error":
      w.i32(-checkInt(body.errno, 0, 0x7fffffff, "errno"), "error");
      writeHeader(w, body.request);
      w.view.setUint32(w.pos - HEADER_LEN, HEADER_LEN, true); // capped: the request's header only
      if (body.extAck !== undefined) writeAttrs(w, [strAttr(NLMSGERR_ATTR_MSG, body.extAck)]);
      return;
    case "done":
      return w.i32(-checkInt(body.errno, 0, 0x7fffffff, "errno"), "error");
    case "raw":
      return w.raw(body.payload);
  }
}

function writeMessage(w: Writer, msg: NetlinkMessage, protocol: number): void {
  const kind = bodyKindOf(msg.header.type, protocol);
  if (kind !== msg.body.kind) {
    throw new RangeError(
      `netlink encode: message type ${msg.header.type} carries a ${kind} body, not ${msg.body.kind}`,
    );
  }
  const start = w.pos;
  let flags = msg.header.flags;
  // An error body is always written capped, with TLVs only when there is a message.
  if (msg.body.kind === "error") {
    flags = (flags & ~NLM_F_ACK_TLVS) | NLM_F_CAPPED |
      (msg.body.extAck !== undefined ? NLM_F_ACK_TLVS : 0);
  }
  writeHeader(w, msg.header, flags);
  writeBody(w, msg.body);
  w.view.setUint32(start, w.pos - start, true);
  w.pad();
}

/**
 * Encode messages back to back into one buffer (one `sendto` can carry them all), for a socket
 * of `protocol`. For an error body the header flags NLM_F_CAPPED / NLM_F_ACK_TLVS are derived
 * from the body.
 */
export function encodeMessages(
  msgs: readonly NetlinkMessage[],
  protocol: number = NETLINK_ROUTE,
): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  for (const m of msgs) writeMessage(w, m, protocol);
  return w.result();
}

/** Encode one message for a socket of `protocol`. */
export function encodeMessage(
  msg: NetlinkMessage,
  protocol: number = NETLINK_ROUTE,
): Uint8Array<ArrayBuffer> {
  return encodeMessages([msg], protocol);
}

/** Encode a body without its nlmsghdr (a veth peer is an `ifinfomsg` plus attributes). */
export function encodeBody(body: NetlinkBody): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  writeBody(w, body);
  return w.result();
}

/** Encode an attribute list (the payload of a nest). */
export function encodeAttrs(attrs: readonly Attr[]): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  writeAttrs(w, attrs);
  return w.result();
}

/** Decode an attribute list; `base` only positions error offsets. */
export function decodeAttrs(data: Uint8Array, base = 0): Attr[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const attrs: Attr[] = [];
  let pos = 0;
  while (pos < data.length) {
    if (data.length - pos < ATTR_HEADER_LEN) {
      throw new NetlinkDecodeError("truncated attribute header", base + pos);
    }
    const len = view.getUint16(pos, true);
    const rawType = view.getUint16(pos + 2, true);
    if (len < ATTR_HEADER_LEN || len > data.length - pos) {
      throw new NetlinkDecodeError(`attribute length ${len} out of bounds`, base + pos);
    }
    attrs.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      data: data.subarray(pos + ATTR_HEADER_LEN, pos + len),
    });
    pos = Math.min(align4(pos + len), data.length);
  }
  return attrs;
}

function decodeHeader(view: DataView, at: number): NlHeader & { len: number } {
  return {
    len: view.getUint32(at, true),
    type: view.getUint16(at + 4, true),
    flags: view.getUint16(at + 6, true),
    seq: view.getUint32(at + 8, true),
    pid: view.getUint32(at + 12, true),
  };
}

function decodeError(header: NlHeader, payload: Uint8Array, base: number): NetlinkBody {
  if (payload.length < 4 + HEADER_LEN) throw new NetlinkDecodeError("truncated nlmsgerr", base);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const error = view.getInt32(0, true);
  if (error > 0) throw new NetlinkDecodeError(`positive error code ${error}`, base);
  const { len: requestLen, ...request } = decodeHeader(view, 4);
  let tlvAt = 4 + HEADER_LEN;
  if (!(header.flags & NLM_F_CAPPED)) {
    if (requestLen < HEADER_LEN || 4 + requestLen > payload.length) {
      throw new NetlinkDecodeError(`echoed request length ${requestLen} out of bounds`, base + 4);
    }
    tlvAt = Math.min(align4(4 + requestLen), payload.length);
  }
  const body: NetlinkBody = { kind: "error", errno: 0 - error, request };
  if (header.flags & NLM_F_ACK_TLVS) {
    const msg = decodeAttrs(payload.subarray(tlvAt), base + tlvAt)
      .find((a) => a.type === NLMSGERR_ATTR_MSG);
    if (msg) body.extAck = attrString(msg);
  }
  return body;
}

function decodeFamilyBody(
  kind: "link" | "addr" | "route" | "neigh" | "genl",
  p: Uint8Array,
  base: number,
) {
  const need = FAMILY_HEADER_LEN[kind];
  if (p.length < need) throw new NetlinkDecodeError(`truncated ${kind} header`, base);
  const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const attrs = decodeAttrs(p.subarray(need), base + need);
  switch (kind) {
    case "link":
      return {
        kind,
        msg: {
          family: v.getUint8(0),
          type: v.getUint16(2, true),
          index: v.getInt32(4, true),
          flags: v.getUint32(8, true),
          change: v.getUint32(12, true),
        },
        attrs,
      } as const;
    case "addr":
      return {
        kind,
        msg: {
          family: v.getUint8(0),
          prefixLen: v.getUint8(1),
          flags: v.getUint8(2),
          scope: v.getUint8(3),
          index: v.getUint32(4, true),
        },
        attrs,
      } as const;
    case "route":
      return {
        kind,
        msg: {
          family: v.getUint8(0),
          dstLen: v.getUint8(1),
          srcLen: v.getUint8(2),
          tos: v.getUint8(3),
          table: v.getUint8(4),
          protocol: v.getUint8(5),
          scope: v.getUint8(6),
          type: v.getUint8(7),
          flags: v.getUint32(8, true),
        },
        attrs,
      } as const;
    case "neigh":
      return {
        kind,
        msg: {
          family: v.getUint8(0),
          index: v.getInt32(4, true),
          state: v.getUint16(8, true),
          flags: v.getUint8(10),
          type: v.getUint8(11),
        },
        attrs,
      } as const;
    case "genl":
      return { kind, msg: { cmd: v.getUint8(0), version: v.getUint8(1) }, attrs } as const;
  }
}

function decodeBody(
  header: NlHeader,
  payload: Uint8Array,
  base: number,
  protocol: number,
): NetlinkBody {
  const kind = bodyKindOf(header.type, protocol);
  switch (kind) {
    case "error":
      return decodeError(header, payload, base);
    case "done": {
      if (payload.length < 4) throw new NetlinkDecodeError("truncated NLMSG_DONE", base);
      const error = new DataView(payload.buffer, payload.byteOffset, 4).getInt32(0, true);
      if (error > 0) throw new NetlinkDecodeError(`positive error code ${error}`, base);
      return { kind, errno: 0 - error };
    }
    case "raw":
      return { kind, payload };
    default:
      return decodeFamilyBody(kind, payload, base);
  }
}

/**
 * Decode every message in a datagram read from a socket of `protocol`.
 *
 * @example
 * ```ts
 * const [ack] = decodeMessages(encodeMessage(msg));
 * ```
 */
export function decodeMessages(
  data: Uint8Array,
  protocol: number = NETLINK_ROUTE,
): NetlinkMessage[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const out: NetlinkMessage[] = [];
  let pos = 0;
  while (pos < data.length) {
    if (data.length - pos < HEADER_LEN) {
      throw new NetlinkDecodeError("truncated message header", pos);
    }
    const { len, ...header } = decodeHeader(view, pos);
    if (len < HEADER_LEN || len > data.length - pos) {
      throw new NetlinkDecodeError(`message length ${len} out of bounds`, pos);
    }
    const payload = data.subarray(pos + HEADER_LEN, pos + len);
    out.push({ header, body: decodeBody(header, payload, pos + HEADER_LEN, protocol) });
    pos = Math.min(align4(pos + len), data.length);
  }
  return out;
}

// ---- attribute builders -------------------------------------------------------------------

/** An attribute with raw bytes. */
export function bytesAttr(type: number, data: Uint8Array): Attr {
  return { type, nested: false, data };
}

// Built byte by byte: a DataView per attribute would dominate the cost of a 10 000-route batch.
function le(type: number, size: number, value: number): Attr {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = (value >>> (8 * i)) & 0xff;
  return bytesAttr(type, data);
}

/** A u8 attribute. */
export function u8Attr(type: number, value: number): Attr {
  return le(type, 1, checkInt(value, 0, 0xff, `attr ${type}`));
}

/** A host-endian u16 attribute. */
export function u16Attr(type: number, value: number): Attr {
  return le(type, 2, checkInt(value, 0, 0xffff, `attr ${type}`));
}

/** A big-endian u16 attribute (`IFLA_VXLAN_PORT`). */
export function be16Attr(type: number, value: number): Attr {
  checkInt(value, 0, 0xffff, `attr ${type}`);
  return bytesAttr(type, Uint8Array.of(value >>> 8, value & 0xff));
}

/** A host-endian u32 attribute. */
export function u32Attr(type: number, value: number): Attr {
  return le(type, 4, checkInt(value, 0, 0xffffffff, `attr ${type}`));
}

/** A host-endian s32 attribute (e.g. `IFLA_NET_NS_FD`). */
export function i32Attr(type: number, value: number): Attr {
  return le(type, 4, checkInt(value, -0x80000000, 0x7fffffff, `attr ${type}`));
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/** A NUL-terminated string attribute. */
export function strAttr(type: number, text: string): Attr {
  const bytes = textEncoder.encode(text);
  const data = new Uint8Array(bytes.length + 1);
  data.set(bytes);
  return bytesAttr(type, data);
}

/** An IP address attribute (4 or 16 network-order bytes). */
export function addrAttr(type: number, addr: IPAddr): Attr {
  if (addr.family === 6) return bytesAttr(type, addrToBytes(addr));
  const v = Number(addr.value); // IPv4 without four BigInt shifts
  return bytesAttr(type, Uint8Array.of(v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
}

/** A nest: NLA_F_NESTED set, children encoded as the payload. */
export function nestAttr(type: number, children: readonly Attr[]): Attr {
  return { type, nested: true, data: encodeAttrs(children) };
}

// ---- attribute readers (all throw NetlinkDecodeError on a wrong size) ---------------------

function fixedView(a: Attr, size: number): DataView {
  if (a.data.length !== size) {
    throw new NetlinkDecodeError(`attribute ${a.type}: ${a.data.length} bytes, want ${size}`, 0);
  }
  return new DataView(a.data.buffer, a.data.byteOffset, size);
}

/** Read a u8 attribute. */
export function attrU8(a: Attr): number {
  return fixedView(a, 1).getUint8(0);
}

/** Read a host-endian u16 attribute. */
export function attrU16(a: Attr): number {
  return fixedView(a, 2).getUint16(0, true);
}

/** Read a big-endian u16 attribute. */
export function attrBe16(a: Attr): number {
  return fixedView(a, 2).getUint16(0);
}

/** Read a host-endian u32 attribute. */
export function attrU32(a: Attr): number {
  return fixedView(a, 4).getUint32(0, true);
}

/** Read a host-endian s32 attribute. */
export function attrI32(a: Attr): number {
  return fixedView(a, 4).getInt32(0, true);
}

/** Read a string attribute up to its first NUL (or its end). */
export function attrString(a: Attr): string {
  const nul = a.data.indexOf(0);
  return textDecoder.decode(nul < 0 ? a.data : a.data.subarray(0, nul));
}

/** Read an IP address attribute (exactly 4 or 16 bytes). */
export function attrAddr(a: Attr): IPAddr {
  if (a.data.length !== 4 && a.data.length !== 16) {
    throw new NetlinkDecodeError(`attribute ${a.type}: ${a.data.length}-byte address`, 0);
  }
  return addrFromBytes(a.data);
}

/** Index an attribute list by type (the last one of a type wins, as in the kernel). */
export function attrMap(attrs: readonly Attr[]): Map<number, Attr> {
  return new Map(attrs.map((a) => [a.type, a]));
}
