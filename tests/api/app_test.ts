import assert from "node:assert/strict";
import fc from "fast-check";
import { createApp } from "../../api/app.ts";
import { createMetrics } from "../../api/metrics.ts";
import {
  BackendSchema,
  ErrorSchema,
  PeersSchema,
  ReadinessSchema,
  StatusSchema,
} from "../../api/schemas.ts";
import { newDaemonState } from "../../state.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import {
  appFor,
  getJson,
  HOUR_MS,
  probeReport,
  readyState,
  sampleBackend,
  vxlanLease,
} from "./fixture.ts";
import { newPeerProbeState, recordAnswer, recordFailure } from "../../probe/peer_state.ts";
import { probeTargets } from "../../probe/targets.ts";
import { probingOffReport } from "../../probe/prober.ts";

Deno.test("/healthz answers flannel's body for any method", async () => {
  const app = appFor(newDaemonState("0.1.0", "n", "etcd"));
  for (const method of ["GET", "HEAD", "POST", "PUT"]) {
    const res = await app.request("/healthz", { method });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), method === "HEAD" ? "" : "flanneld is running");
  }
});

Deno.test("/readyz goes not ready → ready → not ready when the lease expires", async () => {
  const state = newDaemonState("0.1.0", "node-a", "etcd");
  const app = appFor(state);
  const readyz = async (query = "") => {
    const res = await app.request(`/readyz${query}`);
    return { status: res.status, text: await res.text() };
  };

  assert.deepEqual(await readyz(), { status: 503, text: "flanneld is not ready yet" });
  const fresh = await readyz("?verbose");
  assert.equal(fresh.status, 503);
  assert.deepEqual(fresh.text.split("\n"), [
    "flanneld is not ready yet",
    "[-]lease failed: no lease acquired yet",
    "[-]backend failed: backend not registered yet",
    "[-]subnet_env failed: subnet.env not written yet",
    "[-]watch failed: no lease snapshot received yet",
  ]);

  // Each condition in turn; readiness holds only when all four do.
  state.ownLease = vxlanLease("10.244.1.0/24", "198.18.0.1", HOUR_MS);
  state.backend = () => sampleBackend({ ready: false, lastError: "device flannel.1 missing" });
  state.subnetEnvWritten = true;
  state.lastWatchUpdate = new Date();
  const backendDown = await readyz("?verbose");
  assert.equal(backendDown.status, 503);
  assert.match(backendDown.text, /^\[-\]backend failed: backend vxlan not ready: device flannel/m);
  assert.match(backendDown.text, /^\[\+\]lease ok$/m);

  state.backend = () => sampleBackend();
  assert.deepEqual(await readyz(), { status: 200, text: "flanneld is ready" });

  state.ownLease = vxlanLease("10.244.1.0/24", "198.18.0.1", -90_000);
  const expired = await readyz("?verbose");
  assert.equal(expired.status, 503);
  assert.match(expired.text, /^\[-\]lease failed: lease 10\.244\.1\.0\/24 expired 9\ds ago$/m);
  assert.deepEqual(await readyz(), { status: 503, text: "flanneld is not ready yet" });
});

Deno.test("/readyz with Accept: application/json returns the checks", async () => {
  const state = readyState();
  const ready = await getJson(state, "/readyz", { headers: { accept: "application/json" } });
  assert.equal(ready.status, 200);
  const body = ReadinessSchema.parse(ready.body);
  assert.equal(body.message, "flanneld is ready");
  assert.deepEqual(body.checks.map((c) => [c.name, c.ok]), [
    ["lease", true],
    ["backend", true],
    ["subnet_env", true],
    ["watch", true],
  ]);

  state.subnetEnvWritten = false;
  const notReady = await getJson(state, "/readyz", { headers: { accept: "application/json" } });
  assert.equal(notReady.status, 503);
  const failed = ReadinessSchema.parse(notReady.body).checks.filter((c) => !c.ok);
  assert.deepEqual(failed, [{
    name: "subnet_env",
    ok: false,
    reason: "subnet.env not written yet",
  }]);
});

