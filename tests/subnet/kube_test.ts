/**
 * The kube subnet manager against a fake API server speaking the real paths and JSON (nodes
 * get/list/watch, `nodes/<name>/status` PATCH, pods get), through the real client library:
 * start-up (node name, pod CIDR, annotations, condition), lease upkeep, and the node watch
 * (events, malformed nodes, 410 Gone, reconnects).
 */
import assert from "node:assert/strict";
import {
  type FakeKubeApi,
  fakeNode,
  type JsonObject,
  startFakeKubeApi,
} from "../../lab/kube_api.ts";
import { formatAddr, formatNet, parseAddr } from "../../ip/mod.ts";
import { KubeLeaseError, type KubeManagerOptions, KubeSubnetManager } from "../../subnet/kube.ts";
import { annotationNames, publication } from "../../subnet/kube_annotations.ts";
import { createKubeClient, loadKubeConfig } from "../../subnet/kube_client.ts";
import { formatLeaseKey, type LeaseAttrs } from "../../subnet/lease.ts";
import { LeaseLostError } from "../../subnet/manager.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { watchInBackground } from "../helpers/lease_watch.ts";
import { captureLog, waitFor } from "../helpers/leases.ts";

const AP = "flannel.alpha.coreos.com/";
const names = annotationNames();
const V4_CONF = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
const DUAL_CONF =
  '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
const TIMING = {
  retryInitialMs: 20,
  retryMaxMs: 100,
  checkMs: 300,
  minRepairIntervalMs: 50,
  watchBackoff: { initialMs: 10, maxMs: 100 },
};

function vxlanAttrs(ip: string, mac: string): LeaseAttrs {
  return { publicIP: parseAddr(ip), backendType: "vxlan", backendData: { VNI: 1, VtepMAC: mac } };
}

/** A node as another flannel node left it: annotated by publication(), with a pod CIDR. */
function flannelNode(name: string, podCIDR: string, ip: string, mac: string): JsonObject {
  const { patch } = publication(names, vxlanAttrs(ip, mac), {});
  return fakeNode(name, { podCIDR, annotations: { ...patch } });
}

interface Env {
  readonly api: FakeKubeApi;
  readonly dir: string;
  manager(
    options?: Partial<KubeManagerOptions> & { conf?: string; watchIdleMs?: number },
  ): KubeSubnetManager;
}

async function withEnv(fn: (env: Env) => Promise<void>, token = "s3cret"): Promise<void> {
  const api = startFakeKubeApi({ token });
  const dir = await Deno.makeTempDir({ prefix: "tt-kube-" });
  const kubeconfig = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{name: fake, cluster: {server: 'http://127.0.0.1:1'}}]",
      `users: [{name: node, user: {token: ${token}}}]`,
      "contexts: [{name: fake, context: {cluster: fake, user: node}}]",
      "current-context: fake",
    ].join("\n"),
  );
  const managers: KubeSubnetManager[] = [];
  try {
    await fn({
      api,
      dir,
      manager(options = {}) {
        const confPath = `${dir}/net-conf-${managers.length}.json`;
        Deno.writeTextFileSync(confPath, options.conf ?? V4_CONF);
        // The server in the file is wrong on purpose: --kube-api-url must win.
        const kc = loadKubeConfig({ kubeconfigFile: kubeconfig, apiUrl: api.url });
        const manager = new KubeSubnetManager({
          client: createKubeClient(kc, {
            requestTimeoutMs: 5000,
            watchTimeoutSeconds: () => 60,
            watchIdleMs: options.watchIdleMs,
          }),
          netConfigPath: confPath,
          nodeName: "n1",
          timing: TIMING,
          log: captureLog().log,
          ...options,
        });
        managers.push(manager);
        return manager;
      },
    });
  } finally {
    await Promise.all(managers.map((m) => m.close()));
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function patchesOf(api: FakeKubeApi, node: string) {
  return api.requests.filter((r) =>
    r.method === "PATCH" && r.path === `/api/v1/nodes/${node}/status`
  );
}

function annotationsOf(api: FakeKubeApi, name: string): Record<string, string> {
  const meta = api.node(name)?.metadata as JsonObject;
  return (meta.annotations ?? {}) as Record<string, string>;
}

function conditionOf(api: FakeKubeApi, name: string, type: string): JsonObject | undefined {
  const conditions = ((api.node(name)?.status as JsonObject).conditions ?? []) as JsonObject[];
  return conditions.find((c) => c.type === type);
}

Deno.test("acquireLease takes the pod CIDR and writes flannel's annotations byte for byte", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDRs: ["10.244.1.0/24"] }));
    api.setNode(flannelNode("n2", "10.244.2.0/24", "198.18.0.12", "aa:bb:cc:00:00:02"));
    const m = manager();
    const signal = AbortSignal.timeout(10_000);
    const config = await m.getNetworkConfig(signal);
    assert.equal(formatNet(config.ipv4!.network), "10.244.0.0/16");
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    assert.equal(formatNet(lease.subnet!), "10.244.1.0/24");
    assert.equal(lease.expiration, undefined);

    assert.deepEqual(annotationsOf(api, "n1"), {
      [`${AP}backend-data`]: '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}',
      [`${AP}backend-type`]: "vxlan",
      [`${AP}kube-subnet-manager`]: "true",
      [`${AP}public-ip`]: "198.18.0.11",
    });
    const [patch, ...more] = patchesOf(api, "n1");
    assert.equal(more.length, 0);
    assert.equal(patch.contentType, "application/strategic-merge-patch+json");
    assert.equal(patch.authorization, "Bearer s3cret");
    assert.equal(
      patch.body,
      `{"metadata":{"annotations":{"${AP}backend-data":"{\\"VNI\\":1,\\"VtepMAC\\":\\"12:c6:65:89:b4:e3\\"}",` +
        `"${AP}backend-type":"vxlan","${AP}kube-subnet-manager":"true","${AP}public-ip":"198.18.0.11"}}}`,
    );
    // The other node is untouched; a second acquisition with the same attributes patches nothing.
    assert.equal(patchesOf(api, "n2").length, 0);
    const again = manager();
    await again.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    assert.equal(patchesOf(api, "n1").length, 1);
  }));

