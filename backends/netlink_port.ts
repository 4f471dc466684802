/**
 * The {@link KernelPort} of route-based backends, over netlink: which routes, neighbours and FDB
 * entries are "ours", and pipelined writes so that 10 000 peers cost a few syscalls.
 *
 * @module
 */
import {
  NTF_SELF,
  NUD_PERMANENT,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTPROT_KERNEL,
} from "../ffi/netlink/constants.ts";
import { fdbRequest, listFdb, listNeighs, neighRequest } from "../ffi/netlink/neigh.ts";
import { listRoutes, routeRequest } from "../ffi/netlink/route.ts";
import {
  executeBatch,
  type NetlinkError,
  type NetlinkHandle,
  type NetlinkRequest,
} from "../ffi/netlink/socket.ts";
import { type IPNet, netContainsNet, netEqual } from "../subnet/ip/mod.ts";
import type { KernelObjects } from "./kernel_objects.ts";
import { keyOf } from "./kernel_objects.ts";
import type { KernelPort, ObjectFailure } from "./route_sync.ts";

/** What a backend owns in the kernel. */
export interface PortScope {
  /** Cluster networks: routes to subnets inside them are ours (except our own subnets). */
  readonly networks: readonly IPNet[];
  /** Our own subnets, whose routes belong to the bridge and the CNI plugin. */
  readonly ownSubnets: readonly IPNet[];
  /** Interfaces whose routes into the cluster networks we manage (tunnel, external). */
  readonly routeDevices: readonly number[];
  /** Tunnel devices whose permanent neighbours and FDB entries we manage (vxlan). */
  readonly tunnelDevices: readonly number[];
}

/** Deleting what is already gone is success: the goal state is reached. */
const ABSENT = new Set(["ENOENT", "ESRCH", "ENODEV"]);

function isOurRoute(scope: PortScope, dst: IPNet): boolean {
  return scope.networks.some((n) => netContainsNet(n, dst) && !netEqual(n, dst)) &&
    !scope.ownSubnets.some((own) => netEqual(own, dst));
}

/** A netlink {@link KernelPort} limited to `scope`. */
export function netlinkPort(h: NetlinkHandle, scope: PortScope): KernelPort {
  function run(
    kind: ObjectFailure["kind"],
    keys: string[],
    requests: NetlinkRequest[],
    deleting: boolean,
  ): ObjectFailure[] {
    if (requests.length === 0) return [];
    const results = executeBatch(h, requests);
    const failures: ObjectFailure[] = [];
    results.forEach((err: NetlinkError | undefined, i) => {
      if (err && !(deleting && ABSENT.has(err.code))) {
        failures.push({ kind, key: keys[i], error: err.message });
      }
    });
    return failures;
  }

  return {
    list() {
      const routes = listRoutes(h, { table: RT_TABLE_MAIN })
        .filter((r) =>
          r.type === RTN_UNICAST && r.protocol !== RTPROT_KERNEL && r.oif !== undefined &&
          scope.routeDevices.includes(r.oif) && isOurRoute(scope, r.dst)
        )
        .map((r) => ({ dst: r.dst, gateway: r.gateway, oif: r.oif, onlink: r.onlink }));
      const neighs = scope.tunnelDevices.flatMap((index) =>
        listNeighs(h, { index })
          .filter((n) => (n.state & NUD_PERMANENT) !== 0 && n.mac !== undefined)
          .map((n) => ({ index, ip: n.ip, mac: n.mac! }))
      );
      const fdb = scope.tunnelDevices.flatMap((index) =>
        listFdb(h, { index })
          .filter((f) => (f.flags & NTF_SELF) !== 0 && f.dst !== undefined)
          .map((f) => ({ index, mac: f.mac, dst: f.dst! }))
      );
      return Promise.resolve({ routes, neighs, fdb });
    },
    replace(objects: KernelObjects) {
      return Promise.resolve([
        ...run(
          "neigh",
          objects.neighs.map(keyOf.neigh),
          objects.neighs.map((n) => neighRequest("replace", n)),
          false,
        ),
        ...run(
          "fdb",
          objects.fdb.map(keyOf.fdb),
          objects.fdb.map((f) => fdbRequest("replace", f)),
          false,
        ),
        ...run(
          "route",
          objects.routes.map(keyOf.route),
          objects.routes.map((r) => routeRequest("replace", r)),
          false,
        ),
      ]);
    },
    remove(objects: KernelObjects) {
      return Promise.resolve([
        ...run(
          "route",
          objects.routes.map(keyOf.route),
          objects.routes.map((r) => routeRequest("delete", { ...r, table: RT_TABLE_MAIN })),
          true,
        ),
        ...run(
          "neigh",
          objects.neighs.map(keyOf.neigh),
          objects.neighs.map((n) => neighRequest("delete", n)),
          true,
        ),
        ...run(
          "fdb",
          objects.fdb.map(keyOf.fdb),
          objects.fdb.map((f) => fdbRequest("delete", f)),
          true,
        ),
      ]);
    },
  };
}
