/**
 * Minimal IPv4 packet builders and readers for tests and benchmarks that push raw packets
 * through TUN devices.
 *
 * @module
 */
import { addrToBytes, formatAddr, ipv4, parseAddr } from "../../ip/mod.ts";

/** The Internet checksum (RFC 1071) of `bytes`. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Packet(src: string, dst: string, protocol: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(20 + payload.length);
  const v = new DataView(p.buffer);
  v.setUint8(0, 0x45);
  v.setUint16(2, p.length);
  v.setUint8(8, 64); // TTL
  v.setUint8(9, protocol);
  p.set(addrToBytes(parseAddr(src)), 12);
  p.set(addrToBytes(parseAddr(dst)), 16);
  v.setUint16(10, checksum(p.subarray(0, 20)));
  p.set(payload, 20);
  return p;
}

/** An ICMP echo request with identifier 0x7474 and sequence `seq`. */
export function icmpEcho(src: string, dst: string, seq: number): Uint8Array {
  const icmp = new Uint8Array(16);
  const v = new DataView(icmp.buffer);
  icmp[0] = 8; // echo request
  v.setUint16(4, 0x7474);
  v.setUint16(6, seq);
  v.setUint16(2, checksum(icmp));
  return ipv4Packet(src, dst, 1, icmp);
}

/** A UDP datagram without checksum (0 is allowed for IPv4). */
export function udpPacket(
  src: string,
  dst: string,
  srcPort: number,
  dstPort: number,
  payload: Uint8Array,
): Uint8Array {
  const udp = new Uint8Array(8 + payload.length);
  const v = new DataView(udp.buffer);
  v.setUint16(0, srcPort);
  v.setUint16(2, dstPort);
  v.setUint16(4, udp.length);
  udp.set(payload, 8);
  return ipv4Packet(src, dst, 17, udp);
}

/** Source address of an IPv4 packet as text. */
export function ipv4Src(p: Uint8Array): string {
  return formatAddr(ipv4(new DataView(p.buffer, p.byteOffset).getUint32(12)));
}

/** Destination address of an IPv4 packet as text. */
export function ipv4Dst(p: Uint8Array): string {
  return formatAddr(ipv4(new DataView(p.buffer, p.byteOffset).getUint32(16)));
}
