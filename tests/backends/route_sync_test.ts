import assert from "node:assert/strict";
import fc from "fast-check";
import {
  diffKernelObjects,
  type FdbObject,
  type KernelObjects,
  keyOf,
  type NeighObject,
  type RouteObject,
} from "../../backends/kernel_objects.ts";
import { createRouteSync, type KernelPort, type ObjectFailure } from "../../backends/route_sync.ts";
import { logger } from "../../log.ts";
import { formatNet, parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";

/** An in-memory kernel: maps by object key, like the real one. */
function fakeKernel(refuse: (route: RouteObject) => string | undefined = () => undefined) {
  const routes = new Map<string, RouteObject>();
  const neighs = new Map<string, NeighObject>();
  const fdb = new Map<string, FdbObject>();
  const port: KernelPort = {
    list: () =>
      Promise.resolve({
        routes: [...routes.values()],
        neighs: [...neighs.values()],
        fdb: [
          ...fdb.values(),
        ],
      }),
    replace(objects) {
      const failures: ObjectFailure[] = [];
      for (const n of objects.neighs) neighs.set(keyOf.neigh(n), n);
      for (const f of objects.fdb) fdb.set(keyOf.fdb(f), f);
      for (const r of objects.routes) {
        const error = refuse(r);
        if (error) failures.push({ kind: "route", key: keyOf.route(r), error });
        else routes.set(keyOf.route(r), r);
      }
      return Promise.resolve(failures);
    },
    remove(objects) {
      for (const r of objects.routes) routes.delete(keyOf.route(r));
      for (const n of objects.neighs) neighs.delete(keyOf.neigh(n));
      for (const f of objects.fdb) fdb.delete(keyOf.fdb(f));
      return Promise.resolve([]);
    },
  };
  return { port, routes, neighs, fdb };
}

const DEV = 7;

function lease(subnet: string, publicIP: string, mac: string, backendType = "vxlan"): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: { publicIP: parseAddr(publicIP), backendType, backendData: { VNI: 1, VtepMAC: mac } },
  };
}

/** vxlan's per-peer trio (spec §6.2). */
function describe(l: Lease): KernelObjects | undefined {
  if (l.attrs.backendType !== "vxlan" || !l.subnet) return undefined;
  const data = l.attrs.backendData as { VtepMAC: string };
  const vtep = { family: 4 as const, value: l.subnet.base };
  return {
    neighs: [{ index: DEV, ip: vtep, mac: data.VtepMAC }],
    fdb: [{ index: DEV, mac: data.VtepMAC, dst: l.attrs.publicIP }],
    routes: [{ dst: l.subnet, gateway: vtep, oif: DEV, onlink: true }],
  };
}

const keyOfLease = (l: Lease) => formatNet(l.subnet!);

function sync(port: KernelPort) {
  return createRouteSync({
    port,
    describe,
    ownKey: "10.244.1.0/24",
    resyncMs: 3_600_000,
    log: logger("test"),
    leaseKey: keyOfLease,
  });
}

async function feed(
  rs: ReturnType<typeof sync>,
  updates: LeaseWatchUpdate[],
): Promise<void> {
  const controller = new AbortController();
  async function* gen() {
    for (const u of updates) yield u;
  }
  await rs.run(gen(), controller.signal);
}

const A = lease("10.244.2.0/24", "198.18.0.2", "02:00:00:00:00:02");
const B = lease("10.244.3.0/24", "198.18.0.3", "02:00:00:00:00:03");
const OWN = lease("10.244.1.0/24", "198.18.0.1", "02:00:00:00:00:01");

Deno.test("a snapshot programs every peer but ourselves and removes leftovers", async () => {
  const k = fakeKernel();
  const stale = lease("10.244.9.0/24", "198.18.0.9", "02:00:00:00:00:09");
  await k.port.replace(describe(stale)!);
  const rs = sync(k.port);
  await feed(rs, [{ type: "snapshot", leases: [OWN, A, B] }]);
  assert.deepEqual([...k.routes.keys()].sort(), ["10.244.2.0/24", "10.244.3.0/24"]);
  assert.equal(k.neighs.size, 2);
  assert.equal(k.fdb.size, 2);
  assert.equal(rs.health().ready, true);
  assert.equal(rs.health().driftRepaired, 0);
});

Deno.test("events add and remove a peer's objects", async () => {
  const k = fakeKernel();
  const rs = sync(k.port);
  await feed(rs, [
    { type: "snapshot", leases: [A] },
    { type: "events", events: [{ type: "added", lease: B }] },
    { type: "events", events: [{ type: "removed", lease: A }] },
  ]);
  assert.deepEqual([...k.routes.keys()], ["10.244.3.0/24"]);
  assert.deepEqual([...k.fdb.keys()], [`${DEV}/02:00:00:00:00:03`]);
});

