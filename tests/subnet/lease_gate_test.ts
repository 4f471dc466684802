import assert from "node:assert/strict";
import fc from "fast-check";
import { type IPNet, netOverlaps, parseAddr, parseNet } from "../../ip/mod.ts";
import type { JsonValue, Lease, LeaseEvent } from "../../subnet/lease.ts";
import { vtepMacOf } from "../../subnet/lease_fields.ts";
import { LeaseGate, type LeaseGateOptions, type SkippedLease } from "../../subnet/lease_gate.ts";
import { leaseIdentity } from "../../subnet/lease_set.ts";

const NETWORK = parseNet("10.244.0.0/16");
const NETWORK6 = parseNet("fd00:244::/48");
const OWN_MAC = "0e:00:00:00:00:07";

function vx(subnet: string, publicIP: string, mac: JsonValue | undefined, extra = {}): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: {
      publicIP: parseAddr(publicIP),
      backendType: "vxlan",
      ...(mac !== undefined && { backendData: { VNI: 1, VtepMAC: mac } }),
      ...extra,
    },
  };
}

const own = vx("10.244.7.0/24", "198.18.0.11", OWN_MAC);

function gate(overrides: Partial<LeaseGateOptions> = {}) {
  const skips: SkippedLease[] = [];
  const admits: Lease[] = [];
  const g = new LeaseGate({
    networks: { 4: NETWORK },
    own,
    ownAddresses: [parseAddr("198.18.0.11"), parseAddr("172.17.0.1")],
    checkVtepMac: true,
    onSkip: (s) => skips.push(s),
    onAdmit: (l) => admits.push(l),
    ...overrides,
  });
  return { g, skips, admits };
}

function added(lease: Lease): LeaseEvent {
  return { type: "added", lease };
}
function removed(lease: Lease): LeaseEvent {
  return { type: "removed", lease };
}
function summary(events: readonly LeaseEvent[]): string[] {
  return events.map((e) => `${e.type} ${leaseIdentity(e.lease).replace(/&$/, "")}`);
}
function events(g: LeaseGate, ...list: LeaseEvent[]): string[] {
  const out = g.apply({ type: "events", events: list });
  assert.equal(out.type, "events");
  return summary(out.type === "events" ? out.events : []);
}

