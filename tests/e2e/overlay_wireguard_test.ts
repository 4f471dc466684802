/**
 * The wireguard backend end to end (issue 21, spec §6.6). This kernel has no wireguard module,
 * so every Tartan node runs its device with wireguard-go (each daemon in its own mount
 * namespace, as the lab starts them), with the net-conf's PSK on every peer. Three nodes: every
 * pod pings every pod, iperf3 crosses two nodes, and the underlay bridge carries only UDP between
 * node addresses on the listen port (no pod address, no ICMP or TCP in the clear). Interop: a
 * node configured by hand from flannel-format leases (wireguard-go and `wg set`, no Tartan code)
 * exchanges traffic with the Tartan nodes both ways. A lease with a bad key is skipped and
 * counted, and changes nothing.
 */
import assert from "node:assert/strict";
import { iperf3 } from "../../bench/traffic.ts";
import { commandRunner } from "../../exec.ts";
import { defaultNetConf, startLab } from "../../lab/cluster.ts";
import { allConnected, connectivityMatrix, formatMatrix, ping } from "../../lab/pods.ts";
import { addNetns, createNode, labNames, nodeUnderlayIP } from "../../lab/topology.ts";
import { capture } from "../helpers/capture.ts";
import { readValue, waitFor } from "../helpers/leases.ts";
import { removeLeftovers, run, RUN_PREFIX } from "../helpers/netns.ts";
import {
  adminJson,
  freeSubnet,
  putRawLease,
  readLeases,
  rootSuite,
  SUBNETS_DIR,
} from "./overlay_kernel.ts";

/** Node number 40 of the lab's underlay: 198.18.0.50. */
const HAND_NODE = 40;
const LISTEN_PORT = 51820;
/** The net-conf's pre-shared key (flannel's `PSK`): every peer on every node gets it. */
const PSK = btoa(String.fromCharCode(...Array.from({ length: 32 }, (_, i) => i + 1)));

/** flannel's wireguard lease value, byte for byte (spec §3.3, §6.6). */
function flannelWireguardValue(publicIP: string, publicKey: string): string {
  return `{"PublicIP":"${publicIP}","PublicIPv6":null,"BackendType":"wireguard",` +
    `"BackendData":{"PublicKey":"${publicKey}","Port":${LISTEN_PORT}}}`;
}

