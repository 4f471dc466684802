/**
 * The set of known remote leases, fed by a manager's watch and turned into the added/removed
 * events backends apply (spec §6.1).
 *
 * @module
 */
import { formatNet, type IPNet } from "../ip/mod.ts";
import { attrsEqual, type Lease, type LeaseEvent, type LeaseSubnets } from "./lease.ts";
import type { LeaseWatchUpdate } from "./manager.ts";

/** Identity of a lease: its IPv4 subnet, IPv6 subnet, or both (dual stack). */
export function leaseIdentity(subnets: LeaseSubnets): string {
  const text = (net?: IPNet) => net ? formatNet(net) : "";
  return `${text(subnets.subnet)}&${text(subnets.ipv6Subnet)}`;
}

/**
 * Known remote leases keyed by {@link leaseIdentity}. Differs from flannel in one way: a
 * snapshot re-emits "added" for a known lease whose attributes changed (quirk 36), so a VTEP
 * MAC changed during a watch gap is still applied.
 *
 * @example
 * ```ts
 * const peers = new LeaseSet(ownLease);
 * for await (const update of manager.watchLeases(signal)) await backend.apply(peers.apply(update));
 * ```
 */
export class LeaseSet {
  readonly #known = new Map<string, Lease>();
  #own: string | undefined;

  /** `own` is this node's lease; events for it are dropped. */
  constructor(own?: LeaseSubnets) {
    this.#own = own && leaseIdentity(own);
  }

  /** Change the node's own lease (e.g. after re-acquisition). */
  setOwn(own: LeaseSubnets | undefined): void {
    this.#own = own && leaseIdentity(own);
    if (this.#own) this.#known.delete(this.#own);
  }

  /** The remote leases currently known. */
  get leases(): Lease[] {
    return [...this.#known.values()];
  }

  /** Fold one watch update into the set and return the events backends should apply. */
  apply(update: LeaseWatchUpdate): LeaseEvent[] {
    return update.type === "snapshot"
      ? this.#applySnapshot(update.leases)
      : update.events.flatMap((event) => this.#applyEvent(event));
  }

  #applySnapshot(leases: readonly Lease[]): LeaseEvent[] {
    const next = new Map<string, Lease>();
    for (const lease of leases) {
      const id = leaseIdentity(lease);
      if (id !== this.#own) next.set(id, lease);
    }
    const events: LeaseEvent[] = [];
    for (const [id, lease] of this.#known) {
      if (!next.has(id)) events.push({ type: "removed", lease });
    }
    for (const [id, lease] of next) {
      const before = this.#known.get(id);
      if (!before || !attrsEqual(before.attrs, lease.attrs)) events.push({ type: "added", lease });
    }
    this.#known.clear();
    for (const [id, lease] of next) this.#known.set(id, lease);
    return events;
  }

  #applyEvent(event: LeaseEvent): LeaseEvent[] {
    const id = leaseIdentity(event.lease);
    if (id === this.#own) return [];
    if (event.type === "added") {
      this.#known.set(id, event.lease);
      return [event];
    }
    const stored = this.#known.get(id);
    this.#known.delete(id);
    return [{ type: "removed", lease: stored ?? event.lease }];
  }
}
