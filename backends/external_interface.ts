/**
 * Choosing the external interface, its address and the public IP (spec §1.4).
 *
 * The choice is a pure function over what the kernel reports (an {@link InterfaceSource}), so
 * every flannel rule is tested without root; `interface_source.ts` reads the real kernel.
 *
 * @module
 */
import { addrEqual, type Family, formatAddr, type IPAddr, parseAddr } from "../ip/mod.ts";

/** One address on an interface, with the flags flannel sorts by. */
export interface InterfaceAddress {
  readonly addr: IPAddr;
  readonly prefix: number;
  readonly scope: "global" | "site" | "link" | "host";
  readonly permanent: boolean;
  readonly deprecated: boolean;
  readonly temporary: boolean;
}

/** An interface as the kernel lists it (kernel order matters for regex matching). */
export interface InterfaceInfo {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  readonly addrs: readonly InterfaceAddress[];
}

/** The kernel facts interface selection needs. */
export interface InterfaceSource {
  interfaces(): Promise<InterfaceInfo[]>;
  /** Index of the interface the default route of a family leaves by. */
  defaultRouteIndex(family: Family): Promise<number | undefined>;
  /** The route the kernel would use to reach `addr`: its interface and preferred source. */
  routeTo(addr: IPAddr): Promise<{ index: number; src?: IPAddr } | undefined>;
}

/** The flags that steer the choice (flannel's names, camelCased). */
export interface InterfaceOptions {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  readonly ifaceCanReach: string;
  readonly publicIP: string;
  readonly publicIPv6: string;
}

/** The outcome: the interface, its addresses and what we advertise to peers. */
export interface ExternalInterface {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** Interface address of each enabled family. */
  readonly ifaceAddr?: IPAddr;
  readonly ifaceAddrV6?: IPAddr;
  /** What peers use to reach us (differs from the interface address behind NAT). */
  readonly publicIP?: IPAddr;
  readonly publicIPv6?: IPAddr;
}

/** Which address families the network config enables. */
export interface IPStack {
  readonly v4: boolean;
  readonly v6: boolean;
}

/** Raised when no interface matches; the daemon exits 1 with this message. */
export class InterfaceSelectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InterfaceSelectionError";
  }
}

const SCOPE_RANK = { global: 0, site: 0, link: 1, host: 2 } as const;

/** Usable addresses of a family, best first (global before link-local, permanent first…). */
export function usableAddresses(info: InterfaceInfo, family: Family): IPAddr[] {
  return info.addrs
    .filter((a) => a.addr.family === family && !a.deprecated && a.scope !== "host")
    .toSorted((a, b) =>
      SCOPE_RANK[a.scope] - SCOPE_RANK[b.scope] ||
      Number(b.permanent) - Number(a.permanent) ||
      Number(a.temporary) - Number(b.temporary)
    )
    .map((a) => a.addr);
}

function holds(info: InterfaceInfo, addr: IPAddr): boolean {
  return info.addrs.some((a) => addrEqual(a.addr, addr));
}

/** The families' addresses on `info`, or undefined when a needed family has none. */
function addressesFor(
  info: InterfaceInfo,
  stack: IPStack,
  fixed: { v4?: IPAddr; v6?: IPAddr } = {},
): { v4?: IPAddr; v6?: IPAddr } | undefined {
  const v4 = stack.v4 ? fixed.v4 ?? usableAddresses(info, 4)[0] : undefined;
  const v6 = stack.v6 ? fixed.v6 ?? usableAddresses(info, 6)[0] : undefined;
  if ((stack.v4 && !v4) || (stack.v6 && !v6)) return undefined;
  return { v4, v6 };
}

interface Candidate {
  readonly info: InterfaceInfo;
  readonly v4?: IPAddr;
  readonly v6?: IPAddr;
}

function byIface(value: string, ifaces: InterfaceInfo[], stack: IPStack): Candidate | undefined {
  if (/^[0-9a-fA-F.:]+$/.test(value) && (value.includes(".") || value.includes(":"))) {
    const addr = parseAddr(value);
    const info = ifaces.find((i) => holds(i, addr));
    if (!info) return undefined;
    const fixed = addr.family === 4 ? { v4: addr } : { v6: addr };
    const addrs = addressesFor(info, stack, fixed);
    return addrs && { info, ...addrs };
  }
  const info = ifaces.find((i) => i.name === value);
  const addrs = info && addressesFor(info, stack);
  return info && addrs && { info, ...addrs };
}

