/**
 * One reconcile loop for every route-based backend (vxlan, host-gw, ipip).
 *
 * Flannel appends kernel entries on events and never looks again, so entries of peers that
 * vanished while it was down, or that an operator deleted, stay wrong forever (#2554, #1036,
 * #1788). Here the desired objects are derived from the peer leases and compared with what the
 * kernel holds: incrementally on every lease event (low latency), and in full on a timer and
 * after every snapshot (drift repaired, leftovers removed).
 *
 * @module
 */
import { errorText, type Logger } from "../log.ts";
import { formatAddr, formatNet } from "../ip/mod.ts";
import type { Lease } from "../subnet/lease.ts";
import type { LeaseWatchUpdate } from "../subnet/manager.ts";
import {
  countObjects,
  diffKernelObjects,
  type KernelObjects,
  keyOf,
  mergeObjects,
  NO_OBJECTS,
} from "./kernel_objects.ts";
import { type PeerHealth } from "./backend.ts";
import { followUpdates, SerialJobs } from "./serial_jobs.ts";

/** One object the kernel refused. */
export interface ObjectFailure {
  readonly kind: "route" | "neigh" | "fdb";
  readonly key: string;
  readonly error: string;
}

/** How the loop reads and writes the kernel (netlink in production, a fake in unit tests). */
export interface KernelPort {
  /** The objects this backend manages that the kernel holds now. */
  list(): Promise<KernelObjects>;
  /** Create or overwrite objects (neighbours and FDB before routes). */
  replace(objects: KernelObjects): Promise<ObjectFailure[]>;
  /** Delete objects (routes before neighbours and FDB); already-absent is not a failure. */
  remove(objects: KernelObjects): Promise<ObjectFailure[]>;
}

/** What the loop needs from its backend. */
export interface RouteSyncOptions {
  readonly port: KernelPort;
  /** The objects a peer lease needs; undefined skips the peer (e.g. another backend type). */
  readonly describe: (lease: Lease) => KernelObjects | undefined;
  /** Our own lease, whose events are ignored. */
  readonly ownKey: string;
  /** Full resync period. */
  readonly resyncMs: number;
  readonly log: Logger;
  /**
   * Runs before each full resync: re-creates a deleted device, fixes its MTU. Resolves true
   * when device indexes changed, so every peer's objects are derived anew.
   */
  readonly beforeResync?: () => Promise<boolean>;
  /** Called after every reconcile with its duration. */
  readonly onReconcile?: (seconds: number, ok: boolean) => void;
  readonly leaseKey: (lease: Lease) => string;
}

/** The loop's report for backend health. */
export interface RouteSyncHealth {
  readonly ready: boolean;
  readonly lastReconcile?: Date;
  readonly lastReconcileOk?: boolean;
  readonly lastError?: string;
  readonly driftRepaired: number;
  readonly peers: PeerHealth[];
}

/** The reconcile loop of one backend. */
export interface RouteSync {
  /** Consume lease updates until the signal aborts. */
  run(updates: AsyncIterable<LeaseWatchUpdate>, signal: AbortSignal): Promise<void>;
  /** Compare with the kernel now and repair (also runs on the timer). */
  resync(): Promise<void>;
  health(): RouteSyncHealth;
}

interface Peer {
  readonly lease: Lease;
  readonly objects: KernelObjects;
}

function objectKeys(objects: KernelObjects): string[] {
  return [
    ...objects.routes.map((r) => `route:${keyOf.route(r)}`),
    ...objects.neighs.map((n) => `neigh:${keyOf.neigh(n)}`),
    ...objects.fdb.map((f) => `fdb:${keyOf.fdb(f)}`),
  ];
}

/** Objects of `old` whose keys `current` does not have (e.g. the FDB entry of an old MAC). */
function objectsDropped(old: KernelObjects, current: KernelObjects): KernelObjects {
  const keep = new Set(objectKeys(current));
  return {
    routes: old.routes.filter((r) => !keep.has(`route:${keyOf.route(r)}`)),
    neighs: old.neighs.filter((n) => !keep.has(`neigh:${keyOf.neigh(n)}`)),
    fdb: old.fdb.filter((f) => !keep.has(`fdb:${keyOf.fdb(f)}`)),
  };
}

