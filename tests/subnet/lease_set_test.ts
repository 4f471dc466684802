import assert from "node:assert/strict";
import fc from "fast-check";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease, LeaseEvent } from "../../subnet/lease.ts";
import { leaseIdentity, LeaseSet } from "../../subnet/lease_set.ts";

function lease(subnet: string, publicIP: string, mac = "aa:bb:cc:dd:ee:ff"): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: { publicIP: parseAddr(publicIP), backendType: "vxlan", backendData: { VtepMAC: mac } },
  };
}

function summary(events: LeaseEvent[]): string[] {
  return events.map((e) =>
    `${e.type} ${leaseIdentity(e.lease)} ${JSON.stringify(e.lease.attrs.backendData)}`
  );
}

const own = lease("10.5.1.0/24", "198.18.0.1");
const a = lease("10.5.2.0/24", "198.18.0.2");
const b = lease("10.5.3.0/24", "198.18.0.3");

Deno.test("a snapshot adds unknown leases and removes vanished ones, never our own", () => {
  const set = new LeaseSet(own);
  assert.deepEqual(summary(set.apply({ type: "snapshot", leases: [own, a] })), [
    `added 10.5.2.0/24& {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
  ]);
  assert.deepEqual(summary(set.apply({ type: "snapshot", leases: [own, b] })), [
    `removed 10.5.2.0/24& {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
    `added 10.5.3.0/24& {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
  ]);
  // Unchanged leases are not re-emitted.
  assert.deepEqual(set.apply({ type: "snapshot", leases: [b, own] }), []);
  assert.equal(set.leases.length, 1);
});

Deno.test("a snapshot re-emits a known lease whose attributes changed (quirk 36)", () => {
  const set = new LeaseSet(own);
  set.apply({ type: "snapshot", leases: [a] });
  const moved = lease("10.5.2.0/24", "198.18.0.2", "11:22:33:44:55:66");
  assert.deepEqual(summary(set.apply({ type: "snapshot", leases: [moved] })), [
    `added 10.5.2.0/24& {"VtepMAC":"11:22:33:44:55:66"}`,
  ]);
});

Deno.test("events: added re-emits, removed carries the stored attributes, own dropped", () => {
  const set = new LeaseSet(own);
  set.apply({ type: "snapshot", leases: [a] });
  const bare = { subnet: parseNet("10.5.2.0/24"), attrs: { publicIP: parseAddr("0.0.0.0") } };
  const events = set.apply({
    type: "events",
    events: [
      { type: "added", lease: own },
      { type: "added", lease: a },
      { type: "removed", lease: bare },
      { type: "removed", lease: b }, // unknown: passed through bare
    ],
  });
  assert.deepEqual(summary(events), [
    `added 10.5.2.0/24& {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
    `removed 10.5.2.0/24& {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
    `removed 10.5.3.0/24& {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
  ]);
  assert.deepEqual(set.leases, []);
  set.setOwn(a);
  assert.deepEqual(set.apply({ type: "events", events: [{ type: "added", lease: a }] }), []);
});

Deno.test("dual-stack and IPv6-only leases are told apart by both subnets", () => {
  const v6 = {
    ipv6Subnet: parseNet("fc00:0:0:22::/64"),
    attrs: { publicIP: parseAddr("0.0.0.0") },
  };
  const dual = { ...v6, subnet: parseNet("10.5.2.0/24") };
  assert.notEqual(leaseIdentity(v6), leaseIdentity(dual));
  const set = new LeaseSet();
  assert.equal(set.apply({ type: "snapshot", leases: [v6, dual] }).length, 2);
});

Deno.test("after any update sequence, the set equals the model (property)", () => {
  const subnets = ["10.5.1.0/24", "10.5.2.0/24", "10.5.3.0/24", "10.5.4.0/24"];
  const leaseArb = fc.tuple(fc.constantFrom(...subnets), fc.constantFrom("1", "2"))
    .map(([s, mac]) => lease(s, "198.18.0.9", mac));
  const update = fc.oneof(
    fc.array(leaseArb, { maxLength: 4 }).map((leases) => ({ type: "snapshot" as const, leases })),
    fc.array(
      fc.tuple(fc.boolean(), leaseArb).map(([add, l]) => ({
        type: add ? "added" as const : "removed" as const,
        lease: l,
      })),
      { maxLength: 4 },
    ).map((events) => ({ type: "events" as const, events })),
  );
  fc.assert(fc.property(fc.array(update, { maxLength: 12 }), (updates) => {
    const set = new LeaseSet(own);
    const model = new Map<string, Lease>(); // what a consumer applying the events holds
    for (const u of updates) {
      for (const e of set.apply(u)) {
        const id = leaseIdentity(e.lease);
        assert.notEqual(id, leaseIdentity(own));
        if (e.type === "added") model.set(id, e.lease);
        else model.delete(id);
      }
      const truth = new Map(set.leases.map((l) => [leaseIdentity(l), l]));
      assert.deepEqual(model, truth);
    }
  }));
});