function byRegex(pattern: string, ifaces: InterfaceInfo[], stack: IPStack): Candidate | undefined {
  const re = new RegExp(pattern);
  // First by address text: every needed family must match on the same interface.
  for (const info of ifaces) {
    const v4 = stack.v4 ? usableAddresses(info, 4).find((a) => re.test(formatAddr(a))) : undefined;
    const v6 = stack.v6 ? usableAddresses(info, 6).find((a) => re.test(formatAddr(a))) : undefined;
    if ((!stack.v4 || v4) && (!stack.v6 || v6)) return { info, v4, v6 };
  }
  for (const info of ifaces) {
    if (!re.test(info.name)) continue;
    const addrs = addressesFor(info, stack);
    if (addrs) return { info, ...addrs };
  }
  return undefined;
}

async function byReach(
  target: string,
  source: InterfaceSource,
  ifaces: InterfaceInfo[],
  stack: IPStack,
): Promise<Candidate | undefined> {
  const route = await source.routeTo(parseAddr(target));
  const info = route && ifaces.find((i) => i.index === route.index);
  if (!info || !route) return undefined;
  const fixed = route.src?.family === 4 ? { v4: route.src } : { v6: route.src };
  const addrs = addressesFor(info, stack, route.src ? fixed : {});
  return addrs && { info, ...addrs };
}

async function byDefault(
  options: InterfaceOptions,
  source: InterfaceSource,
  ifaces: InterfaceInfo[],
  stack: IPStack,
): Promise<Candidate | undefined> {
  const known = options.publicIP || options.publicIPv6;
  if (known) {
    const addr = parseAddr(known);
    const info = ifaces.find((i) => holds(i, addr));
    if (!info) throw new InterfaceSelectionError(`no interface has the public IP ${known}`);
    const addrs = addressesFor(info, stack, addr.family === 4 ? { v4: addr } : { v6: addr });
    return addrs && { info, ...addrs };
  }
  const v4Index = stack.v4 ? await source.defaultRouteIndex(4) : undefined;
  const v6Index = stack.v6 ? await source.defaultRouteIndex(6) : undefined;
  if (stack.v4 && stack.v6 && v4Index !== v6Index) {
    throw new InterfaceSelectionError(
      "the IPv4 and IPv6 default routes use different interfaces; choose one with --iface",
    );
  }
  const index = v4Index ?? v6Index;
  const info = ifaces.find((i) => i.index === index);
  const addrs = info && addressesFor(info, stack);
  return info && addrs && { info, ...addrs };
}

function parsePublic(text: string, family: Family, flag: string): IPAddr | undefined {
  if (!text) return undefined;
  const addr = parseAddr(text);
  if (addr.family !== family) {
    throw new InterfaceSelectionError(`--${flag}=${text} is not an IPv${family} address`);
  }
  return addr;
}

/**
 * Pick the external interface as flanneld does: the `--iface` values in order, then each
 * `--iface-regex`, then `--iface-can-reach`; with none given, the interface holding the public
 * IP, else the default route's interface.
 */
export async function selectExternalInterface(
  options: InterfaceOptions,
  stack: IPStack,
  source: InterfaceSource,
): Promise<ExternalInterface> {
  if (!stack.v4 && !stack.v6) throw new InterfaceSelectionError("neither IPv4 nor IPv6 is enabled");
  const publicIP = parsePublic(options.publicIP, 4, "public-ip");
  const publicIPv6 = parsePublic(options.publicIPv6, 6, "public-ipv6");
  const ifaces = await source.interfaces();
  const explicit = options.iface.length || options.ifaceRegex.length || options.ifaceCanReach;
  let chosen: Candidate | undefined;
  if (!explicit) {
    chosen = await byDefault(options, source, ifaces, stack);
  } else {
    for (const value of options.iface) chosen ??= byIface(value, ifaces, stack);
    for (const pattern of options.ifaceRegex) chosen ??= byRegex(pattern, ifaces, stack);
    if (options.ifaceCanReach) {
      chosen ??= await byReach(options.ifaceCanReach, source, ifaces, stack);
    }
  }
  if (!chosen) {
    const tried = [...options.iface, ...options.ifaceRegex, options.ifaceCanReach].filter(Boolean);
    throw new InterfaceSelectionError(
      tried.length
        ? `no interface matched ${tried.join(", ")} with a usable address`
        : "no default route found; choose the interface with --iface",
    );
  }
  if (chosen.info.mtu <= 0) {
    throw new InterfaceSelectionError(`interface ${chosen.info.name} reports MTU 0`);
  }
  return {
    name: chosen.info.name,
    index: chosen.info.index,
    mtu: chosen.info.mtu,
    ifaceAddr: chosen.v4,
    ifaceAddrV6: chosen.v6,
    publicIP: stack.v4 ? publicIP ?? chosen.v4 : undefined,
    publicIPv6: stack.v6 ? publicIPv6 ?? chosen.v6 : undefined,
  };
}
