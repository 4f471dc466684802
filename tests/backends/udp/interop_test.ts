/**
 * Interoperability with a node that speaks flannel's udp format, built here from the wire
 * description alone (spec §6.3): it registers `{"PublicIP":…,"PublicIPv6":null}` in etcd and
 * exchanges bare IPv4-in-UDP datagrams on port 8285 with a Tartan node, in both directions.
 */
import assert from "node:assert/strict";
import { commandRunner } from "../../../exec.ts";
import { defaultNetConf, LAB_ETCD_PREFIX, startLab } from "../../../lab/cluster.ts";
import { createNode, labNames } from "../../../lab/topology.ts";
import { allocValue, putLease, readValue, waitFor } from "../../helpers/leases.ts";
import { nsExec, rootTest, spawnInNetns } from "../../helpers/netns.ts";
import { backendView, labPrefix, rawPeer, subnetOf } from "./lab_helpers.ts";
import { headerChecksumOk, icmpEcho, ipv4, l4ChecksumOk, tcp } from "../../../lab/packets.ts";

const TARTAN = "198.18.0.11";
const FLANNEL = "198.18.0.12";

/** An address as a number. */
const num = (text: string) => text.split(".").reduce((a, b) => a * 256 + Number(b), 0);

rootTest(
  "udp interop: a flannel-format peer and a Tartan node exchange packets both ways",
  async () => {
    const lab = await startLab({ prefix: labPrefix(), nodes: 1, netConf: defaultNetConf("udp") });
    try {
      await lab.waitConverged(30_000);
      const [pod] = await lab.addPods(0, 1);
      const node = lab.nodes[0];
      const tartanSubnet = await subnetOf(node.subnetFile);

      // The flannel node: an underlay namespace, a lease as flanneld's udp backend writes it.
      const peerNs = labNames(lab.prefix).node(2);
      await createNode(commandRunner(), labNames(lab.prefix).underlay, peerNs, 2);
      const third = Number(tartanSubnet.split(".")[2]) % 254 + 1;
      const peerSubnet = `10.244.${third}.0/24`;
      await putLease(
        lab.etcd.client(),
        LAB_ETCD_PREFIX,
        `10.244.${third}.0-24`,
        allocValue(FLANNEL),
        120,
      );
      await waitFor("Tartan to take the flannel node as a peer", async () => {
        const view = await backendView(node.adminUrl);
        return view.peers.some((p) =>
          p.subnet === peerSubnet && p.publicIP === FLANNEL && p.inSync
        );
      });
      const flannelPod = num(`10.244.${third}.5`);
      const tartanPod = num(pod.ip);
      const peer = rawPeer(peerNs, FLANNEL);
      try {
        // flannel → Tartan: an echo request; the pod's reply comes back as a bare IPv4 packet.
        peer.send(icmpEcho({ src: flannelPod, dst: tartanPod, ttl: 64 }, 8, 4242, 1), TARTAN);
        const reply = peer.receive(3000);
        assert.ok(reply, "the pod's echo reply arrives");
        assert.deepStrictEqual([reply.from, reply.port], [TARTAN, 8285]);
        const p = reply.payload;
        const view = new DataView(p.buffer);
        assert.equal(view.getUint16(2), p.length, "the datagram is exactly one IPv4 packet");
        assert.ok(headerChecksumOk(p));
        assert.deepStrictEqual([view.getUint32(12), view.getUint32(16)], [tartanPod, flannelPod]);
        assert.deepStrictEqual([p[20], view.getUint16(24), view.getUint16(26)], [0, 4242, 1]);
        assert.equal(p[8], 62, "64 at the pod, −1 forwarding in the node, −1 our hop");

        // A SYN to a listening pod: the SYN-ACK must reach flannel with a complete checksum.
        {
          await using _server = spawnInNetns(pod.ns, ["iperf3", "-s", "-1", "-B", pod.ip], 15_000);
          let synAck: Uint8Array | undefined;
          for (let attempt = 0; attempt < 20 && !synAck; attempt++) {
            const syn = tcp({ src: flannelPod, dst: tartanPod }, {
              sport: 40_000 + attempt,
              dport: 5201,
              seq: 1,
              flags: 0x02,
            });
            peer.send(syn, TARTAN);
            const got = peer.receive(500)?.payload;
            if (got && got[9] === 6 && got[33] === 0x12) synAck = got;
            else await new Promise((r) => setTimeout(r, 200)); // a RST: not listening yet
          }
          assert.ok(synAck, "a SYN-ACK");
          assert.ok(headerChecksumOk(synAck) && l4ChecksumOk(synAck), "complete checksums");
        }

        // Tartan → flannel: the pod pings the flannel pod; the flannel node answers by hand.
        const ping = nsExec(pod.ns, ["ping", "-c", "1", "-W", "3", `10.244.${third}.5`], {
          allowFail: true,
        });
        let request: Uint8Array | undefined;
        for (let i = 0; i < 30 && !request; i++) {
          const got = peer.receive(100)?.payload;
          if (got && got[9] === 1 && got[20] === 8) request = got;
        }
        assert.ok(request, "the echo request arrives at the flannel node");
        const rv = new DataView(request.buffer);
        assert.equal(rv.getUint16(2), request.length);
        assert.equal(request[8], 62);
        peer.send(
          icmpEcho(
            { src: flannelPod, dst: rv.getUint32(12) },
            0,
            rv.getUint16(24),
            rv.getUint16(26),
          ),
          TARTAN,
        );
        assert.equal((await ping).code, 0, "the pod's ping is answered through flannel's format");

        // What flannel would accept but Tartan refuses (quirk 22), counted.
        const before = (await backendView(node.adminUrl)).dataPath!.drops;
        peer.send(icmpEcho({ src: flannelPod, dst: tartanPod, ttl: 1 }, 8, 1, 1), TARTAN);
        peer.send(icmpEcho({ src: num("10.244.0.9"), dst: tartanPod }, 8, 1, 1), TARTAN);
        peer.send(ipv4({ src: flannelPod, dst: tartanPod, payload: new Uint8Array(1500) }), TARTAN);
        await waitFor("TTL, source and size drops", async () => {
          const drops = (await backendView(node.adminUrl)).dataPath!.drops;
          return drops.ttl - before.ttl === 1 && drops.bad_source - before.bad_source === 1 &&
            drops.oversized - before.oversized === 1;
        });
        assert.equal(peer.receive(200), undefined, "nothing came back for those");
      } finally {
        peer.close();
      }

      // Tartan's own lease is flannel's udp JSON, so flannel nodes accept it too (conformance 5).
      const key = `${LAB_ETCD_PREFIX}/subnets/${tartanSubnet.replace("/", "-")}`;
      assert.equal(
        await readValue(lab.etcd.client(), key),
        `{"PublicIP":"${TARTAN}","PublicIPv6":null}`,
      );
    } finally {
      await lab.stop();
    }
  },
);
