/**
 * `--ip-blackhole-route` (spec §7.3): a `blackhole <own subnet>` route in the main table, so that
 * packets for addresses of this node's subnet that no pod holds are dropped here instead of
 * following the default route out of the node (or, with the udp backend, into the tunnel).
 *
 * Fixes over flannel: the route carries the highest metric. Flannel's metric-0 blackhole either
 * fails with EEXIST once the bridge holds the subnet, or, added first, shadows the bridge's own
 * prefix route and cuts the node's pods off. Ours only catches what no other route for the subnet
 * takes. It is added at start (flannel waits one period) and put back within a period when it
 * goes missing.
 *
 * @module
 */
import { RTN_BLACKHOLE } from "../ffi/netlink/constants.ts";
import { addRoute, type Route } from "../ffi/netlink/route.ts";
import { NetlinkError, type NetlinkHandle } from "../ffi/netlink/socket.ts";
import { errorText, type Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import { formatNet, type IPNet } from "../ip/mod.ts";

/** The lowest priority there is: the bridge's prefix route (metric 0) wins while it exists. */
export const BLACKHOLE_METRIC = 0xffff_ffff;

/** Whether `route` is a blackhole route this module adds. */
export function isOurBlackhole(route: Route): boolean {
  return route.type === RTN_BLACKHOLE && route.priority === BLACKHOLE_METRIC;
}

/** Add the blackhole route of each subnet that lacks one; returns the subnets it had to add. */
export function ensureBlackholeRoutes(h: NetlinkHandle, subnets: readonly IPNet[]): IPNet[] {
  const added: IPNet[] = [];
  for (const dst of subnets) {
    try {
      addRoute(h, { dst, type: RTN_BLACKHOLE, priority: BLACKHOLE_METRIC });
      added.push(dst);
    } catch (err) {
      // Same destination and metric already in the table: ours is there.
      if (!(err instanceof NetlinkError && err.code === "EEXIST")) throw err;
    }
  }
  return added;
}

/**
 * Keep the blackhole routes of `subnets` in place, checking every `periodSeconds`, until
 * `signal` aborts. Never throws: a failed check is logged and retried next period.
 */
export async function maintainBlackholeRoutes(
  h: NetlinkHandle,
  subnets: readonly IPNet[],
  periodSeconds: number,
  log: Logger,
  signal: AbortSignal,
): Promise<void> {
  while (!signal.aborted) {
    try {
      for (const subnet of ensureBlackholeRoutes(h, subnets)) {
        log.info("blackhole route added", { subnet: formatNet(subnet) });
      }
    } catch (err) {
      log.warn("blackhole route check failed", { error: errorText(err) });
    }
    await sleep(periodSeconds * 1000, signal);
  }
}
