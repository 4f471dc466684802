/**
 * A {@link BackendContext} for registering a backend inside a test namespace: a veth `ul0` with an
 * underlay address as the external interface and a subnet manager that hands out one fixed
 * lease and records what was published.
 *
 * @module
 */
import type { BackendContext } from "../../backends/backend.ts";
import type { NetworkConfig } from "../../config/network_config.ts";
import { addAddr } from "../../ffi/netlink/addr.ts";
import { addLink } from "../../ffi/netlink/link.ts";
import type { NetlinkHandle } from "../../ffi/netlink/socket.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease, LeaseAttrs, LeaseSubnets } from "../../subnet/lease.ts";
import type { SubnetManager } from "../../subnet/manager.ts";
import { captureLog } from "../helpers/leases.ts";

/** The own lease every test manager hands out. */
export const OWN_SUBNET = "10.244.7.0/24";

export { networkConfig } from "../helpers/network_config.ts";

/** A manager that only acquires (and remembers what it was asked to publish). */
export function fixedLeaseManager(
  own: LeaseSubnets = { subnet: parseNet(OWN_SUBNET) },
): SubnetManager & { published: LeaseAttrs[] } {
  const published: LeaseAttrs[] = [];
  const unused = () => Promise.reject(new Error("not used by backend registration"));
  return {
    published,
    getNetworkConfig: unused,
    acquireLease(attrs: LeaseAttrs): Promise<Lease> {
      published.push(attrs);
      return Promise.resolve({ ...own, attrs });
    },
    renewLease: unused,
    maintainLease: unused,
    watchLeases: () => ({ [Symbol.asyncIterator]: () => ({ next: unused }) }),
    close: () => Promise.resolve(),
  };
}

/**
 * Create `ul0` (198.18.0.11/24, MTU 1500) in the handle's namespace and return a context for it.
 */
export function backendContext(
  h: NetlinkHandle,
  config: NetworkConfig,
): BackendContext & { manager: ReturnType<typeof fixedLeaseManager>; lines: string[] } {
  const ul0 = addLink(h, { kind: "veth", name: "ul0", up: true, peer: { name: "ul0-peer" } });
  const address = parseAddr("198.18.0.11");
  addAddr(h, { index: ul0.index, address, prefix: 24 });
  const { log, lines } = captureLog();
  return {
    config,
    ext: { name: "ul0", index: ul0.index, mtu: 1500, ifaceAddr: address, publicIP: address },
    manager: fixedLeaseManager(),
    netlink: h,
    signal: new AbortController().signal,
    log,
    resyncMs: 60_000,
    lines,
  };
}
