import assert from "node:assert/strict";
import { addAddr } from "../../ffi/netlink/addr.ts";
import { getLink, setLinkUp } from "../../ffi/netlink/link.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import {
  closeTun,
  createPacketBatch,
  openTun,
  pollAndReadPackets,
  readPackets,
  TUN_F_CSUM,
  TUN_F_TSO4,
  TUN_F_TSO6,
  type TunDevice,
  VIRTIO_NET_HDR_LEN,
  writePackets,
} from "../../ffi/tun.ts";
import { parseAddr } from "../../ip/mod.ts";
import { ipJson, nsExec, rootTest, withNetns } from "../helpers/netns.ts";
import { addr4, icmpEcho, ipv4Dst, ipv4Src } from "../../lab/packets.ts";

/** Give the TUN 10.99.0.1/24 and bring it up: 10.99.0.0/24 is now routed into it. */
async function configure(ns: string, tun: TunDevice): Promise<void> {
  await withNetlink({ netns: ns }, (h) => {
    const link = getLink(h, tun.name)!;
    addAddr(h, { index: link.index, address: parseAddr("10.99.0.1"), prefix: 24 });
    setLinkUp(h, link.index);
  });
}

/** An IPv4 ICMP packet (the kernel also sends IPv6 router solicitations and MLD reports). */
function isIcmpV4(p: Uint8Array): boolean {
  return p[0] >> 4 === 4 && p[9] === 1;
}

/** Read until `want` IPv4 ICMP packets arrived or 3 s passed. */
function readIcmp(tun: TunDevice, want: number): Uint8Array[] {
  const batch = createPacketBatch(64, 2048);
  const got: Uint8Array[] = [];
  const deadline = performance.now() + 3000;
  while (got.length < want && performance.now() < deadline) {
    const n = pollAndReadPackets(tun, batch, 100);
    for (let i = 0; i < n; i++) {
      const p = batch.buffers[i].slice(0, batch.lengths[i]);
      if (isIcmpV4(p)) got.push(p);
    }
  }
  return got;
}

rootTest(
  "tun: opened inside a namespace from a name template, seen by ip, gone on close",
  async () => {
    await withNetns(async (ns) => {
      const first = openTun({ name: "tart%d", netns: ns });
      const second = openTun({ name: "tart%d", netns: ns });
      type IpTun = { ifname: string; linkinfo: { info_data: Record<string, unknown> } };
      try {
        assert.deepStrictEqual([first.name, second.name], ["tart0", "tart1"]);
        const [ip] = await ipJson<IpTun[]>(ns, ["-d", "link", "show", "tart0"]);
        assert.equal(ip.linkinfo.info_data.type, "tun");
        assert.equal(ip.linkinfo.info_data.pi, false);
        assert.equal(ip.linkinfo.info_data.persist, false);
      } finally {
        closeTun(first);
      }
      // Non-persistent: a device vanishes with its last fd.
      let names = (await ipJson<IpTun[]>(ns, ["link", "show"])).map((l) => l.ifname);
      assert.deepStrictEqual(names.sort(), ["lo", "tart1"]);
      closeTun(second);
      names = (await ipJson<IpTun[]>(ns, ["link", "show"])).map((l) => l.ifname);
      assert.deepStrictEqual(names, ["lo"]);
    });
  },
);

