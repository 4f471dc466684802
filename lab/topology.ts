/**
 * The lab's "machines and wires": an underlay namespace holding a bridge (the L2 segment every
 * node is plugged into, 198.18.0.0/24, with 198.18.0.1 as router and "outside" host), node
 * namespaces attached to it by veth pairs, and pod namespaces. The lab plays the cloud provider
 * here, so it drives `ip` like an operator would; Tartan itself never does.
 *
 * Every name starts with the lab's prefix, and everything lives inside namespaces: the host's
 * own network configuration is never touched.
 *
 * @module
 */
import type { CommandRunner } from "../exec.ts";

/** The underlay segment. */
export const UNDERLAY_PREFIX_LEN = 24;
export const UNDERLAY_ROUTER = "198.18.0.1";

/** The IPv6 underlay (a documentation prefix), for labs that run dual stack. */
export const UNDERLAY_V6_PREFIX_LEN = 64;
export const UNDERLAY_ROUTER_V6 = "2001:db8::1";

function checkNodeIndex(i: number): void {
  if (!Number.isInteger(i) || i < 1 || i > 200) throw new RangeError(`node ${i} is outside 1..200`);
}

/** The underlay address of node `i` (1-based). */
export function nodeUnderlayIP(i: number): string {
  checkNodeIndex(i);
  return `198.18.0.${10 + i}`;
}

/** The IPv6 underlay address of node `i` (1-based), in a dual-stack lab. */
export function nodeUnderlayIPv6(i: number): string {
  checkNodeIndex(i);
  return `2001:db8::${10 + i}`;
}

/** What a lab's underlay carries besides IPv4. */
export interface UnderlayOptions {
  /** Also IPv6 from 2001:db8::/64 (router `::1`, node i at `::(10+i)`). */
  readonly ipv6?: boolean;
}

/** Names of the lab's namespaces. */
export function labNames(prefix: string) {
  return {
    underlay: `${prefix}ul`,
    node: (i: number) => `${prefix}n${i}`,
    pod: (i: number, j: number) => `${prefix}n${i}p${j}`,
  };
}

/** `ip -n <ns> <args>`. */
function ipIn(run: CommandRunner, ns: string, ...args: string[]): Promise<string> {
  return run(["ip", "-n", ns, ...args]);
}

/** `sysctl -w <setting>` inside `ns`. */
function sysctlIn(run: CommandRunner, ns: string, setting: string): Promise<string> {
  return run(["ip", "netns", "exec", ns, "sysctl", "-qw", setting]);
}

/** Create a namespace with its loopback up (pods start so; the CNI plugin wires the rest). */
export async function addNetns(run: CommandRunner, ns: string): Promise<void> {
  await run(["ip", "netns", "add", ns]);
  await ipIn(run, ns, "link", "set", "lo", "up");
}

/** Create the underlay namespace with its bridge and router address. */
export async function createUnderlay(
  run: CommandRunner,
  ns: string,
  options: UnderlayOptions = {},
): Promise<void> {
  await addNetns(run, ns);
  await ipIn(run, ns, "link", "add", "br0", "type", "bridge");
  await ipIn(run, ns, "addr", "add", `${UNDERLAY_ROUTER}/${UNDERLAY_PREFIX_LEN}`, "dev", "br0");
  if (options.ipv6) {
    const address = `${UNDERLAY_ROUTER_V6}/${UNDERLAY_V6_PREFIX_LEN}`;
    await ipIn(run, ns, "addr", "add", address, "dev", "br0", "nodad");
  }
  await ipIn(run, ns, "link", "set", "br0", "up");
  // The router forwards between nodes only in tests that route across segments; harmless here.
  await sysctlIn(run, ns, "net.ipv4.ip_forward=1");
}

/**
 * Create node `i`'s namespace, plug it into the underlay bridge as `ul0` with its address and a
 * default route via the router (so interface selection finds it as flannel would).
 */
export async function createNode(
  run: CommandRunner,
  underlay: string,
  ns: string,
  i: number,
  options: UnderlayOptions = {},
): Promise<void> {
  const port = `n${i}`;
  await addNetns(run, ns);
  const veth = ["type", "veth", "peer", "name", "ul0", "netns", ns];
  await ipIn(run, underlay, "link", "add", port, ...veth);

  await ipIn(run, underlay, "link", "set", port, "master", "br0", "up");
  await ipIn(run, ns, "addr", "add", `${nodeUnderlayIP(i)}/${UNDERLAY_PREFIX_LEN}`, "dev", "ul0");
  if (options.ipv6) {
    const address = `${nodeUnderlayIPv6(i)}/${UNDERLAY_V6_PREFIX_LEN}`;
    await ipIn(run, ns, "addr", "add", address, "dev", "ul0", "nodad");
    await sysctlIn(run, ns, "net.ipv6.conf.all.forwarding=1");
  }
  await ipIn(run, ns, "link", "set", "ul0", "up");
  await ipIn(run, ns, "route", "add", "default", "via", UNDERLAY_ROUTER);
  await sysctlIn(run, ns, "net.ipv4.ip_forward=1");
}

/** Every namespace whose name starts with `prefix`. */
export async function listLabNetns(run: CommandRunner, prefix: string): Promise<string[]> {
  const out = await run(["ip", "netns", "list"]);
  return out.split("\n").map((line) => line.split(" ")[0]).filter((n) => n.startsWith(prefix));
}

/** Delete every namespace of the lab (pods first, underlay last). */
export async function deleteLabNetns(run: CommandRunner, prefix: string): Promise<string[]> {
  if (!/^t[a-z]-[a-z0-9]+-$/.test(prefix)) {
    throw new RangeError(`refusing to delete prefix ${prefix}`);
  }
  const names = (await listLabNetns(run, prefix)).sort((a, b) => b.length - a.length);
  for (const name of names) {
    // A process left inside (a wireguard-go whose daemon was killed) would keep the namespace.
    const pids = await run(["ip", "netns", "pids", name]).catch(() => "");
    for (const pid of pids.split(/\s+/).filter(Boolean)) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
    await run(["ip", "netns", "del", name]).catch(() => {});
  }
  return names;
}