/** Create the reconcile loop. */
export function createRouteSync(options: RouteSyncOptions): RouteSync {
  const { port, log } = options;
  const peers = new Map<string, Peer>();
  /** Object key → peer key, to charge a kernel failure to its peer. */
  const ownerOf = new Map<string, string>();
  const peerErrors = new Map<string, string>();
  let ready = false;
  let lastReconcile: Date | undefined;
  let lastReconcileOk: boolean | undefined;
  let lastError: string | undefined;
  let driftRepaired = 0;
  const jobs = new SerialJobs();

  function setPeer(lease: Lease): Peer | undefined {
    const key = options.leaseKey(lease);
    if (key === options.ownKey) return undefined;
    const objects = options.describe(lease);
    if (!objects) {
      removePeer(key);
      return undefined;
    }
    const peer = { lease, objects };
    peers.set(key, peer);
    for (const k of objectKeys(objects)) ownerOf.set(k, key);
    return peer;
  }

  function removePeer(key: string): Peer | undefined {
    const peer = peers.get(key);
    peers.delete(key);
    peerErrors.delete(key);
    if (peer) { for (const k of objectKeys(peer.objects)) ownerOf.delete(k); }
    return peer;
  }

  /** Record this pass's failures; a failure the peer already had is not logged again. */
  function recordFailures(failures: ObjectFailure[], touchedPeers: Iterable<string>): void {
    const before = new Map<string, string>();
    for (const key of touchedPeers) {
      const error = peerErrors.get(key);
      if (error !== undefined) before.set(key, error);
      peerErrors.delete(key);
    }
    for (const failure of failures) {
      const owner = ownerOf.get(`${failure.kind}:${failure.key}`);
      if (!owner) continue;
      const text = `${failure.kind} ${failure.key}: ${failure.error}`;
      if (before.get(owner) !== text && peerErrors.get(owner) !== text) {
        log.warn("peer not programmed", { peer: owner, error: text });
      }
      peerErrors.set(owner, text);
    }
  }

  async function timed(what: string, work: () => Promise<ObjectFailure[]>): Promise<void> {
    const started = performance.now();
    let ok = false;
    try {
      const failures = await work();
      ok = failures.length === 0;
      lastError = ok ? undefined : `${failures.length} kernel objects failed`;
    } catch (err) {
      lastError = `${what}: ${errorText(err)}`;
      log.error("reconcile failed", { what, error: errorText(err) });
    }
    lastReconcile = new Date();
    lastReconcileOk = ok;
    options.onReconcile?.((performance.now() - started) / 1000, ok);
  }

  /** Full comparison with the kernel; `isRepair` counts what it fixes as drift. */
  function fullResync(isRepair: boolean): Promise<void> {
    return timed("resync", async () => {
      if (await options.beforeResync?.()) {
        for (const [key, { lease }] of [...peers.entries()]) {
          removePeer(key);
          setPeer(lease);
        }
      }
      const desired = mergeObjects([...peers.values()].map((p) => p.objects));
      const diff = diffKernelObjects(desired, await port.list());
      const changes = countObjects(diff.replace) + countObjects(diff.remove);
      if (changes > 0) {
        log[isRepair ? "warn" : "debug"]("kernel state reconciled", {
          written: countObjects(diff.replace),
          removed: countObjects(diff.remove),
        });
      }
      const failures = [...await port.replace(diff.replace), ...await port.remove(diff.remove)];
      // Only what was written counts: an object the kernel (or the port) refuses is a peer
      // error, retried every resync, never a "repair".
      if (isRepair) driftRepaired += changes - failures.length;
      recordFailures(failures, peers.keys());
      ready = true;
      return failures;
    });
  }

  function applyEvents(update: Extract<LeaseWatchUpdate, { type: "events" }>): Promise<void> {
    return timed("events", async () => {
      const write: KernelObjects[] = [];
      const drop: KernelObjects[] = [];
      const touched = new Set<string>();
      for (const event of update.events) {
        const key = options.leaseKey(event.lease);
        if (key === options.ownKey) continue;
        const before = removePeer(key);
        const after = event.type === "added" ? setPeer(event.lease) : undefined;
        touched.add(key);
        if (after) write.push(after.objects);
        if (before) drop.push(objectsDropped(before.objects, after?.objects ?? NO_OBJECTS));
      }
      // Never delete an object another peer still wants (two leases can share a gateway MAC):
      // ownerOf holds exactly the wanted keys (ask it; copying it costs O(peers) per event).
      const dropped = mergeObjects(drop);
      const remove: KernelObjects = {
        routes: dropped.routes.filter((r) => !ownerOf.has(`route:${keyOf.route(r)}`)),
        neighs: dropped.neighs.filter((n) => !ownerOf.has(`neigh:${keyOf.neigh(n)}`)),
        fdb: dropped.fdb.filter((f) => !ownerOf.has(`fdb:${keyOf.fdb(f)}`)),
      };
      const failures = [...await port.replace(mergeObjects(write)), ...await port.remove(remove)];
      recordFailures(failures, touched);
      return failures;
    });
  }

  function handle(update: LeaseWatchUpdate): Promise<void> {
    if (update.type === "events") return applyEvents(update);
    for (const key of [...peers.keys()]) removePeer(key);
    for (const lease of update.leases) setPeer(lease);
    return fullResync(false);
  }

  const resync = () => fullResync(true);
  return {
    run: (updates, signal) =>
      followUpdates(updates, signal, jobs, { handle, resync, resyncMs: options.resyncMs }),
    resync: () => jobs.run(resync),
    health() {
      return {
        ready,
        lastReconcile,
        lastReconcileOk,
        lastError,
        driftRepaired,
        peers: [...peers.entries()].map(([key, peer]) => ({
          subnet: [peer.lease.subnet, peer.lease.ipv6Subnet].filter((n) => n !== undefined)
            .map((n) => formatNet(n!)).join(",") || key,
          publicIP: formatAddr(peer.lease.attrs.publicIP),
          inSync: !peerErrors.has(key),
          error: peerErrors.get(key),
        })),
      };
    },
  };
}
