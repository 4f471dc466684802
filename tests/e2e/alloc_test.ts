/**
 * The alloc backend through the daemon (spec §6.7): `tartan run` with `Backend.Type` alloc holds
 * a lease in flannel's format, writes subnet.env with the external interface's MTU, programs no
 * device or route, and keeps the lease (a deleted key is re-created).
 */
import assert from "node:assert/strict";
import { isBackendDevice } from "../../backends/registry.ts";
import { defaultNetConf } from "../../lab/cluster.ts";
import { nodeUnderlayIP } from "../../lab/topology.ts";
import { allocValue, readValue, waitFor } from "../helpers/leases.ts";
import { ipJson } from "../helpers/netns.ts";
import {
  adminJson,
  type BackendReport,
  deleteLease,
  ownLeaseName,
  readLeases,
  readSubnetEnv,
  rootSuite,
  SUBNETS_DIR,
} from "./overlay_kernel.ts";
import { withLab } from "./faults_kit.ts";

rootSuite("alloc backend: 2 daemons in namespaces", async (t) => {
  await withLab({
    nodes: 2,
    netConf: defaultNetConf("alloc"),
    flags: ["--ip-masq"],
  }, async (lab) => {
    const client = lab.etcd.client();
    await lab.waitConverged();

    await t.step("each node publishes a flannel alloc lease and subnet.env", async () => {
      for (const [i, node] of lab.nodes.entries()) {
        const name = await ownLeaseName(node.subnetFile);
        assert.equal(
          await readValue(client, `${SUBNETS_DIR}${name}`),
          allocValue(nodeUnderlayIP(i + 1)),
          "lease JSON byte for byte",
        );
        const env = await readSubnetEnv(node.subnetFile);
        assert.deepEqual(Object.fromEntries(env), {
          FLANNEL_NETWORK: "10.244.0.0/16",
          FLANNEL_SUBNET: name.replace(/0-24$/, "1/24"),
          FLANNEL_MTU: "1500",
          FLANNEL_IPMASQ: "true",
        });
        const report = await adminJson<BackendReport>(node.adminUrl, "/v1/backend");
        assert.equal(report.type, "alloc");
        assert.deepEqual(report.peers, []);
      }
    });

    await t.step("nothing is programmed: no backend device, no route to a peer", async () => {
      const subnets = (await readLeases(client)).map((l) => l.name.replace("-", "/"));
      for (const node of lab.nodes) {
        const links = await ipJson<{ ifname: string }[]>(node.ns, ["link", "show"]);
        assert.deepEqual(links.filter((l) => isBackendDevice(l.ifname)), []);
        const routes = await ipJson<{ dst: string }[]>(node.ns, ["route", "show"]);
        assert.ok(!routes.some((r) => subnets.includes(r.dst)), JSON.stringify(routes));
      }
    });

    await t.step("the lease is kept: a deleted key is re-created", async () => {
      const node = lab.nodes[0];
      const name = await ownLeaseName(node.subnetFile);
      await deleteLease(client, name);
      await waitFor(
        `${name} to be re-created`,
        async () =>
          (await readValue(client, `${SUBNETS_DIR}${name}`)) === allocValue(nodeUnderlayIP(1)),
        15_000,
      );
    });
  });
});
