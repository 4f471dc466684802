/**
 * The kube subnet manager's node watch: events, malformed nodes, 410 Gone, server-ended and
 * silent streams, reconnects, close(), and the in-cluster service account over HTTPS.
 */
import assert from "node:assert/strict";
import { publication } from "../../subnet/kube_annotations.ts";
import { fakeNode, type JsonObject, startFakeKubeApi } from "../../lab/kube_api.ts";
import { parseAddr } from "../../ip/mod.ts";
import { KubeSubnetManager } from "../../subnet/kube.ts";
import { createKubeClient, loadKubeConfig } from "../../subnet/kube_client.ts";
import { formatLeaseKey, type LeaseAttrs } from "../../subnet/lease.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { watchInBackground } from "../helpers/lease_watch.ts";
import { captureLog, waitFor } from "../helpers/leases.ts";
import {
  AP,
  DUAL_CONF,
  flannelNode,
  names,
  TIMING,
  V4_CONF,
  vxlanAttrs,
  withKubeEnv,
} from "../helpers/kube_env.ts";

Deno.test("the watch follows node add, update and delete; malformed nodes are skipped and counted", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(flannelNode("n1", "10.244.1.0/24", "198.18.0.11", "aa:00:00:00:00:01"));
    api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:00:00:00:00:02"));
    api.setNode(fakeNode("n3", { podCIDR: "10.244.3.0/24" })); // not a flannel node (yet)
    const bad = flannelNode("n4", "10.244.4.0/24", "198.18.0.14", "aa:00:00:00:00:04");
    ((bad.metadata as JsonObject).annotations as JsonObject)[`${AP}public-ip`] = "not-an-ip";
    api.setNode(bad);
    const m = manager();
    const stop = new AbortController();
    const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(20_000)]));
    await waitFor("the snapshot", () => w.updates.length > 0);
    assert.deepEqual(w.known(), ["10.244.1.0-24 198.18.0.11", "10.244.2.0-24 198.18.0.12"]);
    assert.equal(m.stats.malformedSkipped, 2);

    // n3 becomes a flannel node; n2 changes its MAC; n1 gets an unrelated status update.
    const { patch } = publication(names, vxlanAttrs("198.18.0.13", "aa:00:00:00:00:03"), {});
    api.updateNode("n3", (n) => (n.metadata as JsonObject).annotations = { ...patch });
    api.updateNode("n2", (n) => {
      ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}backend-data`] =
        '{"VNI":1,"VtepMAC":"aa:00:00:00:00:22"}';
    });
    api.updateNode("n1", (n) => (n.metadata as JsonObject).labels = { heartbeat: "1" });
    await waitFor("two events", () => w.events.length >= 4);
    assert.deepEqual(w.summary().slice(2), [
      "added 10.244.3.0-24 198.18.0.13",
      "added 10.244.2.0-24 198.18.0.12",
    ]);
    const n2 = w.peers.leases.find((l) => formatLeaseKey(l) === "10.244.2.0-24")!;
    assert.deepEqual(n2.attrs.backendData, { VNI: 1, VtepMAC: "aa:00:00:00:00:22" });

    // A bad edit is skipped, the last good lease stays; deletion removes with the last attributes.
    api.updateNode("n3", (n) => {
      ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}backend-data`] = "{broken";
    });
    api.deleteNode("n2");
    await waitFor("the removal", () => w.events.length >= 5);
    assert.deepEqual(w.summary().slice(4), ["removed 10.244.2.0-24 198.18.0.12"]);
    assert.deepEqual(w.known(), ["10.244.1.0-24 198.18.0.11", "10.244.3.0-24 198.18.0.13"]);
    assert.equal(m.stats.malformedSkipped, 3);
    assert.equal(m.stats.relists, 0);

    // A pod CIDR change is a removal of the old subnet and an addition of the new one.
    api.updateNode("n3", (n) => {
      (n.spec as JsonObject).podCIDR = "10.244.33.0/24";
      (n.spec as JsonObject).podCIDRs = ["10.244.33.0/24"];
      ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}backend-data`] =
        patch[`${AP}backend-data`];
    });
    await waitFor("the move", () => w.events.length >= 7);
    assert.deepEqual(w.summary().slice(5), [
      "removed 10.244.3.0-24 198.18.0.13",
      "added 10.244.33.0-24 198.18.0.13",
    ]);
    stop.abort();
    await w.done;
  }));

Deno.test("dual stack: a change to the IPv6 annotations alone is an update (quirk 15)", () =>
  withKubeEnv(async ({ api, manager }) => {
    const attrs: LeaseAttrs = {
      ...vxlanAttrs("198.18.0.12", "aa:00:00:00:00:02"),
      publicIPv6: parseAddr("fd00::12"),
      backendV6Data: { VNI: 1, VtepMAC: "aa:00:00:00:06:02" },
    };
    const { patch } = publication(names, attrs, {});
    api.setNode(
      fakeNode("n2", { podCIDRs: ["10.244.2.0/24", "fc00:0:0:2::/64"], annotations: { ...patch } }),
    );
    const m = manager({ conf: DUAL_CONF });
    const stop = new AbortController();
    const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
    await waitFor("the snapshot", () => w.events.length === 1);
    api.updateNode("n2", (n) => {
      ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}backend-v6-data`] =
        '{"VNI":1,"VtepMAC":"aa:00:00:00:06:22"}';
    });
    await waitFor("the update", () => w.events.length === 2);
    assert.deepEqual(w.events[1].lease.attrs.backendV6Data, {
      VNI: 1,
      VtepMAC: "aa:00:00:00:06:22",
    });
    stop.abort();
    await w.done;
  }));

