/**
 * What to probe for each peer lease: its public IP (the underlay) and, for backends that put the
 * subnet's network address on a tunnel device (vxlan, udp, ipip, wireguard: `10.244.3.0/32`),
 * that address, reached through the same routes and encapsulation as the pods' traffic.
 *
 * A node probes in one family: IPv4 when it has it, else (an IPv6-only cluster) IPv6, with the
 * leases' `PublicIPv6` and IPv6 subnets.
 *
 * @module
 */
import { hasTunnelAddress } from "../backends/registry.ts";
import { addrEqual, type Family, type IPAddr, type IPNet, netAddr } from "../ip/mod.ts";
import { formatLeaseKey, type Lease } from "../subnet/lease.ts";

/** One peer to probe. */
export interface ProbeTarget {
  /** The lease key (`10.244.3.0-24`), unique per peer. */
  readonly key: string;
  /** The peer's subnet in the probed family. */
  readonly subnet: IPNet;
  /** The peer's public address in the probed family: the underlay target. */
  readonly publicIP: IPAddr;
  /** The peer's tunnel address: the overlay target (absent for host-gw and alloc). */
  readonly overlay?: IPAddr;
}

/** A lease's subnet and public address in `family` (either may be absent). */
function familyOf(lease: Lease, family: Family): { subnet?: IPNet; publicIP?: IPAddr } {
  return family === 4
    ? { subnet: lease.subnet, publicIP: lease.attrs.publicIP }
    : { subnet: lease.ipv6Subnet, publicIP: lease.attrs.publicIPv6 };
}

/** A node's overlay address in `family` under `backendType`, or undefined when it has none. */
export function overlayAddress(
  backendType: string,
  lease: Lease,
  family: Family,
): IPAddr | undefined {
  const { subnet } = familyOf(lease, family);
  if (!hasTunnelAddress(backendType) || !subnet) return undefined;
  return netAddr(subnet);
}

/**
 * The peers to probe among `leases` in `family`: every lease but our own and those without a
 * subnet or a public address (unset or all zeros) in that family.
 */
export function probeTargets(
  leases: Iterable<Lease>,
  own: Lease | undefined,
  backendType: string,
  family: Family,
): ProbeTarget[] {
  const ownKey = own && formatLeaseKey(own);
  const targets: ProbeTarget[] = [];
  for (const lease of leases) {
    const key = formatLeaseKey(lease);
    const { subnet, publicIP } = familyOf(lease, family);
    if (key === ownKey || !subnet || !publicIP || publicIP.value === 0n) continue;
    targets.push({ key, subnet, publicIP, overlay: overlayAddress(backendType, lease, family) });
  }
  return targets;
}

/** Whether two targets probe the same addresses (a changed lease starts its history anew). */
export function sameTarget(a: ProbeTarget, b: ProbeTarget): boolean {
  return addrEqual(a.publicIP, b.publicIP) &&
    (a.overlay === undefined
      ? b.overlay === undefined
      : b.overlay !== undefined && addrEqual(a.overlay, b.overlay));
}
