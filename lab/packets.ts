/**
 * IPv4 packet builders and readers for tests and benchmarks that push raw packets through TUN
 * devices and the udp data path: IPv4, TCP, UDP and ICMP echo with every field choosable, and
 * checksums computed with the plain byte-pair reference below (never with the code under test).
 *
 * @module
 */
import { formatAddr, ipv4 as ipv4Addr, parseAddr } from "../ip/mod.ts";

/** The Internet checksum (RFC 1071) of `bytes`, the straightforward way. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i] << 8) | bytes[i + 1];
  if (bytes.length % 2) sum += bytes[bytes.length - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4 address in text as the unsigned 32-bit number the builders take. */
export function addr4(text: string): number {
  return Number(parseAddr(text).value);
}

/** Fields of an IPv4 packet; defaults make a plain valid header. */
export interface Ipv4Fields {
  readonly src?: number;
  readonly dst?: number;
  readonly protocol?: number;
  readonly ttl?: number;
  readonly tos?: number;
  readonly id?: number;
  /** Flags and fragment offset (16 bits: DF = 0x4000, MF = 0x2000). */
  readonly fragment?: number;
  /** IP options (padded by the caller to a multiple of 4, at most 40 bytes). */
  readonly options?: Uint8Array;
  readonly payload?: Uint8Array;
}

/** An IPv4 packet with a correct header checksum (computed by the reference). */
export function ipv4(fields: Ipv4Fields = {}): Uint8Array<ArrayBuffer> {
  const options = fields.options ?? new Uint8Array(0);
  const payload = fields.payload ?? new Uint8Array(0);
  const headerLength = 20 + options.length;
  const p = new Uint8Array(headerLength + payload.length);
  const v = new DataView(p.buffer);
  p[0] = 0x40 | (headerLength / 4);
  p[1] = fields.tos ?? 0;
  v.setUint16(2, p.length);
  v.setUint16(4, fields.id ?? 0x1234);
  v.setUint16(6, fields.fragment ?? 0x4000);
  p[8] = fields.ttl ?? 64;
  p[9] = fields.protocol ?? 6;
  v.setUint32(12, (fields.src ?? 0x0af40102) >>> 0);
  v.setUint32(16, (fields.dst ?? 0x0af40202) >>> 0);
  p.set(options, 20);
  v.setUint16(10, checksum(p.subarray(0, headerLength)));
  p.set(payload, headerLength);
  return p;
}

/** The pseudo-header bytes of an IPv4 packet for a layer-4 part of `length` bytes. */
function pseudoHeader(packet: Uint8Array, length: number): Uint8Array {
  const ph = new Uint8Array(12);
  ph.set(packet.subarray(12, 20));
  ph[9] = packet[9];
  new DataView(ph.buffer).setUint16(10, length);
  return ph;
}

/** The reference layer-4 checksum of `packet` (with its checksum field as it is). */
export function referenceL4Sum(packet: Uint8Array): number {
  const headerLength = (packet[0] & 0x0f) * 4;
  const l4 = packet.subarray(headerLength);
  const all = new Uint8Array(12 + l4.length);
  all.set(pseudoHeader(packet, l4.length));
  all.set(l4, 12);
  return checksum(all);
}

/** Fields of a TCP segment. */
export interface TcpFields {
  readonly sport?: number;
  readonly dport?: number;
  readonly seq?: number;
  readonly ack?: number;
  readonly flags?: number;
  readonly window?: number;
  /** TCP options, a multiple of 4 bytes, at most 40. */
  readonly options?: Uint8Array;
  readonly payload?: Uint8Array;
}

/** A TCP/IPv4 packet with correct IP and TCP checksums. */
export function tcp(ip: Ipv4Fields, fields: TcpFields = {}): Uint8Array<ArrayBuffer> {
  const options = fields.options ?? new Uint8Array(0);
  const payload = fields.payload ?? new Uint8Array(0);
  const t = new Uint8Array(20 + options.length + payload.length);
  const v = new DataView(t.buffer);
  v.setUint16(0, fields.sport ?? 40000);
  v.setUint16(2, fields.dport ?? 5201);
  v.setUint32(4, (fields.seq ?? 1000) >>> 0);
  v.setUint32(8, (fields.ack ?? 2000) >>> 0);
  t[12] = ((20 + options.length) / 4) << 4;
  t[13] = fields.flags ?? 0x10;
  v.setUint16(14, fields.window ?? 502);
  t.set(options, 20);
  t.set(payload, 20 + options.length);
  const packet = ipv4({ ...ip, protocol: 6, payload: t });
  const headerLength = (packet[0] & 0x0f) * 4;
  new DataView(packet.buffer).setUint16(headerLength + 16, referenceL4Sum(packet));
  return packet;
}

/** A UDP/IPv4 packet with a correct UDP checksum. */
export function udp(ip: Ipv4Fields, sport: number, dport: number, payload: Uint8Array) {
  const u = new Uint8Array(8 + payload.length);
  const v = new DataView(u.buffer);
  v.setUint16(0, sport);
  v.setUint16(2, dport);
  v.setUint16(4, u.length);
  u.set(payload, 8);
  const packet = ipv4({ ...ip, protocol: 17, payload: u });
  const headerLength = (packet[0] & 0x0f) * 4;
  new DataView(packet.buffer).setUint16(headerLength + 6, referenceL4Sum(packet) || 0xffff);
  return packet;
}

/** An ICMP echo request (type 8) or reply (type 0). */
export function icmpEcho(ip: Ipv4Fields, type: 0 | 8, id: number, seq: number) {
  const m = new Uint8Array(16);
  const v = new DataView(m.buffer);
  m[0] = type;
  v.setUint16(4, id);
  v.setUint16(6, seq);
  v.setUint16(2, checksum(m));
  return ipv4({ ...ip, protocol: 1, payload: m });
}

/** Whether an IPv4 header's checksum verifies (reference). */
export function headerChecksumOk(packet: Uint8Array): boolean {
  return checksum(packet.subarray(0, (packet[0] & 0x0f) * 4)) === 0;
}

/** Whether a TCP or UDP packet's layer-4 checksum verifies (reference). */
export function l4ChecksumOk(packet: Uint8Array): boolean {
  return referenceL4Sum(packet) === 0;
}

/** A 32-bit address as text. */
export function dotted(addr: number): string {
  return [24, 16, 8, 0].map((s) => (addr >>> s) & 255).join(".");
}

/** Source address of an IPv4 packet as text. */
export function ipv4Src(p: Uint8Array): string {
  return formatAddr(ipv4Addr(new DataView(p.buffer, p.byteOffset).getUint32(12)));
}

/** Destination address of an IPv4 packet as text. */
export function ipv4Dst(p: Uint8Array): string {
  return formatAddr(ipv4Addr(new DataView(p.buffer, p.byteOffset).getUint32(16)));
}
