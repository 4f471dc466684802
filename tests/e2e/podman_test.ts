/**
 * A real container runtime calls our CNI plugin: Debian's podman (CNI network backend) starts a
 * container on each of two vxlan lab nodes, through a conflist whose only plugin is
 * `type: flannel`, delegating to the real bridge and host-local. The containers get addresses
 * from their node's subnet, ping each other across nodes, and `podman rm -f` (CNI DEL) leaves no
 * saved delegate config, address reservation or veth behind.
 */
import assert from "node:assert/strict";
import { netContains, parseAddr, parseNet } from "../../ip/mod.ts";
import type { NodeDaemon } from "../../lab/node.ts";
import { type NodePodman, startNodePodman } from "../../lab/podman.ts";
import { cniConflist, cniDataDir } from "../../lab/pods.ts";
import { hasCommand, ipJson } from "../helpers/netns.ts";
import { withLab } from "./faults_kit.ts";
import { readSubnetEnv, rootSuite } from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const NETWORK = "cbr0";

/** A container started by podman on a node, with what CNI gave it. */
interface Container {
  readonly node: NodeDaemon;
  readonly podman: NodePodman;
  readonly id: string;
  readonly ip: string;
}

async function startContainer(node: NodeDaemon, podman: NodePodman): Promise<Container> {
  const name = `${node.ns}-c`;
  const id = (await podman.run([
    "--detach",
    `--name=${name}`,
    `--network=${NETWORK}`,
    "--rootfs", // the image argument is a root filesystem directory
    podman.rootfs,
    "/bin/sleep",
    "300",
  ])).trim();
  const ip = (await podman.podman([
    "inspect",
    `--format={{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`,
    name,
  ])).trim();
  return { node, podman, id, ip };
}

/** One ping from inside a container (bounded: one packet, one second). */
async function pings(from: Container, to: Container): Promise<boolean> {
  return await from.podman.podman(["exec", from.id, "ping", "-c", "1", "-W", "1", to.ip])
    .then(() => true, () => false);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

interface Link {
  ifname: string;
  master?: string;
}

rootSuite("e2e: podman runs containers through the flannel CNI plugin on two nodes", async (t) => {
  await withLab({
    nodes: 2,
    netConf: { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } },
  }, async (lab) => {
    await lab.waitConverged();
    const runtimes: NodePodman[] = [];
    try {
      for (const node of lab.nodes) {
        runtimes.push(
          await startNodePodman({
            ns: node.ns,
            dir: `${node.dir}/podman`,
            network: cniConflist(node.subnetFile, node.dir),
          }),
        );
      }
      const containers: Container[] = [];

      await t.step("each container gets an address from its node's subnet", async () => {
        for (const [i, node] of lab.nodes.entries()) {
          containers.push(await startContainer(node, runtimes[i]));
        }
        for (const c of containers) {
          const subnet = (await readSubnetEnv(c.node.subnetFile)).get("FLANNEL_SUBNET")!;
          assert.ok(netContains(parseNet(subnet), parseAddr(c.ip)), `${c.ip} in ${subnet}`);
          // The record DEL will replay, under the full container ID podman passed.
          assert.ok(await exists(`${cniDataDir(c.node.dir)}/${c.id}`), `saved config of ${c.id}`);
          const links = await ipJson<Link[]>(c.node.ns, ["link", "show", "master", "cni0"]);
          assert.equal(links.length, 1, `one veth on ${c.node.ns}'s cni0`);
        }
        assert.notEqual(containers[0].ip, containers[1].ip);
      });

      await t.step("the containers ping each other across nodes", async () => {
        assert.equal(containers.length, 2, "both containers started");
        const [a, b] = containers;
        await waitFor("a reaches b", () => pings(a, b), 10_000, 100);
        assert.ok(await pings(b, a), `${b.ip} → ${a.ip}`);
      });

      await t.step(
        "podman rm -f runs DEL: nothing saved, reserved or attached remains",
        async () => {
          for (const c of containers) {
            await c.podman.podman(["rm", "--force", "--time=0", c.id]);
            assert.deepEqual([...Deno.readDirSync(cniDataDir(c.node.dir))], [], "saved configs");
            assert.equal(await exists(`${c.node.dir}/ipam/${NETWORK}/${c.ip}`), false, c.ip);
            const links = await ipJson<Link[]>(c.node.ns, ["link", "show", "master", "cni0"]);
            assert.deepEqual(links, [], `veths on ${c.node.ns}`);
          }
          assert.equal((await runtimes[0].podman(["ps", "--all", "--quiet"])).trim(), "");
        },
      );
    } finally {
      for (const runtime of runtimes) await runtime.close();
    }
  });
}, await hasCommand("podman") ? undefined : "podman (Debian podman)");
