import assert from "node:assert/strict";
import fc from "fast-check";
import {
  completeChecksum,
  ipv4PacketProblem,
  type PacketBuffer,
  packetBuffer,
  packetBufferOf,
  pseudoHeaderSum,
} from "../../../backends/udp/packet.ts";
import { createCoalescer } from "../../../backends/udp/tcp_coalesce.ts";
import { segmentTcp } from "../../../backends/udp/tcp_segment.ts";
import { VIRTIO_NET_HDR_LEN } from "../../../backends/udp/vnet.ts";
import { arbOptions } from "./fixtures.ts";
import { headerChecksumOk, type Ipv4Fields, l4ChecksumOk, tcp } from "../../../lab/packets.ts";

const FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10, URG = 0x20, CWR = 0x80;

/** The segments `segmentTcp` wrote, as separate packets. */
function cut(packet: Uint8Array, mss: number): Uint8Array[] {
  const out = packetBuffer(200_000);
  const result = segmentTcp(packetBufferOf(packet), 0, packet.length, mss, out, 8);
  assert.ok(result, "segmentable");
  const segments: Uint8Array[] = [];
  for (let at = 8; at < 8 + result.bytes; at += result.segmentSize) {
    const length = new DataView(out.bytes.buffer).getUint16(at + 2);
    segments.push(out.bytes.slice(at, at + length));
  }
  assert.equal(segments.length, result.count);
  return segments;
}

const tcpHeaderLength = (p: Uint8Array) => (p[(p[0] & 15) * 4 + 12] >> 4) * 4;
const payloadOf = (p: Uint8Array) => p.subarray((p[0] & 15) * 4 + tcpHeaderLength(p));
const view = (p: Uint8Array) => new DataView(p.buffer, p.byteOffset, p.byteLength);

const arbSuperPacket = fc.record({
  ip: fc.record({
    src: fc.integer({ min: 0, max: 0xffffffff }),
    dst: fc.integer({ min: 0, max: 0xffffffff }),
    ttl: fc.integer({ min: 1, max: 255 }),
    id: fc.integer({ min: 0, max: 0xffff }),
    options: arbOptions,
  }),
  seq: fc.integer({ min: 0, max: 0xffffffff }),
  flags: fc.constantFrom(ACK, ACK | PSH, ACK | FIN | PSH, ACK | CWR | PSH),
  options: arbOptions,
  payload: fc.integer({ min: 1, max: 20_000 }).map((n) =>
    Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 255)
  ),
  mss: fc.integer({ min: 64, max: 1460 }),
});

Deno.test("segmentation: valid packets, contiguous sequence, TSO flag and ID rules", () => {
  fc.assert(
    fc.property(arbSuperPacket, ({ ip, seq, flags, options, payload, mss }) => {
      const big = tcp(ip, { seq, flags, options, payload });
      const segments = cut(big, mss);
      assert.equal(segments.length, Math.ceil(payload.length / mss));
      const joined: number[] = [];
      segments.forEach((s, i) => {
        assert.equal(ipv4PacketProblem(packetBufferOf(s), 0, s.length), null);
        assert.ok(headerChecksumOk(s) && l4ChecksumOk(s), "IP and TCP checksums");
        const h = (s[0] & 15) * 4;
        assert.equal(view(s).getUint32(h + 4), (seq + i * mss) >>> 0);
        assert.equal(view(s).getUint16(4), (ip.id + i) & 0xffff);
        const last = i === segments.length - 1;
        assert.equal((s[h + 13] & (FIN | PSH)) !== 0, last && (flags & (FIN | PSH)) !== 0);
        assert.equal((s[h + 13] & CWR) !== 0, i === 0 && (flags & CWR) !== 0);
        assert.deepStrictEqual(s.subarray(0, 2), big.subarray(0, 2));
        assert.deepStrictEqual(s.subarray(h + 20, h + tcpHeaderLength(s)), options);
        joined.push(...payloadOf(s));
      });
      assert.deepStrictEqual(Uint8Array.from(joined), payload);
    }),
    { numRuns: 150 },
  );
});

