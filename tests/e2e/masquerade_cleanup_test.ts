/**
 * The daemon's traffic rules in a running lab, and `tartan cleanup` afterwards.
 */
import assert from "node:assert/strict";
import { defaultNetConf, startLab } from "../../lab/cluster.ts";
import { ping } from "../../lab/pods.ts";
import { tartanArgv } from "../../lab/self.ts";
import { UNDERLAY_ROUTER } from "../../lab/topology.ts";
import { ipJson, nsExec, rootTest, RUN_PREFIX } from "../helpers/netns.ts";

interface JsonLink {
  ifname: string;
}
interface JsonRoute {
  dst: string;
  dev?: string;
  protocol?: string;
}

rootTest("e2e: --ip-masq lets pods reach the outside; tartan cleanup leaves no trace", async () => {
  // --ip-blackhole-route too: its route must not cut the pods off, and cleanup removes it.
  const lab = await startLab({
    prefix: RUN_PREFIX,
    nodes: 2,
    netConf: defaultNetConf("vxlan"),
    flags: ["--ip-masq", "--ip-blackhole-route"],
  });
  try {
    await lab.waitConverged();
    const [pod] = await lab.addPods(0, 1);
    const [remote] = await lab.addPods(1, 1);
    // The underlay router has no route to the pod network: only a masqueraded ping returns.
    assert.ok(await ping(pod.ns, UNDERLAY_ROUTER), "pod reaches the outside via masquerade");
    assert.ok(await ping(pod.ns, remote.ip), "pod reaches a pod on the other node");
    const node = lab.nodes[0];
    const saved = (await nsExec(node.ns, ["iptables-save", "-t", "nat"])).stdout;
    assert.match(saved, /-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG/);
    assert.match(await Deno.readTextFile(node.subnetFile), /^FLANNEL_IPMASQ=true$/m);
    const gateway = (await Deno.readTextFile(node.subnetFile)).match(/^FLANNEL_SUBNET=(.+)$/m)![1];
    const blackholes = await ipJson<JsonRoute[]>(node.ns, ["route", "show", "type", "blackhole"]);
    assert.deepEqual(blackholes.map((r) => r.dst), [gateway.replace(/\.\d+\/24$/, ".0/24")]);

    assert.equal(await node.stop(), 0, "SIGTERM stops the daemon cleanly");
    const cleanup = await nsExec(node.ns, [
      ...tartanArgv(["cleanup", `--subnet-file=${node.subnetFile}`]),
    ]);
    assert.match(cleanup.stdout, /removed device flannel\.1/);

    const links = await ipJson<JsonLink[]>(node.ns, ["link", "show"]);
    assert.ok(!links.some((l) => l.ifname.startsWith("flannel")), "no flannel device left");
    const routes = await ipJson<JsonRoute[]>(node.ns, ["route", "show"]);
    const overlay = routes.filter((r) => r.dst.startsWith("10.244.") && r.protocol !== "kernel");
    assert.deepEqual(overlay, [], "no overlay route left");
    for (const table of ["nat", "filter"]) {
      const rules = (await nsExec(node.ns, ["iptables-save", "-t", table])).stdout;
      assert.doesNotMatch(rules, /FLANNEL/, `no FLANNEL chain left in ${table}`);
    }
    const nft = (await nsExec(node.ns, ["nft", "list", "tables"])).stdout;
    assert.doesNotMatch(nft, /flannel/);
    await assert.rejects(Deno.stat(node.subnetFile), Deno.errors.NotFound);
  } finally {
    await lab.stop();
  }
});
