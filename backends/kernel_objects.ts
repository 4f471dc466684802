/**
 * The kernel objects route-based backends want per peer, and the diff between the objects
 * wanted and the objects present. Pure: the reconcile loop (`route_sync.ts`) applies the diff.
 *
 * @module
 */
import { formatAddr, formatNet, type IPAddr, type IPNet } from "../ip/mod.ts";

/** A route in the main table. */
export interface RouteObject {
  readonly dst: IPNet;
  readonly gateway?: IPAddr;
  /** Interface index; absent lets the kernel pick (vxlan DirectRouting). */
  readonly oif?: number;
  readonly onlink?: boolean;
}

/** A permanent neighbour entry (vxlan: peer VTEP address → peer VTEP MAC). */
export interface NeighObject {
  readonly index: number;
  readonly ip: IPAddr;
  readonly mac: string;
}

/** A bridge FDB `self` entry (vxlan: peer VTEP MAC → peer public IP). */
export interface FdbObject {
  readonly index: number;
  readonly mac: string;
  readonly dst: IPAddr;
}

/** Everything one peer (or a whole node) needs, by kind. */
export interface KernelObjects {
  readonly routes: readonly RouteObject[];
  readonly neighs: readonly NeighObject[];
  readonly fdb: readonly FdbObject[];
}

export const NO_OBJECTS: KernelObjects = { routes: [], neighs: [], fdb: [] };

/** Identity of an object: two objects with one key cannot both exist in the kernel. */
export const keyOf = {
  route: (r: RouteObject) => formatNet(r.dst),
  neigh: (n: NeighObject) => `${n.index}/${formatAddr(n.ip)}`,
  fdb: (f: FdbObject) => `${f.index}/${f.mac}`,
};

/** Full content of an object: equal text means nothing to change. */
const contentOf = {
  route: (r: RouteObject) =>
    `${formatNet(r.dst)} via ${r.gateway ? formatAddr(r.gateway) : "-"} dev ${r.oif ?? "-"}${
      r.onlink ? " onlink" : ""
    }`,
  neigh: (n: NeighObject) => `${keyOf.neigh(n)} ${n.mac}`,
  fdb: (f: FdbObject) => `${keyOf.fdb(f)} ${formatAddr(f.dst)}`,
};

/** What to write and what to delete to turn the actual objects into the desired ones. */
export interface KernelDiff {
  /** Objects missing or different: written with replace semantics. */
  readonly replace: KernelObjects;
  /** Objects present that nothing wants. */
  readonly remove: KernelObjects;
}

function diffKind<T>(
  desired: readonly T[],
  actual: readonly T[],
  key: (t: T) => string,
  content: (t: T) => string,
): { replace: T[]; remove: T[] } {
  const actualByKey = new Map(actual.map((a) => [key(a), content(a)]));
  const desiredKeys = new Set<string>();
  const replace: T[] = [];
  for (const d of desired) {
    const k = key(d);
    desiredKeys.add(k);
    if (actualByKey.get(k) !== content(d)) replace.push(d);
  }
  const remove = actual.filter((a) => !desiredKeys.has(key(a)));
  return { replace, remove };
}

/**
 * Diff desired against actual kernel objects. Linear in their number (maps by key), so a full
 * resync of 10 000 peers stays cheap.
 */
export function diffKernelObjects(desired: KernelObjects, actual: KernelObjects): KernelDiff {
  const routes = diffKind(desired.routes, actual.routes, keyOf.route, contentOf.route);
  const neighs = diffKind(desired.neighs, actual.neighs, keyOf.neigh, contentOf.neigh);
  const fdb = diffKind(desired.fdb, actual.fdb, keyOf.fdb, contentOf.fdb);
  return {
    replace: { routes: routes.replace, neighs: neighs.replace, fdb: fdb.replace },
    remove: { routes: routes.remove, neighs: neighs.remove, fdb: fdb.remove },
  };
}

/** Concatenate object sets. */
export function mergeObjects(sets: Iterable<KernelObjects>): KernelObjects {
  const routes: RouteObject[] = [];
  const neighs: NeighObject[] = [];
  const fdb: FdbObject[] = [];
  for (const set of sets) {
    routes.push(...set.routes);
    neighs.push(...set.neighs);
    fdb.push(...set.fdb);
  }
  return { routes, neighs, fdb };
}

/** Number of objects in a set. */
export function countObjects(set: KernelObjects): number {
  return set.routes.length + set.neighs.length + set.fdb.length;
}
