import assert from "node:assert/strict";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import { formatLeaseKey, type Lease } from "../../subnet/lease.ts";
import { LeaseTracker } from "../../subnet/lease_tracker.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";

function lease(subnet: string, publicIP: string, mac = "aa:bb:cc:dd:ee:ff"): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: { publicIP: parseAddr(publicIP), backendType: "vxlan", backendData: { VtepMAC: mac } },
  };
}

function summary(update: LeaseWatchUpdate | undefined): string[] {
  if (!update) return [];
  if (update.type === "snapshot") return update.leases.map((l) => `listed ${formatLeaseKey(l)}`);
  return update.events.map((e) =>
    `${e.type} ${formatLeaseKey(e.lease)} ${JSON.stringify(e.lease.attrs.backendData)}`
  );
}

const counters = () => ({ relists: 0, watchEvents: 0 });

Deno.test("a snapshot lists readable entries and counts every later one as a relist", () => {
  const stats = counters();
  const tracker = new LeaseTracker(stats);
  const a = lease("10.5.2.0/24", "198.18.0.2");
  assert.deepEqual(summary(tracker.snapshot([["n2", a], ["bad", undefined]])), [
    "listed 10.5.2.0-24",
  ]);
  assert.equal(stats.relists, 0);
  assert.deepEqual(summary(tracker.snapshot([])), []);
  assert.equal(stats.relists, 1);
  // The relist forgot n2: its deletion is no event.
  assert.equal(tracker.changes([{ name: "n2", lease: undefined }]), undefined);
});

Deno.test("changes: additions, removals carrying the last lease, unchanged entries silent", () => {
  const stats = counters();
  const tracker = new LeaseTracker(stats);
  tracker.snapshot([["n2", lease("10.5.2.0/24", "198.18.0.2")]]);
  assert.deepEqual(
    summary(tracker.changes([
      { name: "n3", lease: lease("10.5.3.0/24", "198.18.0.3") },
      { name: "n2", lease: lease("10.5.2.0/24", "198.18.0.2") }, // unchanged
      { name: "n9", lease: undefined }, // never known
    ])),
    [`added 10.5.3.0-24 {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`],
  );
  assert.deepEqual(
    summary(
      tracker.changes([{
        name: "n2",
        lease: lease("10.5.2.0/24", "198.18.0.2", "02:00:00:00:00:02"),
      }]),
    ),
    [`added 10.5.2.0-24 {"VtepMAC":"02:00:00:00:00:02"}`],
  );
  assert.deepEqual(summary(tracker.changes([{ name: "n2", lease: undefined }])), [
    `removed 10.5.2.0-24 {"VtepMAC":"02:00:00:00:00:02"}`,
  ]);
  assert.equal(stats.watchEvents, 3);
});

Deno.test("an entry whose subnet changed is a removal then an addition (quirk 15)", () => {
  const tracker = new LeaseTracker(counters());
  tracker.snapshot([["n2", lease("10.5.2.0/24", "198.18.0.2")]]);
  assert.deepEqual(
    summary(tracker.changes([{ name: "n2", lease: lease("10.5.7.0/24", "198.18.0.2") }])),
    [
      `removed 10.5.2.0-24 {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
      `added 10.5.7.0-24 {"VtepMAC":"aa:bb:cc:dd:ee:ff"}`,
    ],
  );
});

Deno.test("a reservation turning into a lease is an addition", () => {
  const tracker = new LeaseTracker(counters());
  tracker.snapshot([["k", { ...lease("10.5.2.0/24", "198.18.0.2"), reserved: true }]]);
  assert.equal(
    summary(tracker.changes([{ name: "k", lease: lease("10.5.2.0/24", "198.18.0.2") }])).length,
    1,
  );
});
