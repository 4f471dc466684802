/**
 * Kubernetes mode end to end (issue 10, spec §4, §12 items 16, 28–30): three `tartan run
 * --kube-subnet-mgr` nodes in namespaces against the lab's fake API server, vxlan, one CNI pod
 * each. Pods ping across nodes; every node carries flannel's annotations and condition; kernel
 * state follows the Node objects (public-ip-overwrite, deletion); a re-created device keeps the
 * published VTEP MAC; a node without a pod CIDR waits for one instead of exiting.
 *
 * Expectations are derived from the Node objects in the API (the shared source of truth), never
 * from a daemon's report about itself. The steps share one lab and run in order.
 */
import assert from "node:assert/strict";
import { defaultNetConf, type KubeLabCluster, startKubeLab } from "../../lab/cluster.ts";
import type { JsonObject } from "../../lab/kube_api.ts";
import { allConnected, connectivityMatrix, formatMatrix } from "../../lab/pods.ts";
import { nodeUnderlayIP } from "../../lab/topology.ts";
import { ipJson, removeLeftovers, run, RUN_PREFIX } from "../helpers/netns.ts";
import {
  expectedVxlanEntries,
  peerEntries,
  readSubnetEnv,
  rootSuite,
  type StoredLease,
} from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const AP = "flannel.alpha.coreos.com/";

function annotations(node: JsonObject | undefined): Record<string, string> {
  return ((node?.metadata as JsonObject | undefined)?.annotations ?? {}) as Record<string, string>;
}

function podCidr(node: JsonObject): string {
  return (node.spec as JsonObject).podCIDR as string;
}

/** A node's lease as its peers read it from the API (spec §4.3), or undefined if it has none. */
function leaseOf(node: JsonObject): StoredLease | undefined {
  const a = annotations(node);
  if (a[`${AP}kube-subnet-manager`] !== "true" || !podCidr(node)) return undefined;
  const [base, len] = podCidr(node).split("/");
  const data = JSON.parse(a[`${AP}backend-data`]) as { VtepMAC?: string } | null;
  return {
    name: `${base}-${len}`,
    subnet: podCidr(node),
    base,
    publicIP: a[`${AP}public-ip`],
    backendType: a[`${AP}backend-type`],
    vtepMac: data?.VtepMAC,
  };
}

