/**
 * The image as the DaemonSet runs it (issue 17): `dist/tartan-image.tar` is loaded by podman on
 * two lab nodes; on each, the init steps of upstream's kube-flannel.yml run from it (`cp -f
 * /flannel /opt/cni/bin/flannel`, `/opt/bin/install-conf` of the CNI config) and then
 * `/opt/bin/flanneld --ip-masq --healthz-port=8081` with the host's network, privileged,
 * `/run/flannel` mounted from a per-node directory, in etcd mode against a test etcd. Pods made
 * by the plugin the init step copied out of the image ping across nodes, `/healthz` answers on
 * the node address, and each node's rules land in the iptables variant that node already used
 * (the daemon's choice; the image's plain `iptables` wrapper agrees).
 */
import assert from "node:assert/strict";
import { commandRunner } from "../../exec.ts";
import { LAB_ETCD_PREFIX } from "../../lab/cluster.ts";
import { startEtcd } from "../../lab/etcd.ts";
import { type Forwarder, forwardTcp } from "../../lab/forward.ts";
import { type NodePodman, startNodePodman } from "../../lab/podman.ts";
import { cniConfig, execCniPlugin, ping, resultAddress } from "../../lab/pods.ts";
import {
  addNetns,
  createNode,
  createUnderlay,
  deleteLabNetns,
  labNames,
  nodeUnderlayIP,
} from "../../lab/topology.ts";
import { IMAGE_REFERENCE } from "../../packaging/image.ts";
import { distImage } from "../helpers/dist.ts";
import { hasCommand, removeLeftovers, run, RUN_PREFIX } from "../helpers/netns.ts";
import { readSubnetEnv, rootSuite } from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const HEALTHZ_PORT = 8081;
/** The iptables variant node 1 and node 2 use before Tartan starts. */
const VARIANTS = ["legacy", "nft"] as const;
/** The CNI config of deploy/kube-tartan.yml's ConfigMap (the one install-conf installs). */
const CNI_CONF = new URL("../../cni/10-flannel.conflist", import.meta.url).pathname;

/** One node: its namespace, files and podman. */
interface ImageNode {
  readonly ns: string;
  readonly ip: string;
  readonly dir: string;
  readonly podman: NodePodman;
}

/** Whether `GET http://ip:port/path` from inside `ns` answers 2xx (bounded: 2 s). */
async function answers(ns: string, ip: string, port: number, path: string): Promise<boolean> {
  const fetchOk = "const res = await fetch(Deno.args[0], { signal: AbortSignal.timeout(2000) });" +
    "Deno.exit(res.ok ? 0 : 1);";
  const url = `http://${ip}:${port}${path}`;
  const argv = ["ip", "netns", "exec", ns, Deno.execPath(), "eval", fetchOk, url];
  return (await run(argv, { allowFail: true })).code === 0;
}

/** Run the DaemonSet's containers from the image on `node` (detached daemon). */
async function runDaemonSetSteps(node: ImageNode): Promise<void> {
  const volume = (host: string, inside: string) => [`--volume=${node.dir}/${host}:${inside}`];
  for (const d of ["cni-plugin", "cni-net.d", "kube-flannel", "run-flannel"]) {
    await Deno.mkdir(`${node.dir}/${d}`, { recursive: true });
  }
  await Deno.copyFile(CNI_CONF, `${node.dir}/kube-flannel/cni-conf.json`);
  // init container install-cni-plugin, then install-cni, with upstream's exact commands.
  // Every container of the DaemonSet's pod shares the host's network (hostNetwork: true).
  await node.podman.run([
    "--rm",
    "--network=host",
    ...volume("cni-plugin", "/opt/cni/bin"),
    "--entrypoint=cp",
    IMAGE_REFERENCE,
    "-f",
    "/flannel",
    "/opt/cni/bin/flannel",
  ]);
  await node.podman.run([
    "--rm",
    "--network=host",
    ...volume("cni-net.d", "/etc/cni/net.d"),
    ...volume("kube-flannel", "/etc/kube-flannel"),
    "--entrypoint=/opt/bin/install-conf",
    IMAGE_REFERENCE,
    "/etc/kube-flannel/cni-conf.json",
    "/etc/cni/net.d/10-flannel.conflist",
  ]);
  // The daemon: upstream's flags, in etcd mode (the node's 127.0.0.1:2379 reaches the test etcd).
  await node.podman.run([
    "--detach",
    `--name=${node.ns}-flanneld`,
    "--network=host",
    "--privileged",
    "--log-driver=k8s-file",
    ...volume("run-flannel", "/run/flannel"),
    "--entrypoint=/opt/bin/flanneld",
    IMAGE_REFERENCE,
    "--ip-masq",
    "--iface=ul0",
    `--healthz-port=${HEALTHZ_PORT}`,
  ]);
}

