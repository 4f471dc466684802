/**
 * ICMPv4 echo messages (RFC 792) as bytes: the request a probe sends and the reply it waits for.
 * Pure, so the codec is tested without a socket.
 *
 * @module
 */

/** ICMP type of an echo request. */
export const ICMP_ECHO_REQUEST = 8;
/** ICMP type of an echo reply. */
export const ICMP_ECHO_REPLY = 0;
/** ICMP header of an echo message: type, code, checksum, identifier, sequence. */
export const ICMP_ECHO_HEADER = 8;
/** An IPv4 header without options. */
export const IPV4_HEADER = 20;
/** The largest ICMP message in one IPv4 packet (65 535 bytes in all). */
const MAX_ICMP_BYTES = 65_535 - IPV4_HEADER;

/** The Internet checksum (RFC 1071) over `bytes`. */
export function internetChecksum(bytes: Uint8Array): number {
  let sum = 0;
  const even = bytes.length & ~1;
  for (let i = 0; i < even; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (even < bytes.length) sum += bytes[even] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * An echo request of `icmpBytes` bytes in total (header included, at least 8), its payload
 * zero-filled. The checksum is filled in; a ping socket recomputes it and the identifier anyway.
 */
export function echoRequest(id: number, seq: number, icmpBytes: number): Uint8Array<ArrayBuffer> {
  if (!Number.isInteger(icmpBytes) || icmpBytes < ICMP_ECHO_HEADER || icmpBytes > MAX_ICMP_BYTES) {
    throw new RangeError(`echo request of ${icmpBytes} bytes`);
  }
  const packet = new Uint8Array(icmpBytes);
  const view = new DataView(packet.buffer);
  packet[0] = ICMP_ECHO_REQUEST;
  view.setUint16(4, id & 0xffff);
  view.setUint16(6, seq & 0xffff);
  view.setUint16(2, internetChecksum(packet));
  return packet;
}

/** What identifies an echo reply. */
export interface EchoReply {
  readonly id: number;
  readonly seq: number;
}

/**
 * Parse an echo reply: bare ICMP (a ping socket) or with its IPv4 header in front (a raw
 * socket). Anything else (other types, truncated or corrupt data) is `undefined`.
 */
export function parseEchoReply(
  data: Uint8Array,
  withIpHeader: boolean,
): EchoReply | undefined {
  let offset = 0;
  if (withIpHeader) {
    if (data.length < IPV4_HEADER || data[0] >> 4 !== 4) return undefined;
    offset = (data[0] & 0x0f) * 4;
    if (offset < IPV4_HEADER) return undefined;
  }
  if (data.length < offset + ICMP_ECHO_HEADER) return undefined;
  if (data[offset] !== ICMP_ECHO_REPLY || data[offset + 1] !== 0) return undefined;
  const view = new DataView(data.buffer, data.byteOffset + offset, data.length - offset);
  return { id: view.getUint16(4), seq: view.getUint16(6) };
}
