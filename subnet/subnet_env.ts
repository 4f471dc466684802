/**
 * `subnet.env`: the file the CNI plugin reads, written exactly as flanneld writes it (spec §5),
 * and read back dotenv-style to find the previous subnet (spec §3.4 step 3).
 *
 * @module
 */
import { parentDir, syncPath } from "../fsync.ts";
import type { FamilyConfig, NetworkConfig } from "../config/network_config.ts";
import { firstHost, formatAddr, formatNet, type IPNet, tryParseNet } from "../ip/mod.ts";
import type { LeaseSubnets } from "./lease.ts";

/** One family's lines: the cluster network and this node's subnet (network address). */
export interface SubnetEnvFamily {
  readonly network: IPNet;
  readonly subnet: IPNet;
}

/** What `subnet.env` says; a family is written only when present. */
export interface SubnetEnv {
  readonly ipv4?: SubnetEnvFamily;
  readonly ipv6?: SubnetEnvFamily;
  /** The backend's MTU. */
  readonly mtu: number;
  /** Value of --ip-masq. */
  readonly ipMasq: boolean;
}

/**
 * What to write for `lease` under `config`: each enabled family with its network and the
 * lease's subnet in it.
 */
export function subnetEnvFor(
  config: NetworkConfig,
  lease: LeaseSubnets,
  mtu: number,
  ipMasq: boolean,
): SubnetEnv {
  const family = (fam: FamilyConfig | undefined, subnet: IPNet | undefined) =>
    fam && subnet ? { network: fam.network, subnet } : undefined;
  const ipv4 = family(config.ipv4, lease.subnet);
  const ipv6 = family(config.ipv6, lease.ipv6Subnet);
  return { ...(ipv4 && { ipv4 }), ...(ipv6 && { ipv6 }), mtu, ipMasq };
}

/** Raised for a `subnet.env` line a dotenv reader would reject. */
export class SubnetEnvError extends Error {
  constructor(readonly line: number, reason: string) {
    super(`subnet.env line ${line}: ${reason}`);
    this.name = "SubnetEnvError";
  }
}

/** `10.5.34.0/24` => `10.5.34.1/24`, what FLANNEL_SUBNET holds. */
function firstHostCidr(net: IPNet): string {
  return `${formatAddr(firstHost(net))}/${net.prefix}`;
}

/**
 * The file's exact bytes: FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_IPV6_NETWORK,
 * FLANNEL_IPV6_SUBNET (families present only), FLANNEL_MTU, FLANNEL_IPMASQ; each line ends `\n`.
 *
 * @example
 * ```ts
 * formatSubnetEnv({ ipv4: { network: parseNet("10.5.0.0/16"), subnet: parseNet("10.5.34.0/24") }, mtu: 1450, ipMasq: true });
 * // "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n"
 * ```
 */
export function formatSubnetEnv(env: SubnetEnv): string {
  const lines: string[] = [];
  if (env.ipv4) {
    lines.push(`FLANNEL_NETWORK=${formatNet(env.ipv4.network)}`);
    lines.push(`FLANNEL_SUBNET=${firstHostCidr(env.ipv4.subnet)}`);
  }
  if (env.ipv6) {
    lines.push(`FLANNEL_IPV6_NETWORK=${formatNet(env.ipv6.network)}`);
    lines.push(`FLANNEL_IPV6_SUBNET=${firstHostCidr(env.ipv6.subnet)}`);
  }
  lines.push(`FLANNEL_MTU=${env.mtu}`, `FLANNEL_IPMASQ=${env.ipMasq}`);
  return lines.map((line) => `${line}\n`).join("");
}

/**
 * Write `subnet.env` atomically and durably: parent created (0755), a temporary file in the
 * same directory, mode 0644 whatever the umask, fsynced, renamed over `path`, and the directory
 * fsynced; a crash leaves the old file or the new one, never an empty one for the CNI plugin.
 */
export async function writeSubnetEnv(path: string, env: SubnetEnv): Promise<void> {
  const dir = parentDir(path);
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  const temp = `${dir}/.${crypto.randomUUID()}.subnet.env.tmp`;
  try {
    await Deno.writeTextFile(temp, formatSubnetEnv(env), { mode: 0o644 });
    await Deno.chmod(temp, 0o644);
    await syncPath(temp);
    await Deno.rename(temp, path);
    await syncPath(dir);
  } catch (error) {
    await Deno.remove(temp).catch(() => {});
    throw error;
  }
}

const LINE = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*[=:]\s*(.*)$/;

function unquote(raw: string, lineNo: number): string {
  const quote = raw[0];
  if (quote !== '"' && quote !== "'") return raw.replace(/\s+#.*$/, "").trim();
  const end = raw.indexOf(quote, 1);
  if (end < 0) throw new SubnetEnvError(lineNo, "unterminated quoted value");
  const rest = raw.slice(end + 1).trim();
  if (rest !== "" && !rest.startsWith("#")) {
    throw new SubnetEnvError(lineNo, "text after the closing quote");
  }
  const body = raw.slice(1, end);
  return quote === "'" ? body : body.replace(/\\n/g, "\n").replace(/\\(["\\])/g, "$1");
}

/**
 * Parse dotenv-style text (`KEY=VALUE`, optional `export`, quotes, `#` comments, blank lines);
 * the last assignment of a key wins. A line that is none of these throws {@link SubnetEnvError}.
 */
export function parseSubnetEnv(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  text.split(/\r?\n/).forEach((rawLine, index) => {
    const line = rawLine.trim();
    if (line === "" || line.startsWith("#")) return;
    const match = LINE.exec(line);
    if (!match) throw new SubnetEnvError(index + 1, `not KEY=VALUE: ${JSON.stringify(line)}`);
    vars.set(match[1], unquote(match[2], index + 1));
  });
  return vars;
}

/** A single CIDR value turned into its network address; lists and garbage give undefined. */
function singleSubnet(value: string | undefined, family: 4 | 6): IPNet | undefined {
  if (value === undefined || value.includes(",")) return undefined;
  const net = tryParseNet(value.trim());
  return net?.family === family ? net : undefined;
}

/**
 * The subnets a previous run wrote to `path` (FLANNEL_SUBNET / FLANNEL_IPV6_SUBNET as network
 * addresses). A missing or unparsable file, or a comma-separated value, reads as absent.
 */
export async function readPreviousSubnets(path: string): Promise<LeaseSubnets> {
  let vars: Map<string, string>;
  try {
    vars = parseSubnetEnv(await Deno.readTextFile(path));
  } catch {
    return {};
  }
  const subnet = singleSubnet(vars.get("FLANNEL_SUBNET"), 4);
  const ipv6Subnet = singleSubnet(vars.get("FLANNEL_IPV6_SUBNET"), 6);
  return { ...(subnet && { subnet }), ...(ipv6Subnet && { ipv6Subnet }) };
}