/** The daemon container's log. */
async function daemonLog(node: ImageNode): Promise<string> {
  return await node.podman.podman(["logs", `${node.ns}-flanneld`]).catch(String);
}

/** The masquerade rules' chain in each iptables variant of `ns`. */
async function masqueradeChainIn(ns: string): Promise<{ legacy: boolean; nft: boolean }> {
  const has = async (variant: string) => {
    const out = await run(["ip", "netns", "exec", ns, `iptables-${variant}-save`, "-t", "nat"], {
      allowFail: true,
    });
    return /^:FLANNEL-POSTRTG /m.test(out.stdout);
  };
  return { legacy: await has("legacy"), nft: await has("nft") };
}

rootSuite("e2e: the image runs as flannel's DaemonSet runs it, on two nodes", async (t) => {
  await removeLeftovers();
  const exec = commandRunner();
  const names = labNames(RUN_PREFIX);
  const workDir = await Deno.makeTempDir({ prefix: "tartan-image-e2e-" });
  const etcd = await startEtcd();
  const forwarders: Forwarder[] = [];
  const nodes: ImageNode[] = [];
  try {
    const image = await distImage();
    await etcd.client().put({
      key: `${LAB_ETCD_PREFIX}/config`,
      value: JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }),
    });
    await createUnderlay(exec, names.underlay);
    for (const i of [1, 2]) {
      const ns = names.node(i);
      await createNode(exec, names.underlay, ns, i);
      forwarders.push(
        forwardTcp({ netns: ns, port: 2379 }, { port: Number(new URL(etcd.endpoint).port) }),
      );
      const dir = `${workDir}/n${i}`;
      nodes.push({ ns, ip: nodeUnderlayIP(i), dir, podman: await startNodePodman({ ns, dir }) });
    }
    // Each node's host already uses one variant: one rule in iptables-legacy on node 1, in
    // iptables-nft on node 2.
    for (const [i, variant] of VARIANTS.entries()) {
      const rule = ["-A", "INPUT", "-s", "192.0.2.1/32", "-j", "ACCEPT"];
      await run(["ip", "netns", "exec", nodes[i].ns, `iptables-${variant}`, ...rule]);
    }

    await t.step("podman loads the archive as tartan:<version>", async () => {
      await Promise.all(nodes.map((n) => n.podman.podman(["load", `--input=${image}`])));
      const tags = await nodes[0].podman.podman(["images", "--format={{.Repository}}:{{.Tag}}"]);
      assert.match(tags, new RegExp(`(^|/)${IMAGE_REFERENCE}$`, "m"));
    });

    await t.step("skopeo reads it as an OCI and as a Docker archive", async () => {
      for (const transport of ["oci-archive", "docker-archive"]) {
        const out = await run(["skopeo", "inspect", `${transport}:${image}`]);
        const info = JSON.parse(out.stdout) as { Labels: Record<string, string> };
        assert.equal(
          info.Labels["org.opencontainers.image.version"],
          IMAGE_REFERENCE.split(":")[1],
        );
      }
    });

    await t.step("the DaemonSet's init steps and daemon run from the image", async () => {
      await Promise.all(nodes.map(runDaemonSetSteps));
      for (const node of nodes) {
        const installed = await Deno.readTextFile(`${node.dir}/cni-net.d/10-flannel.conflist`);
        assert.equal(installed, await Deno.readTextFile(CNI_CONF));
        assert.ok((await Deno.stat(`${node.dir}/cni-plugin/flannel`)).mode! & 0o100);
        await waitFor(
          `${node.ns}: subnet.env`,
          async () => {
            return await Deno.stat(`${node.dir}/run-flannel/subnet.env`).then(
              () => true,
              () => false,
            );
          },
          60_000,
          200,
        );
      }
    });

    await t.step("/healthz and /readyz answer on the node address, port 8081", async () => {
      for (const [i, node] of nodes.entries()) {
        const other = nodes[1 - i].ns; // asked across the underlay, from the other node
        for (const path of ["/healthz", "/readyz"]) {
          await waitFor(
            `${node.ns}: ${path} on ${node.ip}:${HEALTHZ_PORT}`,
            () => answers(other, node.ip, HEALTHZ_PORT, path),
            30_000,
            200,
          ).catch(async (error) => {
            throw new Error(`${error}\n${node.ns}'s daemon log:\n${await daemonLog(node)}`);
          });
        }
      }
    });

    await t.step("pods made by the plugin copied out of the image ping across nodes", async () => {
      const pods: { ns: string; ip: string }[] = [];
      for (const [i, node] of nodes.entries()) {
        const ns = names.pod(i + 1, 1);
        await addNetns(exec, ns);
        const plugin = [
          "env",
          `TARTAN_RUNTIME_DIR=${workDir}/runtime`, // not the host's /var/cache
          `${node.dir}/cni-plugin/flannel`,
        ];
        const config = cniConfig(`${node.dir}/run-flannel/subnet.env`, node.dir);
        pods.push({
          ns,
          ip: resultAddress(await execCniPlugin(plugin, "ADD", node.ns, ns, config)),
        });
      }
      const [a, b] = pods;
      await waitFor(`${a.ip} → ${b.ip}`, () => ping(a.ns, b.ip), 20_000, 100);
      assert.ok(await ping(b.ns, a.ip), `${b.ip} → ${a.ip}`);
    });

    await t.step(
      "the image holds flannel's other paths and the tools the daemon runs",
      async () => {
        const node = nodes[0];
        const inside = (script: string) =>
          node.podman.podman(["exec", `${node.ns}-flanneld`, "sh", "-c", script]);
        assert.match(await inside("/usr/local/bin/tartan version"), /^tartan \d/);
        const subnet = (await readSubnetEnv(`${node.dir}/run-flannel/subnet.env`))
          .get("FLANNEL_SUBNET");
        const opts = await inside(
          "/opt/bin/mk-docker-opts.sh -d /tmp/opts.env && cat /tmp/opts.env",
        );
        assert.match(opts, new RegExp(`^DOCKER_OPT_BIP="--bip=${subnet}"$`, "m"));
        const tools = [
          ...["cp", "mv", "nft", "ip", "iptables-legacy", "iptables-nft", "ip6tables"],
          "wireguard-go",
        ];
        const missing = await inside(
          `for t in ${tools.join(" ")}; do command -v $t >/dev/null || echo $t; done; ` +
            "test -s /etc/ssl/certs/ca-certificates.crt || echo CA-certificates",
        );
        assert.equal(missing.trim(), "", "missing from the image");
      },
    );

    await t.step("iptables rules land in the variant each node already used", async () => {
      for (const [i, variant] of VARIANTS.entries()) {
        const node = nodes[i];
        assert.deepEqual(await masqueradeChainIn(node.ns), {
          legacy: variant === "legacy",
          nft: variant === "nft",
        });
        // The image's plain `iptables` (the wrapper) settles on the same variant.
        const inside = (args: string[]) =>
          node.podman.podman(["exec", `${node.ns}-flanneld`, ...args]);
        await inside(["iptables", "-S", "FORWARD"]);
        const chosen = await inside(["readlink", "/etc/alternatives/iptables"]);
        assert.equal(chosen.trim(), `/usr/sbin/iptables-${variant}`);
      }
    });
  } finally {
    for (const node of nodes) await node.podman.close().catch(() => {});
    for (const f of forwarders) f.close();
    await deleteLabNetns(exec, RUN_PREFIX);
    await etcd.stop();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}, await missingTool());

/** What this test needs that is not installed, if anything. */
async function missingTool(): Promise<string | undefined> {
  for (const tool of ["podman", "skopeo", "mmdebstrap"]) {
    if (!await hasCommand(tool)) return tool;
  }
  return undefined;
}
