import assert from "node:assert/strict";
import fc from "fast-check";
import {
  buildNetUnreachable,
  checksum,
  completeChecksum,
  decrementTtl,
  ipv4HeaderProblem,
  ipv4PacketProblem,
  onesSum,
  packetBuffer,
  packetBufferOf,
  pseudoHeaderSum,
} from "../../../backends/udp/packet.ts";
import { arbIpv4Fields } from "./fixtures.ts";
import {
  checksum as referenceChecksum,
  headerChecksumOk,
  ipv4,
  l4ChecksumOk,
  tcp,
  udp,
} from "../../../lab/packets.ts";

/** `data` placed at `offset` in a fresh buffer (so alignment varies). */
function placed(data: Uint8Array, offset: number) {
  const buf = packetBuffer(offset + data.length + 8);
  buf.bytes.set(data, offset);
  return buf;
}

Deno.test("checksum: equals the byte-pair reference at any offset and length", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 70_000 }),
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: 0, max: 0xffff }),
      (data, offset, initial) => {
        const buf = placed(data, offset);
        const got = checksum(buf, offset, offset + data.length);
        assert.equal(got, referenceChecksum(data));
        // `initial` folds in like a prefix word.
        const prefixed = new Uint8Array(data.length + 2 + (data.length % 2));
        prefixed.set(data);
        prefixed.set([initial >> 8, initial & 255], data.length + (data.length % 2));
        assert.equal(
          checksum(buf, offset, offset + data.length, initial),
          referenceChecksum(prefixed),
        );
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("checksum: the word fast path agrees with byte pairs past 64 KiB and on all-ones", () => {
  const ones = new Uint8Array(65_536 * 2).fill(0xff);
  assert.equal(checksum(placed(ones, 0), 0, ones.length), referenceChecksum(ones));
  assert.equal(onesSum(placed(ones, 0), 0, ones.length), 0xffff);
  const big = Uint8Array.from({ length: 200_003 }, (_, i) => (i * 7919) & 255);
  assert.equal(checksum(placed(big, 4), 4, 4 + big.length), referenceChecksum(big));
});

Deno.test("ipv4: valid packets pass; each kind of damage is named", () => {
  fc.assert(
    fc.property(arbIpv4Fields, fc.uint8Array({ maxLength: 100 }), (fields, payload) => {
      const p = ipv4({ ...fields, payload });
      const buf = packetBufferOf(p);
      assert.equal(ipv4PacketProblem(buf, 0, p.length), null);
      assert.equal(ipv4HeaderProblem(buf, 0, p.length), null);
      assert.notEqual(ipv4PacketProblem(buf, 0, p.length - 1), null);
      if (payload.length > 0) {
        assert.equal(ipv4PacketProblem(buf, 0, p.length - 1), "bad_total_length");
      }
      const bad = (mutate: (b: Uint8Array) => void) => {
        const copy = packetBufferOf(p);
        mutate(copy.bytes);
        return ipv4PacketProblem(copy, 0, p.length);
      };
      assert.equal(bad((b) => b[0] = 0x65), "not_ipv4");
      assert.equal(bad((b) => b[0] = 0x44), "bad_header_length");
      assert.equal(bad((b) => b[10] ^= 0x01), "bad_checksum");
      assert.equal(ipv4PacketProblem(buf, 0, 19), "too_short");
    }),
    { numRuns: 200 },
  );
  // An IHL pointing past the data.
  const p = ipv4({ payload: new Uint8Array(4) });
  p[0] = 0x4f;
  assert.equal(ipv4HeaderProblem(packetBufferOf(p), 0, p.length), "bad_header_length");
});

Deno.test("ttl: decremented by one with a checksum equal to a full recomputation", () => {
  fc.assert(
    fc.property(arbIpv4Fields, fc.integer({ min: 0, max: 5 }), (fields, offset) => {
      const p = ipv4(fields);
      const buf = placed(p, offset);
      const result = decrementTtl(buf, offset);
      const after = buf.bytes.slice(offset, offset + p.length);
      if (fields.ttl <= 1) {
        assert.equal(result, 0);
        assert.deepStrictEqual(after, p); // untouched: the caller drops it
        return;
      }
      assert.equal(result, fields.ttl - 1);
      assert.equal(after[8], fields.ttl - 1);
      assert.ok(headerChecksumOk(after));
      const recomputed = ipv4({ ...fields, ttl: fields.ttl - 1 });
      assert.deepStrictEqual(after, recomputed);
    }),
    { numRuns: 500 },
  );
});

Deno.test("icmp: net unreachable as flannel builds it (spec §6.3)", () => {
  const own = 0x0af40100; // 10.244.1.0
  fc.assert(
    fc.property(
      arbIpv4Fields,
      fc.uint8Array({ maxLength: 60 }),
      fc.constantFrom(6, 17, 47),
      (fields, payload, protocol) => {
        const offender = ipv4({ ...fields, protocol, payload });
        const headerLength = (offender[0] & 15) * 4;
        const out = packetBuffer(200);
        const n = buildNetUnreachable(packetBufferOf(offender), 0, offender.length, own, out, 4);
        if (headerLength >= 60) {
          assert.equal(n, 0);
          return;
        }
        const quoted = Math.min(offender.length, headerLength + 8);
        assert.equal(n, 28 + quoted);
        const icmp = out.bytes.slice(4, 4 + n);
        const v = new DataView(icmp.buffer);
        assert.equal(ipv4PacketProblem(packetBufferOf(icmp), 0, n), null);
        assert.equal(icmp[0], 0x45);
        assert.equal(icmp[8], 8, "TTL 8");
        assert.equal(icmp[9], 1, "protocol ICMP");
        assert.equal(v.getUint32(12), own, "from our subnet base");
        assert.equal(v.getUint32(16), fields.src >>> 0, "to the offender's source");
        assert.deepStrictEqual([icmp[20], icmp[21]], [3, 0], "type 3 code 0");
        assert.equal(referenceChecksum(icmp.subarray(20)), 0, "ICMP checksum");
        assert.deepStrictEqual(icmp.subarray(28), offender.subarray(0, quoted));
      },
    ),
    { numRuns: 300 },
  );
  const out = packetBuffer(200);
  const none = (p: Uint8Array) => buildNetUnreachable(packetBufferOf(p), 0, p.length, own, out, 0);
  assert.equal(none(ipv4({ protocol: 1, payload: new Uint8Array(8) })), 0, "not for ICMP");
  assert.equal(
    none(ipv4({ fragment: 0x2001, payload: new Uint8Array(8) })),
    0,
    "non-first fragment",
  );
  assert.ok(none(ipv4({ fragment: 0x2000, payload: new Uint8Array(8) })) > 0, "first fragment");
  assert.equal(none(ipv4({ options: new Uint8Array(40) })), 0, "60-byte header");
  assert.equal(none(new Uint8Array(10)), 0, "not a packet");
});

Deno.test("partial checksums (virtio NEEDS_CSUM) are completed to the reference value", () => {
  fc.assert(
    fc.property(
      arbIpv4Fields,
      fc.uint8Array({ maxLength: 3000 }),
      fc.boolean(),
      (f, data, isTcp) => {
        const full = isTcp ? tcp(f, { payload: data }) : udp(f, 1234, 5678, data);
        const headerLength = (full[0] & 15) * 4;
        const field = isTcp ? 16 : 6;
        const buf = packetBufferOf(full);
        // What the kernel hands over: the pseudo-header sum in the field, nothing else.
        buf.view.setUint16(
          headerLength + field,
          pseudoHeaderSum(buf, 0, full.length - headerLength),
        );
        assert.ok(completeChecksum(buf, 0, full.length, headerLength, field));
        assert.ok(l4ChecksumOk(buf.bytes.subarray(0, full.length)));
        assert.equal(completeChecksum(buf, 0, full.length, headerLength, full.length), false);
      },
    ),
    { numRuns: 200 },
  );
});

Deno.test("a UDP checksum that computes to zero is sent as 0xffff", () => {
  // Pick the last payload word so that the whole sum is 0xffff: the checksum would be 0.
  const base = udp({}, 1, 2, new Uint8Array(10));
  const buf = packetBufferOf(base);
  buf.view.setUint16(26, 0);
  buf.view.setUint16(20 + 6, pseudoHeaderSum(buf, 0, base.length - 20));
  const sum = onesSum(buf, 20, base.length);
  buf.view.setUint16(base.length - 2, ~sum & 0xffff);
  assert.ok(completeChecksum(buf, 0, base.length, 20, 6));
  assert.equal(buf.view.getUint16(26), 0xffff);
});

Deno.test("garbage: no packet function throws, whatever the bytes, offsets and lengths", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ maxLength: 200 }),
      fc.integer({ min: -4, max: 250 }),
      fc.integer({ min: -4, max: 300 }),
      fc.integer({ min: 0, max: 0xffff }),
      (data, start, length, n) => {
        const buf = packetBufferOf(data);
        const out = packetBuffer(300);
        ipv4HeaderProblem(buf, start, length);
        ipv4PacketProblem(buf, start, length);
        buildNetUnreachable(buf, start, length, n, out, 0);
        completeChecksum(buf, start, length, n & 0xff, n >> 8);
        onesSum(buf, start, start + length);
      },
    ),
    { numRuns: 2000 },
  );
});
