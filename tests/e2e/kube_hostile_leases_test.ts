/**
 * Kubernetes mode passes the same lease gate as etcd mode (issue 18): Node objects with hostile
 * flannel annotations, next to two real `tartan run --kube-subnet-mgr` nodes, are skipped with
 * their reason in `/v1/leases`, and each node's kernel holds only its real peer's entries; the
 * victim of a VtepMAC thief keeps its FDB entry, and pods keep reaching each other.
 */
import assert from "node:assert/strict";
import { defaultNetConf, startKubeLab } from "../../lab/cluster.ts";
import { fakeNode } from "../../lab/kube_api.ts";
import { ping } from "../../lab/pods.ts";
import { nodeUnderlayIP } from "../../lab/topology.ts";
import { bridgeJson, ipJson, removeLeftovers, RUN_PREFIX } from "../helpers/netns.ts";
import {
  adminJson,
  expectedVxlanEntries,
  peerEntries,
  rootSuite,
  type StoredLease,
} from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const AP = "flannel.alpha.coreos.com/";

/** A Node as a flannel node annotates itself, with whatever values a hostile one chooses. */
function flannelNode(name: string, podCIDR: string, publicIP: string, mac: string) {
  return fakeNode(name, {
    podCIDR,
    annotations: {
      [`${AP}backend-data`]: `{"VNI":1,"VtepMAC":"${mac}"}`,
      [`${AP}backend-type`]: "vxlan",
      [`${AP}kube-subnet-manager`]: "true",
      [`${AP}public-ip`]: publicIP,
    },
  });
}

async function deviceMac(ns: string): Promise<string> {
  const [dev] = await ipJson<{ address: string }[]>(ns, ["link", "show", "flannel.1"]);
  return dev.address;
}

rootSuite("kube mode: hostile Node annotations are skipped", async (t) => {
  await removeLeftovers();
  const lab = await startKubeLab({
    prefix: RUN_PREFIX,
    nodes: 2,
    netConf: defaultNetConf("vxlan"),
  });
  try {
    await lab.waitConverged(60_000);
    await lab.addPods(0, 1);
    await lab.addPods(1, 1);
    const [n1, n2] = lab.nodes;
    const peerOf = async (i: number): Promise<StoredLease> => ({
      name: `10.244.${i + 1}.0-24`,
      subnet: `10.244.${i + 1}.0/24`,
      base: `10.244.${i + 1}.0`,
      publicIP: nodeUnderlayIP(i + 1),
      backendType: "vxlan",
      vtepMac: await deviceMac(lab.nodes[i].ns),
    });
    const [own1, own2] = [await peerOf(0), await peerOf(1)];

    await t.step("each hostile Node is skipped on n1 with its reason", async () => {
      const hostile: Array<[string, string, string, string, string]> = [
        ["thief", "10.244.50.0/24", "198.18.0.91", own2.vtepMac!, "vtep_mac_taken"],
        ["whole", "10.244.0.0/16", "198.18.0.92", "0e:00:00:00:00:92", "subnet_outside_network"],
        ["ownip", "10.244.51.0/24", nodeUnderlayIP(1), "0e:00:00:00:00:93", "public_ip_own"],
        ["noip", "10.244.52.0/24", "0.0.0.0", "0e:00:00:00:00:94", "public_ip_missing"],
        ["half", "10.244.1.128/25", "198.18.0.95", "0e:00:00:00:00:95", "subnet_overlaps_own"],
      ];
      for (const [name, cidr, ip, mac] of hostile) {
        lab.kube.setNode(flannelNode(`${RUN_PREFIX}${name}`, cidr, ip, mac));
      }
      const wanted = Object.fromEntries(
        hostile.map(([, cidr, , , reason]) => [cidr.replace("/", "-"), reason]),
      );
      await waitFor(
        "n1 reports every hostile Node skipped",
        async () => {
          const body = await adminJson<
            { leases: { key: string; skipped: { reason: string } | null }[] }
          >(n1.adminUrl, "/v1/leases");
          const skipped = Object.fromEntries(
            body.leases.filter((l) => l.skipped).map((l) => [l.key, l.skipped!.reason]),
          );
          const sorted = (o: object) => JSON.stringify(Object.entries(o).sort());
          return sorted(skipped) === sorted(wanted);
        },
        15_000,
        100,
      );
    });

    await t.step(
      "the kernel holds only the real peer; the victim keeps its FDB entry",
      async () => {
        // On n2 the Node with n1's address and a fresh MAC is valid (it only points at n1).
        const ownIPonN2: StoredLease = {
          name: "10.244.51.0-24",
          subnet: "10.244.51.0/24",
          base: "10.244.51.0",
          publicIP: nodeUnderlayIP(1),
          backendType: "vxlan",
          vtepMac: "0e:00:00:00:00:93",
        };
        await waitFor(
          "exact kernel state on both nodes",
          async () => {
            const [e1, e2] = await Promise.all([peerEntries(n1.ns), peerEntries(n2.ns)]);
            return JSON.stringify(e1) === JSON.stringify(expectedVxlanEntries([own2])) &&
              JSON.stringify(e2) === JSON.stringify(expectedVxlanEntries([own1, ownIPonN2]));
          },
          10_000,
          100,
        );
        const fdb = await bridgeJson<{ mac: string; dst?: string }[]>(n1.ns, [
          "fdb",
          "show",
          "dev",
          "flannel.1",
        ]);
        assert.deepEqual(fdb.filter((e) => e.mac === own2.vtepMac).map((e) => e.dst), [
          own2.publicIP,
        ]);
        const [p1, p2] = lab.pods;
        assert.ok(await ping(p1.ns, p2.ip), "n1's pod reaches n2's pod");
      },
    );
  } finally {
    await lab.stop();
  }
});
