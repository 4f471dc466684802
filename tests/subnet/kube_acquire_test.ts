/**
 * Start-up of the kube subnet manager against the fake API server: our node name, pod CIDR
 * and annotations as flannel writes them, waiting out what is not there yet, and the errors
 * that are fatal.
 */
import assert from "node:assert/strict";
import type { LeaseAttrs } from "../../subnet/lease.ts";
import { fakeNode, type JsonObject } from "../../lab/kube_api.ts";
import { formatAddr, formatNet, parseAddr } from "../../ip/mod.ts";
import { KubeLeaseError, KubeSubnetManager } from "../../subnet/kube.ts";
import { createKubeClient, loadKubeConfig } from "../../subnet/kube_client.ts";
import { captureLog, waitFor } from "../helpers/leases.ts";
import {
  annotationsOf,
  AP,
  DUAL_CONF,
  flannelNode,
  patchesOf,
  vxlanAttrs,
  withKubeEnv,
} from "../helpers/kube_env.ts";

Deno.test("acquireLease takes the pod CIDR and writes flannel's annotations byte for byte", () =>
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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
  withKubeEnv(async ({ api, manager }) => {
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

Deno.test("configuration errors are typed and name the fix", async () => {
  const { KubeConfigError } = await import("../../subnet/kube_client.ts");
  const saved = Deno.env.get("KUBERNETES_SERVICE_HOST");
  Deno.env.delete("KUBERNETES_SERVICE_HOST");
  try {
    await assert.rejects(loadKubeConfig({}), /--kubeconfig-file or --kube-api-url/);
  } finally {
    if (saved !== undefined) Deno.env.set("KUBERNETES_SERVICE_HOST", saved);
  }
  await assert.rejects(
    loadKubeConfig({ kubeconfigFile: "/nonexistent/kubeconfig" }),
    KubeConfigError,
  );
  const client = createKubeClient(await loadKubeConfig({ apiUrl: "http://127.0.0.1:1" }));
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
