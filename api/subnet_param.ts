/**
 * Subnet parameters of the admin API (`/v1/leases/:subnet`, `?subnet=`), accepted in the two
 * forms operators have at hand: the etcd lease key (`10.244.3.0-24`,
 * `10.244.3.0-24&fc00:0:0:22::-64`) and CIDR text (`10.244.3.0/24`).
 *
 * @module
 */
import { type IPNet, netContainsNet, netEqual, parseNet } from "../ip/mod.ts";
import type { Lease } from "../subnet/lease.ts";

/** Longer input cannot be a subnet; refusing it early bounds the work per request. */
const MAX_LENGTH = 100;

/** Raised for a parameter that is neither a lease key nor a CIDR. */
export class SubnetParamError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`invalid subnet ${JSON.stringify(input.slice(0, MAX_LENGTH))}: ${reason}`);
    this.name = "SubnetParamError";
  }
}

const NO_IPV4 = "0.0.0.0-0";

const EXPECTED = "expected a lease key like 10.244.3.0-24 or a CIDR like 10.244.3.0/24";

function parsePart(input: string, part: string): IPNet {
  // Key form: the last "-" separates the prefix length (addresses never contain "-").
  const dash = part.lastIndexOf("-");
  const cidr = dash < 0 ? part : `${part.slice(0, dash)}/${part.slice(dash + 1)}`;
  try {
    return parseNet(cidr);
  } catch {
    throw new SubnetParamError(input, EXPECTED);
  }
}

/**
 * Parse a subnet parameter into one network per family (at most one IPv4 and one IPv6).
 *
 * @example
 * ```ts
 * parseSubnetParam("10.244.3.0-24&fc00:0:0:22::-64"); // [10.244.3.0/24, fc00:0:0:22::/64]
 * ```
 */
export function parseSubnetParam(input: string): IPNet[] {
  if (input.length === 0 || input.length > MAX_LENGTH) {
    throw new SubnetParamError(input, EXPECTED);
  }
  const parts = input.split("&");
  if (parts.length > 2) throw new SubnetParamError(input, "more than two subnets");
  // `0.0.0.0-0&<v6>` is how flannel keys an IPv6-only lease: the IPv4 part names nothing.
  if (parts.length === 2 && parts[0] === NO_IPV4) parts.shift();
  const nets = parts.map((part) => parsePart(input, part));
  if (nets.length === 2 && nets[0].family === nets[1].family) {
    throw new SubnetParamError(input, "two subnets of the same family");
  }
  return nets;
}

function subnetOf(lease: Lease, family: 4 | 6): IPNet | undefined {
  return family === 4 ? lease.subnet : lease.ipv6Subnet;
}

/** Whether the lease holds exactly these networks (each of its family). */
export function leaseHasSubnets(lease: Lease, nets: readonly IPNet[]): boolean {
  return nets.every((net) => {
    const own = subnetOf(lease, net.family);
    return own !== undefined && netEqual(own, net);
  });
}

/** Whether the lease's subnet of each given family lies inside the given network. */
export function leaseWithin(lease: Lease, nets: readonly IPNet[]): boolean {
  return nets.every((net) => {
    const own = subnetOf(lease, net.family);
    return own !== undefined && netContainsNet(net, own);
  });
}