Deno.test("every skip reason, with its detail", () => {
  const { g } = gate();
  const holder = vx("10.244.3.0/24", "198.18.0.13", "0e:00:00:00:00:13");
  assert.deepEqual(events(g, added(holder)), ["added 10.244.3.0/24"]);
  const cases: Array<[Lease, string, RegExp]> = [
    [vx("0.0.0.0/1", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_outside_network", /not inside/],
    [vx("198.18.0.0/24", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_outside_network", /not/],
    [vx("10.244.0.0/16", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_outside_network", /itself/],
    [vx("10.244.7.128/25", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_overlaps_own", /7\.0/],
    [vx("10.244.0.0/20", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_overlaps_own", /./],
    [vx("10.244.3.0/25", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_overlaps_lease", /3\.0\/24/],
    [vx("10.244.2.0/23", "198.18.0.20", "0e:00:00:00:00:20"), "subnet_overlaps_lease", /contains/],
    [vx("10.244.4.0/24", "0.0.0.0", "0e:00:00:00:00:20"), "public_ip_missing", /PublicIP/],
    [vx("10.244.4.0/24", "127.0.0.5", "0e:00:00:00:00:20"), "public_ip_unusable", /loopback/],
    [vx("10.244.4.0/24", "239.1.1.1", "0e:00:00:00:00:20"), "public_ip_unusable", /multicast/],
    [vx("10.244.4.0/24", "169.254.0.9", "0e:00:00:00:00:20"), "public_ip_unusable", /link-local/],
    [vx("10.244.4.0/24", "198.18.0.11", "0e:00:00:00:00:20"), "public_ip_own", /this node/],
    [vx("10.244.4.0/24", "172.17.0.1", "0e:00:00:00:00:20"), "public_ip_own", /this node/],
    [vx("10.244.4.0/24", "10.244.3.9", "0e:00:00:00:00:20"), "public_ip_in_overlay", /overlay/],
    [vx("10.244.4.0/24", "198.18.0.20", undefined), "vtep_mac_unusable", /no valid/],
    [vx("10.244.4.0/24", "198.18.0.20", "not a mac"), "vtep_mac_unusable", /no valid/],
    [vx("10.244.4.0/24", "198.18.0.20", 42), "vtep_mac_unusable", /no valid/],
    [vx("10.244.4.0/24", "198.18.0.20", "00:00:00:00:00:00"), "vtep_mac_unusable", /zeros/],
    [vx("10.244.4.0/24", "198.18.0.20", "ff:ff:ff:ff:ff:ff"), "vtep_mac_unusable", /broadcast/],
    [vx("10.244.4.0/24", "198.18.0.20", "01:00:5e:00:00:01"), "vtep_mac_unusable", /multicast/],
    [vx("10.244.4.0/24", "198.18.0.20", "0E:00:00:00:00:07"), "vtep_mac_own", /own/],
    [vx("10.244.4.0/24", "198.18.0.20", "0e:00:00:00:00:13"), "vtep_mac_taken", /3\.0\/24/],
  ];
  for (const [lease, reason, detail] of cases) {
    assert.deepEqual(events(g, added(lease)), [], `${leaseIdentity(lease)} not passed`);
    const skip = g.skipOf(lease);
    assert.equal(skip?.reason, reason, `${leaseIdentity(lease)}: ${skip?.detail}`);
    assert.match(skip!.detail, detail);
  }
  // The valid lease kept working throughout.
  assert.deepEqual(events(g, added(vx("10.244.4.0/24", "198.18.0.20", "0e:00:00:00:00:20"))), [
    "added 10.244.4.0/24",
  ]);
});

Deno.test("BackendData is not checked for other backend types, nor on a non-vxlan node", () => {
  const hostGw: Lease = {
    subnet: parseNet("10.244.4.0/24"),
    attrs: { publicIP: parseAddr("198.18.0.20"), backendType: "host-gw" },
  };
  assert.deepEqual(events(gate().g, added(hostGw)), ["added 10.244.4.0/24"]);
  const bare = vx("10.244.5.0/24", "198.18.0.21", undefined);
  assert.deepEqual(events(gate({ checkVtepMac: false }).g, added(bare)), ["added 10.244.5.0/24"]);
});

Deno.test("wireguard leases on a wireguard node: an unusable or our own PublicKey is skipped", () => {
  const key = (byte: number) => btoa(String.fromCharCode(...new Array(32).fill(byte)));
  const wg = (subnet: string, ip: string, data: JsonValue | undefined): Lease => ({
    subnet: parseNet(subnet),
    attrs: {
      publicIP: parseAddr(ip),
      backendType: "wireguard",
      ...(data !== undefined && { backendData: data }),
    },
  });
  const ownWg = wg("10.244.7.0/24", "198.18.0.11", { PublicKey: key(7), Port: 51820 });
  const { g, skips } = gate({ own: ownWg, checkVtepMac: false, checkWireguardKey: true });
  const cases: Array<[Lease, string]> = [
    [wg("10.244.1.0/24", "198.18.0.21", undefined), "wireguard_key_unusable"],
    [
      wg("10.244.2.0/24", "198.18.0.22", { PublicKey: "c2hvcnQ=", Port: 51820 }),
      "wireguard_key_unusable",
    ],
    [wg("10.244.3.0/24", "198.18.0.23", { PublicKey: 42, Port: 51820 }), "wireguard_key_unusable"],
    [
      wg("10.244.4.0/24", "198.18.0.24", { PublicKey: key(0), Port: 51820 }),
      "wireguard_key_unusable",
    ],
    [wg("10.244.5.0/24", "198.18.0.25", "text"), "wireguard_key_unusable"],
    [wg("10.244.6.0/24", "198.18.0.26", { PublicKey: key(7), Port: 51820 }), "wireguard_key_own"],
  ];
  for (const [lease, reason] of cases) {
    assert.deepEqual(events(g, added(lease)), []);
    assert.equal(g.skipOf(lease)?.reason, reason, String(g.skipOf(lease)?.detail));
  }
  assert.equal(g.skippedByReason().wireguard_key_unusable, 5, "counted by reason");
  assert.equal(skips.length, 6);
  const fixed = wg("10.244.1.0/24", "198.18.0.21", { PublicKey: key(1), Port: 51820 });
  assert.deepEqual(events(g, added(fixed)), ["added 10.244.1.0/24"], "fixed: admitted");
  const bare = wg("10.244.9.0/24", "198.18.0.29", undefined);
  assert.deepEqual(events(gate({ own: ownWg }).g, added(bare)), ["added 10.244.9.0/24"]);
});

Deno.test("a skip is reported once; a changed reason is reported again", () => {
  const { g, skips } = gate();
  const bad = vx("10.244.4.0/24", "0.0.0.0", "0e:00:00:00:00:20");
  events(g, added(bad));
  events(g, added(bad));
  g.apply({ type: "snapshot", leases: [bad] });
  assert.equal(skips.length, 1);
  events(g, added(vx("10.244.4.0/24", "127.0.0.1", "0e:00:00:00:00:20")));
  assert.deepEqual(skips.map((s) => s.reason), ["public_ip_missing", "public_ip_unusable"]);
});

Deno.test("the first seen keeps its place; the skipped one is admitted when the holder goes", () => {
  const { g, admits } = gate();
  const first = vx("10.244.3.0/24", "198.18.0.13", "0e:00:00:00:00:13");
  const thief = vx("10.244.3.0/25", "198.18.0.14", "0e:00:00:00:00:14");
  const macThief = vx("10.244.9.0/24", "198.18.0.19", "0e:00:00:00:00:13");
  assert.deepEqual(events(g, added(first), added(thief), added(macThief)), [
    "added 10.244.3.0/24",
  ]);
  // A snapshot listing the newcomers first changes nothing: places are kept.
  const snap = g.apply({ type: "snapshot", leases: [thief, macThief, first, own] });
  assert.deepEqual(snap.type === "snapshot" && snap.leases, [first]);
  // An update of the holder that keeps it valid keeps its place.
  assert.deepEqual(events(g, added(first)), ["added 10.244.3.0/24"]);
  assert.deepEqual(events(g, removed(first)), [
    "removed 10.244.3.0/24",
    "added 10.244.3.0/25",
    "added 10.244.9.0/24",
  ]);
  assert.equal(admits.length, 2);
  assert.equal(g.skipped.size, 0);
});

Deno.test("a node meeting both at once (start-up, relist) lets the older store entry win", () => {
  const victim = { ...vx("10.244.20.0/24", "198.18.0.20", "0e:00:00:00:00:20"), created: 100 };
  // The thief's key sorts first in etcd's key order, but was created later.
  const thief = { ...vx("10.244.10.0/24", "198.18.0.66", "0e:00:00:00:00:20"), created: 250 };
  const { g } = gate();
  const snap = g.apply({ type: "snapshot", leases: [thief, victim] });
  assert.deepEqual(snap.type === "snapshot" && snap.leases, [victim]);
  assert.equal(g.skipOf(thief)?.reason, "vtep_mac_taken");
  // A node that saw them arrive one by one decides the same.
  const live = gate().g;
  events(live, added(victim));
  events(live, added(thief));
  assert.equal(live.skipOf(thief)?.reason, "vtep_mac_taken");
});

Deno.test("a holder that turns invalid gives up its place in the same batch", () => {
  const { g } = gate();
  const a = vx("10.244.3.0/24", "198.18.0.13", "0e:00:00:00:00:13");
  const b = vx("10.244.4.0/24", "198.18.0.14", "0e:00:00:00:00:13");
  events(g, added(a), added(b));
  assert.equal(g.skipOf(b)?.reason, "vtep_mac_taken");
  const aBroken = vx("10.244.3.0/24", "198.18.0.13", "ff:ff:ff:ff:ff:ff");
  assert.deepEqual(events(g, added(aBroken)), ["removed 10.244.3.0/24", "added 10.244.4.0/24"]);
  assert.equal(g.skipOf(a)?.reason, "vtep_mac_unusable");
  // Removing a skipped lease forgets it and emits nothing.
  assert.deepEqual(events(g, removed(aBroken)), []);
  assert.equal(g.skipOf(a), undefined);
});

Deno.test("a snapshot drops vanished leases and admits what they blocked", () => {
  const { g } = gate();
  const a = vx("10.244.3.0/24", "198.18.0.13", "0e:00:00:00:00:13");
  const b = vx("10.244.3.0/25", "198.18.0.14", "0e:00:00:00:00:14");
  g.apply({ type: "snapshot", leases: [a, b] });
  assert.equal(g.skipOf(b)?.reason, "subnet_overlaps_lease");
  const snap = g.apply({ type: "snapshot", leases: [b] });
  assert.deepEqual(snap.type === "snapshot" && snap.leases, [b]);
  assert.equal(g.skipped.size, 0);
});

Deno.test("dual stack: each family is checked, IPv6-only leases need no IPv4", () => {
  const { g } = gate({ networks: { 4: NETWORK, 6: NETWORK6 } });
  const dual = (v6: string, ip6: string | undefined, v6mac: string | undefined): Lease => ({
    subnet: parseNet("10.244.4.0/24"),
    ipv6Subnet: parseNet(v6),
    attrs: {
      publicIP: parseAddr("198.18.0.20"),
      ...(ip6 && { publicIPv6: parseAddr(ip6) }),
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "0e:00:00:00:00:20" },
      ...(v6mac && { backendV6Data: { VNI: 1, VtepMAC: v6mac } }),
    },
  });
  const reason = (lease: Lease) => {
    events(g, added(lease));
    return g.skipOf(lease)?.reason;
  };
  assert.equal(
    reason(dual("fd00:244:0:4::/64", undefined, "0e:00:00:00:01:20")),
    "public_ip_missing",
  );
  assert.equal(
    reason(dual("fd00:244:0:4::/64", "fe80::1", "0e:00:00:00:01:20")),
    "public_ip_unusable",
  );
  assert.equal(
    reason(dual("fd00:244:0:4::/64", "ff02::1", "0e:00:00:00:01:20")),
    "public_ip_unusable",
  );
  assert.equal(reason(dual("fd00:244:0:4::/64", "::1", "0e:00:00:00:01:20")), "public_ip_unusable");
  assert.equal(
    reason(dual("fd00:244:0:4::/64", "fd00:244:0:9::1", "0e:00:00:00:01:20")),
    "public_ip_in_overlay",
  );
  assert.equal(
    reason(dual("fd00:245::/64", "2001:db8::20", "0e:00:00:00:01:20")),
    "subnet_outside_network",
  );
  assert.equal(reason(dual("fd00:244:0:4::/64", "2001:db8::20", undefined)), "vtep_mac_unusable");
  assert.equal(reason(dual("fd00:244:0:4::/64", "2001:db8::20", "0e:00:00:00:01:20")), undefined);
  const v6only: Lease = {
    ipv6Subnet: parseNet("fd00:244:0:5::/64"),
    attrs: {
      publicIP: parseAddr("0.0.0.0"),
      publicIPv6: parseAddr("2001:db8::21"),
      backendType: "vxlan",
      backendV6Data: { VNI: 1, VtepMAC: "0e:00:00:00:01:20" },
    },
  };
  assert.equal(reason(v6only), "vtep_mac_taken");
});

Deno.test("vtepMacOf reads only a well-formed VtepMAC", () => {
  assert.equal(vtepMacOf({ VtepMAC: "0E:00:00:00:00:01" }), "0e:00:00:00:00:01");
  for (const data of [undefined, null, 5, "x", [], { VtepMAC: 3 }, { VtepMAC: "0e:00" }]) {
    assert.equal(vtepMacOf(data as JsonValue), undefined);
  }
});

// ---------------------------------------------------------------------------------------------
// Properties: whatever arrives, the admitted set is consistent and the output stream tracks it.

const arbLease: fc.Arbitrary<Lease> = fc.record({
  third: fc.integer({ min: 0, max: 15 }),
  prefix: fc.integer({ min: 15, max: 26 }),
  host: fc.constantFrom("198.18.0.20", "198.18.0.21", "0.0.0.0", "198.18.0.11", "10.244.1.1"),
  mac: fc.oneof(
    fc.constantFrom("0e:00:00:00:00:01", "0e:00:00:00:00:02", OWN_MAC, "ff:ff:ff:ff:ff:ff"),
    fc.anything() as fc.Arbitrary<JsonValue>,
  ),
}).map(({ third, prefix, host, mac }) => {
  const base = parseAddr(`10.244.${third * 16}.0`);
  const net: IPNet = { family: 4, base: base.value & ~((1n << BigInt(32 - prefix)) - 1n), prefix };
  return {
    subnet: net,
    attrs: {
      publicIP: parseAddr(host),
      backendType: "vxlan",
      backendData: { VtepMAC: mac } as JsonValue,
    },
  };
});

const arbUpdate = fc.oneof(
  fc.array(fc.record({ type: fc.constantFrom("added", "removed"), lease: arbLease }), {
    maxLength: 6,
  }).map((events) => ({ type: "events" as const, events: events as LeaseEvent[] })),
  fc.array(arbLease, { maxLength: 6 }).map((leases) => ({ type: "snapshot" as const, leases })),
);

Deno.test("property: admitted leases never overlap nor share a MAC; skipped ones are invalid", () => {
  fc.assert(
    fc.property(fc.array(arbUpdate, { maxLength: 12 }), (updates) => {
      const { g } = gate();
      const seen = new Map<string, Lease>();
      for (const update of updates) {
        const out = g.apply(update);
        if (out.type === "snapshot") {
          seen.clear();
          for (const l of out.leases) seen.set(leaseIdentity(l), l);
        } else {
          for (const e of out.events) {
            if (e.type === "added") seen.set(leaseIdentity(e.lease), e.lease);
            else seen.delete(leaseIdentity(e.lease));
          }
        }
        const live = [...seen.values()];
        for (const [i, a] of live.entries()) {
          assert.ok(!netOverlaps(a.subnet!, own.subnet!), "overlaps own");
          assert.ok(!g.skipOf(a), "admitted and skipped at once");
          for (const b of live.slice(i + 1)) {
            assert.ok(!netOverlaps(a.subnet!, b.subnet!), "two live leases overlap");
            assert.notEqual(vtepMacOf(a.attrs.backendData), vtepMacOf(b.attrs.backendData));
          }
        }
        // Nothing skipped would pass now: re-admission never lags behind.
        for (const { lease } of [...g.skipped.values()]) {
          assert.deepEqual(events(g, added(lease)), [], "a skipped lease is valid");
        }
      }
    }),
    { numRuns: 300 },
  );
});
