/**
 * vxlan with `DirectRouting` (spec §6.2, §12 item 17): peers on the same L2 segment get a plain
 * route via their public IP and no neighbour or FDB entry; a peer on another network still gets
 * the tunnel trio. Pods ping each other across the direct route.
 */
import assert from "node:assert/strict";

import { allConnected, connectivityMatrix, formatMatrix } from "../../lab/pods.ts";

import {
  expectedVxlanEntries,
  freeSubnet,
  type PeerEntries,
  putRawLease,
  readLeases,
  rootSuite,
  type StoredLease,
  waitForExactState,
} from "./overlay_kernel.ts";
import { withLab } from "./faults_kit.ts";
import { vxlanValue } from "../helpers/leases.ts";

/** The lab underlay, 198.18.0.0/24: the peers a DirectRouting node reaches without a tunnel. */
const onUnderlay = (p: StoredLease) => /^198\.18\.0\.\d+$/.test(p.publicIP);

function expectedDirectRouting(peers: readonly StoredLease[]): PeerEntries {
  const vxlan = peers.filter((p) => p.backendType === "vxlan");
  const tunnelled = expectedVxlanEntries(vxlan.filter((p) => !onUnderlay(p)));
  const direct = vxlan.filter(onUnderlay).map((p) => `${p.subnet} via ${p.publicIP} dev ul0`);
  return { ...tunnelled, routes: [...tunnelled.routes, ...direct].sort() };
}

rootSuite("vxlan DirectRouting: direct routes on the segment, tunnel beyond it", async (t) => {
  await withLab({
    nodes: 2,
    netConf: { Network: "10.244.0.0/16", Backend: { Type: "vxlan", DirectRouting: true } },
  }, async (lab) => {
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);

    await t.step("peers on the segment: S via P dev ul0, no neighbour, no FDB entry", async () => {
      await waitForExactState(lab, expectedDirectRouting, 5000);
      const matrix = await connectivityMatrix(lab.pods);
      assert.ok(allConnected(matrix), formatMatrix(matrix));
    });

    await t.step(
      "a peer on another network gets the vxlan neighbour, FDB entry and route",
      async () => {
        const client = lab.etcd.client();
        const name = freeSubnet(await readLeases(client));
        await putRawLease(client, name, vxlanValue("198.19.9.9", "0e:00:00:00:09:09"));
        await waitForExactState(lab, expectedDirectRouting, 3000);
        const leases = await readLeases(client);
        assert.ok(leases.some((l) => l.name === name && !onUnderlay(l)));
      },
    );
  });
});
