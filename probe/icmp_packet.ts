/**
 * ICMP echo messages as bytes, for IPv4 (RFC 792) and IPv6 (RFC 4443): the request a probe sends
 * and the reply it waits for. Pure, so the codec is tested without a socket.
 *
 * @module
 */
import type { Family } from "../ip/mod.ts";

/** ICMP types of an echo request and reply, per family. */
export const ECHO_TYPES = {
  4: { request: 8, reply: 0 },
  6: { request: 128, reply: 129 },
} as const;
/** ICMP header of an echo message: type, code, checksum, identifier, sequence. */
export const ICMP_ECHO_HEADER = 8;
/** An IP header without options or extension headers, per family. */
export const IP_HEADER_BYTES = { 4: 20, 6: 40 } as const;
/** The largest packet an IP length field describes (IPv6's counts only the payload). */
const MAX_PACKET_BYTES = 65_535;

/** The Internet checksum (RFC 1071) over `bytes`. */
export function internetChecksum(bytes: Uint8Array): number {
  let sum = 0;
  const even = bytes.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (even < bytes.length) sum += bytes[even] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** The largest ICMP message of the family in one packet. */
export function maxIcmpBytes(family: Family): number {
  return family === 4 ? MAX_PACKET_BYTES - IP_HEADER_BYTES[4] : MAX_PACKET_BYTES;
}

/**
 * An echo request of `icmpBytes` bytes in total (header included, at least 8), its payload
 * zero-filled. An IPv4 request carries its checksum; an ICMPv6 checksum covers the IPv6
 * addresses, so the kernel fills it in (RFC 3542 §3.1), as a ping socket does the identifier.
 */
export function echoRequest(
  family: Family,
  id: number,
  seq: number,
  icmpBytes: number,
): Uint8Array<ArrayBuffer> {
  if (
    !Number.isInteger(icmpBytes) || icmpBytes < ICMP_ECHO_HEADER ||
    icmpBytes > maxIcmpBytes(family)
  ) {
    throw new RangeError(`IPv${family} echo request of ${icmpBytes} bytes`);
  }
  const packet = new Uint8Array(icmpBytes);
  const view = new DataView(packet.buffer);
  packet[0] = ECHO_TYPES[family].request;
  view.setUint16(4, id & 0xffff);
  view.setUint16(6, seq & 0xffff);
  if (family === 4) view.setUint16(2, internetChecksum(packet));
  return packet;
}

/** What identifies an echo reply. */
export interface EchoReply {
  readonly id: number;
  readonly seq: number;
}

/**
 * Parse an echo reply of the family: bare ICMP (a ping socket, any raw ICMPv6 socket) or with
 * its IPv4 header in front (a raw IPv4 socket). Anything else (other types, truncated or corrupt
 * data) is `undefined`.
 */
export function parseEchoReply(
  family: Family,
  data: Uint8Array,
  withIpHeader: boolean,
): EchoReply | undefined {
  let offset = 0;
  if (withIpHeader) {
    if (family !== 4 || data.length < IP_HEADER_BYTES[4] || data[0] >> 4 !== 4) return undefined;
    offset = (data[0] & 0x0f) * 4;
    if (offset < IP_HEADER_BYTES[4]) return undefined;
  }
  if (data.length < offset + ICMP_ECHO_HEADER) return undefined;
  if (data[offset] !== ECHO_TYPES[family].reply || data[offset + 1] !== 0) return undefined;
  const view = new DataView(data.buffer, data.byteOffset + offset, data.length - offset);
  return { id: view.getUint16(4), seq: view.getUint16(6) };
}
