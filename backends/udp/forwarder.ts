/**
 * What the udp data path does with each packet, apart from the syscalls: TUN → UDP
 * (encapsulation) and UDP → TUN (decapsulation), on one pre-allocated arena, with counters.
 *
 * Encapsulation: a packet read from the TUN is looked up by destination (no lease ⇒ ICMP net
 * unreachable back into the TUN), its TTL is decremented (reaching 0 ⇒ dropped), a partial
 * checksum is completed, and a TSO super-packet is cut into MTU-sized segments sent with one
 * GSO send per 64 KiB. Full-sized single packets to the same peer are queued back to back and
 * leave together in one GSO send (a run the kernel did not hand over as TSO); the queue is sent
 * when the TUN is drained, and small packets go at once, so nothing interactive waits. Every
 * datagram carries exactly one inner IPv4 packet ≤ TUN MTU.
 *
 * Decapsulation: each datagram must be ≤ TUN MTU (quirk 22: flannel truncates), a well-formed
 * IPv4 packet whose outer source is the public IP of the lease owning its inner source, with a
 * TTL left after decrementing; consecutive segments of one TCP flow are merged into one TUN
 * write (a packet nothing can join is written at once). Nothing here throws on garbage: every
 * rejected packet is a counted drop.
 *
 * @module
 */
import { type DropReason, dropSlot, SLOT } from "./counters.ts";
import {
  buildNetUnreachable,
  completeChecksum,
  copyBytes,
  decrementTtl,
  IPV4_MAX_PACKET,
  ipv4Destination,
  ipv4HeaderProblem,
  ipv4PacketProblem,
  ipv4Source,
  type PacketBuffer,
} from "./packet.ts";
import type { PeerTable } from "./peers.ts";
import { createCoalescer } from "./tcp_coalesce.ts";
import { segmentTcp } from "./tcp_segment.ts";
import { MAX_GSO_SEGMENTS, MAX_UDP_PAYLOAD } from "../../ffi/udp_io.ts";
import {
  PLAIN_PACKET,
  VIRTIO_NET_HDR_LEN,
  VNET_CSUM_OFFSET,
  VNET_CSUM_START,
  VNET_F_NEEDS_CSUM,
  VNET_FLAGS,
  VNET_GSO_NONE,
  VNET_GSO_SIZE,
  VNET_GSO_TCPV4,
  VNET_GSO_TYPE,
  writeVnetHeader,
} from "./vnet.ts";

/** The ECN bit of the virtio GSO type (TSO with CWR set on the first segment). */
const VNET_GSO_ECN = 0x80;

/**
 * The arena: one buffer with a region per job, so copies between regions are `copyWithin`
 * (no allocation) and the kernel gets stable addresses. TUN reads land 2 bytes in, which puts
 * the IPv4 header on a 4-byte boundary after the 10-byte virtio header (fast checksums).
 */
export const ARENA = (() => {
  const tunIn = 0;
  const tunInBytes = 2 + VIRTIO_NET_HDR_LEN + IPV4_MAX_PACKET + 1;
  const segmentsOut = tunIn + tunInBytes;
  const segmentsOutBytes = 96 * 1024;
  const udpIn = segmentsOut + segmentsOutBytes;
  const udpInBytes = 64 * 1024;
  const tunOut = udpIn + udpInBytes;
  const tunOutBytes = VIRTIO_NET_HDR_LEN + IPV4_MAX_PACKET + 3;
  const icmpOut = tunOut + tunOutBytes;
  const icmpOutBytes = 128;
  return {
    /** Where a TUN read goes (virtio header first). */
    tunRead: tunIn + 2,
    tunReadBytes: VIRTIO_NET_HDR_LEN + IPV4_MAX_PACKET,
    /** The IPv4 packet of a TUN read. */
    tunPacket: tunIn + 2 + VIRTIO_NET_HDR_LEN,
    segmentsOut,
    segmentsOutBytes,
    udpIn,
    udpInBytes,
    tunOut,
    icmpOut,
    bytes: icmpOut + icmpOutBytes,
  };
})();

/** The syscalls, as the forwarder needs them (the Worker's FFI, or a fake in tests). */
export interface ForwarderIo {
  /**
   * Send `length` arena bytes from `offset` to `address` as datagrams of `segmentSize` bytes
   * (0: one datagram). Returns null, or why nothing was sent.
   */
  send(offset: number, length: number, segmentSize: number, address: number): DropCause | null;
  /** Write `length` arena bytes from `offset` (virtio header first) into the TUN. */
  writeTun(offset: number, length: number): DropCause | null;
}