rootTest(
  "tun: kernel -> tun (ping into the subnet) and tun -> kernel -> tun (echo reply)",
  async () => {
    await withNetns(async (ns) => {
      const tun = openTun({ name: "tt%d", netns: ns });
      try {
        await configure(ns, tun);
        // Kernel to TUN: pings to a non-local address of the subnet come out of the TUN.
        const ping = nsExec(ns, ["ping", "-c", "3", "-i", "0.2", "-W", "1", "10.99.0.5"], {
          allowFail: true,
        });
        const out = readIcmp(tun, 3);
        await ping;
        assert.equal(out.length, 3);
        assert.ok(out.every((p) => ipv4Dst(p) === "10.99.0.5" && p[20] === 8)); // echo requests
        // TUN to kernel: echo requests to our own address come back as replies through the TUN.
        const batch = createPacketBatch(16, 2048);
        for (let i = 0; i < 16; i++) {
          const pkt = icmpEcho({ src: addr4("10.99.0.2"), dst: addr4("10.99.0.1") }, 8, 0x7474, i);
          batch.buffers[i].set(pkt);
          batch.lengths[i] = pkt.length;
        }
        assert.equal(writePackets(tun, batch, 16), 16);
        const replies = readIcmp(tun, 16);
        assert.equal(replies.length, 16);
        assert.ok(replies.every((p) => p[20] === 0)); // echo replies
        assert.ok(replies.every((p) => ipv4Src(p) === "10.99.0.1" && ipv4Dst(p) === "10.99.0.2"));
        const rest = readPackets(tun, batch);
        const stray = batch.buffers.slice(0, rest).filter((p) => isIcmpV4(p));
        assert.equal(stray.length, 0, "no other ICMP is queued");
      } finally {
        closeTun(tun);
      }
    });
  },
);

rootTest("tun: multi-queue and vnet_hdr with offloads", async () => {
  await withNetns(async (ns) => {
    const opts = {
      name: "mq0",
      netns: ns,
      multiQueue: true,
      vnetHdr: true,
      offload: TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
    };
    const q0 = openTun(opts);
    const q1 = openTun(opts);
    try {
      assert.equal(q1.name, "mq0");
      const link = await withNetlink({ netns: ns }, (h) => getLink(h, "mq0"));
      assert.equal(link?.tun?.multiQueue, true);
      assert.equal(link?.tun?.vnetHdr, true);
      assert.equal(link?.tun?.queues, 2);
      await configure(ns, q0);
      const ping = nsExec(ns, ["ping", "-c", "1", "-W", "1", "10.99.0.7"], { allowFail: true });
      const deadline = performance.now() + 3000;
      const batch = createPacketBatch(8, 65536 + VIRTIO_NET_HDR_LEN);
      let packet: Uint8Array | undefined;
      while (!packet && performance.now() < deadline) {
        for (const q of [q0, q1]) {
          const n = pollAndReadPackets(q, batch, 50);
          for (let i = 0; i < n; i++) {
            const p = batch.buffers[i].subarray(0, batch.lengths[i]);
            if (isIcmpV4(p.subarray(VIRTIO_NET_HDR_LEN))) packet = p.slice();
          }
        }
      }
      await ping;
      assert.ok(packet, "the ping came out of one of the queues");
      // A virtio_net_hdr precedes the IP packet.
      assert.equal(packet[VIRTIO_NET_HDR_LEN] >> 4, 4);
      assert.equal(ipv4Dst(packet.subarray(VIRTIO_NET_HDR_LEN)), "10.99.0.7");
    } finally {
      closeTun(q0);
      closeTun(q1);
    }
  });
});

rootTest("tun: a Worker runs a synchronous poll/read loop on an fd passed to it", async () => {
  await withNetns(async (ns) => {
    const tun = openTun({ name: "wk%d", netns: ns });
    const worker = new Worker(new URL("./tun_reader_worker.ts", import.meta.url), {
      type: "module",
    });
    try {
      await configure(ns, tun);
      const result = new Promise<{ count: number; sources: string[] }>((resolve, reject) => {
        worker.onmessage = (e) => resolve(e.data);
        worker.onerror = (e) => reject(e.message);
      });
      worker.postMessage({ fd: tun.fd, name: tun.name, want: 32, timeoutMs: 5000 });
      // The main thread keeps writing while the Worker blocks in poll on its own thread.
      await new Promise((r) => setTimeout(r, 50));
      const batch = createPacketBatch(32, 128);
      for (let i = 0; i < 32; i++) {
        const pkt = icmpEcho({ src: addr4("10.99.0.3"), dst: addr4("10.99.0.1") }, 8, 0x7474, i);
        batch.buffers[i].set(pkt);
        batch.lengths[i] = pkt.length;
      }
      assert.equal(writePackets(tun, batch, 32), 32);
      const { count, sources } = await result;
      assert.equal(count, 32);
      assert.ok(sources.every((s) => s === "10.99.0.1"));
    } finally {
      worker.terminate();
      closeTun(tun);
    }
  });
});
