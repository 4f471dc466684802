import assert from "node:assert/strict";
import fc from "fast-check";
import { createCounterBuffer, readCounters } from "../../../backends/udp/counters.ts";
import {
  ARENA,
  createForwarder,
  type DropCause,
  type Forwarder,
} from "../../../backends/udp/forwarder.ts";
import { packetBuffer, pseudoHeaderSum } from "../../../backends/udp/packet.ts";
import { createPeerTable } from "../../../backends/udp/peers.ts";
import { VIRTIO_NET_HDR_LEN } from "../../../backends/udp/vnet.ts";
import { headerChecksumOk, icmpEcho, ipv4, l4ChecksumOk, tcp } from "../../../lab/packets.ts";

const OWN = 0x0af40100; // 10.244.1.0/24 is ours
const PEER_B = { base: 0x0af40200, prefix: 24, publicIP: 0xc612000c }; // 198.18.0.12
const PEER_C = { base: 0x0af40300, prefix: 24, publicIP: 0xc612000d }; // 198.18.0.13
const POD_A = 0x0af40102;
const POD_B = 0x0af40202;
const MTU = 1472;

interface Sent {
  readonly to: number;
  readonly segmentSize: number;
  readonly datagrams: Uint8Array[];
}

/** A forwarder with fake syscalls that record what would have gone out. */
function harness(causes: { send?: DropCause; tun?: DropCause } = {}) {
  const arena = packetBuffer(ARENA.bytes);
  const counterBuffer = createCounterBuffer();
  const sent: Sent[] = [];
  const tunWrites: Uint8Array[] = [];
  const forwarder: Forwarder = createForwarder({
    arena,
    counters: new Float64Array(counterBuffer),
    peers: createPeerTable([PEER_B, PEER_C]),
    tunMtu: MTU,
    ownAddress: OWN,
    io: {
      send(offset, length, segmentSize, to) {
        const bytes = arena.bytes.slice(offset, offset + length);
        const step = segmentSize || length;
        const datagrams = [];
        for (let at = 0; at < length; at += step) datagrams.push(bytes.slice(at, at + step));
        sent.push({ to, segmentSize, datagrams });
        return causes.send ?? null;
      },
      writeTun(offset, length) {
        tunWrites.push(arena.bytes.slice(offset, offset + length));
        return causes.tun ?? null;
      },
    },
  });
  /** Hand the forwarder a TUN read: a virtio header (plain unless given) and a packet. */
  const fromTun = (packet: Uint8Array, vnet = new Uint8Array(VIRTIO_NET_HDR_LEN)) => {
    arena.bytes.set(vnet, ARENA.tunRead);
    arena.bytes.set(packet, ARENA.tunPacket);
    forwarder.fromTun(VIRTIO_NET_HDR_LEN + packet.length);
  };
  /** Hand the forwarder received datagrams (one, or a GRO run of equal sizes). */
  const fromUdp = (datagrams: Uint8Array[], source: number) => {
    let at = ARENA.udpIn;
    for (const d of datagrams) {
      arena.bytes.set(d, at);
      at += d.length;
    }
    forwarder.fromUdp(at - ARENA.udpIn, datagrams.length > 1 ? datagrams[0].length : 0, source);
    forwarder.flush();
  };
  const counters = () => readCounters(counterBuffer);
  return { forwarder, fromTun, fromUdp, sent, tunWrites, counters, arena };
}

const drops = (h: ReturnType<typeof harness>) =>
  Object.fromEntries(Object.entries(h.counters().drops).filter(([, n]) => n > 0));

Deno.test("tun → udp: one packet leaves as itself, TTL decremented, to the owner's public IP", () => {
  const h = harness();
  const ping = icmpEcho({ src: POD_A, dst: POD_B, ttl: 63 }, 8, 1, 1);
  h.fromTun(ping);
  assert.equal(h.sent.length, 1, "a small packet leaves at once");
  const [{ to, datagrams }] = h.sent;
  assert.equal(to, PEER_B.publicIP);
  assert.equal(datagrams.length, 1);
  // Exactly the inner packet (spec §6.3), TTL one less, header checksum recomputed by reference.
  assert.deepStrictEqual(datagrams[0], icmpEcho({ src: POD_A, dst: POD_B, ttl: 62 }, 8, 1, 1));
  const c = h.counters();
  assert.deepStrictEqual([c.packetsTx, c.bytesTx, c.packetsRx], [1, ping.length, 0]);
  assert.deepStrictEqual(drops(h), {});
});

