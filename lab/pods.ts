/**
 * Lab pods: namespaces wired by our CNI plugin (run as a runtime would, inside the node
 * namespace, delegating to the real `bridge` and `host-local` plugins), and the all-pairs
 * connectivity check.
 *
 * @module
 */
import { tartanArgv } from "./self.ts";

/** A CNI network list, as a runtime reads it from its config directory. */
export interface CniConflist {
  readonly cniVersion: string;
  readonly name: string;
  readonly plugins: readonly Record<string, unknown>[];
}

/** Where the Debian package puts the standard CNI plugins. */
export const CNI_BIN_DIR = "/usr/lib/cni";

/** A pod created by the lab. */
export interface LabPod {
  readonly ns: string;
  readonly node: string;
  readonly ip: string;
  /** Its IPv6 address, when the network is dual stack. */
  readonly ipv6?: string;
}

/** The lab's CNI network: flannel's name for it, and the version runtimes are given. */
const CNI_NETWORK = { cniVersion: "1.0.0", name: "cbr0" } as const;

/** Our plugin's entry in a node's network (flannel's standard shape, files under `dir`). */
function flannelPlugin(subnetFile: string, dir: string): Record<string, unknown> {
  return {
    type: "flannel",
    subnetFile,
    dataDir: cniDataDir(dir),
    ipam: { dataDir: `${dir}/ipam` },
    delegate: { hairpinMode: true, isDefaultGateway: true },
  };
}

/** Where the plugin saves a node's delegate configs (one file per container ID). */
export function cniDataDir(dir: string): string {
  return `${dir}/cni`;
}

/** The CNI network config a node's runtime would hold, as one plugin's stdin. */
export function cniConfig(subnetFile: string, dir: string): string {
  return JSON.stringify({ ...CNI_NETWORK, ...flannelPlugin(subnetFile, dir) });
}

/** The same network as a conflist file, as container runtimes read it. */
export function cniConflist(subnetFile: string, dir: string): CniConflist {
  return { ...CNI_NETWORK, plugins: [flannelPlugin(subnetFile, dir)] };
}

/** Run our CNI plugin in `nodeNs` as a container runtime would; returns its stdout. */
export function invokeCni(
  command: "ADD" | "DEL",
  nodeNs: string,
  podNs: string,
  config: string,
): Promise<string> {
  return execCniPlugin(tartanArgv(["cni"]), command, nodeNs, podNs, config);
}

/**
 * Run the CNI plugin `argv` in `nodeNs` as a container runtime would (container ID = pod
 * namespace name); returns its stdout.
 */
export async function execCniPlugin(
  argv: readonly string[],
  command: "ADD" | "DEL",
  nodeNs: string,
  podNs: string,
  config: string,
): Promise<string> {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", nodeNs, ...argv],
    env: {
      CNI_COMMAND: command,
      CNI_CONTAINERID: podNs,
      CNI_NETNS: `/run/netns/${podNs}`,
      CNI_IFNAME: "eth0",
      CNI_PATH: CNI_BIN_DIR,
      NO_COLOR: "1",
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(config));
  await writer.close();
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder().decode(stdout);
  if (code !== 0) {
    throw new Error(
      `CNI ${command} for ${podNs} failed: ${text}${new TextDecoder().decode(stderr)}`,
    );
  }
  return text;
}

/** The first IPv4 address in a CNI result (or, with `family` 6, the first IPv6 one if any). */
export function resultAddress(result: string): string;
export function resultAddress(result: string, family: 6): string | undefined;
export function resultAddress(result: string, family: 4 | 6 = 4): string | undefined {
  const parsed = JSON.parse(result) as { ips?: Array<{ address?: string }> };
  const addresses = (parsed.ips ?? []).flatMap((ip) =>
    ip.address ? [ip.address.split("/")[0]] : []
  );
  const address = addresses.find((a) => a.includes(":") === (family === 6));
  if (!address && family === 4) throw new Error(`CNI result without an address: ${result}`);
  return address;
}

/** One ping from a pod namespace (bounded: one packet, one second). */
export async function ping(fromNs: string, ip: string): Promise<boolean> {
  const { code } = await new Deno.Command("ip", {
    args: ["netns", "exec", fromNs, "ping", "-c", "1", "-W", "1", "-q", ip],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
}

/** Result of the all-pairs check: `ok[i][j]` is pod i reaching pod j. */
export interface ConnectivityMatrix {
  readonly pods: readonly LabPod[];
  readonly ok: readonly (readonly boolean[])[];
}

/** Every pod pings every other pod (sources in parallel, bounded by one second per ping). */
export async function connectivityMatrix(pods: readonly LabPod[]): Promise<ConnectivityMatrix> {
  const ok = await Promise.all(pods.map(async (from) => {
    const row: boolean[] = [];
    for (const to of pods) row.push(from === to ? true : await ping(from.ns, to.ip));
    return row;
  }));
  return { pods, ok };
}

/** Whether every pair connected. */
export function allConnected(matrix: ConnectivityMatrix): boolean {
  return matrix.ok.every((row) => row.every(Boolean));
}

/** The matrix as a table, one row per source pod. */
export function formatMatrix(matrix: ConnectivityMatrix): string {
  const labels = matrix.pods.map((p) => p.ip);
  const width = Math.max(...labels.map((l) => l.length), 4);
  const line = (cells: string[]) => cells.map((c) => c.padEnd(width)).join("  ").trimEnd();
  const rows = matrix.pods.map((pod, i) =>
    line([pod.ip, ...matrix.ok[i].map((ok, j) => i === j ? "-" : ok ? "ok" : "FAIL")])
  );
  return [line(["from \\ to", ...labels]), ...rows].join("\n");
}