Deno.test("acquireLease waits while the pod CIDR is missing, then proceeds", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1"));
    const { log, lines } = captureLog();
    const m = manager({ log });
    const acquiring = m.acquireLease(
      vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"),
      AbortSignal.timeout(10_000),
    );
    await waitFor(
      "the waiting log line",
      () => lines.some((l) => l.includes('node \\"n1\\" pod cidr not assigned')),
    );
    const gets = api.requests.filter((r) => r.path === "/api/v1/nodes/n1").length;
    await waitFor(
      "a few more reads",
      () => api.requests.filter((r) => r.path === "/api/v1/nodes/n1").length > gets + 2,
    );
    assert.equal(patchesOf(api, "n1").length, 0, "nothing is published without a subnet");
    api.updateNode("n1", (n) => (n.spec as JsonObject).podCIDR = "10.244.9.0/24");
    const lease = await acquiring;
    assert.equal(formatNet(lease.subnet!), "10.244.9.0/24");
    assert.equal(annotationsOf(api, "n1")[`${AP}kube-subnet-manager`], "true");
  }));

Deno.test("acquireLease waits for a node that does not exist yet, and retries API errors", () =>
  withEnv(async ({ api, manager }) => {
    let failures = 0;
    api.intercept((r) =>
      r.method === "PATCH" && failures++ < 2
        ? new Response('{"kind":"Status","code":500,"message":"etcdserver: timeout"}', {
          status: 500,
        })
        : undefined
    );
    const m = manager();
    const acquiring = m.acquireLease(
      vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"),
      AbortSignal.timeout(10_000),
    );
    await waitFor("a 404", () => api.requests.some((r) => r.path === "/api/v1/nodes/n1"));
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    await acquiring;
    assert.equal(patchesOf(api, "n1").length, 3);
    assert.equal(annotationsOf(api, "n1")[`${AP}public-ip`], "198.18.0.11");
  }));

Deno.test("a pod CIDR outside the network, or too many of them, is fatal", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDR: "10.99.1.0/24" }));
    await assert.rejects(
      manager().acquireLease(
        vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"),
        AbortSignal.timeout(5000),
      ),
      (e) => {
        assert.ok(e instanceof KubeLeaseError);
        assert.match(e.message, /doesn't contain "10\.99\.1\.0\/24" PodCIDR of the "n1" node/);
        return true;
      },
    );
    api.setNode(fakeNode("n1", { podCIDRs: ["10.244.1.0/24", "fc00::/64", "10.244.2.0/24"] }));
    await assert.rejects(
      manager().acquireLease(
        vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"),
        AbortSignal.timeout(5000),
      ),
      KubeLeaseError,
    );
  }));