Deno.test("a new VTEP MAC replaces the neighbour and deletes the old FDB entry", async () => {
  const k = fakeKernel();
  const rs = sync(k.port);
  const moved = lease("10.244.2.0/24", "198.18.0.2", "02:00:00:00:00:22");
  await feed(rs, [
    { type: "snapshot", leases: [A] },
    { type: "events", events: [{ type: "added", lease: moved }] },
  ]);
  assert.deepEqual([...k.fdb.keys()], [`${DEV}/02:00:00:00:00:22`]);
  assert.equal([...k.neighs.values()][0].mac, "02:00:00:00:00:22");
});

Deno.test("a resync repairs deleted and altered objects and counts them as drift", async () => {
  const k = fakeKernel();
  const rs = sync(k.port);
  await feed(rs, [{ type: "snapshot", leases: [A, B] }]);
  k.routes.delete("10.244.2.0/24");
  k.neighs.set(`${DEV}/10.244.3.0`, { index: DEV, ip: parseAddr("10.244.3.0"), mac: "bad" });
  await rs.resync();
  assert.equal(k.routes.size, 2);
  assert.equal(k.neighs.get(`${DEV}/10.244.3.0`)!.mac, "02:00:00:00:00:03");
  assert.equal(rs.health().driftRepaired, 2);
});

Deno.test("leases of another backend type are not programmed", async () => {
  const k = fakeKernel();
  const rs = sync(k.port);
  await feed(rs, [{
    type: "snapshot",
    leases: [A, lease("10.244.5.0/24", "198.18.0.5", "x", "host-gw")],
  }]);
  assert.deepEqual([...k.routes.keys()], ["10.244.2.0/24"]);
});

Deno.test("a refused route marks only its peer out of sync, and is retried", async () => {
  let refuse = true;
  const k = fakeKernel((r) =>
    refuse && formatNet(r.dst) === "10.244.3.0/24" ? "network is unreachable" : undefined
  );
  const rs = sync(k.port);
  await feed(rs, [{ type: "snapshot", leases: [A, B] }]);
  const peers = rs.health().peers;
  assert.equal(peers.find((p) => p.subnet === "10.244.2.0/24")!.inSync, true);
  const bad = peers.find((p) => p.subnet === "10.244.3.0/24")!;
  assert.equal(bad.inSync, false);
  assert.match(bad.error!, /network is unreachable/);
  assert.equal(rs.health().lastReconcileOk, false);
  // Retried on every resync, but a refusal is a peer error, never a drift repair.
  await rs.resync();
  await rs.resync();
  assert.equal(rs.health().driftRepaired, 0);
  refuse = false;
  await rs.resync();
  assert.equal(rs.health().peers.every((p) => p.inSync), true);
  assert.equal(k.routes.size, 2);
  assert.equal(rs.health().driftRepaired, 1, "the route finally written is the one repair");
});

Deno.test("diff: applying the diff to the actual set yields the desired set", () => {
  const objects = fc.array(
    fc.record({ third: fc.nat(20), mac: fc.constantFrom("a", "b", "c"), gw: fc.nat(3) }),
    { maxLength: 30 },
  ).map((items): KernelObjects => ({
    routes: items.map((i) => ({
      dst: parseNet(`10.244.${i.third}.0/24`),
      gateway: parseAddr(`198.18.0.${i.gw}`),
    })),
    neighs: items.map((i) => ({ index: 1, ip: parseAddr(`10.244.${i.third}.0`), mac: i.mac })),
    fdb: items.map((i) => ({
      index: 1,
      mac: `${i.mac}${i.third}`,
      dst: parseAddr(`198.18.0.${i.gw}`),
    })),
  }));
  fc.assert(fc.property(objects, objects, (desired, actual) => {
    const diff = diffKernelObjects(desired, actual);
    const apply = <T>(
      actualList: readonly T[],
      rep: readonly T[],
      rem: readonly T[],
      key: (t: T) => string,
    ) => {
      const m = new Map(actualList.map((a) => [key(a), a]));
      for (const r of rem) m.delete(key(r));
      for (const r of rep) m.set(key(r), r);
      return [...m.keys()].sort();
    };
    const want = <T>(list: readonly T[], key: (t: T) => string) =>
      [...new Set(list.map(key))].sort();
    assert.deepEqual(
      apply(actual.routes, diff.replace.routes, diff.remove.routes, keyOf.route),
      want(desired.routes, keyOf.route),
    );
    assert.deepEqual(
      apply(actual.neighs, diff.replace.neighs, diff.remove.neighs, keyOf.neigh),
      want(desired.neighs, keyOf.neigh),
    );
    assert.deepEqual(
      apply(actual.fdb, diff.replace.fdb, diff.remove.fdb, keyOf.fdb),
      want(desired.fdb, keyOf.fdb),
    );
    // A second diff after applying finds nothing left to do for identical sets.
    const again = diffKernelObjects(desired, desired);
    assert.equal(
      again.remove.routes.length + again.remove.neighs.length + again.remove.fdb.length,
      0,
    );
  }));
});
