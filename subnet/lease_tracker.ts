/**
 * The one snapshot-to-events diff both lease stores share (flannel's LeaseWatcher): a store's
 * list/watch reports what each of its entries (an etcd key, a Node) holds now, and the tracker
 * turns that into the {@link LeaseWatchUpdate}s a manager's `watchLeases` yields.
 *
 * Entries the store cannot read are simply not reported: the tracker keeps their last good lease,
 * so a bad edit never reads as a removal (quirk 1).
 *
 * @module
 */
import { attrsEqual, type Lease, type LeaseEvent, sameSubnets } from "./lease.ts";
import type { LeaseWatchUpdate } from "./manager.ts";
import { type LeaseStoreCounters } from "./manager.ts";

/** What one store entry holds now: a lease, or `undefined` once the entry is gone. */
export interface LeaseChange {
  /** The entry's name in its store (etcd key below `subnets/`, Node name). */
  readonly name: string;
  readonly lease: Lease | undefined;
}

function sameLease(a: Lease, b: Lease): boolean {
  return sameSubnets(a, b) && attrsEqual(a.attrs, b.attrs) && !!a.reserved === !!b.reserved;
}

/**
 * Known leases by entry name. Removals carry the last lease the entry held (an etcd DELETE
 * carries only the key); an entry whose subnets changed is a removal then an addition (quirk
 * 15); an unchanged entry is no event.
 *
 * @example
 * ```ts
 * const tracker = new LeaseTracker(stats);
 * yield tracker.snapshot(listing.map((node) => [node.name, leaseOf(node)]));
 * const update = tracker.changes([{ name: "node-2", lease: undefined }]);
 * if (update) yield update;
 * ```
 */
export class LeaseTracker {
  readonly #known = new Map<string, Lease>();
  readonly #counters: Pick<LeaseStoreCounters, "relists" | "watchEvents">;
  #snapshots = 0;

  /** `counters` gets `relists` (every snapshot after the first) and `watchEvents`. */
  constructor(counters: Pick<LeaseStoreCounters, "relists" | "watchEvents">) {
    this.#counters = counters;
  }

  /** A fresh listing replaces everything known; entries without a lease are left out. */
  snapshot(entries: Iterable<readonly [string, Lease | undefined]>): LeaseWatchUpdate {
    if (this.#snapshots++ > 0) this.#counters.relists++;
    this.#known.clear();
    for (const [name, lease] of entries) if (lease) this.#known.set(name, lease);
    return { type: "snapshot", leases: [...this.#known.values()] };
  }

  /** Fold changes in; the events they mean, or undefined when they mean none. */
  changes(changes: Iterable<LeaseChange>): LeaseWatchUpdate | undefined {
    const events: LeaseEvent[] = [];
    for (const { name, lease } of changes) events.push(...this.#change(name, lease));
    this.#counters.watchEvents += events.length;
    return events.length > 0 ? { type: "events", events } : undefined;
  }

  #change(name: string, lease: Lease | undefined): LeaseEvent[] {
    const before = this.#known.get(name);
    if (!lease) {
      if (!before) return [];
      this.#known.delete(name);
      return [{ type: "removed", lease: before }];
    }
    if (before && sameLease(before, lease)) return [];
    this.#known.set(name, lease);
    const added: LeaseEvent = { type: "added", lease };
    return before && !sameSubnets(before, lease)
      ? [{ type: "removed", lease: before }, added]
      : [added];
  }
}
