/**
 * What to probe for each peer lease: its public IP (the underlay) and, for backends that put the
 * subnet's network address on a tunnel device (vxlan, udp, ipip, wireguard: `10.244.3.0/32`),
 * that address, reached through the same routes and encapsulation as the pods' traffic.
 *
 * @module
 */
import { hasTunnelAddress } from "../backends/registry.ts";
import { addrEqual, type IPAddr, type IPNet, netAddr } from "../ip/mod.ts";
import { formatLeaseKey, type Lease } from "../subnet/lease.ts";

/** One peer to probe. */
export interface ProbeTarget {
  /** The lease key (`10.244.3.0-24`), unique per peer. */
  readonly key: string;
  readonly subnet: IPNet;
  /** The peer's public IPv4 address: the underlay target. */
  readonly publicIP: IPAddr;
  /** The peer's tunnel address: the overlay target (absent for host-gw and alloc). */
  readonly overlay?: IPAddr;
}

/** A node's overlay address under `backendType`, or undefined when it has none. */
export function overlayAddress(backendType: string, lease: Lease): IPAddr | undefined {
  if (!hasTunnelAddress(backendType) || !lease.subnet) return undefined;
  return netAddr(lease.subnet);
}

/**
 * The peers to probe among `leases`: every IPv4 lease but our own and those without a public
 * IPv4 address (IPv6-only peers are not probed yet).
 */
export function probeTargets(
  leases: Iterable<Lease>,
  own: Lease | undefined,
  backendType: string,
): ProbeTarget[] {
  const ownKey = own && formatLeaseKey(own);
  const targets: ProbeTarget[] = [];
  for (const lease of leases) {
    const key = formatLeaseKey(lease);
    if (key === ownKey || !lease.subnet || lease.attrs.publicIP.value === 0n) continue;
    targets.push({
      key,
      subnet: lease.subnet,
      publicIP: lease.attrs.publicIP,
      overlay: overlayAddress(backendType, lease),
    });
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
