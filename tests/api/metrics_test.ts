import assert from "node:assert/strict";
import { createApp } from "../../api/app.ts";
import { commandRunner } from "../../exec.ts";
import { createMetrics } from "../../api/metrics.ts";
import { newDaemonState } from "../../state.ts";
import { readyState, sampleBackend, stateWithSkippedLease } from "./fixture.ts";
import { parseExposition, sampleValue as value } from "../helpers/prometheus.ts";
import { hasCommand, testNeeding } from "../helpers/netns.ts";

async function scrape(state = readyState(), defaultMetrics = false) {
  const metrics = createMetrics(state, { defaultMetrics });
  const res = await createApp(state, metrics).request("/metrics");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
  return { families: parseExposition(await res.text()), metrics };
}

Deno.test("/metrics mirrors the state at scrape time", async () => {
  const state = readyState();
  const { families } = await scrape(state);
  for (const name of families.keys()) assert.match(name, /^tartan_/);
  assert.equal(value(families, "tartan_info", { node: "node-a", mode: "etcd" }), 1);
  assert.equal(value(families, "tartan_ready"), 1);
  assert.equal(value(families, "tartan_leases"), 4);
  const expiry = value(families, "tartan_own_lease_expiry_seconds", { subnet: "10.244.1.0/24" });
  assert.ok(expiry > 23.9 * 3600 && expiry <= 24 * 3600, String(expiry));
  assert.equal(families.get("tartan_lease_renewals_total")?.type, "counter");
  assert.equal(value(families, "tartan_lease_renewals_total"), 4);
  assert.equal(value(families, "tartan_lease_renewal_failures_total"), 1);
  assert.equal(value(families, "tartan_lease_reacquisitions_total"), 0);
  assert.equal(value(families, "tartan_watch_events_total"), 17);
  assert.equal(value(families, "tartan_watch_relists_total"), 2);
  assert.equal(value(families, "tartan_watch_errors_total"), 1);
  assert.equal(value(families, "tartan_malformed_leases_skipped_total"), 5);
  const lastWatch = value(families, "tartan_watch_last_update_timestamp_seconds");
  assert.ok(Math.abs(lastWatch - state.lastWatchUpdate!.getTime() / 1000) < 0.01);
  assert.equal(value(families, "tartan_backend_ready"), 1);
  assert.equal(value(families, "tartan_backend_peers", { state: "in_sync" }), 2);
  assert.equal(value(families, "tartan_backend_peers", { state: "out_of_sync" }), 1);
  assert.equal(value(families, "tartan_backend_last_reconcile_success"), 1);
  assert.equal(value(families, "tartan_backend_drift_repairs_total"), 3);
  assert.equal(value(families, "tartan_traffic_repairs_total"), 2);
  assert.equal(value(families, "tartan_traffic_last_resync_success"), 1);
  assert.equal(families.get("tartan_udp_drops_total")?.samples.length, 0);
});

Deno.test("/metrics follows state changes between scrapes", async () => {
  const state = readyState();
  const metrics = createMetrics(state, { defaultMetrics: false });
  const app = createApp(state, metrics);
  const read = async () => parseExposition(await (await app.request("/metrics")).text());

  state.store.renewals = 9;
  state.leases.delete("10.244.3.0-24");
  state.backend = () =>
    sampleBackend({
      type: "udp",
      dataPath: {
        packetsTx: 10,
        packetsRx: 7,
        bytesTx: 1500,
        bytesRx: 900,
        drops: { no_route: 3, ttl: 1 },
      },
    });
  let families = await read();
  assert.equal(value(families, "tartan_lease_renewals_total"), 9);
  assert.equal(value(families, "tartan_leases"), 3);
  assert.equal(value(families, "tartan_udp_packets_total", { direction: "tx" }), 10);
  assert.equal(value(families, "tartan_udp_packets_total", { direction: "rx" }), 7);
  assert.equal(value(families, "tartan_udp_bytes_total", { direction: "tx" }), 1500);
  assert.equal(value(families, "tartan_udp_drops_total", { reason: "no_route" }), 3);
  assert.equal(value(families, "tartan_udp_drops_total", { reason: "ttl" }), 1);

  // The lease expires and the backend goes away: readiness and the backend series follow.
  state.ownLease = { ...state.ownLease!, expiration: new Date(Date.now() - 5000) };
  state.backend = undefined;
  families = await read();
  assert.equal(value(families, "tartan_ready"), 0);
  const expiry = value(families, "tartan_own_lease_expiry_seconds", { subnet: "10.244.1.0/24" });
  assert.ok(expiry < -4 && expiry > -10, String(expiry));
  assert.equal(value(families, "tartan_backend_ready"), 0);
  assert.equal(families.get("tartan_udp_drops_total")?.samples.length, 0);
  assert.equal(families.get("tartan_backend_peers")?.samples.length, 0);
});

