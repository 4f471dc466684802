import { kernelMemory } from "../../ffi/kernel_memory.ts";
import assert from "node:assert/strict";
import { closeFd, pollFd, SyscallError } from "../../ffi/libc.ts";
import { inNetns } from "../../ffi/netns.ts";
import { createUdpReceiver, createUdpSender, openUdpSocket } from "../../ffi/udp_io.ts";
import { rootTest, run, withNetns } from "../helpers/netns.ts";
import { POLLIN } from "../../ffi/unix.ts";

const LOOPBACK = 0x7f000001;
const MIB4 = 4 * 1024 * 1024;

/** Two sockets on loopback in a fresh namespace `ns`: `a` on port 8285, `b` on 8286. */
async function withSockets(
  fn: (a: number, b: number, ns: string) => void | Promise<void>,
  bufferBytes = MIB4,
): Promise<void> {
  await withNetns(async (ns) => {
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    const [a, b] = inNetns(ns, () => [
      openUdpSocket({ address: LOOPBACK, port: 8285, bufferBytes: MIB4 }),
      openUdpSocket({ address: LOOPBACK, port: 8286, bufferBytes }),
    ]);
    try {
      await fn(a, b, ns);
    } finally {
      closeFd(a);
      closeFd(b);
    }
  });
}

rootTest("udp io: one GSO send arrives as one GRO receive with its segment size", async () => {
  await withSockets((a, b) => {
    const out = kernelMemory(8000);
    out.bytes.forEach((_, i) => out.bytes[i] = i & 255);
    const sender = createUdpSender(a);
    const region = new Uint8Array(new ArrayBuffer(65_536));
    const receiver = createUdpReceiver(b, region);

    assert.equal(sender.send(out.address, 5300, 1000, LOOPBACK, 8286), 5300);
    assert.ok(pollFd(b, POLLIN, 1000) & POLLIN);
    assert.equal(receiver.receive(), 5300);
    assert.equal(receiver.segmentSize, 1000, "coalesced by UDP GRO");
    assert.equal(receiver.sourceAddress, LOOPBACK);
    assert.equal(receiver.sourcePort, 8285);
    assert.equal(receiver.truncated, false);
    assert.deepStrictEqual(region.subarray(0, 5300), out.bytes.subarray(0, 5300));

    assert.equal(sender.send(out.address + 7, 200, 0, LOOPBACK, 8286), 200);
    assert.ok(pollFd(b, POLLIN, 1000) & POLLIN);
    assert.equal(receiver.receive(), 200);
    assert.equal(receiver.segmentSize, 0, "a single datagram");
    assert.deepStrictEqual(region.subarray(0, 200), out.bytes.subarray(7, 207));
    assert.equal(receiver.receive(), -11, "EAGAIN when drained");
  });
});

rootTest("udp io: a datagram larger than the region is flagged truncated", async () => {
  await withSockets((a, b) => {
    const out = kernelMemory(2000);
    const receiver = createUdpReceiver(b, new Uint8Array(new ArrayBuffer(100)));
    assert.equal(createUdpSender(a).send(out.address, 1500, 0, LOOPBACK, 8286), 1500);
    assert.ok(pollFd(b, POLLIN, 1000) & POLLIN);
    assert.equal(receiver.receive(), 100);
    assert.equal(receiver.truncated, true);
  });
});

rootTest(
  "udp io: datagrams dropped on a full receive buffer are counted by the kernel",
  async () => {
    await withSockets((a, b) => {
      const out = kernelMemory(2000);
      const sender = createUdpSender(a);
      for (let i = 0; i < 200; i++) sender.send(out.address, 1400, 0, LOOPBACK, 8286);
      const receiver = createUdpReceiver(b, new Uint8Array(new ArrayBuffer(2000)));
      while (receiver.receive() > 0) assert.equal(receiver.overflowDrops, 0);
      // The count rides on the next datagram queued after the drops.
      sender.send(out.address, 100, 0, LOOPBACK, 8286);
      assert.equal(receiver.receive(), 100);
      assert.ok(receiver.overflowDrops > 100, `SO_RXQ_OVFL reported ${receiver.overflowDrops}`);
    }, 4096);
  },
);

rootTest("udp io: a taken port is a SyscallError EADDRINUSE", async () => {
  await withSockets((_a, _b, ns) => {
    assert.throws(
      () => inNetns(ns, () => openUdpSocket({ address: LOOPBACK, port: 8285, bufferBytes: MIB4 })),
      (err: unknown) => err instanceof SyscallError && err.code === "EADDRINUSE",
    );
  });
});
