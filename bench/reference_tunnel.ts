/**
 * The udp benchmark's reference data path: `bench/reference/udp_proxy.c` (one packet per
 * syscall, as flannel's udp proxy moves them) running between two fresh namespaces joined by a
 * veth underlay, each with a TUN `tun0` at MTU 1472. It is built with the machine's C compiler
 * when the benchmark starts; without one the reference is skipped, never faked.
 *
 * The reference path is namespace to namespace, without the pods' bridge and veth hops that
 * Tartan's pod-to-pod path crosses, so it flatters the reference slightly.
 *
 * @module
 */
import type { CommandRunner } from "../exec.ts";
import { addNetns } from "../lab/topology.ts";
import type { TrafficPath } from "./traffic.ts";

/** A running reference tunnel. */
export interface ReferenceTunnel {
  readonly path: TrafficPath;
  /** Kill both proxies and delete the namespaces. */
  stop(): Promise<void>;
}

const SOURCE = new URL("./reference/udp_proxy.c", import.meta.url);
const PORT = "8285";
const TUN_MTU = "1472";
const SIDES = [
  { suffix: "ra", underlay: "198.19.254.1", overlay: "10.245.1.1" },
  { suffix: "rb", underlay: "198.19.254.2", overlay: "10.245.2.1" },
] as const;
const DEVICE_WAIT_MS = 3000;

/** Compile the proxy into a temporary directory; null when there is no working `cc`. */
async function compileProxy(): Promise<string | null> {
  const dir = await Deno.makeTempDir({ prefix: "tartan-bench-" });
  const binary = `${dir}/udp_proxy`;
  try {
    const { success } = await new Deno.Command("cc", {
      args: ["-O2", "-o", binary, SOURCE.pathname],
      stdout: "null",
      stderr: "inherit",
    }).output();
    if (success) return binary;
  } catch { /* no compiler installed */ }
  await Deno.remove(dir, { recursive: true });
  return null;
}

/** Wait (bounded) until the proxy in `ns` has created its TUN. */
async function waitForDevice(run: CommandRunner, ns: string): Promise<void> {
  const deadline = performance.now() + DEVICE_WAIT_MS;
  while (performance.now() < deadline) {
    const found = await run(["ip", "-n", ns, "link", "show", "tun0"]).then(() => true, () => false);
    if (found) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the reference proxy in ${ns} never created tun0`);
}

/**
 * Start the reference tunnel in namespaces `<prefix>ra` and `<prefix>rb`; null (with a line on
 * stderr) when no C compiler is available.
 */
export async function startReferenceTunnel(
  run: CommandRunner,
  prefix: string,
): Promise<ReferenceTunnel | null> {
  const binary = await compileProxy();
  if (!binary) {
    console.error("no C compiler (cc): the reference C proxy is not measured");
    return null;
  }
  const [a, b] = SIDES.map((side) => ({ ...side, ns: `${prefix}${side.suffix}` }));
  const proxies: Deno.ChildProcess[] = [];
  const stop = async () => {
    for (const proxy of proxies) {
      try {
        proxy.kill("SIGKILL");
      } catch { /* already gone */ }
      await proxy.status;
    }
    for (const side of [a, b]) await run(["ip", "netns", "del", side.ns]).catch(() => "");
    await Deno.remove(binary.slice(0, binary.lastIndexOf("/")), { recursive: true });
  };
  try {
    await addNetns(run, a.ns);
    await addNetns(run, b.ns);
    await run(["ip", "-n", a.ns, "link", "add", "u0", "type", "veth", "peer", "u0", "netns", b.ns]);
    for (const [self, peer] of [[a, b], [b, a]]) {
      await run(["ip", "-n", self.ns, "addr", "add", `${self.underlay}/30`, "dev", "u0"]);
      await run(["ip", "-n", self.ns, "link", "set", "u0", "up"]);
      proxies.push(
        new Deno.Command("ip", {
          args: ["netns", "exec", self.ns, binary, "tun0", self.underlay, peer.underlay, PORT],
          stdout: "null",
          stderr: "inherit",
        }).spawn(),
      );
      await waitForDevice(run, self.ns);
      await run(["ip", "-n", self.ns, "addr", "add", `${self.overlay}/16`, "dev", "tun0"]);
      await run(["ip", "-n", self.ns, "link", "set", "tun0", "mtu", TUN_MTU, "up"]);
    }
    return { path: { client: a.ns, server: b.ns, serverIP: b.overlay }, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
