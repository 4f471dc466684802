/**
 * What `tartan doctor` reads from the host, in one place: sysctls, subnet.env, links, addresses
 * and routes (through Tartan's own netlink), and the FORWARD path of iptables and nftables. The
 * checks in `host_checks.ts` are pure functions of these facts, so they are tested without root.
 *
 * @module
 */
import { type CommandRunner, commandRunner } from "../exec.ts";
import { type Addr, listAddrs } from "../ffi/netlink/addr.ts";
import { type Link, listLinks } from "../ffi/netlink/link.ts";
import { getRoute, listRoutes, type Route } from "../ffi/netlink/route.ts";
import { RT_TABLE_MAIN } from "../ffi/netlink/constants.ts";
import { closeNetlink, openNetlink } from "../ffi/netlink/socket.ts";
import type { IPAddr } from "../ip/mod.ts";
import { parseSubnetEnv } from "../subnet/subnet_env.ts";
import { errorText } from "../log.ts";
import { FORWARD_CHAIN } from "../traffic/iptables.ts";
import {
  detectIptablesVariant,
  iptablesTools,
  type IptablesVariant,
} from "../traffic/iptables_variant.ts";

/** subnet.env as read, or why it could not be. */
export interface SubnetEnvFacts {
  readonly path: string;
  readonly vars?: ReadonlyMap<string, string>;
  readonly error?: string;
}

/** The iptables filter table's FORWARD chain. */
export interface IptablesForward {
  /** `ACCEPT` or `DROP`. */
  readonly policy: string;
  /** Whether FORWARD jumps to Tartan's (flannel's) `FLANNEL-FWD` chain. */
  readonly jumpsToOurs: boolean;
  /** DROP/REJECT rules that come before that jump (or all of them, without it). */
  readonly dropsBefore: readonly string[];
}

/** A base chain on the forward hook of nftables. */
export interface NftForwardChain {
  readonly family: string;
  readonly table: string;
  readonly name: string;
  readonly policy: string;
}

/** Everything the host checks look at. */
export interface HostFacts {
  /** A sysctl by its path under /proc/sys (`["net", "ipv4", "ip_forward"]`); undefined: absent. */
  sysctl(path: readonly string[]): string | undefined;
  readonly subnetEnv: SubnetEnvFacts;
  readonly links: readonly Link[];
  readonly addrs: readonly Addr[];
  /** The main table. */
  readonly routes: readonly Route[];
  /** The kernel's route to `addr` (what rp_filter's reverse-path check consults). */
  routeTo(addr: IPAddr): Route | undefined;
  /** Undefined when iptables is not installed or its filter table cannot be read. */
  readonly iptablesForward?: IptablesForward;
  /** Which iptables that is (the daemon's choice); undefined: the host's plain `iptables`. */
  readonly iptablesVariant?: IptablesVariant;
  /** Undefined when nft is not installed. */
  readonly nftForwardChains?: readonly NftForwardChain[];
}

function readSysctl(path: readonly string[]): string | undefined {
  try {
    return Deno.readTextFileSync(`/proc/sys/${path.join("/")}`).trim();
  } catch {
    return undefined;
  }
}

async function readSubnetEnv(path: string): Promise<SubnetEnvFacts> {
  try {
    return { path, vars: parseSubnetEnv(await Deno.readTextFile(path)) };
  } catch (err) {
    return { path, error: errorText(err) };
  }
}

/** Parse `iptables-save -t filter` (of either variant) for the FORWARD chain. */
export function parseIptablesForward(save: string): IptablesForward | undefined {
  const policy = /^:FORWARD (\S+)/m.exec(save)?.[1];
  if (!policy) return undefined;
  const rules = save.split("\n").filter((line) => line.startsWith("-A FORWARD "));
  const jump = rules.findIndex((rule) => new RegExp(`-j ${FORWARD_CHAIN.chain}(\\s|$)`).test(rule));
  const before = jump < 0 ? rules : rules.slice(0, jump);
  return {
    policy,
    jumpsToOurs: jump >= 0,
    dropsBefore: before.filter((rule) => /-j (DROP|REJECT)(\s|$)/.test(rule)),
  };
}

interface NftListEntry {
  chain?: { family: string; table: string; name: string; hook?: string; policy?: string };
}

/** Parse `nft -j list chains` for base chains on the forward hook. */
export function parseNftForwardChains(json: string): NftForwardChain[] {
  const parsed = JSON.parse(json) as { nftables?: NftListEntry[] };
  return (parsed.nftables ?? []).flatMap(({ chain }) =>
    chain?.hook === "forward"
      ? [{
        family: chain.family,
        table: chain.table,
        name: chain.name,
        policy: chain.policy ?? "accept",
      }]
      : []
  );
}

/** The kernel's route to `addr`, on a netlink socket of its own (a few per doctor run). */
function routeTo(addr: IPAddr): Route | undefined {
  const netlink = openNetlink();
  try {
    return getRoute(netlink, addr);
  } catch {
    return undefined; // unreachable: no route
  } finally {
    closeNetlink(netlink);
  }
}

/** nft's JSON, or undefined when it is not JSON (an nft too old for `-j`, say). */
function tryParseNftForwardChains(json: string): NftForwardChain[] | undefined {
  try {
    return parseNftForwardChains(json);
  } catch {
    return undefined;
  }
}

async function tryRun(run: CommandRunner, argv: string[]): Promise<string | undefined> {
  try {
    return await run(argv);
  } catch {
    return undefined;
  }
}

/**
 * The filter table of the iptables variant the daemon writes its rules with (legacy or nft, chosen
 * as it chooses), so the FORWARD chain judged is the one its FLANNEL-FWD hook is in.
 */
async function iptablesFilter(
  run: CommandRunner,
): Promise<{ variant?: IptablesVariant; save?: string }> {
  const { variant } = await detectIptablesVariant(run);
  return { variant, save: await tryRun(run, [iptablesTools(variant).save[4], "-t", "filter"]) };
}

/** Read every fact from this host (its current network namespace). */
export async function gatherHostFacts(subnetFile: string): Promise<HostFacts> {
  const run = commandRunner();
  const [subnetEnv, { variant, save }, nft] = await Promise.all([
    readSubnetEnv(subnetFile),
    iptablesFilter(run),
    tryRun(run, ["nft", "-j", "list", "chains"]),
  ]);
  const netlink = openNetlink();
  try {
    const links = listLinks(netlink);
    const addrs = listAddrs(netlink);
    const routes = listRoutes(netlink, { table: RT_TABLE_MAIN });
    return {
      sysctl: readSysctl,
      subnetEnv,
      links,
      addrs,
      routes,
      routeTo,
      iptablesForward: save === undefined ? undefined : parseIptablesForward(save),
      ...(variant && { iptablesVariant: variant }),
      nftForwardChains: nft === undefined ? undefined : tryParseNftForwardChains(nft),
    };
  } finally {
    closeNetlink(netlink);
  }
}
