/**
 * The tunnel-device address convention shared by vxlan, udp and ipip (spec §6.1): the node's own
 * subnet network address with a full-length prefix (`10.5.34.0/32`), so that the kernel creates
 * no connected or broadcast route; any other address inside the cluster network is removed.
 *
 * @module
 */
import { deleteAddr, listAddrs, replaceAddr } from "../ffi/netlink/addr.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import { addrEqual, bitsOf, type IPNet, netAddr, netContains } from "../ip/mod.ts";

/** Put `subnet`'s base address on the device and drop stale addresses of `network`. */
export function assignTunnelAddress(
  h: NetlinkHandle,
  index: number,
  subnet: IPNet,
  network: IPNet,
): void {
  const wanted = netAddr(subnet);
  const prefix = bitsOf(subnet.family);
  for (const addr of listAddrs(h, { index, family: subnet.family })) {
    const isWanted = addrEqual(addr.address, wanted) && addr.prefix === prefix;
    if (!isWanted && netContains(network, addr.address)) deleteAddr(h, addr);
  }
  replaceAddr(h, { index, address: wanted, prefix });
}
