import assert from "node:assert/strict";
import { closeFd, pollFd } from "../../../ffi/libc.ts";
import { inNetns } from "../../../ffi/netns.ts";
import { closeNetlink, openNetlink } from "../../../ffi/netlink/socket.ts";
import { closeTun } from "../../../ffi/tun.ts";
import { DataPathError, startDataPath } from "../../../backends/udp/data_path.ts";
import { openTunnelDevice } from "../../../backends/udp/tun_device.ts";
import { addressOf } from "../../../ffi/kernel_memory.ts";
import { createUdpReceiver, createUdpSender, openUdpSocket } from "../../../ffi/udp_io.ts";
import { parseNet } from "../../../ip/mod.ts";
import { captureLog, waitFor } from "../../helpers/leases.ts";
import { ipJson, rootTest, run, withNetns } from "../../helpers/netns.ts";
import { POLLIN } from "../../../ffi/unix.ts";
import { headerChecksumOk, icmpEcho, ipv4, l4ChecksumOk, tcp } from "../../../lab/packets.ts";

Deno.test("data path: a Worker that keeps dying is restarted a bounded number of times", async () => {
  const { log, lines } = captureLog();
  const path = startDataPath({
    tunFd: -1,
    udpFd: -1,
    tunMtu: 1472,
    ownAddress: 0,
    port: 8285,
    log,
    workerUrl: new URL("./crashing_worker.ts", import.meta.url),
    maxRestarts: 2,
  });
  try {
    await assert.rejects(path.done, (err: unknown) => {
      assert.ok(err instanceof DataPathError);
      assert.equal(err.attempts, 3);
      assert.match(err.lastError, /boom/);
      return true;
    });
    assert.equal(path.restarts, 2);
    assert.equal(path.running, false);
    assert.match(path.lastError ?? "", /boom/);
    assert.equal(lines.filter((l) => l.includes("restarting")).length, 2);
    assert.ok(lines.some((l) => l.includes("gave up")));
  } finally {
    await path.stop();
  }
});

const LO_NODE = 0x7f000001; // this node's socket
const LO_PEER = 0x7f000002; // the other node (a plain socket in the test)
const OWN = "10.244.1.0";
const PEER_POD = 0x0af40205; // 10.244.2.5, in the peer's subnet
const OWN_BASE = 0x0af40100;

/** Wait for the next datagram on the peer socket; its bytes. */
function receiveOn(fd: number, region: Uint8Array<ArrayBuffer>): Uint8Array {
  assert.ok(pollFd(fd, POLLIN, 2000) & POLLIN, "a datagram arrives");
  const receiver = createUdpReceiver(fd, region);
  const n = receiver.receive();
  assert.ok(n > 0);
  assert.equal(receiver.sourcePort, 8285);
  return region.slice(0, n);
}