Deno.test("tun → udp: same-size packets to one peer share a GSO send, order kept per peer", () => {
  const h = harness();
  const seg = (dst: number, n: number, size = 1000) =>
    tcp({ src: POD_A, dst, id: n }, { seq: n, payload: new Uint8Array(size - 40).fill(n) });
  h.fromTun(seg(POD_B, 1));
  h.fromTun(seg(POD_B, 2));
  assert.equal(h.sent.length, 0, "full-sized packets wait for the drain");
  h.fromTun(seg(POD_B, 3, 600)); // a shorter one ends the run, which then leaves at once
  assert.equal(h.sent.length, 1);
  h.fromTun(seg(POD_B, 4));
  h.fromTun(seg(0x0af40305, 5)); // another peer
  h.forwarder.flush();
  assert.deepStrictEqual(
    h.sent.map((s) => [s.to, s.segmentSize, s.datagrams.map((d) => d[5])]),
    [
      [PEER_B.publicIP, 1000, [1, 2, 3]],
      [PEER_B.publicIP, 0, [4]],
      [PEER_C.publicIP, 0, [5]],
    ],
  );
  assert.equal(h.counters().packetsTx, 5);
});

Deno.test("tun → udp: a TSO super-packet goes out as MTU-sized segments in ≤ 64 KiB sends", () => {
  const h = harness();
  const payload = Uint8Array.from({ length: 46 * 1420 }, (_, i) => i & 255);
  const big = tcp({ src: POD_A, dst: POD_B, ttl: 63 }, {
    seq: 7,
    payload,
    options: new Uint8Array(12),
  });
  const vnet = new Uint8Array(VIRTIO_NET_HDR_LEN);
  const v = new DataView(vnet.buffer);
  vnet[0] = 1; // NEEDS_CSUM
  vnet[1] = 1; // TCPV4
  v.setUint16(2, 52, true);
  v.setUint16(4, 1420, true);
  v.setUint16(6, 20, true);
  v.setUint16(8, 16, true);
  // The kernel leaves the TCP checksum partial and the IP length of the whole thing.
  const tunBuf = packetBuffer(big.length);
  tunBuf.bytes.set(big);
  tunBuf.view.setUint16(36, pseudoHeaderSum(tunBuf, 0, big.length - 20));
  h.fromTun(tunBuf.bytes.subarray(0, big.length), vnet);
  assert.ok(h.sent.length >= 2 && h.sent.every((s) => s.segmentSize === 1472));
  assert.ok(h.sent.every((s) => s.datagrams.length * 1472 <= 65_507 + 1472));
  const datagrams = h.sent.flatMap((s) => s.datagrams);
  assert.equal(datagrams.length, 46);
  const joined: number[] = [];
  for (const d of datagrams) {
    assert.ok(d.length <= MTU && headerChecksumOk(d) && l4ChecksumOk(d));
    assert.equal(d[8], 62);
    joined.push(...d.subarray(52));
  }
  assert.deepStrictEqual(Uint8Array.from(joined), payload);
  assert.equal(h.counters().packetsTx, 46);
});

Deno.test("tun → udp: no lease ⇒ ICMP net unreachable into the TUN; TTL 1 ⇒ dropped", () => {
  const h = harness();
  const lost = tcp({ src: POD_A, dst: 0x0afa0001 }, { payload: new Uint8Array(20) });
  h.fromTun(lost);
  assert.equal(h.tunWrites.length, 1);
  const icmp = h.tunWrites[0];
  assert.deepStrictEqual(icmp.subarray(0, VIRTIO_NET_HDR_LEN), new Uint8Array(10));
  const packet = icmp.subarray(VIRTIO_NET_HDR_LEN);
  const pv = new DataView(packet.buffer, packet.byteOffset);
  assert.deepStrictEqual([packet[8], packet[9], packet[20], packet[21]], [8, 1, 3, 0]);
  assert.equal(pv.getUint32(12), OWN);
  assert.equal(pv.getUint32(16), POD_A);
  h.fromTun(icmpEcho({ src: POD_A, dst: 0x0afa0001 }, 8, 1, 1));
  assert.equal(h.tunWrites.length, 1, "never ICMP about ICMP");
  h.fromTun(tcp({ src: POD_A, dst: POD_B, ttl: 1 }, { payload: new Uint8Array(4) }));
  h.forwarder.flush();
  assert.equal(h.sent.length, 0);
  assert.deepStrictEqual(drops(h), { no_route: 2, ttl: 1 });
});

