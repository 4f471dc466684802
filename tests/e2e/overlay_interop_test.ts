/**
 * Interop by construction (issue 6, spec §6.2, §12 items 4, 16, 18): a "flannel node" built by
 * hand — a kernel VXLAN device configured exactly as spec §6.2 describes, a lease in flanneld's
 * exact JSON, and per-peer entries written with `ip`/`bridge` as flanneld would — joins a Tartan
 * cluster. Tartan nodes program it like any peer, pods on both sides exchange pings, and the
 * packets on the wire are VXLAN to UDP 8472 with VNI 1 and the peer's VTEP MAC inside.
 */
import assert from "node:assert/strict";
import { commandRunner } from "../../exec.ts";
import { defaultNetConf } from "../../lab/cluster.ts";
import { ping } from "../../lab/pods.ts";
import { addNetns, createNode, labNames, nodeUnderlayIP } from "../../lab/topology.ts";
import { nsExec, run, RUN_PREFIX } from "../helpers/netns.ts";
import {
  expectedVxlanEntries,
  freeSubnet,
  putRawLease,
  readLeases,
  rootSuite,
  type StoredLease,
  waitForExactState,
} from "./overlay_kernel.ts";
import { withLab } from "./faults_kit.ts";
import { vxlanValue } from "../helpers/leases.ts";

/** Node number 40 of the lab's underlay: 198.18.0.50. */
const FLANNEL_NODE = 40;
const FLANNEL_MAC = "0e:fa:00:00:00:50";

/** `ip`/`bridge` as an operator (or flanneld) would run them inside namespace `ns`. */
function sh(ns: string, ...lines: string[][]): Promise<unknown> {
  return lines.reduce<Promise<unknown>>(
    (prev, argv) => prev.then(() => run([argv[0], "-n", ns, ...argv.slice(1)])),
    Promise.resolve(),
  );
}

/** The hand-made flannel node: device per spec §6.2 and one pod at `<base>.2` behind a veth. */
async function buildFlannelNode(ns: string, podNs: string, subnet: string): Promise<string> {
  const base = subnet.split("/")[0];
  const [a, b, c] = base.split(".");
  const gw = `${a}.${b}.${c}.1`;
  const podIP = `${a}.${b}.${c}.2`;
  // deno-fmt-ignore
  await sh(ns,
    ["ip", "link", "add", "flannel.1", "address", FLANNEL_MAC, "mtu", "1450", "type", "vxlan",
      "id", "1", "local", nodeUnderlayIP(FLANNEL_NODE), "dev", "ul0", "nolearning"],
    ["ip", "addr", "add", `${base}/32`, "dev", "flannel.1"],
    ["ip", "link", "set", "flannel.1", "up"],
    ["ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", podNs],
    ["ip", "addr", "add", `${gw}/24`, "dev", "vpod"],
    ["ip", "link", "set", "vpod", "up"],
  );
  // deno-fmt-ignore
  await sh(podNs,
    ["ip", "addr", "add", `${podIP}/24`, "dev", "eth0"],
    ["ip", "link", "set", "eth0", "up"],
    ["ip", "route", "add", "default", "via", gw],
  );
  return podIP;
}

/** What flanneld does on "added" for a Tartan peer (spec §6.2, steps 1–3). */
function programPeer(ns: string, peer: StoredLease): Promise<unknown> {
  // deno-fmt-ignore
  return sh(ns,
    ["ip", "neigh", "replace", peer.base, "lladdr", peer.vtepMac!, "dev", "flannel.1", "nud",
      "permanent"],
    ["bridge", "fdb", "replace", peer.vtepMac!, "dev", "flannel.1", "dst", peer.publicIP, "self",
      "permanent"],
    ["ip", "route", "replace", peer.subnet, "via", peer.base, "dev", "flannel.1", "onlink"],
  );
}

rootSuite("vxlan interop with a hand-made flannel node", async (t) => {
  await withLab({ nodes: 2, netConf: defaultNetConf("vxlan") }, async (lab) => {
    const client = lab.etcd.client();
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);
    const names = labNames(RUN_PREFIX);
    const flannelNs = names.node(FLANNEL_NODE);
    const flannelPodNs = names.pod(FLANNEL_NODE, 1);
    const runner = commandRunner();
    await createNode(runner, names.underlay, flannelNs, FLANNEL_NODE);
    await addNetns(runner, flannelPodNs);
    const tartanLeases = await readLeases(client);
    const subnetName = freeSubnet(tartanLeases);
    const subnet = subnetName.replace("-", "/");
    const flannelPodIP = await buildFlannelNode(flannelNs, flannelPodNs, subnet);
    for (const peer of tartanLeases) await programPeer(flannelNs, peer);

    await t.step("Tartan programs a lease in flanneld's JSON like any peer", async () => {
      await putRawLease(
        client,
        subnetName,
        vxlanValue(nodeUnderlayIP(FLANNEL_NODE), FLANNEL_MAC),
      );
      await waitForExactState(lab, expectedVxlanEntries, 3000);
      const leases = await readLeases(client);
      assert.ok(leases.some((l) => l.name === subnetName && l.vtepMac === FLANNEL_MAC));
    });

    await t.step("pods on both sides ping each other", async () => {
      for (const pod of lab.pods) {
        assert.ok(await ping(pod.ns, flannelPodIP), `${pod.ip} → flannel pod ${flannelPodIP}`);
        assert.ok(await ping(flannelPodNs, pod.ip), `flannel pod → ${pod.ip}`);
      }
    });

    await t.step(
      "the wire carries VXLAN to 8472, VNI 1, inner MAC = flannel's VtepMAC",
      async () => {
        let captured = false;
        const capture = nsExec(flannelNs, [
          "timeout",
          "5",
          "tcpdump",
          ...["-l", "-n", "-e", "-T", "vxlan", "-c", "1", "-i", "ul0", "udp dst port 8472"],
        ], { allowFail: true }).finally(() => captured = true);
        // Ping until tcpdump (which needs a moment to attach) has its packet; bounded by its 5 s.
        while (!captured) await ping(lab.pods[0].ns, flannelPodIP);
        const out = (await capture).stdout;
        assert.match(out, /> 198\.18\.0\.50\.8472: VXLAN, flags \[I\] \(0x08\), vni 1/, out);
        assert.match(out, new RegExp(`> ${FLANNEL_MAC}, ethertype IPv4`), out);
      },
    );
  });
});