Deno.test("dual stack takes both pod CIDRs and publishes the IPv6 pair", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDRs: ["10.244.1.0/24", "fc00:0:0:1::/64"] }));
    const m = manager({ conf: DUAL_CONF });
    const attrs: LeaseAttrs = {
      ...vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"),
      publicIPv6: parseAddr("fd00::11"),
      backendV6Data: { VNI: 1, VtepMAC: "12:c6:65:89:b4:e4" },
    };
    const lease = await m.acquireLease(attrs, AbortSignal.timeout(5000));
    assert.equal(formatNet(lease.ipv6Subnet!), "fc00:0:0:1::/64");
    const annotations = annotationsOf(api, "n1");
    assert.equal(annotations[`${AP}public-ipv6`], "fd00::11");
    assert.equal(annotations[`${AP}backend-v6-data`], '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e4"}');
  }));

Deno.test("the node name comes from our pod when NODE_NAME is unset", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("worker-7", { podCIDR: "10.244.7.0/24" }));
    api.setPod({
      kind: "Pod",
      apiVersion: "v1",
      metadata: { name: "kube-tartan-abcde", namespace: "kube-flannel" },
      spec: { nodeName: "worker-7" },
    });
    let told = "";
    const m = manager({
      nodeName: "",
      pod: { name: "kube-tartan-abcde", namespace: "kube-flannel" },
      onNodeName: (name) => told = name,
    });
    const lease = await m.acquireLease(
      vxlanAttrs("198.18.0.17", "12:c6:65:89:b4:e7"),
      AbortSignal.timeout(5000),
    );
    assert.equal(formatNet(lease.subnet!), "10.244.7.0/24");
    assert.equal(told, "worker-7");
    assert.ok(
      api.requests.some((r) => r.path === "/api/v1/namespaces/kube-flannel/pods/kube-tartan-abcde"),
    );
    assert.equal(annotationsOf(api, "worker-7")[`${AP}public-ip`], "198.18.0.17");
  }));

Deno.test("public-ip-overwrite is published; node-public-ip and the old MAC are read at start-up", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", {
      podCIDR: "10.244.1.0/24",
      annotations: {
        [`${AP}public-ip-overwrite`]: "203.0.113.7",
        [`${AP}node-public-ip`]: "198.18.0.111",
        [`${AP}backend-data`]: '{"VNI":1,"VtepMAC":"0e:00:00:00:00:01"}',
      },
    }));
    const m = manager();
    const signal = AbortSignal.timeout(5000);
    assert.deepEqual(await m.previousBackendData(4, signal), {
      VNI: 1,
      VtepMAC: "0e:00:00:00:00:01",
    });
    assert.equal(await m.previousBackendData(6, signal), undefined);
    const pinned = await m.nodePublicIPs(signal);
    assert.equal(formatAddr(pinned.publicIP!), "198.18.0.111");
    assert.equal(pinned.publicIPv6, undefined);
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "0e:00:00:00:00:01"), signal);
    assert.equal(annotationsOf(api, "n1")[`${AP}public-ip`], "203.0.113.7");
    assert.equal(formatAddr(lease.attrs.publicIP), "203.0.113.7");
  }));

Deno.test("a custom annotation prefix is used for writing and for the MAC read-back (quirk 16)", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", {
      podCIDR: "10.244.1.0/24",
      annotations: { "org.com/9-backend-data": '{"VNI":1,"VtepMAC":"0e:00:00:00:00:09"}' },
    }));
    const m = manager({ annotationPrefix: "org.com/9" });
    const signal = AbortSignal.timeout(5000);
    assert.deepEqual(await m.previousBackendData(4, signal), {
      VNI: 1,
      VtepMAC: "0e:00:00:00:00:09",
    });
    await m.acquireLease(vxlanAttrs("198.18.0.11", "0e:00:00:00:00:09"), signal);
    assert.deepEqual(Object.keys(annotationsOf(api, "n1")).sort(), [
      "org.com/9-backend-data",
      "org.com/9-backend-type",
      "org.com/9-kube-subnet-manager",
      "org.com/9-public-ip",
    ]);
  }));

