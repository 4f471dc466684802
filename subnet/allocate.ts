/**
 * Pure subnet-allocation rules (spec §3.4): which leases fit the config, and a uniformly
 * random free subnet. No etcd here, so everything is property-tested.
 *
 * @module
 */
import type { FamilyConfig, NetworkConfig } from "../config/network_config.ts";
import { bitsOf, type IPNet, netOverlaps, netSize } from "../ip/mod.ts";
import type { LeaseSubnets } from "./lease.ts";

/**
 * Whether `net` fits one family's config: a subnet of SubnetLen with base in [SubnetMin,
 * SubnetMax] when the family is enabled, no subnet at all when it is disabled.
 */
export function fitsFamily(family: FamilyConfig | undefined, net: IPNet | undefined): boolean {
  if (!family) return net === undefined;
  return net !== undefined && net.family === family.network.family &&
    net.prefix === family.subnetLen && net.base >= family.subnetMin.value &&
    net.base <= family.subnetMax.value;
}

/** Whether a lease could have been allocated under `config` ({@link fitsFamily} for both families). */
export function fitsConfig(config: NetworkConfig, subnets: LeaseSubnets): boolean {
  return fitsFamily(config.ipv4, subnets.subnet) && fitsFamily(config.ipv6, subnets.ipv6Subnet);
}

/** Whether `net` overlaps none of `occupied`. */
export function isFree(net: IPNet, occupied: readonly IPNet[]): boolean {
  return !occupied.some((other) => netOverlaps(net, other));
}

/** A uniformly random bigint in [0, n), n > 0 (crypto-grade, no modulo bias). */
export function randomBelow(n: bigint): bigint {
  const bits = n.toString(2).length;
  const bytes = new Uint8Array(Math.ceil(bits / 8));
  const excess = BigInt(bytes.length * 8 - bits);
  for (;;) {
    crypto.getRandomValues(bytes);
    const value = bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n) >> excess;
    if (value < n) return value;
  }
}

/** Candidate indices (base / step) blocked by occupied networks, merged and sorted. */
function blockedRanges(
  occupied: readonly IPNet[],
  family: FamilyConfig,
  step: bigint,
  first: bigint,
  last: bigint,
): Array<[bigint, bigint]> {
  const ranges: Array<[bigint, bigint]> = [];
  for (const net of occupied) {
    if (net.family !== family.network.family) continue;
    const lo = net.base / step;
    const hi = (net.base + netSize(net) - 1n) / step;
    if (hi >= first && lo <= last) ranges.push([lo < first ? first : lo, hi > last ? last : hi]);
  }
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const merged: Array<[bigint, bigint]> = [];
  for (const [lo, hi] of ranges) {
    const top = merged.at(-1);
    if (top && lo <= top[1] + 1n) top[1] = hi > top[1] ? hi : top[1];
    else merged.push([lo, hi]);
  }
  return merged;
}

/** Number of candidate subnets in [SubnetMin, SubnetMax] overlapping none of `occupied`. */
export function countFreeSubnets(family: FamilyConfig, occupied: readonly IPNet[]): bigint {
  return pickFree(family, occupied, () => 0n).free;
}

/**
 * A subnet of `family.subnetLen` with base in [SubnetMin, SubnetMax] overlapping none of
 * `occupied`, chosen uniformly among ALL such candidates (flannel only looks at the first 100,
 * quirk 30). Costs O(occupied · log occupied) whatever the size of the range. Undefined when
 * the range is full.
 */
export function pickFreeSubnet(
  family: FamilyConfig,
  occupied: readonly IPNet[],
  random: (n: bigint) => bigint = randomBelow,
): IPNet | undefined {
  return pickFree(family, occupied, random).subnet;
}

function pickFree(
  family: FamilyConfig,
  occupied: readonly IPNet[],
  random: (n: bigint) => bigint,
): { free: bigint; subnet?: IPNet } {
  const fam = family.network.family;
  const step = 1n << BigInt(bitsOf(fam) - family.subnetLen);
  const first = (family.subnetMin.value + step - 1n) / step;
  const last = family.subnetMax.value / step;
  if (last < first) return { free: 0n };
  const blocked = blockedRanges(occupied, family, step, first, last);
  const free = blocked.reduce((n, [lo, hi]) => n - (hi - lo + 1n), last - first + 1n);
  if (free === 0n) return { free };
  let remaining = random(free);
  let cursor = first;
  for (const [lo, hi] of blocked) {
    if (remaining < lo - cursor) break;
    remaining -= lo - cursor;
    cursor = hi + 1n;
  }
  return {
    free,
    subnet: { family: fam, base: (cursor + remaining) * step, prefix: family.subnetLen },
  };
}
