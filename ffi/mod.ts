/**
 * Tartan's kernel interface: rtnetlink (links, addresses, routes, neighbours, FDB), TUN devices
 * and the libc plumbing under them, all through Deno FFI (no `ip`/`bridge` processes).
 *
 * @example
 * ```ts
 * import { openNetlink, replaceRoute, closeNetlink } from "./ffi/mod.ts";
 * const h = openNetlink({ netns: "tt-abc123-a" });
 * try {
 *   replaceRoute(h, { dst: parseNet("10.244.2.0/24"), gateway, oif, onlink: true });
 * } finally {
 *   closeNetlink(h);
 * }
 * ```
 *
 * @module
 */
export { errnoName, errnoText } from "./errno.ts";
export { SyscallError } from "./libc.ts";
export { formatMac, MacParseError, normalizeMac, parseMac } from "./mac.ts";
export { inNetns, netnsPath, openNetns } from "./netns.ts";
export * from "./tun.ts";
export * from "./netlink/constants.ts";
export { NetlinkDecodeError } from "./netlink/codec.ts";
export {
  closeNetlink,
  dump,
  execute,
  executeBatch,
  NetlinkError,
  type NetlinkHandle,
  type NetlinkOptions,
  type NetlinkRequest,
  openNetlink,
  readEvents,
  withNetlink,
} from "./netlink/socket.ts";
export * from "./netlink/link.ts";
export * from "./netlink/addr.ts";
export * from "./netlink/route.ts";
export * from "./netlink/neigh.ts";
export { watchEvents } from "./netlink/monitor.ts";