/** A node built by hand: wireguard-go in its own mount namespace, configured with `wg`. */
interface HandNode {
  readonly publicKey: string;
  readonly podIP: string;
  /** `wg ARGS…` in the node's namespaces. */
  wg(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

async function buildHandNode(
  ns: string,
  podNs: string,
  subnet: string,
  dir: string,
): Promise<HandNode> {
  const privateKey = (await run(["wg", "genkey"])).stdout.trim();
  const publicKey = (await run(["wg", "pubkey"], { stdin: privateKey })).stdout.trim();
  await Deno.writeTextFile(`${dir}/key`, privateKey, { mode: 0o600 });
  const process = new Deno.Command("ip", {
    args: [
      ...["netns", "exec", ns, "unshare", "--mount", "sh", "-c"],
      'mount --bind "$0" /var/run/wireguard && exec wireguard-go -f flannel-wg',
      dir,
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  const wg = async (...args: string[]) =>
    (await run(["nsenter", "-t", `${process.pid}`, "-m", "-n", "wg", ...args])).stdout;
  await waitFor(
    "the hand node's wireguard-go",
    () => Deno.stat(`${dir}/flannel-wg.sock`).then(() => true, () => false),
  );
  await wg("set", "flannel-wg", "private-key", `${dir}/key`, "listen-port", `${LISTEN_PORT}`);
  const [a, b, c] = subnet.split("/")[0].split(".");
  const podIP = `${a}.${b}.${c}.2`;
  // deno-fmt-ignore
  for (const argv of [
    ["ip", "-n", ns, "addr", "add", `${a}.${b}.${c}.0/32`, "dev", "flannel-wg"],
    ["ip", "-n", ns, "link", "set", "flannel-wg", "mtu", "1420", "up"],
    ["ip", "-n", ns, "route", "add", "10.244.0.0/16", "dev", "flannel-wg", "scope", "link"],
    ["ip", "-n", ns, "link", "add", "vpod", "type", "veth", "peer", "name", "eth0", "netns", podNs],
    ["ip", "-n", ns, "addr", "add", `${a}.${b}.${c}.1/24`, "dev", "vpod"],
    ["ip", "-n", ns, "link", "set", "vpod", "up"],
    ["ip", "-n", podNs, "addr", "add", `${podIP}/24`, "dev", "eth0"],
    ["ip", "-n", podNs, "link", "set", "eth0", "up"],
    ["ip", "-n", podNs, "route", "add", "default", "via", `${a}.${b}.${c}.1`],
  ]) await run(argv);
  await run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  return {
    publicKey,
    podIP,
    wg,
    async stop() {
      try {
        process.kill("SIGTERM");
      } catch { /* gone */ }
      await process.status;
    },
  };
}

interface LeaseView {
  key: string;
  skipped: { reason: string; detail: string } | null;
}

rootSuite("wireguard backend e2e: wireguard-go nodes, the wire, a hand-made peer", async (t) => {
  await removeLeftovers();
  const lab = await startLab({
    prefix: RUN_PREFIX,
    nodes: 3,
    netConf: { ...defaultNetConf("wireguard"), Backend: { Type: "wireguard", PSK } },
  });
  const client = lab.etcd.client();
  let hand: HandNode | undefined;
  try {
    await lab.waitConverged();
    for (let i = 0; i < 3; i++) await lab.addPods(i, 1);
    const names = labNames(RUN_PREFIX);

    await t.step("leases are flannel's JSON; the devices are wireguard-go's", async () => {
      for (const lease of await readLeases(client)) {
        const raw = (await readValue(client, SUBNETS_DIR + lease.name))!;
        const key = (JSON.parse(raw) as { BackendData: { PublicKey: string } }).BackendData
          .PublicKey;
        assert.equal(raw, flannelWireguardValue(lease.publicIP, key));
      }
      for (const node of lab.nodes) {
        const backend = await adminJson<{ implementation: string }>(node.adminUrl, "/v1/backend");
        assert.equal(backend.implementation, "wireguard-go");
        const out = (await run([
          ..."nsenter -t".split(" "),
          `${node.pid()}`,
          ..."-m -n wg show flannel-wg peers".split(" "),
        ])).stdout;
        assert.equal(out.trim().split("\n").length, 2, `${node.ns} has both other nodes as peers`);
        const psks = (await run([
          ..."nsenter -t".split(" "),
          `${node.pid()}`,
          ..."-m -n wg show flannel-wg preshared-keys".split(" "),
        ])).stdout.trim().split("\n").map((line) => line.split("\t")[1]);
        assert.deepEqual(psks, [PSK, PSK], "the PSK on every peer");
      }
    });

    await t.step("every pod pings every pod", async () => {
      // A first packet starts the peer's handshake, which userspace crypto on a busy 2-core
      // machine may finish after ping's 1 s: the first contact is retried (bounded), then the
      // whole matrix must pass at once.
      for (const from of lab.pods) {
        for (const to of lab.pods.filter((p) => p !== from)) {
          await waitFor(`${from.ip} → ${to.ip}`, () => ping(from.ns, to.ip), 15_000);
        }
      }
      const matrix = await connectivityMatrix(lab.pods);
      assert.ok(allConnected(matrix), formatMatrix(matrix));
    });

    await t.step("the underlay carries only UDP to the listen port while pods talk", async () => {
      const [podA, podB] = lab.pods;
      let gbps = 0;
      // The underlay's own multicast (the bridge's IGMP reports) is not traffic between nodes.
      const frames = await capture(names.underlay, "br0", 200, async () => {
        await connectivityMatrix(lab.pods);
        const path = { client: podA.ns, server: podB.ns, serverIP: podB.ip };
        gbps = (await iperf3(commandRunner(), path, { streams: 1, seconds: 1 })).gbps;
      }, ["ip", "and", "not", "ip", "multicast"]);
      assert.ok(gbps > 0.01, `iperf3 between pods on two nodes: ${gbps} Gbit/s`);
      assert.ok(frames.length >= 100, `${frames.length} frames captured`);
      for (const frame of frames) {
        const ip = frame.subarray(14);
        const header = (ip[0] & 15) * 4;
        const dotted = (at: number) => [...ip.subarray(at, at + 4)].join(".");
        const [src, dst] = [dotted(12), dotted(16)];
        assert.equal(ip[9], 17, `${src} > ${dst}: protocol ${ip[9]}, not UDP`);
        assert.match(`${src} ${dst}`, /^198\.18\.0\.\d+ 198\.18\.0\.\d+$/, "node addresses only");
        const view = new DataView(ip.buffer, ip.byteOffset + header);
        const ports = [view.getUint16(0), view.getUint16(2)];
        assert.deepEqual(ports, [LISTEN_PORT, LISTEN_PORT], `${src} > ${dst}: ports ${ports}`);
      }
    });

    await t.step("a hand-made node with flannel's lease talks to Tartan both ways", async () => {
      const handNs = names.node(HAND_NODE);
      const handPodNs = names.pod(HAND_NODE, 1);
      const runner = commandRunner();
      await createNode(runner, names.underlay, handNs, HAND_NODE);
      await addNetns(runner, handPodNs);
      const dir = `${lab.workDir}/hand`;
      await Deno.mkdir(dir, { recursive: true });
      const tartanLeases = await readLeases(client);
      const subnetName = freeSubnet(tartanLeases);
      hand = await buildHandNode(handNs, handPodNs, subnetName.replace("-", "/"), dir);
      await Deno.writeTextFile(`${dir}/psk`, PSK, { mode: 0o600 });
      for (const lease of tartanLeases) {
        const raw = (await readValue(client, SUBNETS_DIR + lease.name))!;
        const data = (JSON.parse(raw) as { BackendData: { PublicKey: string; Port: number } })
          .BackendData;
        await hand.wg(
          ...["set", "flannel-wg", "peer", data.PublicKey],
          ...["endpoint", `${lease.publicIP}:${data.Port}`, "allowed-ips", lease.subnet],
          ...["preshared-key", `${dir}/psk`],
        );
      }
      await putRawLease(
        client,
        subnetName,
        flannelWireguardValue(nodeUnderlayIP(HAND_NODE), hand.publicKey),
      );
      for (const pod of lab.pods) {
        await waitFor(`${pod.ip} → hand pod`, () => ping(pod.ns, hand!.podIP));
        assert.ok(await ping(handPodNs, pod.ip), `hand pod → ${pod.ip}`);
      }
      const handshakes = await hand.wg("show", "flannel-wg", "latest-handshakes");
      const shaken = handshakes.trim().split("\n").filter((l) => !/\t0$/.test(l));
      assert.equal(shaken.length, 3, `a handshake with every Tartan node:\n${handshakes}`);
    });

    await t.step(
      "a lease with a bad key is skipped and counted; nothing else changes",
      async () => {
        const bad = freeSubnet(await readLeases(client));
        const value = `{"PublicIP":"198.18.0.60","PublicIPv6":null,"BackendType":"wireguard",` +
          `"BackendData":{"PublicKey":"bm90IGEga2V5","Port":${LISTEN_PORT}}}`;
        await putRawLease(client, bad, value);
        for (const node of lab.nodes) {
          await waitFor(`${node.ns} skips ${bad}`, async () => {
            const { leases } = await adminJson<{ leases: LeaseView[] }>(
              node.adminUrl,
              "/v1/leases",
            );
            return leases.find((l) => l.key === bad)?.skipped?.reason === "wireguard_key_unusable";
          });
          const metrics = await (await fetch(`${node.adminUrl}/metrics`)).text();
          assert.match(metrics, /tartan_skipped_leases\{reason="wireguard_key_unusable"\} 1\b/);
          const peers = (await run([
            ..."nsenter -t".split(" "),
            `${node.pid()}`,
            ..."-m -n wg show flannel-wg allowed-ips".split(" "),
          ])).stdout;
          assert.ok(!peers.includes(bad.replace("-", "/")), "no peer for the skipped lease");
        }
        const matrix = await connectivityMatrix(lab.pods);
        assert.ok(allConnected(matrix), formatMatrix(matrix));
      },
    );
  } finally {
    await hand?.stop();
    await lab.stop();
  }
});