for (const as of ["event", "http"] as const) {
  Deno.test(`a watch that expires (410 as ${as === "event" ? "an ERROR event" : "the HTTP status"}) relists and misses nothing`, () =>
    withKubeEnv(async ({ api, manager }) => {
      api.setNode(flannelNode("n1", "10.244.1.0/24", "198.18.0.11", "aa:00:00:00:00:01"));
      api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:00:00:00:00:02"));
      const m = manager();
      const stop = new AbortController();
      const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
      await waitFor("the watch", () => w.updates.length > 0 && api.openWatches() === 1);
      const lists = () =>
        api.requests.filter((r) => r.path === "/api/v1/nodes" && !r.query.watch).length;
      assert.equal(lists(), 1);
      // Cut off history, and change things while the watcher cannot see them.
      api.intercept((r) =>
        r.query.watch === "true" ? new Response("busy", { status: 503 }) : undefined
      );
      api.expire(as);
      api.deleteNode("n2");
      api.setNode(flannelNode("n5", "10.244.5.0/24", "198.18.0.15", "aa:00:00:00:00:05"));
      api.intercept(undefined);
      await waitFor("the relist", () => m.stats.relists === 1);
      await waitFor("the new state", () => w.known().length === 2);
      assert.deepEqual(w.known(), ["10.244.1.0-24 198.18.0.11", "10.244.5.0-24 198.18.0.15"]);
      assert.deepEqual(w.summary().slice(2), [
        "removed 10.244.2.0-24 198.18.0.12",
        "added 10.244.5.0-24 198.18.0.15",
      ]);
      assert.equal(lists(), 2);
      // And it watches again from the new listing.
      api.setNode(flannelNode("n6", "10.244.6.0/24", "198.18.0.16", "aa:00:00:00:00:06"));
      await waitFor("the next event", () => w.known().length === 3);
      assert.ok(m.stats.watchErrors >= 1);
      stop.abort();
      await w.done;
    }));
}

Deno.test("a stream the server ends is resumed from the last resourceVersion, without a relist", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(flannelNode("n1", "10.244.1.0/24", "198.18.0.11", "aa:00:00:00:00:01"));
    const m = manager();
    const stop = new AbortController();
    const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
    await waitFor("the watch", () => api.openWatches() === 1);
    api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:00:00:00:00:02"));
    await waitFor("n2", () => w.known().length === 2);
    const seen = String(api.resourceVersion);
    api.closeWatches();
    // Changes made before the client reconnects still arrive, from the stored history.
    api.setNode(flannelNode("n3", "10.244.3.0/24", "198.18.0.13", "aa:00:00:00:00:03"));
    await waitFor("n3", () => w.known().length === 3);
    const watches = api.requests.filter((r) => r.query.watch === "true");
    assert.equal(watches.at(-1)!.query.resourceVersion, seen);
    assert.equal(watches.at(-1)!.query.allowWatchBookmarks, "true");
    assert.equal(m.stats.relists, 0);
    assert.equal(
      api.requests.filter((r) => r.path === "/api/v1/nodes" && !r.query.watch).length,
      1,
    );
    stop.abort();
    await w.done;
  }));

