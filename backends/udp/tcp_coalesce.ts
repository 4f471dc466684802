/**
 * Receive-side coalescing (what GRO does in the kernel): consecutive TCP segments of one flow,
 * arriving as separate datagrams, become one super-packet that is written to the TUN once with a
 * virtio header asking for GSO. The kernel then runs its forwarding and TCP receive path once per
 * ~64 KiB instead of once per segment, which is where a userspace tunnel loses most of its time.
 *
 * The merge rules are GRO's, so the receiver cannot tell the difference: same addresses, ports,
 * TOS, TTL and fragment bits; sequence numbers contiguous; identical ACK number, window and TCP
 * options (timestamps included); only ACK and PSH flags, with PSH and a short segment ending the
 * packet; no IP options; at most 64 KiB. Everything else goes through as it came.
 *
 * Segment checksums are not re-verified here: the outer UDP checksum, which the kernel checks,
 * already covers each inner packet end to end between the two nodes.
 *
 * @module
 */
import {
  copyBytes,
  IPV4_MAX_PACKET,
  IPV4_MIN_HEADER,
  type PacketBuffer,
  PROTO_TCP,
  pseudoHeaderSum,
  setIpv4Checksum,
} from "./packet.ts";
import { TCP_ACK, TCP_PSH } from "./tcp_segment.ts";
import {
  PLAIN_PACKET,
  VIRTIO_NET_HDR_LEN,
  VNET_F_NEEDS_CSUM,
  VNET_GSO_TCPV4,
  writeVnetHeader,
} from "./vnet.ts";

/** Builds TUN writes (virtio header + packet) in a fixed output area. */
export interface Coalescer {
  /** Whether a packet has been begun and not yet finished. */
  readonly pending: boolean;
  /** Begin a new output packet with the (validated) IPv4 packet at `start`. */
  begin(buf: PacketBuffer, start: number, length: number): void;
  /** Append the packet at `start` if it continues the pending one; false: finish() first. */
  append(buf: PacketBuffer, start: number, length: number): boolean;
  /** Close the pending packet; returns its length in `out` from `outStart`, virtio header included. */
  finish(): number;
  /** Whether another segment may still join the pending packet. */
  readonly open: boolean;
}

/** TCP header length of a packet that may be merged at all, else 0. */
function mergeableTcpHeader(buf: PacketBuffer, start: number, length: number): number {
  const { bytes, view } = buf;
  // IHL 5 only, TCP, not a fragment (MF clear, offset 0).
  if (bytes[start] !== 0x45 || bytes[start + 9] !== PROTO_TCP) return 0;
  if ((view.getUint16(start + 6) & 0x3fff) !== 0 || length < IPV4_MIN_HEADER + 20) return 0;
  const tcp = start + IPV4_MIN_HEADER;
  const tcpLength = (bytes[tcp + 12] >>> 4) * 4;
  if (tcpLength < 20 || IPV4_MIN_HEADER + tcpLength >= length) return 0; // no payload
  const flags = bytes[tcp + 13];
  if ((flags & ~(TCP_ACK | TCP_PSH)) !== 0 || (flags & TCP_ACK) === 0) return 0;
  return tcpLength;
}

/**
 * A coalescer writing into `out` at `outStart` (room for a virtio header and a 64 KiB packet
 * needed: {@link VIRTIO_NET_HDR_LEN} + 65535 bytes).
 *
 * @example
 * ```ts
 * const c = createCoalescer(arena, TUN_OUT);
 * if (!(c.pending && c.append(buf, at, len))) { if (c.pending) write(c.finish()); c.begin(buf, at, len); }
 * ```
 */
