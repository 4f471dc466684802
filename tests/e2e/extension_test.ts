/**
 * The extension backend end to end (issue 21, spec §6.8): two nodes whose net-conf commands build
 * host-gw routes with `ip route` (no shell, variables expanded by the daemon). The pre-startup
 * output is the lease's BackendData, the post-startup command sees the node's own variables,
 * pods ping across nodes over the routes the commands made, and removing a node (its lease gone)
 * runs the remove command, which takes its route away.
 */
import assert from "node:assert/strict";

import { allConnected, connectivityMatrix, formatMatrix } from "../../lab/pods.ts";
import { nodeUnderlayIP } from "../../lab/topology.ts";
import { readValue, waitFor } from "../helpers/leases.ts";
import { ipJson } from "../helpers/netns.ts";
import { deleteLease, ownLeaseName, rootSuite, SUBNETS_DIR } from "./overlay_kernel.ts";
import { withLab } from "./faults_kit.ts";

const NET_CONF = {
  Network: "10.244.0.0/16",
  Backend: {
    Type: "extension",
    PreStartupCommand: "echo from-the-pre-startup-command",
    PostStartupCommand: "ip link set ul0 alias post:${SUBNET}:${PUBLIC_IP}:$NETWORK",
    SubnetAddCommand: "ip route replace $SUBNET via $PUBLIC_IP dev ul0",
    SubnetRemoveCommand: "ip route del $SUBNET via $PUBLIC_IP dev ul0",
  },
};

interface IpRoute {
  dst: string;
  gateway?: string;
  dev?: string;
}

rootSuite("extension backend: host-gw routes built by net-conf commands", async (t) => {
  await withLab({ nodes: 2, netConf: NET_CONF }, async (lab) => {
    const client = lab.etcd.client();
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);
    const [n1, n2] = lab.nodes;
    const names = await Promise.all(lab.nodes.map((n) => ownLeaseName(n.subnetFile)));

    await t.step("leases carry the pre-startup output; post-startup saw the lease", async () => {
      for (const [i, node] of lab.nodes.entries()) {
        const ip = nodeUnderlayIP(i + 1);
        assert.equal(
          await readValue(client, `${SUBNETS_DIR}${names[i]}`),
          `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"extension",` +
            `"BackendData":"from-the-pre-startup-command"}`,
        );
        const [ul0] = await ipJson<{ ifalias?: string }[]>(node.ns, ["link", "show", "ul0"]);
        const subnet = names[i].replace("-", "/");
        assert.equal(ul0.ifalias, `post:${subnet}:${ip}:10.244.0.0/16`);
      }
    });

    await t.step("the add command routed each peer subnet via its node", async () => {
      for (const [i, node] of lab.nodes.entries()) {
        const peer = 1 - i;
        const routes = await ipJson<IpRoute[]>(node.ns, ["route", "show"]);
        const route = routes.find((r) => r.dst === names[peer].replace("-", "/"));
        assert.deepEqual(route && [route.gateway, route.dev], [nodeUnderlayIP(peer + 1), "ul0"]);
      }
    });

    await t.step("pods ping across nodes", async () => {
      const matrix = await connectivityMatrix(lab.pods);
      assert.ok(allConnected(matrix), formatMatrix(matrix));
    });

    await t.step("a removed node's route is removed by the remove command", async () => {
      await n2.stop();
      await deleteLease(client, names[1]);
      const gone = names[1].replace("-", "/");
      await waitFor("n2's route removed on n1", async () => {
        const routes = await ipJson<IpRoute[]>(n1.ns, ["route", "show"]);
        return !routes.some((r) => r.dst === gone);
      });
      const backend = await (await fetch(`${n1.adminUrl}/v1/backend`)).json() as {
        type: string;
        peers: unknown[];
      };
      assert.deepEqual([backend.type, backend.peers], ["extension", []]);
    });
  });
});