Deno.test("segmentation refuses what is not a TCP/IPv4 packet with payload", () => {
  const out = packetBuffer(10_000);
  const refuse = (p: Uint8Array, mss = 100) =>
    assert.equal(segmentTcp(packetBufferOf(p), 0, p.length, mss, out, 0, 10_000), undefined);
  refuse(tcp({}, { payload: new Uint8Array(0) }));
  refuse(tcp({}, { payload: new Uint8Array(10) }), 0);
  refuse(new Uint8Array(30));
  const udpLike = tcp({}, { payload: new Uint8Array(10) });
  udpLike[9] = 17;
  refuse(udpLike);
  const tooBig = tcp({}, { payload: new Uint8Array(9_000) });
  refuse(tooBig, 10); // 900 segments of headers do not fit before the end given
  const fits = segmentTcp(packetBufferOf(tooBig), 0, tooBig.length, 10, out, 0, 60_000);
  assert.equal(fits?.count, 900);
});

/** Run packets through a coalescer the way the forwarder does; returns the TUN writes. */
function coalesce(packets: readonly Uint8Array[]): Uint8Array[] {
  const input = packetBuffer(70_000);
  const out = packetBuffer(VIRTIO_NET_HDR_LEN + 65_535 + 16);
  const c = createCoalescer(out, 4);
  const writes: Uint8Array[] = [];
  const flush = () => writes.push(out.bytes.slice(4, 4 + c.finish()));
  for (const p of packets) {
    input.bytes.set(p, 0);
    if (c.pending && c.append(input, 0, p.length)) continue;
    if (c.pending) flush();
    c.begin(input, 0, p.length);
  }
  if (c.pending) flush();
  return writes;
}

/** Virtio header fields of a TUN write. */
function vnet(write: Uint8Array) {
  const v = view(write);
  return {
    flags: write[0],
    gsoType: write[1],
    hdrLen: v.getUint16(2, true),
    gsoSize: v.getUint16(4, true),
    csumStart: v.getUint16(6, true),
    csumOffset: v.getUint16(8, true),
  };
}

/** A merged write's packet with its partial checksum completed, as the kernel would. */
function completed(write: Uint8Array): Uint8Array {
  const packet = packetBufferOf(write.subarray(VIRTIO_NET_HDR_LEN));
  const h = vnet(write);
  assert.ok(completeChecksum(packet, 0, write.length - 10, h.csumStart, h.csumOffset));
  return packet.bytes.subarray(0, write.length - VIRTIO_NET_HDR_LEN);
}

Deno.test("coalescing: segments of one TSO packet come back as that packet with a GSO header", () => {
  fc.assert(
    fc.property(arbSuperPacket, ({ ip, seq, flags, options, payload, mss }) => {
      const ack = flags & (ACK | PSH); // mergeable flags only
      const big = tcp({ ...ip, options: undefined }, { seq, flags: ack, options, payload });
      const writes = coalesce(cut(big, mss));
      assert.equal(writes.length, 1);
      const [write] = writes;
      const h = vnet(write);
      if (payload.length <= mss) {
        assert.deepStrictEqual(h, { ...h, flags: 0, gsoType: 0 });
        assert.deepStrictEqual(write.subarray(10), cut(big, mss)[0]);
        return;
      }
      assert.deepStrictEqual(h, {
        flags: 1,
        gsoType: 1,
        hdrLen: 20 + 20 + options.length,
        gsoSize: mss,
        csumStart: 20,
        csumOffset: 16,
      });
      const packet = write.subarray(10);
      // The partial checksum is the pseudo-header sum the kernel expects.
      const buf = packetBufferOf(packet);
      assert.equal(view(packet).getUint16(36), pseudoHeaderSum(buf, 0, packet.length - 20));
      assert.ok(headerChecksumOk(packet));
      const full = completed(write);
      assert.ok(l4ChecksumOk(full));
      // Identical to the original apart from the IP ID (the first segment's, as GRO keeps).
      assert.deepStrictEqual(full.subarray(6), big.subarray(6));
      assert.deepStrictEqual(full.subarray(0, 4), big.subarray(0, 4));
    }),
    { numRuns: 150 },
  );
});