Deno.test("/v1/status reports node, lease, config, backend, traffic and counters", async () => {
  const state = readyState();
  const { status, body } = await getJson(state, "/v1/status");
  assert.equal(status, 200);
  const s = StatusSchema.parse(body);
  assert.equal(s.node, "node-a");
  assert.equal(s.mode, "etcd");
  assert.equal(s.version, "0.1.0-test");
  assert.equal(s.publicIP, "198.18.0.1");
  assert.equal(s.publicIPv6, null);
  assert.equal(s.ready, true);
  assert.ok(s.uptimeSeconds >= 0 && s.uptimeSeconds < 60);
  assert.equal(s.lease?.key, "10.244.1.0-24");
  assert.equal(s.lease?.subnet, "10.244.1.0/24");
  assert.equal(s.lease?.own, true);
  assert.ok(s.lease!.expiresInSeconds! > 23 * 3600 && s.lease!.expiresInSeconds! <= 24 * 3600);
  assert.equal(s.network?.ipv4?.network, "10.244.0.0/16");
  assert.equal(s.network?.ipv4?.subnetMin, "10.244.1.0");
  assert.equal(s.network?.ipv6, null);
  assert.deepEqual(s.network?.backend, { type: "vxlan", options: { vni: 1, psk: "<redacted>" } });
  assert.deepEqual(s.backend, { type: "vxlan", ready: true });
  assert.equal(s.traffic?.engine, "iptables");
  assert.equal(s.traffic?.repairs, 2);
  assert.deepEqual(s.counters, {
    leasesKnown: 4,
    renewals: 4,
    renewFailures: 1,
    reacquisitions: 0,
    watchEvents: 17,
    relists: 2,
    watchErrors: 1,
    malformedSkipped: 5,
    leasesSkipped: 0,
  });
});

Deno.test("/v1/status of a daemon that has just started has nulls, not gaps", async () => {
  const { status, body } = await getJson(newDaemonState("0.1.0", "n", "kube"), "/v1/status");
  assert.equal(status, 200);
  const s = StatusSchema.parse(body);
  assert.equal(s.ready, false);
  assert.equal(s.lease, null);
  assert.equal(s.network, null);
  assert.equal(s.backend, null);
  assert.equal(s.traffic, null);
  assert.equal(s.lastWatchUpdate, null);
  assert.equal(s.readiness.filter((c) => !c.ok).length, 4);
});

Deno.test("/v1/backend reports peers, reconcile and udp counters", async () => {
  const state = readyState();
  const vxlan = BackendSchema.parse((await getJson(state, "/v1/backend")).body);
  assert.equal(vxlan.type, "vxlan");
  assert.equal(vxlan.driftRepaired, 3);
  assert.equal(vxlan.peersInSync, 2);
  assert.equal(vxlan.peersOutOfSync, 1);
  assert.equal(vxlan.lastReconcileOk, true);
  assert.deepEqual(vxlan.peers[1], {
    subnet: "10.244.3.0/24",
    publicIP: "198.18.0.3",
    inSync: false,
    error: "network is unreachable",
  });
  assert.equal(vxlan.dataPath, null);

  const dataPath = {
    packetsTx: 10,
    packetsRx: 7,
    bytesTx: 1500,
    bytesRx: 900,
    drops: { no_route: 3, ttl: 1 },
  };
  state.backend = () => sampleBackend({ type: "udp", dataPath });
  const udp = BackendSchema.parse((await getJson(state, "/v1/backend")).body);
  assert.deepEqual(udp.dataPath, dataPath);

  state.backend = undefined;
  const none = await getJson(state, "/v1/backend");
  assert.equal(none.status, 503);
  assert.equal(ErrorSchema.parse(none.body).error, "backend not registered yet");
});

