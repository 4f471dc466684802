import assert from "node:assert/strict";
import fc from "fast-check";
import {
  createPeerTable,
  decodePeerTable,
  encodePeerTable,
  isUdpPeer,
  type PeerRecord,
  peerRecords,
  prefixMask,
} from "../../../backends/udp/peers.ts";
import { parseAddr, parseNet } from "../../../ip/mod.ts";
import type { Lease, LeaseAttrs } from "../../../subnet/lease.ts";

const arbRecord = fc.record({
  base: fc.integer({ min: 0, max: 0xffffffff }),
  prefix: fc.integer({ min: 0, max: 32 }),
  publicIP: fc.integer({ min: 1, max: 0xffffffff }),
}).map((r) => ({ ...r, base: (r.base & prefixMask(r.prefix)) >>> 0 }));

/** Distinct subnets (two leases never share one). */
const arbRecords = fc.uniqueArray(arbRecord, {
  maxLength: 40,
  selector: (r) => `${r.base}/${r.prefix}`,
});

/** The obvious longest-prefix match. */
function bruteForce(records: readonly PeerRecord[], addr: number): number {
  let best = -1;
  records.forEach((r, i) => {
    const inside = ((addr & prefixMask(r.prefix)) >>> 0) === r.base;
    if (inside && (best < 0 || r.prefix > records[best].prefix)) best = i;
  });
  return best;
}

Deno.test("peers: lookup is the longest-prefix match (quirk 22), source check follows it", () => {
  fc.assert(
    fc.property(
      arbRecords,
      fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 30 }),
      (records, probes) => {
        const table = createPeerTable(records);
        // Probe inside every subnet as well as at random.
        const addrs = [...probes, ...records.map((r) => (r.base | 1) >>> 0)];
        for (const addr of [...addrs, ...addrs]) { // twice: the cache must not change answers
          const expected = bruteForce(records, addr);
          assert.equal(table.lookup(addr), expected);
          if (expected < 0) continue;
          assert.equal(table.publicIP(expected), records[expected].publicIP);
          assert.ok(table.sourceAllowed(addr, records[expected].publicIP));
          assert.ok(!table.sourceAllowed(addr, (records[expected].publicIP ^ 1) >>> 0));
        }
      },
    ),
  );
});

Deno.test("peers: nested subnets, first-match would pick the wrong node", () => {
  const records = [
    { base: 0x0af40000, prefix: 16, publicIP: 0xc6120001 },
    { base: 0x0af40200, prefix: 24, publicIP: 0xc6120002 },
  ];
  const table = createPeerTable(records);
  assert.equal(table.lookup(0x0af40205), 1);
  assert.equal(table.lookup(0x0af40305), 0);
  assert.equal(table.lookup(0x0b000001), -1);
  assert.ok(!table.sourceAllowed(0x0b000001, 0xc6120001), "unknown inner source");
  assert.equal(createPeerTable([]).lookup(0), -1);
});

Deno.test("peers: encode/decode round trip; garbage decodes to valid records only", () => {
  fc.assert(fc.property(arbRecords, (records) => {
    assert.deepStrictEqual(decodePeerTable(encodePeerTable(records)), records);
  }));
  fc.assert(
    fc.property(fc.uint32Array({ maxLength: 60 }), (words) => {
      for (const r of decodePeerTable(words)) {
        assert.ok(r.prefix <= 32);
        assert.equal((r.base & prefixMask(r.prefix)) >>> 0, r.base);
      }
      createPeerTable(decodePeerTable(words)).lookup(words[0] ?? 0);
    }),
  );
});

function lease(subnet: string | undefined, attrs: Partial<LeaseAttrs> = {}): Lease {
  return {
    ...(subnet && { subnet: parseNet(subnet) }),
    ...(!subnet && { ipv6Subnet: parseNet("fc00::/64") }),
    attrs: { publicIP: parseAddr("198.18.0.12"), ...attrs },
  };
}

Deno.test("peers: udp leases (no type, or udp) count; other backends do not (quirk 23)", () => {
  assert.ok(isUdpPeer(lease("10.244.2.0/24")), "flannel's udp lease has no BackendType");
  assert.ok(isUdpPeer(lease("10.244.2.0/24", { backendType: "udp" })));
  assert.ok(!isUdpPeer(lease("10.244.2.0/24", { backendType: "vxlan" })));
  assert.ok(!isUdpPeer(lease("10.244.2.0/24", { backendType: "host-gw" })));
  assert.ok(!isUdpPeer(lease("10.244.2.0/24", { publicIP: parseAddr("0.0.0.0") })));
  assert.ok(!isUdpPeer(lease(undefined)), "IPv6-only");
  assert.deepStrictEqual(
    peerRecords([lease("10.244.2.0/24"), lease("10.244.3.0/24", { backendType: "vxlan" })]),
    [{ base: 0x0af40200, prefix: 24, publicIP: 0xc612000c }],
  );
});