/** Wait until every running node holds exactly what the Node objects of its peers prescribe. */
async function waitForKubeState(lab: KubeLabCluster, timeoutMs: number): Promise<void> {
  const started = performance.now();
  for (;;) {
    const running = lab.nodes.filter((n) => n.running());
    const views = await Promise.all(running.map(async (n) => {
      const peers = lab.nodes.filter((p) => p !== n).map((p) => lab.kube.node(p.ns))
        .flatMap((obj) => obj ? [leaseOf(obj)].filter((l) => l !== undefined) : []);
      return { ns: n.ns, actual: await peerEntries(n.ns), wanted: expectedVxlanEntries(peers) };
    }));
    const wrong = views.find((v) => JSON.stringify(v.actual) !== JSON.stringify(v.wanted));
    if (!wrong) return;
    if (performance.now() - started > timeoutMs) {
      assert.deepEqual(wrong.actual, wrong.wanted, `kernel state of ${wrong.ns}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function deviceMac(ns: string): Promise<string> {
  const [dev] = await ipJson<{ address: string }[]>(ns, ["link", "show", "flannel.1"]);
  return dev.address;
}

async function ready(adminUrl: string): Promise<number> {
  const res = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) })
    .catch(() => undefined);
  await res?.body?.cancel();
  return res?.status ?? 0;
}

async function assertPodsConnected(lab: KubeLabCluster): Promise<void> {
  const matrix = await connectivityMatrix(
    lab.pods.filter((p) => lab.nodes.some((n) => n.ns === p.node && n.running())),
  );
  assert.ok(allConnected(matrix), `not every pod reaches every other:\n${formatMatrix(matrix)}`);
}

rootSuite("kube mode: 3 vxlan nodes against a fake API server", async (t) => {
  await removeLeftovers();
  const lab = await startKubeLab({
    prefix: RUN_PREFIX,
    nodes: 3,
    netConf: defaultNetConf("vxlan"),
  });
  try {
    await lab.waitConverged(60_000);
    for (let i = 0; i < 3; i++) await lab.addPods(i, 1);

    await t.step(
      "pods on different nodes reach each other over vxlan",
      () => assertPodsConnected(lab),
    );

    await t.step(
      "each node carries flannel's annotations and condition (§12 items 28, 29)",
      async () => {
        for (const [i, node] of lab.nodes.entries()) {
          const obj = lab.kube.node(node.ns)!;
          const mac = await deviceMac(node.ns);
          assert.deepEqual(
            Object.fromEntries(Object.entries(annotations(obj)).filter(([k]) => k.startsWith(AP))),
            {
              [`${AP}backend-data`]: `{"VNI":1,"VtepMAC":"${mac}"}`,
              [`${AP}backend-type`]: "vxlan",
              [`${AP}kube-subnet-manager`]: "true",
              [`${AP}public-ip`]: nodeUnderlayIP(i + 1),
            },
          );
          const conditions = (obj.status as JsonObject).conditions as JsonObject[];
          const up = conditions.find((c) => c.type === "NetworkUnavailable");
          assert.equal(up?.status, "False");
          assert.equal(up?.reason, "FlannelIsUp");
          assert.equal(up?.message, "Flannel is running on this node");
          const firstHost = podCidr(obj).replace(/\.0\/24$/, ".1/24");
          assert.equal(podCidr(obj), `10.244.${i + 1}.0/24`);
          assert.equal((await readSubnetEnv(node.subnetFile)).get("FLANNEL_SUBNET"), firstHost);
        }
        await waitForKubeState(lab, 5000);
      },
    );

    await t.step("a re-created device takes the VTEP MAC published before", async () => {
      const node = lab.nodes[0];
      const published = await deviceMac(node.ns);
      assert.equal(await node.stop(), 0);
      await run(["ip", "-n", node.ns, "link", "del", "flannel.1"]);
      await node.start();
      await waitFor(
        "the node to be ready again",
        async () => await ready(node.adminUrl) === 200,
        30_000,
      );
      assert.equal(await deviceMac(node.ns), published);
      assert.equal(leaseOf(lab.kube.node(node.ns)!)?.vtepMac, published);
      await waitForKubeState(lab, 5000);
      await assertPodsConnected(lab);
    });

    await t.step(
      "public-ip-overwrite is published and peers tunnel to it (§12 item 30)",
      async () => {
        const name = lab.nodes[2].ns;
        lab.kube.updateNode(name, (n) => {
          ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}public-ip-overwrite`] =
            "203.0.113.7";
        });
        await waitFor(
          "the overwrite to be published",
          () => annotations(lab.kube.node(name))[`${AP}public-ip`] === "203.0.113.7",
          15_000,
        );
        await waitForKubeState(lab, 5000);
        const fdb = (await peerEntries(lab.nodes[0].ns)).fdb;
        assert.ok(fdb.some((f) => f.includes("dst 203.0.113.7")), fdb.join("\n"));
        lab.kube.updateNode(name, (n) => {
          delete ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}public-ip-overwrite`];
        });
        await waitFor(
          "the real address to be published again",
          () => annotations(lab.kube.node(name))[`${AP}public-ip`] === nodeUnderlayIP(3),
          15_000,
        );
        await waitForKubeState(lab, 5000);
        await assertPodsConnected(lab);
      },
    );

    await t.step("a node without a pod CIDR waits for one, then joins", async () => {
      const node = lab.nodes[1];
      const cidr = podCidr(lab.kube.node(node.ns)!);
      assert.equal(await node.stop(), 0);
      await Deno.remove(node.subnetFile);
      lab.kube.updateNode(node.ns, (n) => n.spec = {});
      const logged = (await Deno.readTextFile(node.logFile)).length;
      await node.start();
      await waitFor(
        "the waiting log line",
        async () =>
          (await Deno.readTextFile(node.logFile)).slice(logged).includes(
            `node \\"${node.ns}\\" pod cidr not assigned`,
          ),
        30_000,
      );
      assert.ok(node.running(), "the daemon waits instead of exiting");
      assert.equal(await ready(node.adminUrl), 503);
      lab.kube.updateNode(node.ns, (n) => n.spec = { podCIDR: cidr, podCIDRs: [cidr] });
      await waitFor(
        "the node to be ready",
        async () => await ready(node.adminUrl) === 200,
        30_000,
      );
      await waitForKubeState(lab, 5000);
      await assertPodsConnected(lab);
    });

    await t.step("a deleted Node object vanishes from every peer (§12 item 16)", async () => {
      const leaving = lab.nodes[2];
      assert.equal(await leaving.stop(), 0);
      const before = await peerEntries(lab.nodes[0].ns);
      assert.equal(before.routes.length, 2);
      lab.kube.deleteNode(leaving.ns);
      await waitForKubeState(lab, 5000);
      assert.equal((await peerEntries(lab.nodes[0].ns)).routes.length, 1);
      await assertPodsConnected(lab);
    });
  } finally {
    await lab.stop();
  }
});