/** Why the kernel did not take a packet. */
export type DropCause = Extract<DropReason, "buffer_full" | "send_error">;

/** The per-packet half of the data path. */
export interface Forwarder {
  /** Handle the TUN read of `length` bytes (virtio header included) at {@link ARENA}.tunRead. */
  fromTun(length: number): void;
  /**
   * Handle `length` bytes received at {@link ARENA}.udpIn from `source`: one datagram, or a
   * GRO run of `segmentSize`-byte datagrams.
   */
  fromUdp(length: number, segmentSize: number, source: number): void;
  /** Send the queued single packets and write out the packet being merged (call when drained). */
  flush(): void;
  /** Use a new peer table. */
  setPeers(table: PeerTable): void;
}

/** What {@link createForwarder} needs. */
export interface ForwarderOptions {
  readonly arena: PacketBuffer;
  readonly counters: Float64Array;
  readonly io: ForwarderIo;
  readonly peers: PeerTable;
  /** MTU of the TUN: the largest inner packet on the wire. */
  readonly tunMtu: number;
  /** This node's subnet base (unsigned 32-bit): the source of ICMP errors. */
  readonly ownAddress: number;
}

/** Single packets shorter than this are sent without waiting for the TUN to be drained. */
const SEND_AT_ONCE_BELOW = 512;

const NO_ROUTE = dropSlot("no_route");
const TTL = dropSlot("ttl");
const BAD_SOURCE = dropSlot("bad_source");
const MALFORMED = dropSlot("malformed");
const OVERSIZED = dropSlot("oversized");

