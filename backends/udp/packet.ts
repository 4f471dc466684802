/**
 * IPv4 packet arithmetic for the udp data path: header checks, the Internet checksum, the TTL
 * decrement flannel applies at each hop, and the ICMP "network unreachable" it answers with
 * (spec §6.3). Pure functions over {@link PacketBuffer}s, so they are property-tested without
 * a kernel and run unchanged in the data-path Worker.
 *
 * Offsets are byte positions in the buffer; every function bounds-checks what it reads and never
 * throws on garbage.
 *
 * @module
 */
import { summingMemory, type WordSum } from "./wasm_sum.ts";

export const IPV4_MIN_HEADER = 20;
const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
const PROTO_UDP = 17;
/** The largest IPv4 packet (total length is 16 bits). */
export const IPV4_MAX_PACKET = 65535;

/**
 * One memory area seen as bytes and a DataView, with a fast word sum for checksums. It is a
 * non-growable WebAssembly memory: the SIMD sum runs on it directly, and its addresses never
 * move, so the kernel can be given pointers into it.
 */
export interface PacketBuffer {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly view: DataView<ArrayBuffer>;
  /** Folded sum of the little-endian 32-bit words in `[start, end)`, start 4-aligned. */
  readonly sumWords: WordSum;
}

/** A zeroed {@link PacketBuffer} of at least `size` bytes (whole 64 KiB pages). */
export function packetBuffer(size: number): PacketBuffer {
  const { memory, sum } = summingMemory(size);
  const buffer = memory.buffer as ArrayBuffer;
  return { bytes: new Uint8Array(buffer), view: new DataView(buffer), sumWords: sum };
}

/** A {@link PacketBuffer} holding a copy of `data` at offset 0. */
export function packetBufferOf(data: Uint8Array): PacketBuffer {
  const buf = packetBuffer(data.length);
  buf.bytes.set(data);
  return buf;
}

/** Copy `length` bytes between buffers (a memmove without allocation when they are the same). */
export function copyBytes(
  from: PacketBuffer,
  fromStart: number,
  to: PacketBuffer,
  toStart: number,
  length: number,
): void {
  if (from.bytes === to.bytes) to.bytes.copyWithin(toStart, fromStart, fromStart + length);
  else to.bytes.set(from.bytes.subarray(fromStart, fromStart + length), toStart);
}

/**
 * Ranges shorter than this (IP headers, small packets) are summed in JavaScript: cheaper than a
 * call into WebAssembly.
 */
const WASM_SUM_MIN_BYTES = 128;

/** Fold a non-negative sum (below 2^53) to 16 bits with end-around carry. */
function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The 16-bit one's-complement sum (RFC 1071, not inverted) of `[start, end)` in network order,
 * added to `initial`. Odd lengths are padded with a zero byte.
 *
 * @example
 * ```ts
 * const sum = onesSum(buf, 0, 20); // 0xffff for a header with a valid checksum
 * ```
 */