Deno.test("udp → tun: only the owner of the inner source may send it; every drop has a reason", () => {
  const h = harness();
  const ping = (ttl = 64, src = POD_B) => icmpEcho({ src, dst: POD_A, ttl }, 8, 1, 1);
  h.fromUdp([ping()], PEER_B.publicIP);
  assert.equal(h.tunWrites.length, 1);
  const write = h.tunWrites[0];
  assert.deepStrictEqual(write.subarray(0, VIRTIO_NET_HDR_LEN), new Uint8Array(10));
  assert.equal(write[VIRTIO_NET_HDR_LEN + 8], 63);
  assert.ok(headerChecksumOk(write.subarray(VIRTIO_NET_HDR_LEN)));

  h.fromUdp([ping()], PEER_C.publicIP); // C claims B's pod
  h.fromUdp([ping(64, 0x0b000001)], PEER_B.publicIP); // an address no lease holds
  h.fromUdp([ping(64, POD_A)], PEER_B.publicIP); // our own subnet, from outside
  h.fromUdp([ping(1)], PEER_B.publicIP);
  h.fromUdp([new Uint8Array(5)], PEER_B.publicIP);
  h.fromUdp([Uint8Array.of(0x60, ...new Uint8Array(39))], PEER_B.publicIP);
  const badIhl = ping();
  badIhl[0] = 0x44;
  h.fromUdp([badIhl], PEER_B.publicIP);
  h.fromUdp([ipv4({ src: POD_B, dst: POD_A, payload: new Uint8Array(MTU) })], PEER_B.publicIP);
  h.fromUdp([new Uint8Array(0)], PEER_B.publicIP);
  assert.equal(h.tunWrites.length, 1);
  assert.deepStrictEqual(drops(h), { bad_source: 3, ttl: 1, malformed: 4, oversized: 1 });
  assert.equal(h.counters().packetsRx, 1);
});

Deno.test("udp → tun: a GRO run of one flow becomes one GSO write; a full TUN is counted", () => {
  const h = harness();
  const run = Array.from(
    { length: 10 },
    (_, i) =>
      tcp({ src: POD_B, dst: POD_A, id: i }, {
        seq: 100 + i * 1000,
        payload: new Uint8Array(1000).fill(i),
      }),
  );
  h.fromUdp(run, PEER_B.publicIP);
  assert.equal(h.tunWrites.length, 1);
  assert.equal(h.tunWrites[0][1], 1, "GSO TCPv4");
  assert.equal(h.tunWrites[0].length, VIRTIO_NET_HDR_LEN + 40 + 10_000);
  assert.equal(h.counters().packetsRx, 10);

  const full = harness({ tun: "buffer_full" });
  full.fromUdp(run, PEER_B.publicIP);
  assert.deepStrictEqual(drops(full), { buffer_full: 10 });
  assert.equal(full.counters().packetsRx, 0);
});

Deno.test("garbage never throws, in either direction, and every packet is accounted for", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 1600 }), fc.nat(255))),
      (inputs) => {
        const h = harness();
        const total = () => {
          const c = h.counters();
          return c.packetsTx + c.packetsRx + Object.values(c.drops).reduce((a, b) => a + b, 0);
        };
        for (const [toTun, bytes, n] of inputs) {
          const before = total();
          if (toTun) {
            h.fromUdp([bytes], n % 2 ? PEER_B.publicIP : 0);
          } else {
            const vnet = new Uint8Array(VIRTIO_NET_HDR_LEN).map((_, i) => (n * (i + 3)) & 255);
            h.fromTun(bytes, n % 3 ? new Uint8Array(VIRTIO_NET_HDR_LEN) : vnet);
            h.forwarder.flush();
          }
          assert.ok(total() > before, "forwarded or dropped with a reason");
        }
      },
    ),
    { numRuns: 300 },
  );
});
