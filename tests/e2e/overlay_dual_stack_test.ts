/**
 * Dual-stack vxlan end to end (spec §6.2, quirk 14): two nodes whose underlay carries IPv4 and
 * IPv6 (2001:db8::/64 inside the lab's namespaces), a net-conf with `IPv6Network`, one CNI pod
 * per node. Each node builds `flannel.1` over the IPv4 underlay and `flannel-v6.1` over the IPv6
 * one, with the MTU each underlay leaves; the leases carry both public addresses; pods reach each
 * other across nodes over IPv4 and over IPv6. Each node probes the other in both families, and
 * VXLAN dropped over IPv6 alone shows as the IPv6 path's `overlay-blocked`.
 */
import assert from "node:assert/strict";
import { LAB_ETCD_PREFIX, type LabCluster } from "../../lab/cluster.ts";
import { ping } from "../../lab/pods.ts";
import { nodeUnderlayIP, nodeUnderlayIPv6 } from "../../lab/topology.ts";
import { readSubnets, waitFor } from "../helpers/leases.ts";
import { ipJson } from "../helpers/netns.ts";
import { readSubnetEnv, rootSuite } from "./overlay_kernel.ts";
import { dropVxlanFrom, verdictOf, withLab } from "./faults_kit.ts";

const NET_CONF = {
  Network: "10.244.0.0/16",
  EnableIPv6: true,
  IPv6Network: "2001:db8:244::/56",
  Backend: { Type: "vxlan" },
};
/** The underlay veth's MTU: VXLAN costs 50 bytes over IPv4 and 70 over IPv6. */
const UNDERLAY_MTU = 1500;

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

/** The part of flannel's lease JSON this test reads. */
interface LeaseJson {
  PublicIP: string;
  PublicIPv6?: string | null;
  BackendData?: { VtepMAC?: string };
  BackendV6Data?: { VtepMAC?: string };
}

interface VxlanLink {
  ifname: string;
  mtu: number;
  linkinfo: {
    info_kind: string;
    info_data: { id: number; local?: string; local6?: string; port: number };
  };
}

async function vxlanDevices(ns: string): Promise<Map<string, VxlanLink>> {
  const links = await ipJson<VxlanLink[]>(ns, ["-d", "link", "show", "type", "vxlan"]);
  return new Map(links.map((l) => [l.ifname, l]));
}

async function pingAcross(lab: LabCluster, family: 4 | 6): Promise<string[]> {
  const failures: string[] = [];
  for (const from of lab.pods) {
    for (const to of lab.pods) {
      if (from.node === to.node) continue;
      const target = family === 4 ? to.ip : to.ipv6;
      if (!target) {
        failures.push(`${to.ns} has no IPv${family} address`);
      } else if (!await ping(from.ns, target)) {
        failures.push(`${from.ns} → ${target}`);
      }
    }
  }
  return failures;
}