export function createCoalescer(out: PacketBuffer, outStart: number): Coalescer {
  if (outStart + VIRTIO_NET_HDR_LEN + IPV4_MAX_PACKET > out.bytes.length) {
    throw new RangeError("coalescer output area is smaller than a 64 KiB packet");
  }
  const ip = outStart + VIRTIO_NET_HDR_LEN;
  const tcp = ip + IPV4_MIN_HEADER;
  const o = out.view;
  let pending = false;
  /** Whether more segments may still be appended. */
  let open = false;
  let length = 0;
  let segments = 0;
  let tcpLength = 0;
  let mss = 0;
  let nextSeq = 0;

  /** Same flow and the same per-segment constants as the pending packet. */
  function continues(buf: PacketBuffer, start: number, headerLength: number): boolean {
    const { bytes, view } = buf;
    if (headerLength !== tcpLength) return false;
    // TOS (byte 1); ID differs; fragment bits (6..7), TTL and protocol (8..9).
    if (bytes[start + 1] !== out.bytes[ip + 1]) return false;
    if (view.getUint32(start + 6) !== o.getUint32(ip + 6)) return false;
    // Addresses (12..19), then ports (0..3), sequence (4..7), ACK (8..11), flags+window (12..15).
    if (view.getUint32(start + 12) !== o.getUint32(ip + 12)) return false;
    if (view.getUint32(start + 16) !== o.getUint32(ip + 16)) return false;
    const t = start + IPV4_MIN_HEADER;
    if (view.getUint32(t) !== o.getUint32(tcp)) return false;
    if (view.getUint32(t + 4) !== nextSeq) return false;
    if (view.getUint32(t + 8) !== o.getUint32(tcp + 8)) return false;
    if (view.getUint16(t + 14) !== o.getUint16(tcp + 14)) return false;
    for (let i = 20; i < headerLength; i += 4) {
      if (view.getUint32(t + i) !== o.getUint32(tcp + i)) return false;
    }
    return true;
  }

  return {
    get pending() {
      return pending;
    },
    get open() {
      return pending && open;
    },
    begin(buf, start, packetLength) {
      copyBytes(buf, start, out, ip, packetLength);
      pending = true;
      length = packetLength;
      segments = 1;
      tcpLength = mergeableTcpHeader(buf, start, packetLength);
      mss = packetLength - IPV4_MIN_HEADER - tcpLength;
      open = tcpLength > 0 && (out.bytes[tcp + 13] & TCP_PSH) === 0;
      if (open) nextSeq = (o.getUint32(tcp + 4) + mss) >>> 0;
    },
    append(buf, start, packetLength) {
      if (!pending || !open) return false;
      const headerLength = mergeableTcpHeader(buf, start, packetLength);
      if (headerLength === 0) return false;
      const payload = packetLength - IPV4_MIN_HEADER - headerLength;
      if (payload > mss || length + payload > IPV4_MAX_PACKET) return false;
      if (!continues(buf, start, headerLength)) return false;
      copyBytes(buf, start + IPV4_MIN_HEADER + headerLength, out, ip + length, payload);
      length += payload;
      segments++;
      nextSeq = (nextSeq + payload) >>> 0;
      if ((buf.bytes[start + IPV4_MIN_HEADER + 13] & TCP_PSH) !== 0) {
        out.bytes[tcp + 13] |= TCP_PSH;
        open = false;
      }
      if (payload < mss) open = false;
      return true;
    },
    finish() {
      pending = false;
      open = false;
      if (segments === 1) {
        writeVnetHeader(out, outStart, PLAIN_PACKET);
        return VIRTIO_NET_HDR_LEN + length;
      }
      o.setUint16(ip + 2, length);
      setIpv4Checksum(out, ip);
      // NEEDS_CSUM: the field carries the pseudo-header sum; the kernel completes the rest.
      o.setUint16(tcp + 16, pseudoHeaderSum(out, ip, length - IPV4_MIN_HEADER));
      writeVnetHeader(out, outStart, {
        flags: VNET_F_NEEDS_CSUM,
        gsoType: VNET_GSO_TCPV4,
        hdrLen: IPV4_MIN_HEADER + tcpLength,
        gsoSize: mss,
        csumStart: IPV4_MIN_HEADER,
        csumOffset: 16,
      });
      return VIRTIO_NET_HDR_LEN + length;
    },
  };
}