export function onesSum(buf: PacketBuffer, start: number, end: number, initial = 0): number {
  const { bytes } = buf;
  start = Math.max(0, start);
  end = Math.min(end, bytes.length);
  let sum = initial;
  let i = start;
  if ((start & 3) === 0 && end - start >= WASM_SUM_MIN_BYTES) {
    // Little-endian words sum to the byte-swapped network-order sum (RFC 1071 §2(B)).
    const wordsEnd = start + ((end - start) & ~3);
    const le = buf.sumWords(start, wordsEnd);
    sum += ((le & 0xff) << 8) | (le >>> 8);
    i = wordsEnd;
  }
  for (; i + 1 < end; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (i < end) sum += bytes[i] << 8;
  return fold(sum);
}

/** The Internet checksum of `[start, end)` (the inverted {@link onesSum}). */
export function checksum(buf: PacketBuffer, start: number, end: number, initial = 0): number {
  return ~onesSum(buf, start, end, initial) & 0xffff;
}

/** The pseudo-header sum of the IPv4 packet at `start` for a layer-4 part of `l4Length` bytes. */
export function pseudoHeaderSum(buf: PacketBuffer, start: number, l4Length: number): number {
  const v = buf.view;
  return fold(
    v.getUint16(start + 12) + v.getUint16(start + 14) + v.getUint16(start + 16) +
      v.getUint16(start + 18) + buf.bytes[start + 9] + l4Length,
  );
}

/** Why bytes are not a usable IPv4 packet (every reason is counted as `malformed`). */
export type Ipv4Problem =
  | "too_short"
  | "not_ipv4"
  | "bad_header_length"
  | "bad_total_length"
  | "bad_checksum";

/**
 * The first problem of the IPv4 header at `start` in a packet of `length` bytes, checking only
 * what a GSO super-packet from the local kernel also satisfies (version, header length).
 */
export function ipv4HeaderProblem(
  buf: PacketBuffer,
  start: number,
  length: number,
): Ipv4Problem | null {
  if (length < IPV4_MIN_HEADER || start < 0 || start + length > buf.bytes.length) {
    return "too_short";
  }
  const first = buf.bytes[start];
  if (first >>> 4 !== 4) return "not_ipv4";
  const headerLength = (first & 0x0f) * 4;
  if (headerLength < IPV4_MIN_HEADER || headerLength > length) return "bad_header_length";
  return null;
}

/**
 * The first problem of a complete IPv4 packet received from the wire: the header checks, the
 * total length equal to what arrived, and a valid header checksum.
 */
export function ipv4PacketProblem(
  buf: PacketBuffer,
  start: number,
  length: number,
): Ipv4Problem | null {
  const header = ipv4HeaderProblem(buf, start, length);
  if (header) return header;
  if (buf.view.getUint16(start + 2) !== length) return "bad_total_length";
  const headerLength = (buf.bytes[start] & 0x0f) * 4;
  if (onesSum(buf, start, start + headerLength) !== 0xffff) return "bad_checksum";
  return null;
}

/** Header length in bytes of the IPv4 packet at `start` (IHL × 4). */
export function ipv4HeaderLength(buf: PacketBuffer, start: number): number {
  return (buf.bytes[start] & 0x0f) * 4;
}

/** Source address of the IPv4 packet at `start`, as an unsigned 32-bit number. */
export function ipv4Source(buf: PacketBuffer, start: number): number {
  return buf.view.getUint32(start + 12);
}

/** Destination address of the IPv4 packet at `start`, as an unsigned 32-bit number. */
export function ipv4Destination(buf: PacketBuffer, start: number): number {
  return buf.view.getUint32(start + 16);
}

/** Recompute the header checksum of the IPv4 packet at `start` from scratch. */
export function setIpv4Checksum(buf: PacketBuffer, start: number): void {
  buf.view.setUint16(start + 10, 0);
  buf.view.setUint16(start + 10, checksum(buf, start, start + ipv4HeaderLength(buf, start)));
}

/**
 * Decrement the TTL of the IPv4 packet at `start` by one, fixing the header checksum
 * incrementally (RFC 1624 eqn. 3), as flannel does at each hop. Returns the new TTL; 0 means the
 * packet must be dropped (and then nothing was changed).
 */
export function decrementTtl(buf: PacketBuffer, start: number): number {
  const { bytes, view } = buf;
  const ttl = bytes[start + 8];
  if (ttl <= 1) return 0;
  const protocol = bytes[start + 9];
  const before = (ttl << 8) | protocol;
  const after = ((ttl - 1) << 8) | protocol;
  bytes[start + 8] = ttl - 1;
  let sum = (~view.getUint16(start + 10) & 0xffff) + (~before & 0xffff) + after;
  sum = (sum & 0xffff) + (sum >>> 16);
  sum = (sum & 0xffff) + (sum >>> 16);
  view.setUint16(start + 10, ~sum & 0xffff);
  return ttl - 1;
}

/**
 * Finish a checksum the kernel left partial (virtio NEEDS_CSUM): the field at
 * `csumStart + csumOffset` holds the pseudo-header sum, and the sum runs from `csumStart` to the
 * end of the packet at `start`. Returns false when the offsets do not fit the packet.
 */
export function completeChecksum(
  buf: PacketBuffer,
  start: number,
  length: number,
  csumStart: number,
  csumOffset: number,
): boolean {
  const field = start + csumStart + csumOffset;
  if (start < 0 || start + length > buf.bytes.length) return false;
  if (csumStart < IPV4_MIN_HEADER || field + 2 > start + length) return false;
  let sum = checksum(buf, start + csumStart, start + length);
  // A zero UDP checksum means "none", so UDP sends its complement (RFC 768).
  if (sum === 0 && buf.bytes[start + 9] === PROTO_UDP) sum = 0xffff;
  buf.view.setUint16(field, sum);
  return true;
}

/** Length of the ICMP message {@link buildNetUnreachable} writes for `offenderLength` bytes. */
function netUnreachableLength(headerLength: number, offenderLength: number): number {
  return IPV4_MIN_HEADER + 8 + Math.min(offenderLength, headerLength + 8);
}

/**
 * Write an ICMP "network unreachable" (type 3 code 0) for the offending IPv4 packet at
 * `start` into `out` at `outStart`, as flannel's proxy does (spec §6.3): IHL 5, TTL 8, from
 * `from` (the node's subnet base) to the offender's source, quoting its header and first 8
 * payload bytes. Returns the length written, or 0 when none is due: ICMP offenders, non-first
 * fragments, headers of 60 bytes or more, and anything that is not an IPv4 header.
 */
export function buildNetUnreachable(
  buf: PacketBuffer,
  start: number,
  length: number,
  from: number,
  out: PacketBuffer,
  outStart: number,
): number {
  if (ipv4HeaderProblem(buf, start, length)) return 0;
  const headerLength = ipv4HeaderLength(buf, start);
  const fragmentOffset = buf.view.getUint16(start + 6) & 0x1fff;
  if (buf.bytes[start + 9] === PROTO_ICMP || fragmentOffset !== 0 || headerLength >= 60) return 0;
  const quoted = Math.min(length, headerLength + 8);
  const total = netUnreachableLength(headerLength, length);
  if (outStart + total > out.bytes.length) return 0;
  const o = out.view;
  out.bytes.fill(0, outStart, outStart + 28);
  o.setUint8(outStart, 0x45);
  o.setUint16(outStart + 2, total);
  o.setUint8(outStart + 8, 8); // TTL
  o.setUint8(outStart + 9, PROTO_ICMP);
  o.setUint32(outStart + 12, from >>> 0);
  o.setUint32(outStart + 16, ipv4Source(buf, start));
  setIpv4Checksum(out, outStart);
  const icmp = outStart + IPV4_MIN_HEADER;
  o.setUint8(icmp, 3); // destination unreachable
  o.setUint8(icmp + 1, 0); // network unreachable
  out.bytes.set(buf.bytes.subarray(start, start + quoted), icmp + 8);
  o.setUint16(icmp + 2, checksum(out, icmp, outStart + total));
  return total;
}
