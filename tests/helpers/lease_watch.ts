/**
 * A subnet manager's lease watch running in the background, folded into a LeaseSet as the
 * daemon folds it, for tests of either manager (etcd or kube).
 *
 * @module
 */
import { formatAddr } from "../../ip/mod.ts";
import { formatLeaseKey, type Lease, type LeaseEvent } from "../../subnet/lease.ts";
import { LeaseSet } from "../../subnet/lease_set.ts";
import type { LeaseWatchUpdate, SubnetManager } from "../../subnet/manager.ts";

/** A running watch: every update, and the lease set they fold into. */
export interface Watching {
  readonly updates: LeaseWatchUpdate[];
  readonly peers: LeaseSet;
  readonly events: LeaseEvent[];
  readonly done: Promise<void>;
  /** Keys of the leases the watcher knows now, sorted. */
  names(): string[];
  /** `key publicIP` of the leases the watcher knows now, sorted. */
  known(): string[];
  /** Every event so far as `type key publicIP`. */
  summary(): string[];
}

const withIP = (lease: Lease) => `${formatLeaseKey(lease)} ${formatAddr(lease.attrs.publicIP)}`;

/** Start watching `manager`'s leases until `signal` aborts. */
export function watchInBackground(
  manager: Pick<SubnetManager, "watchLeases">,
  signal: AbortSignal,
): Watching {
  const updates: LeaseWatchUpdate[] = [];
  const events: LeaseEvent[] = [];
  const peers = new LeaseSet();
  const done = (async () => {
    for await (const update of manager.watchLeases(signal)) {
      updates.push(update);
      events.push(...peers.apply(update));
    }
  })();
  return {
    updates,
    peers,
    events,
    done,
    names: () => peers.leases.map(formatLeaseKey).sort(),
    known: () => peers.leases.map(withIP).sort(),
    summary: () => events.map((e) => `${e.type} ${withIP(e.lease)}`),
  };
}