Deno.test("/v1/status names the etcd endpoints in use without credentials", async () => {
  const state = readyState();
  state.etcdEndpoints = ["http://127.0.0.1:2379", "https://user:secret@etcd.example:2379"];
  const status = StatusSchema.parse((await getJson(state, "/v1/status")).body);
  assert.deepEqual(status.etcdEndpoints, ["http://127.0.0.1:2379", "https://etcd.example:2379"]);
  state.etcdEndpoints = undefined;
  assert.equal(StatusSchema.parse((await getJson(state, "/v1/status")).body).etcdEndpoints, null);
});

Deno.test("/v1/peers reports each peer's paths and verdict, and says when probing is off", async () => {
  const state = readyState();
  const off = PeersSchema.parse((await getJson(state, "/v1/peers")).body);
  assert.equal(off.enabled, false);
  assert.deepEqual([off.off, off.disabledReason], [null, "peer probing has not started yet"]);
  state.peerProbes = () =>
    probingOffReport("flag", "peer probing is off (--peer-probe-interval=0)");
  const flagged = PeersSchema.parse((await getJson(state, "/v1/peers")).body);
  assert.deepEqual([flagged.enabled, flagged.off], [false, "flag"]);

  const [target] = probeTargets([vxlanLease("10.244.2.0/24", "198.18.0.2")], undefined, "vxlan", 4);
  const peer = newPeerProbeState(target);
  const at = new Date("2026-01-02T03:04:05Z");
  recordAnswer(peer.underlay, 0.25, at);
  for (let i = 0; i < 2; i++) {
    recordFailure(peer.overlay!, "no reply within 1000 ms", at);
    recordFailure(peer.fullSize, "no reply within 1000 ms", at);
  }
  const [other] = probeTargets([vxlanLease("10.244.3.0/24", "198.18.0.3")], undefined, "vxlan", 4);
  const healthy = newPeerProbeState(other);
  for (const path of [healthy.underlay, healthy.overlay!, healthy.fullSize]) {
    recordAnswer(path, 0.2, at);
  }
  state.peerProbes = () =>
    probeReport([peer, healthy], {
      underlay: { answered: 2, lost: 0, unsent: 0 },
      overlay: { answered: 0, lost: 2, unsent: 0 },
      fullSize: { answered: 0, lost: 2, unsent: 0 },
    });
  const body = PeersSchema.parse((await getJson(state, "/v1/peers")).body);
  assert.equal(body.verdicts["overlay-blocked"], 1);
  assert.deepEqual(body.peers[0].underlay, {
    target: "198.18.0.2",
    reachable: true,
    rttMs: 0.25,
    lastSuccess: at.toISOString(),
    lastProbe: at.toISOString(),
    failureStreak: 0,
    lastError: null,
  });
  assert.equal(body.peers[0].overlay?.target, "10.244.2.0");
  assert.equal(body.peers[0].overlay?.failureStreak, 2);
  assert.equal(body.peers[0].verdict, "overlay-blocked");
  assert.equal(body.peers[1].verdict, "ok");
  const problems = PeersSchema.parse((await getJson(state, "/v1/peers?problems")).body);
  assert.deepEqual(problems.peers.map((p) => p.key), ["10.244.2.0-24"], "only the problem");
  assert.deepEqual(problems.verdicts, body.verdicts, "counts cover every peer");
  const metrics = await (await appFor(state).request("/metrics")).text();
  assert.match(metrics, /tartan_peer_probe_peers\{path="overlay",state="unreachable"\} 1/);
  assert.match(metrics, /tartan_peer_probe_verdict_peers\{verdict="overlay-blocked"\} 1/);
  assert.match(metrics, /tartan_peer_probes_total\{path="full_size",outcome="lost"\} 2/);
});

