/**
 * The admin API's lease views: /v1/leases (order, attributes, skips, the subnet filter) and
 * /v1/leases/:subnet, against app.request() over a state made by the fixture.
 */
import assert from "node:assert/strict";
import { ErrorSchema, LeaseListSchema, LeaseSchema, StatusSchema } from "../../api/schemas.ts";
import {
  appFor,
  getJson,
  HOUR_MS,
  readyState,
  stateWithSkippedLease,
  vxlanLease,
} from "./fixture.ts";

Deno.test("/v1/leases and /v1/status say which leases the gate skips, and why", async () => {
  const state = stateWithSkippedLease();
  const list = LeaseListSchema.parse((await getJson(state, "/v1/leases")).body);
  const skipped = list.leases.filter((l) => l.skipped !== null);
  assert.deepEqual(skipped.map((l) => [l.key, l.skipped]), [[
    "10.244.0.0-16",
    { reason: "subnet_outside_network", detail: "10.244.0.0/16 is the network itself" },
  ]]);
  const status = StatusSchema.parse((await getJson(state, "/v1/status")).body);
  assert.equal(status.counters.leasesSkipped, 1);
});

Deno.test("/v1/leases lists every lease in subnet order with attributes", async () => {
  const state = readyState();
  // Inserted out of order to check the ordering.
  state.leases.set("10.244.0.128-25", vxlanLease("10.244.0.128/25", "198.18.0.9"));
  const { status, body } = await getJson(state, "/v1/leases");
  assert.equal(status, 200);
  const list = LeaseListSchema.parse(body);
  assert.equal(list.total, 5);
  assert.deepEqual(list.leases.map((l) => l.key), [
    "10.244.0.128-25",
    "10.244.1.0-24",
    "10.244.2.0-24",
    "10.244.3.0-24",
    "10.244.4.0-24&fc00:0:0:4::-64",
  ]);
  assert.deepEqual(list.leases.map((l) => l.own), [false, true, false, false, false]);
  // Our own lease carries the daemon's expiry; peers' expiry is unknown in etcd mode.
  assert.ok(list.leases[1].expiresInSeconds! > 23 * 3600);
  assert.deepEqual(list.leases.map((l) => l.expiration === null), [true, false, true, true, true]);
  assert.ok(list.leases.every((l) => !l.reserved));
  const dual = list.leases[4];
  assert.equal(dual.ipv6Subnet, "fc00:0:0:4::/64");
  assert.equal(dual.publicIP, "198.18.0.4");
  assert.equal(dual.backendType, "vxlan");
  assert.deepEqual(dual.backendData, { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" });
});

Deno.test("/v1/leases?subnet= filters by containment, in either notation", async () => {
  const state = readyState();
  const keys = async (query: string) => {
    const { status, body } = await getJson(state, `/v1/leases?subnet=${query}`);
    assert.equal(status, 200, query);
    return LeaseListSchema.parse(body).leases.map((l) => l.key);
  };
  assert.deepEqual(await keys("10.244.2.0/24"), ["10.244.2.0-24"]);
  assert.deepEqual(await keys("10.244.2.0-24"), ["10.244.2.0-24"]);
  assert.deepEqual(await keys(encodeURIComponent("10.244.2.0/23")), [
    "10.244.2.0-24",
    "10.244.3.0-24",
  ]);
  assert.equal((await keys("10.244.0.0/16")).length, 4);
  assert.deepEqual(await keys("fc00::/16"), ["10.244.4.0-24&fc00:0:0:4::-64"]);
  assert.deepEqual(await keys("192.168.0.0/16"), []);
  // flannel's key of an IPv6-only lease spells "no IPv4" as 0.0.0.0-0
  assert.deepEqual(await keys(encodeURIComponent("0.0.0.0-0&fc00::-16")), [
    "10.244.4.0-24&fc00:0:0:4::-64",
  ]);
});

Deno.test("/v1/leases rejects bad or repeated subnet filters with 400", async () => {
  const state = readyState();
  for (const query of ["subnet=", "subnet=banana", "subnet=10.244.0.0/33", "subnet=1.2.3.4"]) {
    const { status, body } = await getJson(state, `/v1/leases?${query}`);
    assert.equal(status, 400, query);
    assert.match(ErrorSchema.parse(body).error, /invalid subnet/);
  }
  const twice = await getJson(state, "/v1/leases?subnet=10.0.0.0/8&subnet=10.244.0.0/16");
  assert.equal(twice.status, 400);
  assert.match(ErrorSchema.parse(twice.body).error, /at most once/);
});

Deno.test("/v1/leases/:subnet finds a lease by key, encoded CIDR or plain CIDR", async () => {
  const state = readyState();
  for (
    const path of [
      "10.244.3.0-24",
      "10.244.3.0%2F24",
      "10.244.3.0/24",
      "10.244.3.7%2f24", // host bits are cleared, as flannel parses CIDRs
    ]
  ) {
    const { status, body } = await getJson(state, `/v1/leases/${path}`);
    assert.equal(status, 200, path);
    const lease = LeaseSchema.parse(body);
    assert.equal(lease.key, "10.244.3.0-24");
    assert.equal(lease.publicIP, "198.18.0.3");
    assert.equal(lease.own, false);
  }
  const dual = await getJson(state, `/v1/leases/${encodeURIComponent("fc00:0:0:4::/64")}`);
  assert.equal(LeaseSchema.parse(dual.body).key, "10.244.4.0-24&fc00:0:0:4::-64");
  const byKey = await getJson(state, `/v1/leases/10.244.4.0-24%26fc00:0:0:4::-64`);
  assert.equal(LeaseSchema.parse(byKey.body).subnet, "10.244.4.0/24");

  const missing = await getJson(state, "/v1/leases/10.244.99.0-24");
  assert.equal(missing.status, 404);
  assert.match(ErrorSchema.parse(missing.body).error, /no lease for subnet 10\.244\.99\.0-24/);
  const bad = await getJson(state, "/v1/leases/not-a-subnet");
  assert.equal(bad.status, 400);
  assert.match(ErrorSchema.parse(bad.body).error, /expected a lease key/);
});

Deno.test("a 2000-lease state is listed whole", async () => {
  const state = readyState();
  for (let i = 0; i < 2000; i++) {
    const cidr = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
    state.leases.set(cidr.replace("/", "-"), vxlanLease(cidr, "198.18.1.1", HOUR_MS));
  }
  const app = appFor(state);
  const res = await app.request("/v1/leases");
  const list = LeaseListSchema.parse(await res.json());
  assert.equal(list.leases.length, 2004);
});
