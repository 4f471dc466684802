/**
 * IP networks (CIDRs) and the subnet arithmetic that leases need.
 *
 * @module
 */
import {
  bitsOf,
  type Family,
  formatAddr,
  type IPAddr,
  IPParseError,
  maxValue,
  parseAddr,
} from "./addr.ts";

/** A network: `base` always has its host bits cleared. */
export interface IPNet {
  readonly family: Family;
  readonly base: bigint;
  readonly prefix: number;
}

/** The mask of a prefix length as an integer of the family's width. */
export function prefixMask(family: Family, prefix: number): bigint {
  const bits = BigInt(bitsOf(family));
  return maxValue(family) ^ ((1n << (bits - BigInt(prefix))) - 1n);
}

/** Build a network from an address and prefix, clearing host bits. */
export function makeNet(addr: IPAddr, prefix: number): IPNet {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bitsOf(addr.family)) {
    throw new RangeError(`prefix /${prefix} is out of range for IPv${addr.family}`);
  }
  return { family: addr.family, base: addr.value & prefixMask(addr.family, prefix), prefix };
}

const PREFIX = /^(0|[1-9][0-9]{0,2})$/;

/**
 * Parse `addr/len`, clearing host bits (`10.5.3.7/16` ⇒ `10.5.0.0/16`), as flannel does.
 *
 * @example
 * ```ts
 * formatNet(parseNet("10.5.3.7/16")); // "10.5.0.0/16"
 * ```
 */
export function parseNet(text: string): IPNet {
  const slash = text.indexOf("/");
  if (slash < 0) throw new IPParseError(text, "is not a valid CIDR (missing /prefix)");
  const addr = parseAddr(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  const prefix = Number(lenText);
  if (!PREFIX.test(lenText) || prefix > bitsOf(addr.family)) {
    throw new IPParseError(text, "is not a valid CIDR");
  }
  return makeNet(addr, prefix);
}

/** Like {@link parseNet} but returns undefined instead of throwing. */
export function tryParseNet(text: string): IPNet | undefined {
  try {
    return parseNet(text);
  } catch {
    return undefined;
  }
}

/** The network's base address. */
export function netAddr(net: IPNet): IPAddr {
  return { family: net.family, value: net.base };
}

/** Canonical `base/prefix` text. */
export function formatNet(net: IPNet): string {
  return `${formatAddr(netAddr(net))}/${net.prefix}`;
}

/** Number of addresses in the network. */
export function netSize(net: IPNet): bigint {
  return 1n << BigInt(bitsOf(net.family) - net.prefix);
}

/** The last address in the network. */
export function netLast(net: IPNet): IPAddr {
  return { family: net.family, value: net.base + netSize(net) - 1n };
}

/** Whether `addr` lies inside `net`. */
export function netContains(net: IPNet, addr: IPAddr): boolean {
  return addr.family === net.family &&
    (addr.value & prefixMask(net.family, net.prefix)) === net.base;
}

/** Whether `inner` lies entirely inside `outer`. */
export function netContainsNet(outer: IPNet, inner: IPNet): boolean {
  return inner.prefix >= outer.prefix && netContains(outer, netAddr(inner));
}

/** Whether two networks share any address (equal under the shorter mask, as flannel checks). */
export function netOverlaps(a: IPNet, b: IPNet): boolean {
  if (a.family !== b.family) return false;
  const mask = prefixMask(a.family, Math.min(a.prefix, b.prefix));
  return (a.base & mask) === (b.base & mask);
}

/** Network equality. */
export function netEqual(a: IPNet, b: IPNet): boolean {
  return a.family === b.family && a.base === b.base && a.prefix === b.prefix;
}

/** The `n`th subnet of length `prefix` inside `net` (0 = the first). */
export function nthSubnet(net: IPNet, prefix: number, n: bigint): IPNet {
  if (prefix < net.prefix || prefix > bitsOf(net.family)) {
    throw new RangeError(`/${prefix} is not a subnet length of ${formatNet(net)}`);
  }
  const step = 1n << BigInt(bitsOf(net.family) - prefix);
  const count = 1n << BigInt(prefix - net.prefix);
  if (n < 0n || n >= count) throw new RangeError(`subnet #${n} is outside ${formatNet(net)}`);
  return { family: net.family, base: net.base + n * step, prefix };
}

/** The next network of the same length, or undefined past the end of the address space. */
export function nextSubnet(net: IPNet): IPNet | undefined {
  const base = net.base + netSize(net);
  return base > maxValue(net.family) ? undefined : { ...net, base };
}

/**
 * Every subnet of length `prefix` whose base lies in [min, max], in ascending order.
 * Lazy, so a /8 split into /30s costs nothing until iterated; stops at the end of the family's
 * range instead of wrapping (flannel quirk 30).
 */
export function* enumerateSubnets(
  min: IPAddr,
  max: IPAddr,
  prefix: number,
): Generator<IPNet> {
  let next: IPNet | undefined = makeNet(min, prefix);
  if (next.base < min.value) next = nextSubnet(next);
  while (next && next.base <= max.value) {
    yield next;
    next = nextSubnet(next);
  }
}

/** Number of subnets {@link enumerateSubnets} would yield, without iterating. */
export function countSubnets(min: IPAddr, max: IPAddr, prefix: number): bigint {
  const step = 1n << BigInt(bitsOf(min.family) - prefix);
  const first = (min.value + step - 1n) / step;
  const last = max.value / step;
  return last >= first ? last - first + 1n : 0n;
}

/** First host address (`base + 1`), what subnet.env writes as FLANNEL_SUBNET. */
export function firstHost(net: IPNet): IPAddr {
  return { family: net.family, value: net.base + 1n };
}