Deno.test("coalescing: GRO's rules decide what may join", () => {
  const ip: Ipv4Fields = { src: 0x0af40102, dst: 0x0af40202 };
  const stamp = Uint8Array.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]); // NOP NOP timestamp
  const seg = (n: number, over: { ip?: Ipv4Fields; tcp?: Parameters<typeof tcp>[1] } = {}) =>
    tcp({ ...ip, id: n, ...over.ip }, {
      seq: 1000 + n * 100,
      flags: ACK,
      options: stamp,
      payload: new Uint8Array(100).fill(n),
      ...over.tcp,
    });
  const joins = (second: Uint8Array) => coalesce([seg(0), second]).length === 1;

  assert.ok(joins(seg(1)), "the next segment joins");
  assert.ok(joins(seg(1, { tcp: { flags: ACK | PSH } })), "PSH joins and ends the packet");
  assert.equal(coalesce([seg(0), seg(1, { tcp: { flags: ACK | PSH } }), seg(2)]).length, 2);
  assert.ok(joins(seg(1, { tcp: { payload: new Uint8Array(50) } })), "a short segment joins");
  assert.equal(
    coalesce([seg(0), seg(1, { tcp: { payload: new Uint8Array(50) } }), seg(2)]).length,
    2,
    "…and ends the packet",
  );
  assert.ok(!joins(seg(1, { tcp: { payload: new Uint8Array(101) } })), "longer than the first");
  assert.ok(!joins(seg(2)), "a gap in the sequence");
  assert.ok(!joins(seg(0)), "a retransmission");
  assert.ok(!joins(seg(1, { tcp: { ack: 2001 } })), "another ACK number");
  assert.ok(!joins(seg(1, { tcp: { window: 1 } })), "another window");
  const later = stamp.slice();
  later[7] = 9;
  assert.ok(!joins(seg(1, { tcp: { options: later } })), "another timestamp");
  assert.ok(!joins(seg(1, { tcp: { options: new Uint8Array(12) } })), "other option bytes");
  for (const flag of [SYN, RST, FIN, URG, CWR]) {
    assert.ok(!joins(seg(1, { tcp: { flags: ACK | flag } })), `flag ${flag}`);
  }
  assert.ok(!joins(seg(1, { tcp: { sport: 1 } })), "another port");
  assert.ok(!joins(seg(1, { ip: { src: 0x0af40103 } })), "another source");
  assert.ok(!joins(seg(1, { ip: { dst: 0x0af40203 } })), "another destination");
  assert.ok(!joins(seg(1, { ip: { tos: 2 } })), "another TOS (ECN mark)");
  assert.ok(!joins(seg(1, { ip: { ttl: 63 } })), "another TTL");
  assert.ok(!joins(seg(1, { ip: { fragment: 0 } })), "another DF bit");
  assert.ok(!joins(seg(1, { ip: { options: new Uint8Array(4) } })), "IP options");
  assert.equal(coalesce([seg(0, { ip: { options: new Uint8Array(4) } }), seg(1)]).length, 2);
  assert.equal(coalesce([seg(0, { tcp: { flags: ACK | PSH } }), seg(1)]).length, 2);
  assert.equal(coalesce([seg(0, { tcp: { flags: SYN | ACK } }), seg(1)]).length, 2);
  assert.equal(coalesce([seg(0, { tcp: { payload: new Uint8Array(0) } }), seg(1)]).length, 2);
});

Deno.test("coalescing stops at 64 KiB", () => {
  const segments = Array.from(
    { length: 60 },
    (_, i) => tcp({}, { seq: i * 1400, flags: ACK, payload: new Uint8Array(1400).fill(i) }),
  );
  const writes = coalesce(segments);
  assert.equal(writes.length, 2);
  assert.ok(writes.every((w) => w.length - 10 <= 65_535));
  const first = completed(writes[0]);
  const second = completed(writes[1]);
  assert.equal(payloadOf(first).length + payloadOf(second).length, 60 * 1400);
  assert.equal(view(second).getUint32(24), payloadOf(first).length);
});

Deno.test("coalescing never throws on garbage and writes what it got", () => {
  const input: PacketBuffer = packetBuffer(3000);
  const out = packetBuffer(VIRTIO_NET_HDR_LEN + 65_535);
  const c = createCoalescer(out, 0);
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ minLength: 20, maxLength: 2000 })), (packets) => {
      for (const p of packets) {
        input.bytes.set(p);
        if (c.pending && c.append(input, 0, p.length)) continue;
        if (c.pending) assert.ok(c.finish() >= VIRTIO_NET_HDR_LEN + 20);
        c.begin(input, 0, p.length);
      }
      if (c.pending) c.finish();
    }),
    { numRuns: 500 },
  );
});
