/**
 * A net-conf with a bad backend option (a vxlan MTU of -100, which once reached netlink and
 * killed the daemon with an encoding error) is a config error: in etcd mode the daemon keeps
 * running, says why, answers its liveness probe and is not ready; once the config is fixed in
 * etcd it comes up with the device the fixed config asks for.
 */
import assert from "node:assert/strict";
import { LAB_ETCD_PREFIX } from "../../lab/cluster.ts";
import { ipJson } from "../helpers/netns.ts";
import { probe, withLab } from "./faults_kit.ts";
import { rootSuite } from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const NETWORK = "10.244.0.0/16";

rootSuite("e2e: a bad backend option is a config error, not a crash", async (t) => {
  await withLab({
    nodes: 1,
    netConf: { Network: NETWORK, Backend: { Type: "vxlan", MTU: -100 } },
  }, async (lab) => {
    const [node] = lab.nodes;

    await t.step("the daemon lives, names the member and is not ready", async () => {
      const said = async () =>
        (await Deno.readTextFile(node.logFile)).includes(
          `invalid network config at ${LAB_ETCD_PREFIX}/config: Backend.MTU: must be between ` +
            "138 and 65535 (0 or absent: the external interface's MTU), got -100",
        );
      await waitFor("the config error in the log", said, 30_000, 50);
      assert.equal(await probe(node, "/healthz"), 200);
      assert.equal(await probe(node, "/readyz"), 503);
      const links = await ipJson<{ ifname: string }[]>(node.ns, ["link", "show"]);
      assert.ok(!links.some((l) => l.ifname === "flannel.1"), "no device from a bad config");
    });

    await t.step("fixed in etcd, the node comes up with the MTU asked for", async () => {
      const fixed = { Network: NETWORK, Backend: { Type: "vxlan", MTU: 1400 } };
      await lab.etcd.client().put({
        key: `${LAB_ETCD_PREFIX}/config`,
        value: JSON.stringify(fixed),
      });
      await waitFor("ready", async () => await probe(node, "/readyz") === 200, 30_000, 50);
      const [device] = await ipJson<{ mtu: number }[]>(node.ns, ["link", "show", "flannel.1"]);
      assert.equal(device.mtu, 1350, "the underlay MTU 1400 minus vxlan's 50");
    });
  });
});