rootTest(
  "data path: the Worker forwards both ways through a real TUN, drops garbage, stops",
  async () => {
    await withNetns(async (ns) => {
      await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
      const h = openNetlink({ netns: ns });
      const { log } = captureLog();
      const spec = { mtu: 1472, subnet: parseNet(`${OWN}/24`), network: parseNet("10.244.0.0/16") };
      const device = inNetns(ns, () => openTunnelDevice(h, spec));
      const [udpFd, peerFd] = inNetns(ns, () => [
        openUdpSocket({ address: LO_NODE, port: 8285, bufferBytes: 1 << 22 }),
        openUdpSocket({ address: LO_PEER, port: 8285, bufferBytes: 1 << 22 }),
      ]);
      const path = startDataPath({
        tunFd: device.tun.fd,
        udpFd,
        tunMtu: spec.mtu,
        ownAddress: OWN_BASE,
        port: 8285,
        log,
      });
      const listener = inNetns(ns, () => Deno.listen({ hostname: OWN, port: 5201 }));
      try {
        // Conformance 21: a TUN without packet-info, MTU external − 28, base /32, network route.
        type IpLink = { mtu: number; linkinfo: { info_kind: string; info_data: { pi: boolean } } };
        const [link] = await ipJson<IpLink[]>(ns, ["-d", "link", "show", device.tun.name]);
        assert.equal(device.tun.name, "flannel0");
        assert.deepStrictEqual(
          [link.mtu, link.linkinfo.info_kind, link.linkinfo.info_data.pi],
          [1472, "tun", false],
        );
        const addrs = await ipJson<{ addr_info: { local: string; prefixlen: number }[] }[]>(
          ns,
          ["addr", "show", "flannel0"],
        );
        assert.deepStrictEqual(
          addrs[0].addr_info.map((a) => `${a.local}/${a.prefixlen}`),
          [`${OWN}/32`],
        );
        const routes = await ipJson<{ dst: string; dev: string }[]>(ns, ["route", "show"]);
        assert.ok(routes.some((r) => r.dst === "10.244.0.0/16" && r.dev === "flannel0"));

        const generation = path.setPeers([{ base: 0x0af40200, prefix: 24, publicIP: LO_PEER }]);
        await waitFor("the peer table", () => path.appliedGeneration >= generation, 15_000);
        assert.ok(path.running);

        const mem = new Uint8Array(new ArrayBuffer(4096));
        const address = addressOf(mem);
        const peer = createUdpSender(peerFd);
        const send = (packet: Uint8Array) => {
          mem.set(packet);
          assert.equal(peer.send(address, packet.length, 0, LO_NODE, 8285), packet.length);
        };
        const region = new Uint8Array(new ArrayBuffer(65_536));

        // Peer → node: an echo request to flannel0's address; the kernel's reply comes back out.
        send(icmpEcho({ src: PEER_POD, dst: OWN_BASE, ttl: 64 }, 8, 77, 1));
        const reply = receiveOn(peerFd, region);
        const expected = icmpEcho({ src: OWN_BASE, dst: PEER_POD, ttl: 63 }, 0, 77, 1);
        assert.equal(reply.length, expected.length, "exactly the inner packet");
        assert.ok(headerChecksumOk(reply));
        assert.equal(reply[8], 63, "TTL 64 less our hop");
        assert.deepStrictEqual(reply.subarray(12), expected.subarray(12), "addresses and ICMP");

        // A SYN to a listener: the SYN-ACK leaves the kernel with a partial checksum (virtio
        // NEEDS_CSUM) and must reach a flannel peer complete.
        send(
          tcp({ src: PEER_POD, dst: OWN_BASE }, { sport: 40000, dport: 5201, seq: 1, flags: 0x02 }),
        );
        const synAck = receiveOn(peerFd, region);
        assert.equal(synAck[33], 0x12, "SYN-ACK");
        assert.ok(headerChecksumOk(synAck) && l4ChecksumOk(synAck), "complete checksums");
        assert.equal(synAck[8], 63);

        // Garbage and refused packets are counted, and the path keeps working.
        send(new Uint8Array(7));
        send(Uint8Array.of(0x60, ...new Uint8Array(47)));
        send(icmpEcho({ src: PEER_POD, dst: OWN_BASE, ttl: 1 }, 8, 77, 2));
        send(icmpEcho({ src: 0x0af40905, dst: OWN_BASE }, 8, 77, 3)); // not the peer's subnet
        send(ipv4({ src: PEER_POD, dst: OWN_BASE, payload: new Uint8Array(1460) })); // > MTU
        await waitFor("the drops", () => {
          const d = path.counters().drops;
          return d.malformed === 2 && d.ttl === 1 && d.bad_source === 1 && d.oversized === 1;
        }, 10_000);
        send(icmpEcho({ src: PEER_POD, dst: OWN_BASE, ttl: 64 }, 8, 77, 4));
        assert.equal(receiveOn(peerFd, region)[27], 4, "still forwarding");
        // The Worker publishes its counters on its own schedule: wait for them, bounded.
        await waitFor("the traffic counters", () => {
          const c = path.counters();
          return c.packetsRx >= 3 && c.packetsTx >= 3 && c.bytesTx > 0 && c.bytesRx > 0;
        }, 10_000);
      } finally {
        listener.close();
        await path.stop();
        closeFd(udpFd);
        closeFd(peerFd);
        closeTun(device.tun);
        closeNetlink(h);
      }
      const gone = await run(["ip", "-n", ns, "link", "show", "flannel0"], { allowFail: true });
      assert.notEqual(gone.code, 0, "flannel0 vanishes with its fd, as with flannel");
    });
  },
);
