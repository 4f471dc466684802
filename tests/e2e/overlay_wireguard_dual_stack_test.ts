/**
 * Dual-stack wireguard end to end (spec §6.6, `separate` mode): two nodes on an IPv4 + IPv6
 * underlay. Each node runs `flannel-wg` (ListenPort 51820, over IPv4) and `flannel-wg-v6`
 * (ListenPortV6 51821, over IPv6), each a wireguard-go of its own here; the lease publishes both
 * ports with one key, and pods reach each other across nodes over IPv4 and over IPv6.
 */
import assert from "node:assert/strict";
import { LAB_ETCD_PREFIX } from "../../lab/cluster.ts";
import { ping } from "../../lab/pods.ts";
import { nodeUnderlayIPv6 } from "../../lab/topology.ts";
import { readSubnets, waitFor } from "../helpers/leases.ts";
import { run } from "../helpers/netns.ts";
import { rootSuite } from "./overlay_kernel.ts";
import { withLab } from "./faults_kit.ts";

const NET_CONF = {
  Network: "10.244.0.0/16",
  EnableIPv6: true,
  IPv6Network: "2001:db8:244::/56",
  Backend: { Type: "wireguard" },
};

interface LeaseJson {
  PublicIPv6: string | null;
  BackendData: { PublicKey: string; Port: number };
  BackendV6Data: { PublicKey: string; Port: number };
}

rootSuite("dual-stack wireguard: flannel-wg and flannel-wg-v6 on wireguard-go", async (t) => {
  await withLab({
    nodes: 2,
    netConf: NET_CONF,
    ipv6Underlay: true,
  }, async (lab) => {
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);

    await t.step("one key, a port per family; each device has the other node as peer", async () => {
      const stored = [...(await readSubnets(lab.etcd.client(), LAB_ETCD_PREFIX)).values()];
      const leases = stored.map((s) => JSON.parse(s.value) as LeaseJson);
      for (const [i, node] of lab.nodes.entries()) {
        const lease = leases.find((l) => l.PublicIPv6 === nodeUnderlayIPv6(i + 1));
        assert.ok(lease, `${node.ns}'s lease carries its IPv6 underlay address`);
        assert.equal(lease.BackendData.PublicKey, lease.BackendV6Data.PublicKey);
        assert.deepEqual([lease.BackendData.Port, lease.BackendV6Data.Port], [51820, 51821]);
        const wg = async (...args: string[]) =>
          (await run(["nsenter", "-t", `${node.pid()}`, "-m", "-n", "wg", "show", ...args]))
            .stdout.trim();
        assert.equal(await wg("flannel-wg", "listen-port"), "51820");
        assert.equal(await wg("flannel-wg-v6", "listen-port"), "51821");
        const v6Peer = await wg("flannel-wg-v6", "endpoints");
        assert.match(v6Peer, new RegExp(`\\t\\[${nodeUnderlayIPv6(2 - i)}\\]:51821$`));
      }
    });

    await t.step("pods reach each other across nodes over IPv4 and IPv6", async () => {
      for (const from of lab.pods) {
        for (const to of lab.pods.filter((p) => p.node !== from.node)) {
          for (const target of [to.ip, to.ipv6]) {
            assert.ok(target, `${to.ns} has both families`);
            // The first packet starts the handshake (bounded wait), as in the IPv4-only test.
            await waitFor(`${from.ns} → ${target}`, () => ping(from.ns, target), 15_000);
          }
        }
      }
    });
  });
});