Deno.test("unknown paths are 404 JSON, wrong methods 405 with Allow", async () => {
  const state = readyState();
  for (const path of ["/", "/v2/status", "/healthz/", "/v1/status/extra", "/v1", "//v1/status"]) {
    const { status, body } = await getJson(state, path);
    assert.equal(status, 404, path);
    assert.match(ErrorSchema.parse(body).error, /no such endpoint/);
  }
  for (const path of ["/v1/status", "/v1/leases", "/v1/leases/10.244.2.0-24", "/metrics"]) {
    for (const method of ["POST", "PUT", "DELETE", "PATCH"]) {
      const { status, headers, body } = await getJson(state, path, { method });
      assert.equal(status, 405, `${method} ${path}`);
      assert.equal(headers.get("allow"), "GET, HEAD");
      ErrorSchema.parse(body);
    }
  }
  const head = await appFor(state).request("/v1/status", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
});

Deno.test("a throwing backend health yields a logged 500 JSON, not a crash", async () => {
  const state = readyState();
  state.backend = () => {
    throw new Error("health exploded");
  };
  const lines: string[] = [];
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }), {
    log: {
      debug: () => {},
      info: () => {},
      warn: () => {},
      error: (msg, fields) => lines.push(`${msg} ${fields?.error}`),
    },
  });
  const res = await app.request("/v1/backend");
  assert.equal(res.status, 500);
  assert.equal(ErrorSchema.parse(await res.json()).error, "health exploded");
  assert.deepEqual(lines, ["admin request failed health exploded"]);
});

Deno.test("garbage paths and query strings never produce a 500", async () => {
  const state = readyState();
  state.leases.set("10.244.9.0-24", {
    subnet: parseNet("10.244.9.0/24"),
    attrs: { publicIP: parseAddr("0.0.0.0"), publicIPv6: parseAddr("2001:db8::9") },
  });
  const app = appFor(state);
  const segment = fc.oneof(
    fc.string({ maxLength: 30 }),
    fc.constantFrom("v1", "leases", "status", "backend", "metrics", "readyz", "..", "%", "%2F"),
  );
  const junk = fc.string({ unit: "binary", maxLength: 40 });
  await fc.assert(
    fc.asyncProperty(fc.array(segment, { maxLength: 4 }), junk, async (segments, query) => {
      const path = "/" + segments.map(encodeURIComponent).join("/").replaceAll("%25", "%");
      const res = await app.request(`http://x${path}?${encodeURIComponent(query)}`);
      await res.arrayBuffer();
      assert.ok(res.status < 500, `${path}?${query} gave ${res.status}`);
    }),
    { numRuns: 300 },
  );
  for (const query of ["subnet=%E0%A4%A", "subnet=%", "subnet=" + "1".repeat(5000), "verbose=%"]) {
    for (const path of ["/v1/leases", "/readyz"]) {
      const res = await app.request(`${path}?${query}`);
      await res.arrayBuffer();
      assert.ok(res.status < 500, `${path}?${query}`);
    }
  }
});

Deno.test("with a token, /v1/* and /metrics answer 401 without it; probes stay open", async () => {
  const state = readyState();
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }), {
    token: "s3cret",
  });
  for (const path of ["/v1/status", "/v1/leases", "/v1/backend", "/metrics"]) {
    const wrong = [
      undefined,
      "Bearer wrong",
      "Bearer s3cret2",
      "s3cret",
      "Basic s3cret",
      "Bearers3cret",
      "Bearer s3cret extra",
      "Bearer S3CRET",
    ];
    for (const authorization of wrong) {
      const res = await app.request(path, authorization ? { headers: { authorization } } : {});
      assert.equal(res.status, 401, `${path} with ${authorization}`);
      assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="tartan"');
      assert.deepEqual(await res.json(), { error: "missing or wrong bearer token" });
    }
    // The scheme is case-insensitive (RFC 9110 §11.1); the token is not.
    for (
      const authorization of ["Bearer s3cret", "bearer s3cret", "BEARER  s3cret", "Bearer\ts3cret"]
    ) {
      const ok = await app.request(path, { headers: { authorization } });
      assert.equal(ok.status, 200, `${path} with ${authorization}`);
      await ok.body?.cancel();
    }
  }
  for (const path of ["/healthz", "/readyz"]) {
    const res = await app.request(path);
    assert.equal(res.status, 200, path);
    await res.body?.cancel();
  }
});