Deno.test("maintainLease sets NetworkUnavailable=False and re-asserts it and our annotations", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    const m = manager();
    const stop = new AbortController();
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(20_000)]);
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    const watching = watchInBackground(m, signal);
    const maintaining = m.maintainLease(lease, signal);
    await waitFor(
      "the condition",
      () => conditionOf(api, "n1", "NetworkUnavailable") !== undefined,
    );
    const sent = patchesOf(api, "n1").at(-1)!;
    assert.match(
      sent.body,
      /^\{"status":\{"conditions":\[\{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","lastTransitionTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","reason":"FlannelIsUp","message":"Flannel is running on this node"\}\]\}\}$/,
    );
    assert.equal(sent.contentType, "application/strategic-merge-patch+json");
    const condition = conditionOf(api, "n1", "NetworkUnavailable")!;
    assert.equal(condition.status, "False");
    assert.equal(condition.reason, "FlannelIsUp");
    assert.equal(conditionOf(api, "n1", "Ready")?.status, "True", "other conditions are kept");

    // Something sets the condition back to True (quirk 34) and drops an annotation.
    api.updateNode("n1", (n) => {
      const conditions = (n.status as JsonObject).conditions as JsonObject[];
      conditions.find((c) => c.type === "NetworkUnavailable")!.status = "True";
      delete ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}public-ip`];
    });
    await waitFor(
      "the repair",
      () =>
        conditionOf(api, "n1", "NetworkUnavailable")?.status === "False" &&
        annotationsOf(api, "n1")[`${AP}public-ip`] === "198.18.0.11",
    );
    assert.ok(m.stats.renewals >= 1);
    // Quiet again: no patch storm.
    const settled = patchesOf(api, "n1").length;
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(patchesOf(api, "n1").length, settled);
    stop.abort();
    await maintaining;
    await watching.done;
  }));

Deno.test("maintainLease ends with LeaseLostError when our node's pod CIDR changes", () =>
  withEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    const m = manager({ setNodeNetworkUnavailable: false });
    const signal = AbortSignal.timeout(10_000);
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    const maintaining = m.maintainLease(lease, signal);
    api.deleteNode("n1");
    api.setNode(fakeNode("n1", { podCIDR: "10.244.5.0/24" }));
    await assert.rejects(maintaining, LeaseLostError);
    assert.equal(
      conditionOf(api, "n1", "NetworkUnavailable"),
      undefined,
      "flag disables the condition",
    );
  }));

Deno.test("the watch follows node add, update and delete; malformed nodes are skipped and counted", () =>
  withEnv(async ({ api, manager }) => {
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
  withEnv(async ({ api, manager }) => {
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
    withEnv(async ({ api, manager }) => {
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
  withEnv(async ({ api, manager }) => {
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
  withEnv(async ({ api, manager }) => {
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
  withEnv(async ({ api, manager }) => {
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
  withEnv(async ({ api, manager }) => {
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
    const client = createKubeClient(loadKubeConfig({ serviceAccountRoot: root }));
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

Deno.test("configuration errors are typed and name the fix", async () => {
  const { KubeConfigError } = await import("../../subnet/kube_client.ts");
  const saved = Deno.env.get("KUBERNETES_SERVICE_HOST");
  Deno.env.delete("KUBERNETES_SERVICE_HOST");
  try {
    assert.throws(() => loadKubeConfig({}), /--kubeconfig-file or --kube-api-url/);
  } finally {
    if (saved !== undefined) Deno.env.set("KUBERNETES_SERVICE_HOST", saved);
  }
  assert.throws(
    () => loadKubeConfig({ kubeconfigFile: "/nonexistent/kubeconfig" }),
    KubeConfigError,
  );
  const client = createKubeClient(loadKubeConfig({ apiUrl: "http://127.0.0.1:1" }));
  assert.throws(
    () => new KubeSubnetManager({ client }),
    /set NODE_NAME, or POD_NAME and POD_NAMESPACE/,
  );
  assert.throws(
    () => new KubeSubnetManager({ client, nodeName: "n1", annotationPrefix: "a/b/c" }),
    /more than one \//,
  );
  const missing = new KubeSubnetManager({
    client,
    nodeName: "n1",
    netConfigPath: "/nonexistent.json",
  });
  await assert.rejects(
    missing.getNetworkConfig(AbortSignal.timeout(1000)),
    /cannot read \/nonexistent.json/,
  );
});