Deno.test("/metrics of a fresh daemon has no own-lease series and zero counters", async () => {
  const { families } = await scrape(newDaemonState("0.1.0", "n", "kube"));
  assert.equal(families.get("tartan_own_lease_expiry_seconds")?.samples.length, 0);
  assert.equal(value(families, "tartan_ready"), 0);
  assert.equal(value(families, "tartan_leases"), 0);
  assert.equal(value(families, "tartan_watch_last_update_timestamp_seconds"), 0);
  assert.equal(value(families, "tartan_lease_renewals_total"), 0);
});

Deno.test("a lease that never expires reports +Inf", async () => {
  const state = readyState();
  state.ownLease = { ...state.ownLease!, expiration: undefined };
  const { families } = await scrape(state);
  assert.equal(value(families, "tartan_own_lease_expiry_seconds"), Infinity);
});

Deno.test("histograms record what the etcd manager and the reconcile loop observe", async () => {
  const state = readyState();
  const metrics = createMetrics(state, { defaultMetrics: false });
  metrics.etcdRequestSeconds.observe({ op: "txn" }, 0.004);
  metrics.etcdRequestSeconds.observe({ op: "txn" }, 0.3);
  metrics.etcdRequestSeconds.observe({ op: "get" }, 0.0005);
  metrics.reconcileSeconds.observe(0.02);
  const families = parseExposition(await metrics.render());
  const etcd = "tartan_etcd_request_duration_seconds";
  assert.equal(families.get(etcd)?.type, "histogram");
  assert.equal(value(families, `${etcd}_count`, { op: "txn" }), 2);
  assert.equal(value(families, `${etcd}_bucket`, { op: "txn", le: "0.005" }), 1);
  assert.equal(value(families, `${etcd}_bucket`, { op: "txn", le: "+Inf" }), 2);
  assert.ok(Math.abs(value(families, `${etcd}_sum`, { op: "txn" }) - 0.304) < 1e-9);
  assert.equal(value(families, `${etcd}_count`, { op: "get" }), 1);
  assert.equal(value(families, "tartan_reconcile_duration_seconds_count"), 1);
  assert.equal(value(families, "tartan_reconcile_duration_seconds_bucket", { le: "0.025" }), 1);
});

Deno.test("process metrics work under Deno, prefixed tartan_", async () => {
  const { families } = await scrape(readyState(), true);
  for (const name of families.keys()) assert.match(name, /^tartan_/);
  assert.ok(value(families, "tartan_process_cpu_seconds_total") > 0);
  assert.ok(value(families, "tartan_process_resident_memory_bytes") > 1e6);
  assert.ok(value(families, "tartan_process_open_fds") > 0);
  assert.ok(value(families, "tartan_process_start_time_seconds") > 1.6e9);
  assert.ok(value(families, "tartan_nodejs_heap_size_used_bytes") > 0);
  assert.ok(families.has("tartan_nodejs_eventloop_lag_p99_seconds"));
  assert.equal(value(families, "tartan_info", { deno: Deno.version.deno }), 1);
  // Collectors with nothing true to say under Deno are left out.
  for (const name of ["gc_duration_seconds", "active_handles", "version_info"]) {
    assert.ok(!families.has(`tartan_nodejs_${name}`), name);
  }
});

testNeeding(
  "promtool check metrics accepts the exposition",
  await hasCommand("promtool") ? undefined : "promtool (Debian prometheus)",
  async () => {
    const state = readyState();
    state.backend = () =>
      sampleBackend({
        type: "udp",
        dataPath: { packetsTx: 1, packetsRx: 2, bytesTx: 3, bytesRx: 4, drops: { no_route: 5 } },
      });
    const metrics = createMetrics(state);
    metrics.etcdRequestSeconds.observe({ op: "txn" }, 0.004);
    const text = await metrics.render();
    // promtool lists lint problems on stdout and exits 1 (a CommandFailedError here).
    const report = await commandRunner()(["promtool", "check", "metrics"], text);
    assert.equal(report.trim(), "");
  },
);

Deno.test("label values are escaped: quotes, backslashes, newlines", async () => {
  const state = newDaemonState("0.1.0", 'odd "node"\\name\n', "kube");
  const families = parseExposition(await createMetrics(state, { defaultMetrics: false }).render());
  const info = families.get("tartan_info")?.samples[0];
  assert.equal(info?.labels.node, 'odd \\"node\\"\\\\name\\n');
});

Deno.test("two registries over two states do not collide", async () => {
  const a = await scrape(readyState());
  const b = await scrape(newDaemonState("0.1.0", "other", "kube"));
  assert.equal(value(a.families, "tartan_leases"), 4);
  assert.equal(value(b.families, "tartan_leases"), 0);
});

Deno.test("/metrics counts skipped leases by reason, now and since start", async () => {
  const state = stateWithSkippedLease();
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }));
  const families = parseExposition(await (await app.request("/metrics")).text());
  const reason = { reason: "subnet_outside_network" };
  assert.equal(value(families, "tartan_skipped_leases", reason), 1);
  assert.equal(value(families, "tartan_lease_skips_total", reason), 1);
  assert.equal(value(families, "tartan_skipped_leases", { reason: "vtep_mac_taken" }), 0);
});
