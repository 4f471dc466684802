/**
 * The CNI plugin's reader of flanneld's `subnet.env` (spec §9.2).
 *
 * Deliberately not the daemon's dotenv-style reader: the plugin reads line by line, splits at
 * the first `=`, never trims or unquotes, accepts comma-separated network lists, and fails on
 * any value it cannot parse, so a damaged file stops ADD instead of producing a wrong bridge.
 *
 * @module
 */
import { type Family, type IPNet, netEqual, parseNet } from "../ip/mod.ts";
import { errorText } from "../log.ts";

/** What the plugin needs from subnet.env. */
export interface SubnetEnv {
  /** `FLANNEL_NETWORK`: the IPv4 cluster network(s), duplicates removed, in file order. */
  readonly networks: readonly IPNet[];
  /** `FLANNEL_SUBNET` as a network (host bits cleared): this node's IPv4 pod range. */
  readonly subnet?: IPNet;
  /** `FLANNEL_IPV6_NETWORK`. */
  readonly ipv6Networks: readonly IPNet[];
  /** `FLANNEL_IPV6_SUBNET` as a network. */
  readonly ipv6Subnet?: IPNet;
  /** `FLANNEL_MTU`. */
  readonly mtu: number;
  /** `FLANNEL_IPMASQ`: whether flanneld masquerades (then the bridge must not). */
  readonly ipMasq: boolean;
}

/** Why subnet.env could not be used; `unreadable` means the file itself could not be read. */
export class SubnetEnvError extends Error {
  constructor(readonly file: string, readonly unreadable: boolean, message: string) {
    super(message);
    this.name = "SubnetEnvError";
  }
}

const MAX_U32 = 0xffff_ffff;
const DECIMAL = /^[0-9]+$/;

function parseFamilyNet(text: string, family: Family): IPNet {
  const net = parseNet(text);
  if (net.family !== family) throw new Error(`${JSON.stringify(text)} is not an IPv${family} CIDR`);
  return net;
}

function parseNetList(text: string, family: Family): IPNet[] {
  const nets: IPNet[] = [];
  for (const item of text.split(",")) {
    const net = parseFamilyNet(item, family);
    if (!nets.some((seen) => netEqual(seen, net))) nets.push(net);
  }
  return nets;
}

function parseMtu(text: string): number {
  const mtu = Number(text);
  if (!DECIMAL.test(text) || mtu > MAX_U32) {
    throw new Error(`${JSON.stringify(text)} is not an unsigned 32-bit decimal`);
  }
  return mtu;
}

/** Lines as Go's line scanner yields them: `\n`-terminated, one trailing `\r` dropped. */
function lines(text: string): string[] {
  const all = text.split("\n");
  if (all[all.length - 1] === "") all.pop();
  return all.map((line) => line.endsWith("\r") ? line.slice(0, -1) : line);
}

/**
 * Parse subnet.env content; `file` is only used in messages.
 *
 * Unknown keys and lines without `=` are ignored; a later line for the same key wins.
 *
 * @throws {SubnetEnvError} on an unparsable value or missing keys
 *   (`<file> is missing FLANNEL_MTU, FLANNEL_IPMASQ`).
 * @example
 * ```ts
 * const env = parseSubnetEnv(
 *   "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
 *   "/run/flannel/subnet.env",
 * );
 * env.subnet; // { family: 4, base: 183763200n, prefix: 24 }  (10.244.1.0/24)
 * ```
 */
export function parseSubnetEnv(text: string, file: string): SubnetEnv {
  let networks: IPNet[] = [];
  let ipv6Networks: IPNet[] = [];
  let subnet: IPNet | undefined;
  let ipv6Subnet: IPNet | undefined;
  let mtu: number | undefined;
  let ipMasq: boolean | undefined;
  lines(text).forEach((line, index) => {
    const eq = line.indexOf("=");
    if (eq < 0) return;
    const key = line.slice(0, eq);
    const value = line.slice(eq + 1);
    try {
      switch (key) {
        case "FLANNEL_NETWORK":
          networks = parseNetList(value, 4);
          break;
        case "FLANNEL_IPV6_NETWORK":
          ipv6Networks = parseNetList(value, 6);
          break;
        case "FLANNEL_SUBNET":
          subnet = parseFamilyNet(value, 4);
          break;
        case "FLANNEL_IPV6_SUBNET":
          ipv6Subnet = parseFamilyNet(value, 6);
          break;
        case "FLANNEL_MTU":
          mtu = parseMtu(value);
          break;
        case "FLANNEL_IPMASQ":
          ipMasq = value === "true";
          break;
      }
    } catch (err) {
      const reason = errorText(err);
      throw new SubnetEnvError(file, false, `${file}: line ${index + 1}: ${key}: ${reason}`);
    }
  });
  const missing = [
    ...(networks.length === 0 && ipv6Networks.length === 0
      ? ["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]
      : []),
    ...(!subnet && !ipv6Subnet ? ["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"] : []),
    ...(mtu === undefined ? ["FLANNEL_MTU"] : []),
    ...(ipMasq === undefined ? ["FLANNEL_IPMASQ"] : []),
  ];
  if (missing.length > 0 || mtu === undefined || ipMasq === undefined) {
    throw new SubnetEnvError(file, false, `${file} is missing ${missing.join(", ")}`);
  }
  return { networks, subnet, ipv6Networks, ipv6Subnet, mtu, ipMasq };
}

/**
 * Read and parse subnet.env from disk.
 *
 * @throws {SubnetEnvError} with `unreadable` set (and a hint that flanneld/tartan may not be
 *   running yet) when the file cannot be read, else as {@link parseSubnetEnv}.
 */
export async function readSubnetEnv(file: string): Promise<SubnetEnv> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    const reason = errorText(err);
    throw new SubnetEnvError(
      file,
      true,
      `failed to read ${file}: ${reason}; is flanneld/tartan running? ` +
        "Check the flannel pod log for this node",
    );
  }
  return parseSubnetEnv(text, file);
}
