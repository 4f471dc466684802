/**
 * TCP segmentation (what a NIC does for TSO): a TCP/IPv4 super-packet from the TUN becomes
 * MTU-sized segments, each a complete IPv4 packet with its own length, IP ID, sequence number,
 * flags and checksums, so that every datagram on the wire is one ordinary inner packet that a
 * flannel peer accepts (spec §6.3).
 *
 * @module
 */
import {
  checksum,
  copyBytes,
  ipv4HeaderLength,
  ipv4HeaderProblem,
  type PacketBuffer,
  PROTO_TCP,
  pseudoHeaderSum,
  setIpv4Checksum,
} from "./packet.ts";

/** TCP flag bits segmentation and coalescing act on. */
const TCP_FIN = 0x01;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;
const TCP_CWR = 0x80;

/** The outcome of {@link segmentTcp}: `count` segments of `segmentSize` bytes (the last may be shorter). */
export interface Segments {
  readonly count: number;
  readonly segmentSize: number;
  /** Bytes written in total. */
  readonly bytes: number;
}

/** TCP header length of the TCP/IPv4 packet at `start` (data offset × 4). */
function tcpHeaderLength(buf: PacketBuffer, start: number): number {
  return (buf.bytes[start + ipv4HeaderLength(buf, start) + 12] >>> 4) * 4;
}

/** Bytes {@link segmentTcp} needs in `out` for a packet of `length` bytes and `headers` bytes of headers. */
function segmentedLength(length: number, headers: number, mss: number): number {
  const payload = length - headers;
  return payload + Math.ceil(payload / mss) * headers;
}

/**
 * Cut the TCP/IPv4 super-packet at `start` (`length` bytes, TTL already final) into segments of
 * at most `mss` payload bytes, written back to back into `out` from `outStart`. As in Linux TSO:
 * IP IDs count up from the original, FIN and PSH stay on the last segment only, CWR on the first
 * only, and every checksum is computed in full. Returns undefined for anything that is not a
 * segmentable TCP/IPv4 packet or would not fit `out` before `outEnd`.
 */
export function segmentTcp(
  buf: PacketBuffer,
  start: number,
  length: number,
  mss: number,
  out: PacketBuffer,
  outStart: number,
  outEnd = out.bytes.length,
): Segments | undefined {
  if (ipv4HeaderProblem(buf, start, length) || buf.bytes[start + 9] !== PROTO_TCP) return undefined;
  const ipLength = ipv4HeaderLength(buf, start);
  if (ipLength + 20 > length) return undefined;
  const tcpLength = tcpHeaderLength(buf, start);
  const headers = ipLength + tcpLength;
  const payload = length - headers;
  if (tcpLength < 20 || payload <= 0 || !(mss > 0)) return undefined;
  const end = Math.min(outEnd, out.bytes.length);
  if (outStart + segmentedLength(length, headers, mss) > end) return undefined;
  const count = Math.ceil(payload / mss);
  const segmentSize = headers + mss;
  const v = buf.view;
  const o = out.view;
  const tcp = start + ipLength;
  const firstSeq = v.getUint32(tcp + 4);
  const firstId = v.getUint16(start + 4);
  const flags = buf.bytes[tcp + 13];
  for (let i = 0; i < count; i++) {
    const seg = outStart + i * segmentSize;
    const chunk = Math.min(mss, payload - i * mss);
    copyBytes(buf, start, out, seg, headers);
    copyBytes(buf, start + headers + i * mss, out, seg + headers, chunk);
    o.setUint16(seg + 2, headers + chunk);
    o.setUint16(seg + 4, (firstId + i) & 0xffff);
    setIpv4Checksum(out, seg);
    const segTcp = seg + ipLength;
    o.setUint32(segTcp + 4, (firstSeq + i * mss) >>> 0);
    let segFlags = flags;
    if (i < count - 1) segFlags &= ~(TCP_FIN | TCP_PSH);
    if (i > 0) segFlags &= ~TCP_CWR;
    out.bytes[segTcp + 13] = segFlags;
    o.setUint16(segTcp + 16, 0);
    const l4 = tcpLength + chunk;
    o.setUint16(segTcp + 16, checksum(out, segTcp, segTcp + l4, pseudoHeaderSum(out, seg, l4)));
  }
  return { count, segmentSize, bytes: payload + count * headers };
}
