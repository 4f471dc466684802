/**
 * The host-gw overlay end to end (issue 6, spec §6.4, §12 items 5, 22): three nodes on one L2
 * underlay with two CNI pods each. Every pod pings every other pod; each node routes each peer
 * subnet via the peer's public IP on `ul0` and nothing else; a hand-deleted route comes back; a
 * peer the kernel cannot reach directly is reported (logs and `/v1/backend`), not black-holed
 * silently, and does not disturb the others; a departed node's route vanishes.
 */
import assert from "node:assert/strict";
import { defaultNetConf, type LabCluster } from "../../lab/cluster.ts";
import { allConnected, connectivityMatrix, formatMatrix } from "../../lab/pods.ts";
import { nodeUnderlayIP } from "../../lab/topology.ts";
import { hostGwValue, readValue, waitFor } from "../helpers/leases.ts";
import { ipJson, run } from "../helpers/netns.ts";
import {
  adminJson,
  type BackendReport,
  deleteLease,
  expectedHostGwEntries,
  freeSubnet,
  ownLeaseName,
  putRawLease,
  readLeases,
  rootSuite,
  SUBNETS_DIR,
  waitForExactState,
} from "./overlay_kernel.ts";
import { withLab } from "./faults_kit.ts";

const RESYNC_MS = 10_000;
/** Not on the lab's 198.18.0.0/24 underlay: reachable only through a router. */
const UNREACHABLE_PEER = "198.19.7.7";

async function assertMatrix(lab: LabCluster): Promise<void> {
  const matrix = await connectivityMatrix(lab.pods);
  assert.ok(allConnected(matrix), `not every pod reaches every other:\n${formatMatrix(matrix)}`);
}

rootSuite("host-gw overlay: 3 nodes in namespaces", async (t) => {
  await withLab({ nodes: 3, netConf: defaultNetConf("host-gw") }, async (lab) => {
    const client = lab.etcd.client();
    await lab.waitConverged();
    for (let i = 0; i < 3; i++) await lab.addPods(i, 2);

    await t.step("every pod pings every other pod", () => assertMatrix(lab));

    await t.step("routes, leases and subnet.env are flannel's", async () => {
      await waitForExactState(lab, expectedHostGwEntries, 5000);
      for (const [i, node] of lab.nodes.entries()) {
        const name = await ownLeaseName(node.subnetFile);
        assert.equal(
          await readValue(client, `${SUBNETS_DIR}${name}`),
          hostGwValue(nodeUnderlayIP(i + 1)),
          "lease JSON byte for byte",
        );
        assert.match(await Deno.readTextFile(node.subnetFile), /^FLANNEL_MTU=1500$/m);
        const vxlan = await ipJson<unknown[]>(node.ns, ["link", "show", "type", "vxlan"]);
        assert.deepEqual(vxlan, [], "host-gw creates no tunnel device");
      }
    });

    await t.step("a hand-deleted route is back within the resync period", async () => {
      const [n1, n2] = lab.nodes;
      const peer = (await ownLeaseName(n2.subnetFile)).replace("-", "/");
      await run(["ip", "-n", n1.ns, "route", "del", peer]);
      const ms = await waitForExactState(lab, expectedHostGwEntries, RESYNC_MS + 2000);
      console.log(`host-gw route deleted → back in ${ms} ms`);
    });

    await t.step("an unreachable peer is reported, the others are unaffected", async () => {
      const name = freeSubnet(await readLeases(client));
      const subnet = name.replace("-", "/");
      await putRawLease(client, name, hostGwValue(UNREACHABLE_PEER));
      for (const node of lab.nodes) {
        let report: BackendReport | undefined;
        await waitFor(`${node.ns} to report ${subnet}`, async () => {
          report = await adminJson<BackendReport>(node.adminUrl, "/v1/backend");
          return report.peers.some((p) => p.subnet === subnet && !p.inSync);
        }, 3000);
        const bad = report!.peers.find((p) => p.subnet === subnet)!;
        assert.equal(bad.publicIP, UNREACHABLE_PEER);
        assert.match(bad.error ?? "", new RegExp(`route ${subnet}: .*E(NETUNREACH|INVAL)`));
        assert.ok(
          report!.peers.filter((p) => p !== bad).every((p) => p.inSync),
          "other peers in sync",
        );
        const log = await Deno.readTextFile(node.logFile);
        const line = log.split("\n").find((l) => l.includes("peer not programmed"));
        assert.ok(line?.includes(subnet), `log names the peer: ${line}`);
        assert.deepEqual(await ipJson<unknown[]>(node.ns, ["route", "show", subnet]), []);
      }
      // The leftover lease is no kernel object, so the exact state of the others still holds.
      await waitForExactState(
        lab,
        (peers) => expectedHostGwEntries(peers.filter((p) => p.publicIP !== UNREACHABLE_PEER)),
        2000,
      );
      await assertMatrix(lab);
      await deleteLease(client, name);
      await waitFor("the report to drop the peer", async () => {
        const report = await adminJson<BackendReport>(lab.nodes[0].adminUrl, "/v1/backend");
        return report.peers.every((p) => p.inSync && p.subnet !== subnet);
      }, 3000);
    });

    await t.step("a departed node's route vanishes everywhere", async () => {
      const n3 = lab.nodes[2];
      const name = await ownLeaseName(n3.subnetFile);
      await n3.stop();
      await deleteLease(client, name);
      const ms = await waitForExactState(lab, expectedHostGwEntries, 3000);
      console.log(`host-gw key deleted → route gone in ${ms} ms`);
      for (const node of lab.nodes.slice(0, 2)) {
        assert.deepEqual(
          await ipJson<unknown[]>(node.ns, ["route", "show", name.replace("-", "/")]),
          [],
        );
      }
    });
  });
});
