/**
 * The {@link KernelPort} of route-based backends, over netlink: which routes, neighbours and FDB
 * entries are "ours", and pipelined writes so that 10 000 peers cost a few syscalls.
 *
 * @module
 */
import { NTF_SELF, NUD_PERMANENT, RT_TABLE_MAIN } from "../ffi/netlink/constants.ts";
import { fdbRequest, listFdb, listNeighs, neighRequest } from "../ffi/netlink/neigh.ts";
import { listRoutes, routeRequest } from "../ffi/netlink/route.ts";
import {
  type NetlinkError,
  type NetlinkHandle,
  type NetlinkRequest,
} from "../ffi/netlink/socket.ts";
import type { KernelObjects, RouteObject } from "./kernel_objects.ts";
import { keyOf } from "./kernel_objects.ts";
import type { KernelPort, ObjectFailure } from "./route_sync.ts";
import { classifyRoutes, routeRefusal, type RouteScope } from "./route_ownership.ts";
import { executeBatch } from "../ffi/netlink/batch.ts";

/** What a backend owns in the kernel. */
export interface PortScope extends RouteScope {
  /** Tunnel devices whose permanent neighbours and FDB entries we manage (vxlan). */
  readonly tunnelDevices: readonly number[];
}

/** Deleting what is already gone is success: the goal state is reached. */
const ABSENT = new Set(["ENOENT", "ESRCH", "ENODEV"]);

/**
 * Objects written per {@link executeBatch} call (as many as one `sendto` carries): only one
 * chunk's request objects and buffers are alive at a time, so writing 30 000 objects does not
 * grow the heap by their full size.
 */
const CHUNK = 2048;

/**
 * A netlink {@link KernelPort} limited to `scope`. Routes it writes or deletes must be inside the
 * scope's networks, and never one the kernel holds for someone else at that destination (a
 * `proto kernel` route, another device's route, a blackhole): those are refused as failures.
 * Foreign destinations are learnt from every {@link KernelPort.list} (each full resync).
 */
export function netlinkPort(h: NetlinkHandle, scope: PortScope): KernelPort {
  /** Destinations inside the networks where the kernel holds a route that is not ours. */
  let foreign: ReadonlySet<string> = new Set();

  /** Split routes into those allowed and failures for the refused ones. */
  function screen(routes: readonly RouteObject[]): [RouteObject[], ObjectFailure[]] {
    const allowed: RouteObject[] = [];
    const refused: ObjectFailure[] = [];
    for (const route of routes) {
      const why = routeRefusal(scope, foreign, route);
      if (why) refused.push({ kind: "route", key: keyOf.route(route), error: why });
      else allowed.push(route);
    }
    return [allowed, refused];
  }

  function run<T>(
    kind: ObjectFailure["kind"],
    objects: readonly T[],
    request: (object: T) => NetlinkRequest,
    key: (object: T) => string,
    deleting: boolean,
  ): ObjectFailure[] {
    const failures: ObjectFailure[] = [];
    for (let first = 0; first < objects.length; first += CHUNK) {
      const chunk = objects.slice(first, first + CHUNK);
      executeBatch(h, chunk.map(request)).forEach((err: NetlinkError | undefined, i) => {
        if (err && !(deleting && ABSENT.has(err.code))) {
          failures.push({ kind, key: key(chunk[i]), error: err.message });
        }
      });
    }
    return failures;
  }

  return {
    list() {
      const classified = classifyRoutes(scope, listRoutes(h, { table: RT_TABLE_MAIN }));
      foreign = classified.foreign;
      const routes = classified.ours;
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
      const [routes, refused] = screen(objects.routes);
      return Promise.resolve([
        ...refused,
        ...run("neigh", objects.neighs, (n) => neighRequest("replace", n), keyOf.neigh, false),
        ...run("fdb", objects.fdb, (f) => fdbRequest("replace", f), keyOf.fdb, false),
        ...run("route", routes, (r) => routeRequest("replace", r), keyOf.route, false),
      ]);
    },
    remove(objects: KernelObjects) {
      const deleteRoute = (r: RouteObject) =>
        routeRequest("delete", { ...r, table: RT_TABLE_MAIN });
      const [routes, refused] = screen(objects.routes);
      return Promise.resolve([
        ...refused,
        ...run("route", routes, deleteRoute, keyOf.route, true),
        ...run("neigh", objects.neighs, (n) => neighRequest("delete", n), keyOf.neigh, true),
        ...run("fdb", objects.fdb, (f) => fdbRequest("delete", f), keyOf.fdb, true),
      ]);
    },
  };
}