Deno.test("a watch that goes silent is resumed on a new connection, not left to stall", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(flannelNode("n1", "10.244.1.0/24", "198.18.0.11", "aa:00:00:00:00:01"));
    let silenced = 0;
    // The first watch connection is accepted and then never sends a byte (a dead connection).
    api.intercept((r) =>
      r.query.watch === "true" && silenced++ === 0
        ? new Response(new ReadableStream({ start() {} }), { status: 200 })
        : undefined
    );
    const m = manager({ watchIdleMs: 300 });
    const stop = new AbortController();
    const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
    await waitFor("the silent watch", () => silenced === 1);
    api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:00:00:00:00:02"));
    await waitFor("n2 through the second connection", () => w.known().length === 2);
    assert.equal(silenced, 2);
    assert.equal(m.stats.watchErrors, 0, "going idle is not an error");
    assert.equal(m.stats.relists, 0);
    stop.abort();
    await w.done;
  }));

Deno.test("an API that is down at first only delays the watch", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:00:00:00:00:02"));
    let refused = 0;
    api.intercept(() => refused++ < 4 ? new Response("down", { status: 503 }) : undefined);
    const m = manager();
    const stop = new AbortController();
    const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
    await waitFor("the snapshot", () => w.known().length === 1);
    assert.ok(m.stats.watchErrors >= 4);
    stop.abort();
    await w.done;
  }));

Deno.test("close() ends a running watch", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(flannelNode("n1", "10.244.1.0/24", "198.18.0.11", "aa:00:00:00:00:01"));
    const m = manager();
    const w = watchInBackground(m, AbortSignal.timeout(10_000));
    await waitFor("the watch", () => api.openWatches() === 1);
    await m.close();
    await w.done;
    await waitFor("the stream to close", () => api.openWatches() === 0);
  }));

Deno.test("in-cluster: the service account token and CA are used over HTTPS", async () => {
  await using pki = await makeTestPki();
  const api = startFakeKubeApi({
    token: "sa-token",
    tls: {
      cert: await Deno.readTextFile(pki.serverCert),
      key: await Deno.readTextFile(pki.serverKey),
    },
  });
  const root = await Deno.makeTempDir({ prefix: "tt-kube-sa-" });
  const saved = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"].map((k) =>
    [k, Deno.env.get(k)] as const
  );
  try {
    const sa = `${root}/var/run/secrets/kubernetes.io/serviceaccount`;
    await Deno.mkdir(sa, { recursive: true });
    await Deno.copyFile(pki.caFile, `${sa}/ca.crt`);
    await Deno.writeTextFile(`${sa}/token`, "sa-token");
    await Deno.writeTextFile(`${sa}/namespace`, "kube-flannel");
    await Deno.writeTextFile(`${root}/net-conf.json`, V4_CONF);
    Deno.env.set("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    Deno.env.set("KUBERNETES_SERVICE_PORT", String(api.port));
    const client = createKubeClient(await loadKubeConfig({ serviceAccountRoot: root }));
    assert.equal(client.server, `https://127.0.0.1:${api.port}`);
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    const m = new KubeSubnetManager({
      client,
      netConfigPath: `${root}/net-conf.json`,
      nodeName: "n1",
      timing: TIMING,
      log: captureLog().log,
    });
    await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), AbortSignal.timeout(5000));
    const stop = new AbortController();
    const w = watchInBackground(m, AbortSignal.any([stop.signal, AbortSignal.timeout(5000)]));
    await waitFor("the watch over HTTPS", () => api.openWatches() === 1);
    api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:00:00:00:00:02"));
    await waitFor("n2", () => w.known().length === 2);
    stop.abort();
    await w.done;
    assert.ok(api.requests.some((r) => r.query.watch === "true"));
    assert.ok(api.requests.every((r) => r.authorization === "Bearer sa-token"));
    await m.close();
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await api.close();
    await Deno.remove(root, { recursive: true });
  }
});
