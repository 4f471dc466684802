/**
 * Which routes Tartan may add, replace or delete (issue 18): those strictly inside a cluster
 * network, not over this node's own subnet, and never at a destination where the kernel holds a
 * route for someone else (`proto kernel`, another device's, a blackhole or other non-unicast
 * route). Pure: the netlink port (`netlink_port.ts`) reads the kernel and applies the verdicts.
 *
 * @module
 */
import { RTN_UNICAST, RTPROT_KERNEL } from "../ffi/netlink/constants.ts";
import type { Route } from "../ffi/netlink/route.ts";
import { formatNet, type IPNet, netContainsNet, netEqual, netOverlaps } from "../ip/mod.ts";
import type { RouteObject } from "./kernel_objects.ts";

/** What a backend owns in the main routing table. */
export interface RouteScope {
  /** Cluster networks: routes to subnets strictly inside them are ours. */
  readonly networks: readonly IPNet[];
  /** Our own subnets, whose routes belong to the bridge and the CNI plugin. */
  readonly ownSubnets: readonly IPNet[];
  /** Interfaces whose routes into the cluster networks we manage (tunnel, external). */
  readonly routeDevices: readonly number[];
}

/** Destinations Tartan may route: strictly inside a cluster network, clear of our own subnet. */
export function isOurDestination(scope: RouteScope, dst: IPNet): boolean {
  return scope.networks.some((n) => netContainsNet(n, dst) && !netEqual(n, dst)) &&
    !scope.ownSubnets.some((own) => netOverlaps(own, dst));
}

/** A kernel route of a kind Tartan writes: unicast, not `proto kernel`, on one of our devices. */
function isOurKind(scope: RouteScope, route: Route): boolean {
  return route.type === RTN_UNICAST && route.protocol !== RTPROT_KERNEL &&
    route.oif !== undefined && scope.routeDevices.includes(route.oif);
}

/** The main table's routes at our destinations, sorted into ours and someone else's. */
export interface ClassifiedRoutes {
  /** Ours, as route objects (what the reconcile loop compares with what it wants). */
  readonly ours: RouteObject[];
  /** Destinations (`formatNet`) where the kernel holds a route that is not ours: hands off. */
  readonly foreign: ReadonlySet<string>;
}

/** Sort the main table's routes; a destination with any foreign route is foreign as a whole. */
export function classifyRoutes(scope: RouteScope, table: readonly Route[]): ClassifiedRoutes {
  const inScope = table.filter((r) => isOurDestination(scope, r.dst));
  const foreign = new Set(inScope.filter((r) => !isOurKind(scope, r)).map((r) => formatNet(r.dst)));
  const ours = inScope.filter((r) => !foreign.has(formatNet(r.dst)))
    .map((r) => ({ dst: r.dst, gateway: r.gateway, oif: r.oif, onlink: r.onlink }));
  return { ours, foreign };
}

/** Why Tartan must not write or delete `route`, or undefined when it may. */
export function routeRefusal(
  scope: RouteScope,
  foreign: ReadonlySet<string>,
  route: RouteObject,
): string | undefined {
  if (!isOurDestination(scope, route.dst)) {
    return "refused: not inside the cluster network, or over this node's own subnet";
  }
  if (route.gateway?.value === 0n) return "refused: unspecified gateway";
  if (foreign.has(formatNet(route.dst))) {
    return "refused: the kernel holds a route there that Tartan does not own";
  }
  return undefined;
}
