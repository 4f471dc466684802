import assert from "node:assert/strict";
import {
  defaultNetConf,
  LAB_ETCD_PREFIX,
  type LabCluster,
  startLab,
} from "../../../lab/cluster.ts";
import { allConnected, connectivityMatrix, formatMatrix } from "../../../lab/pods.ts";
import { labNames } from "../../../lab/topology.ts";
import { readValue, waitFor } from "../../helpers/leases.ts";
import { ipJson, nsExec, rootTest, spawnInNetns } from "../../helpers/netns.ts";
import { backendView, labPrefix, rawPeer, subnetOf } from "./lab_helpers.ts";
import { capture } from "../../helpers/capture.ts";
import { headerChecksumOk, icmpEcho, ipv4 } from "../../../lab/packets.ts";

rootTest("udp backend e2e: 3 nodes in namespaces, flannel's wire format", async () => {
  const lab: LabCluster = await startLab({
    prefix: labPrefix(),
    nodes: 3,
    netConf: defaultNetConf("udp"),
  });
  try {
    await lab.waitConverged(30_000);
    for (let i = 0; i < 3; i++) await lab.addPods(i, 1);
    const [podA, podB, podC] = lab.pods;
    const [nodeA, nodeB] = lab.nodes;
    const subnets = await Promise.all(lab.nodes.map((n) => subnetOf(n.subnetFile)));

    {
      // leases are flannel's udp JSON; flannel0 as in spec §6.3
      const key = `${LAB_ETCD_PREFIX}/subnets/${subnets[0].replace("/", "-")}`;
      const stored = await readValue(lab.etcd.client(), key);
      assert.equal(stored, '{"PublicIP":"198.18.0.11","PublicIPv6":null}');
      const [link] = await ipJson<{ mtu: number }[]>(nodeA.ns, ["link", "show", "flannel0"]);
      assert.equal(link.mtu, 1500 - 28);
      const routes = await ipJson<{ dst: string; dev: string }[]>(nodeA.ns, ["route", "show"]);
      assert.ok(routes.some((r) => r.dst === "10.244.0.0/16" && r.dev === "flannel0"));
    }

    {
      // every pod pings every pod
      const matrix = await connectivityMatrix(lab.pods);
      assert.ok(allConnected(matrix), formatMatrix(matrix));
    }

    {
      // TCP between pods (iperf3, 2 s)
      {
        await using _server = spawnInNetns(podC.ns, ["iperf3", "-s", "-1", "-B", podC.ip], 20_000);
        let out = "";
        for (let i = 0; i < 20 && !out; i++) {
          await new Promise((r) => setTimeout(r, 100));
          const res = await nsExec(podA.ns, ["iperf3", "-c", podC.ip, "-t", "2", "-J"], {
            allowFail: true,
            timeoutMs: 15_000,
          });
          if (res.code === 0) out = res.stdout;
        }
        const result = JSON.parse(out) as { end: { sum_received: { bytes: number } } };
        assert.ok(result.end.sum_received.bytes > 10_000_000, `${result.end.sum_received.bytes} B`);
      }
      const path = (await backendView(nodeA.adminUrl)).dataPath!;
      assert.ok(path.packetsTx > 5000 && path.bytesTx > 10_000_000, JSON.stringify(path));
    }

    {
      // on the wire: port 8285 both ends, payload = the inner packet, TTL − 1
      const frames = await capture(nodeB.ns, "ul0", 2, async () => {
        await nsExec(podA.ns, ["ping", "-c", "1", "-W", "2", podB.ip]);
      });
      assert.equal(frames.length, 2);
      for (const frame of frames) {
        const ip = frame.subarray(14);
        const udp = ip.subarray((ip[0] & 15) * 4);
        const udpView = new DataView(udp.buffer, udp.byteOffset);
        assert.deepStrictEqual([udpView.getUint16(0), udpView.getUint16(2)], [8285, 8285]);
        const inner = udp.subarray(8, udpView.getUint16(4));
        assert.equal(new DataView(inner.buffer, inner.byteOffset).getUint16(2), inner.length);
        assert.ok(headerChecksumOk(inner));
        assert.equal(inner[8], 62, "64, minus the node's forwarding, minus our hop");
      }
    }

    {
      // garbage to port 8285 is dropped and counted; the path keeps working
      const underlay = labNames(lab.prefix).underlay;
      const stranger = rawPeer(underlay, "198.18.0.1", 40_000);
      const before = (await backendView(nodeA.adminUrl)).dataPath!.drops;
      try {
        const podBAddr = podB.ip.split(".").reduce((a, b) => a * 256 + Number(b), 0);
        const podAAddr = podA.ip.split(".").reduce((a, b) => a * 256 + Number(b), 0);
        stranger.send(new Uint8Array(3), "198.18.0.11"); // too short
        stranger.send(Uint8Array.of(0x60, ...new Uint8Array(39)), "198.18.0.11"); // IPv6
        const badIhl = ipv4({ src: podBAddr, dst: podAAddr, payload: new Uint8Array(8) });
        badIhl[0] = 0x43;
        stranger.send(badIhl, "198.18.0.11"); // bad header length
        // Well-formed, claims to come from node B's pod, but not from node B's address.
        stranger.send(icmpEcho({ src: podBAddr, dst: podAAddr }, 8, 1, 1), "198.18.0.11");
      } finally {
        stranger.close();
      }
      await waitFor("the drops to be counted", async () => {
        const drops = (await backendView(nodeA.adminUrl)).dataPath!.drops;
        return drops.malformed - before.malformed === 3 &&
          drops.bad_source - before.bad_source === 1;
      });
      const matrix = await connectivityMatrix([podA, podB]);
      assert.ok(allConnected(matrix), formatMatrix(matrix));
    }

    {
      // a packet for a subnet without lease gets ICMP net unreachable (not for ICMP: no ping)
      const taken = new Set(subnets.map((s) => Number(s.split(".")[2])));
      const free = [...Array(254).keys()].map((i) => i + 1).find((i) => !taken.has(i))!;
      const before = (await backendView(nodeA.adminUrl)).dataPath!.drops.no_route;
      const connect = await nsExec(podA.ns, [
        ..."iperf3 -t 1 --connect-timeout 3000 -c".split(" "),
        `10.244.${free}.1`,
      ], { allowFail: true });
      assert.match(connect.stdout + connect.stderr, /Network is unreachable/);
      const ping = await nsExec(podA.ns, ["ping", "-c", "1", "-W", "1", `10.244.${free}.1`], {
        allowFail: true,
      });
      assert.doesNotMatch(ping.stdout, /Unreachable/, "flannel sends no ICMP about ICMP");
      const after = (await backendView(nodeA.adminUrl)).dataPath!.drops.no_route;
      assert.equal(after - before, 2);
    }
  } finally {
    await lab.stop();
  }
});