rootSuite("dual-stack vxlan overlay: 2 nodes on an IPv4 + IPv6 underlay", async (t) => {
  await withLab({
    nodes: 2,
    netConf: NET_CONF,
    ipv6Underlay: true,
    flags: ["--peer-probe-interval=1"],
  }, async (lab) => {
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);

    await t.step(
      "each node has flannel.1 and flannel-v6.1 over the matching underlay",
      async () => {
        for (const [i, node] of lab.nodes.entries()) {
          const devices = await vxlanDevices(node.ns);
          assert.deepEqual([...devices.keys()].sort(), ["flannel-v6.1", "flannel.1"]);
          const v4 = devices.get("flannel.1")!;
          const v6 = devices.get("flannel-v6.1")!;
          assert.equal(v4.linkinfo.info_data.local, nodeUnderlayIP(i + 1));
          assert.equal(v6.linkinfo.info_data.local6, nodeUnderlayIPv6(i + 1));
          assert.deepEqual([v4.linkinfo.info_data.id, v6.linkinfo.info_data.id], [1, 1]);
          assert.equal(v4.mtu, UNDERLAY_MTU - 50, "IPv4 underlay: 50 bytes of headers");
          assert.equal(v6.mtu, UNDERLAY_MTU - 70, "IPv6 underlay: 70 bytes of headers");
        }
      },
    );

    await t.step("leases and subnet.env carry both families", async () => {
      const stored = await readSubnets(lab.etcd.client(), LAB_ETCD_PREFIX);
      assert.equal(stored.size, 2);
      for (const [i, node] of lab.nodes.entries()) {
        const env = await readSubnetEnv(node.subnetFile);
        assert.equal(env.get("FLANNEL_IPV6_NETWORK"), NET_CONF.IPv6Network);
        const v4 = env.get("FLANNEL_SUBNET")!.replace(/\.1\/24$/, ".0-24");
        const v6 = env.get("FLANNEL_IPV6_SUBNET")!.replace(/::1\/64$/, "::-64");
        assert.match(v6, /^2001:db8:244:[0-9a-f]*::-64$/);
        const value = stored.get(`${v4}&${v6}`)?.value;
        assert.ok(value, `no dual-stack lease key ${v4}&${v6} in ${[...stored.keys()]}`);
        const lease = JSON.parse(value) as LeaseJson;
        assert.equal(lease.PublicIP, nodeUnderlayIP(i + 1));
        assert.equal(lease.PublicIPv6, nodeUnderlayIPv6(i + 1));
        assert.match(lease.BackendV6Data?.VtepMAC ?? "", MAC);
        assert.match(lease.BackendData?.VtepMAC ?? "", MAC);
      }
    });

    await t.step("pods on different nodes reach each other over IPv4", async () => {
      assert.deepEqual(await pingAcross(lab, 4), []);
    });

    await t.step("pods on different nodes reach each other over IPv6", async () => {
      // A new IPv6 address (a pod's, or cni0's that pods route through) is unusable until
      // duplicate address detection has passed.
      for (const ns of [...lab.nodes.map((n) => n.ns), ...lab.pods.map((p) => p.ns)]) {
        await waitFor(`IPv6 addresses in ${ns} past DAD`, async () => {
          const tentative = await ipJson<unknown[]>(ns, ["-6", "addr", "show", "tentative"]);
          return tentative.length === 0;
        });
      }
      assert.deepEqual(await pingAcross(lab, 6), []);
    });

    await t.step(
      "each node probes the other in both families, each at its path's size",
      async () => {
        for (const [index, other] of [[0, 2], [1, 1]] as const) {
          const v4 = await verdictOf(lab.nodes[index], nodeUnderlayIP(other), "ok");
          const v6 = await verdictOf(lab.nodes[index], nodeUnderlayIPv6(other), "ok");
          assert.equal(v4.key, v6.key, "one lease, probed twice");
          assert.equal(v4.fullSizeBytes, UNDERLAY_MTU - 50, "flannel.1's MTU (FLANNEL_MTU)");
          assert.equal(v6.fullSizeBytes, UNDERLAY_MTU - 70, "flannel-v6.1's MTU");
          assert.equal(v6.overlay?.target, v6.subnet.replace(/\/64$/, ""));
        }
      },
    );

    await t.step("VXLAN over IPv6 dropped: only the IPv6 path is overlay-blocked", async () => {
      const [n1] = lab.nodes;
      const undo = await dropVxlanFrom(n1.ns, nodeUnderlayIPv6(2));
      try {
        await verdictOf(n1, nodeUnderlayIPv6(2), "overlay-blocked");
        const v4 = await verdictOf(n1, nodeUnderlayIP(2), "ok");
        assert.equal(v4.overlay?.reachable, true, "IPv4's overlay still answers");
      } finally {
        await undo();
      }
      await verdictOf(n1, nodeUnderlayIPv6(2), "ok");
    });
  });
});
