/// <reference lib="deno.worker" />
/**
 * Worker for tun_test.ts: wraps a TUN fd posted by the main thread and reads with the
 * synchronous poll/read loop a data-path Worker uses, then reports what it saw.
 */
import { createPacketBatch, pollAndReadPackets, tunFromFd } from "../../ffi/tun.ts";
import { ipv4Src } from "../../lab/packets.ts";

self.onmessage = (
  e: MessageEvent<{ fd: number; name: string; want: number; timeoutMs: number }>,
) => {
  const { fd, name, want, timeoutMs } = e.data;
  const tun = tunFromFd(fd, name);
  const batch = createPacketBatch(64, 2048);
  const sources: string[] = [];
  const deadline = performance.now() + timeoutMs;
  while (sources.length < want && performance.now() < deadline) {
    const n = pollAndReadPackets(tun, batch, 100);
    for (let i = 0; i < n; i++) {
      const p = batch.buffers[i];
      if (p[0] >> 4 === 4 && p[9] === 1) sources.push(ipv4Src(p)); // skip IPv6 chatter
    }
  }
  self.postMessage({ count: sources.length, sources });
};
