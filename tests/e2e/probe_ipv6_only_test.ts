/**
 * Peer probing on an IPv6-only vxlan cluster (`EnableIPv4: false`): two nodes on an IPv6 underlay
 * (2001:db8::/64 inside the lab's namespaces) build only `flannel-v6.1`, and each probes the other
 * over IPv6: ICMPv6 echo to the peer's PublicIPv6, to its tunnel address through the overlay, and a
 * full-size echo at FLANNEL_MTU. Then nftables drops VXLAN from the peer, and both the prober
 * (`overlay-blocked`) and `tartan doctor` (the vxlan port, the IPv6 addresses) name it.
 */
import assert from "node:assert/strict";
import type { DoctorReport } from "../../doctor/finding.ts";
import { NODE_ADMIN_PORT } from "../../lab/node.ts";
import { tartanArgv } from "../../lab/self.ts";
import { nodeUnderlayIPv6 } from "../../lab/topology.ts";
import { ipJson, nsExec } from "../helpers/netns.ts";
import { dropVxlanFrom, nodePeers, verdictOf, withLab } from "./faults_kit.ts";
import { readSubnetEnv, rootSuite } from "./overlay_kernel.ts";

const NET_CONF = {
  EnableIPv4: false,
  EnableIPv6: true,
  IPv6Network: "2001:db8:244::/56",
  Backend: { Type: "vxlan" },
};
/** The underlay veth's MTU less VXLAN over IPv6 (70 bytes). */
const POD_MTU = 1500 - 70;

rootSuite("IPv6-only vxlan: peers are probed over IPv6", async (t) => {
  await withLab({
    nodes: 2,
    netConf: NET_CONF,
    ipv6Underlay: true,
    flags: ["--peer-probe-interval=1"],
  }, async (lab) => {
    await lab.waitConverged();
    const [n1] = lab.nodes;
    const n2IP = nodeUnderlayIPv6(2);

    await t.step("only flannel-v6.1 exists, and subnet.env has no IPv4 subnet", async () => {
      for (const node of lab.nodes) {
        const links = await ipJson<{ ifname: string }[]>(node.ns, [
          "link",
          "show",
          "type",
          "vxlan",
        ]);
        assert.deepEqual(links.map((l) => l.ifname), ["flannel-v6.1"]);
        const env = await readSubnetEnv(node.subnetFile);
        assert.equal(env.get("FLANNEL_SUBNET"), undefined);
        assert.match(env.get("FLANNEL_IPV6_SUBNET") ?? "", /^2001:db8:244:[0-9a-f]*::1\/64$/);
      }
    });

    await t.step(
      "each node finds the other ok on the underlay, the overlay and at full size",
      async () => {
        for (const [index, other] of [[0, 2], [1, 1]] as const) {
          const peer = await verdictOf(lab.nodes[index], nodeUnderlayIPv6(other), "ok");
          assert.match(peer.subnet, /^2001:db8:244:[0-9a-f]*::\/64$/);
          assert.equal(peer.overlay?.target, peer.subnet.replace(/\/64$/, ""));
          assert.equal(peer.underlay.reachable, true);
          assert.equal(peer.overlay?.reachable, true);
          assert.equal(peer.fullSize.reachable, true);
          const report = await nodePeers(lab.nodes[index]);
          assert.equal(report.fullSizeBytes, POD_MTU);
          assert.equal(report.socket, "raw");
        }
      },
    );

    await t.step("VXLAN dropped from n2: overlay-blocked, and doctor names it", async () => {
      const undo = await dropVxlanFrom(n1.ns, n2IP);
      try {
        await verdictOf(n1, n2IP, "overlay-blocked");
        const argv = tartanArgv(["doctor", `--healthz-port=${NODE_ADMIN_PORT}`, "--json"]);
        const { code, stdout } = await nsExec(n1.ns, argv, { allowFail: true });
        assert.equal(code, 1, "unhealthy");
        const report = JSON.parse(stdout) as DoctorReport;
        const found = report.findings.find((f) => f.check === "peer-overlay");
        assert.ok(found, JSON.stringify(report.findings));
        assert.equal(found.evidence.publicIP, n2IP);
        assert.equal(found.evidence.port, "udp/8472");
        assert.match(found.fix, new RegExp(`between ${nodeUnderlayIPv6(1)} and ${n2IP}`));
      } finally {
        await undo();
      }
      await verdictOf(n1, n2IP, "ok");
    });
  });
});