/** The forwarder over an arena of at least {@link ARENA}.bytes bytes. */
export function createForwarder(options: ForwarderOptions): Forwarder {
  const { arena, counters, io, tunMtu, ownAddress } = options;
  if (arena.bytes.length < ARENA.bytes) throw new RangeError("arena too small");
  let peers = options.peers;
  const coalescer = createCoalescer(arena, ARENA.tunOut);
  let pendingPackets = 0;
  let pendingBytes = 0;
  /** Queued single packets: all to `queueTo`, all `queueSize` bytes but a shorter last one. */
  let queueTo = 0;
  let queueSize = 0;
  let queueCount = 0;
  let queueBytes = 0;
  let queueOpen = false;
  const v = arena.view;

  function transmit(
    offset: number,
    length: number,
    segmentSize: number,
    count: number,
    to: number,
  ) {
    const cause = io.send(offset, length, segmentSize, to);
    if (cause) {
      counters[dropSlot(cause)] += count;
      return;
    }
    counters[SLOT.packetsTx] += count;
    counters[SLOT.bytesTx] += length;
  }

  function sendQueue(): void {
    if (queueCount === 0) return;
    transmit(ARENA.segmentsOut, queueBytes, queueCount > 1 ? queueSize : 0, queueCount, queueTo);
    queueCount = 0;
    queueBytes = 0;
  }

  /** Queue one packet for `to`, sending what is queued first when it cannot join. */
  function enqueue(at: number, length: number, to: number): void {
    const joins = queueCount > 0 && queueOpen && to === queueTo && length <= queueSize &&
      queueCount < MAX_GSO_SEGMENTS && queueBytes + length <= MAX_UDP_PAYLOAD;
    if (!joins) {
      sendQueue();
      queueTo = to;
      queueSize = length;
      queueOpen = true;
    }
    copyBytes(arena, at, arena, ARENA.segmentsOut + queueBytes, length);
    queueBytes += length;
    queueCount++;
    if (length < queueSize) queueOpen = false; // only the last datagram of a GSO send may be short
  }

  function unreachable(at: number, length: number): void {
    const icmp = ARENA.icmpOut + VIRTIO_NET_HDR_LEN;
    const n = buildNetUnreachable(arena, at, length, ownAddress, arena, icmp);
    if (n === 0) return;
    writeVnetHeader(arena, ARENA.icmpOut, PLAIN_PACKET);
    io.writeTun(ARENA.icmpOut, VIRTIO_NET_HDR_LEN + n);
  }

  /** Cut a TSO packet into segments and send them, at most one GSO send per 64 KiB. */
  function transmitSegmented(at: number, length: number, mss: number, to: number): void {
    sendQueue(); // the segments area is the queue's, and order per peer must hold
    const end = ARENA.segmentsOut + ARENA.segmentsOutBytes;
    const segments = segmentTcp(arena, at, length, mss, arena, ARENA.segmentsOut, end);
    if (!segments) {
      counters[MALFORMED]++;
      return;
    }
    const { count, segmentSize } = segments;
    if (segmentSize > tunMtu) {
      counters[OVERSIZED] += count;
      return;
    }
    const perSend = Math.min(MAX_GSO_SEGMENTS, Math.floor(MAX_UDP_PAYLOAD / segmentSize));
    for (let first = 0; first < count; first += perSend) {
      const n = Math.min(perSend, count - first);
      const offset = first * segmentSize;
      const bytes = Math.min(n * segmentSize, segments.bytes - offset);
      transmit(ARENA.segmentsOut + offset, bytes, segmentSize, n, to);
    }
  }

  function fromTun(readLength: number): void {
    const at = ARENA.tunPacket;
    const vnet = ARENA.tunRead;
    const length = readLength - VIRTIO_NET_HDR_LEN;
    if (ipv4HeaderProblem(arena, at, length)) {
      counters[MALFORMED]++;
      return;
    }
    const peer = peers.lookup(ipv4Destination(arena, at));
    if (peer < 0) {
      counters[NO_ROUTE]++;
      unreachable(at, length);
      return;
    }
    if (decrementTtl(arena, at) === 0) {
      counters[TTL]++;
      return;
    }
    const to = peers.publicIP(peer);
    const gsoType = arena.bytes[vnet + VNET_GSO_TYPE] & ~VNET_GSO_ECN;
    if (gsoType === VNET_GSO_TCPV4) {
      transmitSegmented(at, length, v.getUint16(vnet + VNET_GSO_SIZE, true), to);
      return;
    }
    if (gsoType !== VNET_GSO_NONE) {
      counters[MALFORMED]++;
      return;
    }
    if (length > tunMtu) {
      counters[OVERSIZED]++;
      return;
    }
    if (
      (arena.bytes[vnet + VNET_FLAGS] & VNET_F_NEEDS_CSUM) !== 0 &&
      !completeChecksum(
        arena,
        at,
        length,
        v.getUint16(vnet + VNET_CSUM_START, true),
        v.getUint16(vnet + VNET_CSUM_OFFSET, true),
      )
    ) {
      counters[MALFORMED]++;
      return;
    }
    // Small packets are interactive (pings, ACKs, DNS): they leave now rather than after one more
    // read; runs worth batching are MTU-sized. A closed run has nothing left to wait for either.
    if (length < SEND_AT_ONCE_BELOW && queueCount === 0) {
      transmit(at, length, 0, 1, to); // nothing queued ahead of it: send it from where it was read
      return;
    }
    enqueue(at, length, to);
    if (length < SEND_AT_ONCE_BELOW || !queueOpen) sendQueue();
  }

  function writeMerged(): void {
    if (!coalescer.pending) return;
    const cause = io.writeTun(ARENA.tunOut, coalescer.finish());
    if (cause) {
      counters[dropSlot(cause)] += pendingPackets;
    } else {
      counters[SLOT.packetsRx] += pendingPackets;
      counters[SLOT.bytesRx] += pendingBytes;
    }
    pendingPackets = 0;
    pendingBytes = 0;
  }

  function datagram(at: number, length: number, source: number): void {
    if (length > tunMtu) {
      counters[OVERSIZED]++;
      return;
    }
    if (ipv4PacketProblem(arena, at, length)) {
      counters[MALFORMED]++;
      return;
    }
    if (!peers.sourceAllowed(ipv4Source(arena, at), source)) {
      counters[BAD_SOURCE]++;
      return;
    }
    if (decrementTtl(arena, at) === 0) {
      counters[TTL]++;
      return;
    }
    if (!(coalescer.pending && coalescer.append(arena, at, length))) {
      writeMerged();
      coalescer.begin(arena, at, length);
    }
    pendingPackets++;
    pendingBytes += length;
    // Nothing can join it any more: write it now, not after the next receive (latency).
    if (!coalescer.open) writeMerged();
  }

  return {
    fromTun,
    fromUdp(length, segmentSize, source) {
      const total = Math.max(0, Math.min(length, ARENA.udpInBytes));
      if (segmentSize <= 0 || segmentSize >= total) {
        datagram(ARENA.udpIn, total, source);
        return;
      }
      const end = ARENA.udpIn + total;
      for (let at = ARENA.udpIn; at < end; at += segmentSize) {
        datagram(at, Math.min(segmentSize, end - at), source);
      }
    },
    flush() {
      sendQueue();
      writeMerged();
    },
    setPeers(table) {
      peers = table;
    },
  };
}
