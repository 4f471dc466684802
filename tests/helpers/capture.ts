/**
 * Packet captures in a test namespace: tcpdump into a pcap file while traffic runs, and the
 * frames read back.
 *
 * @module
 */

/**
 * Capture `count` frames matching `filter` (a tcpdump expression) on `iface` in `ns` while
 * `traffic` runs; bounded by 10 s.
 */
export async function capture(
  ns: string,
  iface: string,
  count: number,
  traffic: () => Promise<void>,
  filter: readonly string[] = [],
): Promise<Uint8Array[]> {
  const file = await Deno.makeTempFile({ suffix: ".pcap" });
  const dump = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      "tcpdump",
      "-i",
      iface,
      "-U",
      "-n",
      "-c",
      `${count}`,
      "-w",
      file,
      ...filter,
    ],
    stdout: "null",
    stderr: "piped",
    signal: AbortSignal.timeout(10_000),
  }).spawn();
  try {
    // tcpdump says "listening on …" once it captures.
    const reader = dump.stderr.getReader();
    let said = "";
    while (!said.includes("listening on")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`tcpdump ended: ${said}`);
      said += new TextDecoder().decode(value);
    }
    reader.releaseLock();
    await traffic();
    await dump.status;
    return pcapFrames(await Deno.readFile(file));
  } finally {
    try {
      dump.kill("SIGKILL");
    } catch { /* done */ }
    await dump.stderr.cancel().catch(() => {});
    await dump.status;
    await Deno.remove(file);
  }
}

/** The frames of a pcap file (Ethernet link type), each as its captured bytes. */
export function pcapFrames(data: Uint8Array): Uint8Array[] {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const frames: Uint8Array[] = [];
  for (let at = 24; at + 16 <= data.length;) {
    const captured = view.getUint32(at + 8, true);
    frames.push(data.slice(at + 16, at + 16 + captured));
    at += 16 + captured;
  }
  return frames;
}
