/**
 * The lease gate: one validation every peer lease passes, from etcd or from Kubernetes, before a
 * backend sees it. Flannel programs whatever its datastore holds; here a broken or hostile lease
 * is skipped (with its reason kept for the admin API and the metrics) and can never take traffic
 * away from the leases that are valid.
 *
 * The gate is stateful over the watch: a live lease holds its subnets (and, for vxlan, its VTEP
 * MACs), so a later lease overlapping them is skipped. The first seen keeps its place: in an
 * event stream, by arrival; in a snapshot, leases already admitted first, then the others oldest
 * first by {@link Lease.created} (etcd create_revision, Node creationTimestamp), which is the
 * order every node saw them arrive in, so a node that starts or relists decides as the others
 * did. When a holder goes away or changes, skipped leases are evaluated again and admitted once
 * valid.
 *
 * @module
 */
import {
  addrEqual,
  formatAddr,
  formatNet,
  type IPAddr,
  type IPNet,
  netContains,
  netContainsNet,
  netOverlaps,
} from "../ip/mod.ts";
import {
  type JsonValue,
  type Lease,
  type LeaseEvent,
  type LeaseSubnets,
  leaseSubnets,
} from "./lease.ts";
import { unusableAddress, unusableMac, vtepMacOf, wireguardKeyOf } from "./lease_fields.ts";
import { HeldPlaces, type Place } from "./lease_places.ts";
import { leaseIdentity } from "./lease_set.ts";
import type { LeaseWatchUpdate } from "./manager.ts";

/** Why a lease was skipped: the label of the skip metric. */
export const SKIP_REASONS = [
  "subnet_outside_network",
  "subnet_overlaps_own",
  "subnet_overlaps_lease",
  "public_ip_missing",
  "public_ip_unusable",
  "public_ip_own",
  "public_ip_in_overlay",
  "vtep_mac_unusable",
  "vtep_mac_own",
  "vtep_mac_taken",
  "wireguard_key_unusable",
  "wireguard_key_own",
] as const;
export type SkipReason = typeof SKIP_REASONS[number];

/** Zero for every reason, so that each one's metric series exists from the start. */
export function zeroSkipCounts(): Record<SkipReason, number> {
  return Object.fromEntries(SKIP_REASONS.map((r) => [r, 0])) as Record<SkipReason, number>;
}

/** A lease the gate keeps away from the backend, and why. */
export interface SkippedLease {
  readonly lease: Lease;
  readonly reason: SkipReason;
  /** For people: what exactly is wrong, e.g. `10.244.0.0/16 is the network itself`. */
  readonly detail: string;
}

/** What the gate checks against. */
export interface LeaseGateOptions {
  /** The cluster networks (net-conf `Network`, `IPv6Network`). */
  readonly networks: { readonly 4?: IPNet; readonly 6?: IPNet };
  /** This node's lease: its subnets, public IPs and VTEP MACs are ours. */
  readonly own: Lease;
  /** Every address of this node (a peer tunnel to one of them would loop back to us). */
  readonly ownAddresses: readonly IPAddr[];
  /** Check the VtepMAC of vxlan leases (the node runs the vxlan backend). */
  readonly checkVtepMac: boolean;
  /** Check the PublicKey of wireguard leases (the node runs the wireguard backend). */
  readonly checkWireguardKey?: boolean;
  /** A lease was newly skipped, or for another reason than before (log it, count it). */
  readonly onSkip?: (skipped: SkippedLease) => void;
  /** A lease skipped before is admitted now (its conflict went away, or it was fixed). */
  readonly onAdmit?: (lease: Lease) => void;
}

interface Verdict {
  readonly reason: SkipReason;
  readonly detail: string;
}

/** A lease's part in one address family: the place it holds and what it publishes there. */
interface FamilyPart extends Place {
  readonly publicIP: IPAddr | undefined;
  readonly backendData: JsonValue | undefined;
}

/**
 * The gate over one node's watch.
 *
 * @example
 * ```ts
 * const gate = new LeaseGate({ networks: { 4: network }, own, ownAddresses, checkVtepMac: true });
 * for await (const update of manager.watchLeases(signal)) await backend.apply(gate.apply(update));
 * ```
 */
export class LeaseGate {
  readonly #options: LeaseGateOptions;
  readonly #ownId: string;
  readonly #ownSubnets: IPNet[];
  readonly #ownMacs: Set<string>;
  readonly #ownWireguardKeys: Set<string>;
  readonly #ownAddresses: IPAddr[];
  /** Admitted leases by identity, in admission order. */
  readonly #admitted = new Map<string, Lease>();
  /** Skipped leases by identity, in the order first seen. */
  readonly #skipped = new Map<string, SkippedLease>();
  /** Subnets and VTEP MACs the admitted leases hold. */
  readonly #places = new HeldPlaces();
  /** Per-family parts of the leases seen (see {@link LeaseGate.#parts}). */
  readonly #partsOf = new WeakMap<Lease, FamilyPart[]>();

  constructor(options: LeaseGateOptions) {
    this.#options = options;
    const { own } = options;
    this.#ownId = leaseIdentity(own);
    this.#ownSubnets = [own.subnet, own.ipv6Subnet].filter((n) => n !== undefined);
    const macs = [vtepMacOf(own.attrs.backendData), vtepMacOf(own.attrs.backendV6Data)];
    this.#ownMacs = new Set(macs.filter((m) => m !== undefined));
    const keys = [wireguardKeyOf(own.attrs.backendData), wireguardKeyOf(own.attrs.backendV6Data)];
    this.#ownWireguardKeys = new Set(keys.filter((k) => k !== undefined));
    this.#ownAddresses = [
      ...options.ownAddresses,
      own.attrs.publicIP,
      ...(own.attrs.publicIPv6 ? [own.attrs.publicIPv6] : []),
    ];
  }

  /** The leases skipped now, by {@link leaseIdentity}, in the order first seen. */
  get skipped(): ReadonlyMap<string, SkippedLease> {
    return this.#skipped;
  }

  /** How many leases are skipped now, by reason (every reason present, most of them 0). */
  skippedByReason(): Record<SkipReason, number> {
    const counts = zeroSkipCounts();
    for (const { reason } of this.#skipped.values()) counts[reason]++;
    return counts;
  }

  /** Why `lease` is skipped, or undefined when it is not. */
  skipOf(lease: LeaseSubnets): SkippedLease | undefined {
    return this.#skipped.get(leaseIdentity(lease));
  }

  /** Fold one watch update in; returns what the backend should see (only admitted leases). */
  apply(update: LeaseWatchUpdate): LeaseWatchUpdate {
    return update.type === "snapshot"
      ? { type: "snapshot", leases: this.#applySnapshot(update.leases) }
      : { type: "events", events: this.#applyEvents(update.events) };
  }

  #applySnapshot(leases: readonly Lease[]): Lease[] {
    const next = new Map<string, Lease>();
    for (const lease of leases) {
      const id = leaseIdentity(lease);
      if (id !== this.#ownId) next.set(id, lease);
    }
    // Places are kept: the admitted first, in their order; then the rest, oldest store entry
    // first (every node agrees on that), ties in the order first seen.
    const rest = [
      ...[...this.#skipped.keys()].filter((id) => next.has(id) && !this.#admitted.has(id)),
      ...[...next.keys()].filter((id) => !this.#admitted.has(id) && !this.#skipped.has(id)),
    ];
    const age = (id: string) => next.get(id)!.created ?? Number.MAX_SAFE_INTEGER;
    const order = [
      ...[...this.#admitted.keys()].filter((id) => next.has(id)),
      ...rest.sort((a, b) => age(a) - age(b)),
    ];
    const previous = new Map(this.#skipped);
    this.#admitted.clear();
    this.#skipped.clear();
    this.#places.clear();
    const out: Lease[] = [];
    for (const id of order) {
      const lease = next.get(id)!;
      const verdict = this.#evaluate(lease);
      if (verdict) {
        this.#skip(id, lease, verdict, previous.get(id));
      } else {
        this.#admit(id, lease);
        if (previous.has(id)) this.#options.onAdmit?.(lease);
        out.push(lease);
      }
    }
    return out;
  }

  #applyEvents(events: readonly LeaseEvent[]): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    for (const event of events) {
      const id = leaseIdentity(event.lease);
      if (id === this.#ownId) continue;
      const before = this.#admitted.get(id);
      if (before) this.#release(id, before);
      const verdict = event.type === "added" ? this.#evaluate(event.lease) : undefined;
      if (event.type === "added" && !verdict) {
        const wasSkipped = this.#skipped.get(id);
        this.#skipped.delete(id);
        this.#admit(id, event.lease);
        if (wasSkipped) this.#options.onAdmit?.(event.lease);
        out.push(event);
      } else {
        if (verdict) this.#skip(id, event.lease, verdict, this.#skipped.get(id));
        else this.#skipped.delete(id);
        if (before) out.push({ type: "removed", lease: before });
      }
      // A place was given up (or changed): leases skipped for it may pass now, first seen first.
      if (before) out.push(...this.#readmit());
    }
    return out;
  }

  /** Admit every skipped lease that is valid now, in the order first seen. */
  #readmit(): LeaseEvent[] {
    const out: LeaseEvent[] = [];
    for (const [id, { lease }] of [...this.#skipped]) {
      if (this.#evaluate(lease)) continue;
      this.#skipped.delete(id);
      this.#admit(id, lease);
      this.#options.onAdmit?.(lease);
      out.push({ type: "added", lease });
    }
    return out;
  }

  #skip(id: string, lease: Lease, verdict: Verdict, before: SkippedLease | undefined): void {
    const skipped = { lease, ...verdict };
    this.#skipped.set(id, skipped);
    if (before?.reason !== verdict.reason || before.detail !== verdict.detail) {
      this.#options.onSkip?.(skipped);
    }
  }

  /** A lease's parts in the configured families (leases are immutable: computed once). */
  #parts(lease: Lease): FamilyPart[] {
    let parts = this.#partsOf.get(lease);
    if (parts) return parts;
    const { networks } = this.#options;
    const macs = this.#checksMac(lease);
    parts = [];
    if (networks[4] && lease.subnet) {
      const backendData = lease.attrs.backendData;
      parts.push({
        family: 4,
        subnet: lease.subnet,
        network: networks[4],
        publicIP: lease.attrs.publicIP,
        backendData,
        mac: macs ? vtepMacOf(backendData) : undefined,
      });
    }
    if (networks[6] && lease.ipv6Subnet) {
      const backendData = lease.attrs.backendV6Data;
      parts.push({
        family: 6,
        subnet: lease.ipv6Subnet,
        network: networks[6],
        publicIP: lease.attrs.publicIPv6,
        backendData,
        mac: macs ? vtepMacOf(backendData) : undefined,
      });
    }
    this.#partsOf.set(lease, parts);
    return parts;
  }

  #admit(id: string, lease: Lease): void {
    this.#admitted.set(id, lease);
    this.#places.hold(id, this.#parts(lease));
  }

  #release(id: string, lease: Lease): void {
    this.#admitted.delete(id);
    this.#places.release(id, this.#parts(lease));
  }

  #checksMac(lease: Lease): boolean {
    return this.#options.checkVtepMac && lease.attrs.backendType === "vxlan";
  }

  /** Why `lease` must be skipped now, or undefined when it may pass. */
  #evaluate(lease: Lease): Verdict | undefined {
    const parts = this.#parts(lease);
    if (parts.length === 0) {
      return { reason: "subnet_outside_network", detail: "no subnet in the configured networks" };
    }
    for (const part of parts) {
      const verdict = this.#checkSubnet(part) ?? this.#checkPublicIP(part) ??
        (this.#checksMac(lease) ? this.#checkMac(part) : undefined) ??
        (this.#checksWireguardKey(lease) ? this.#checkWireguardKey(part) : undefined);
      if (verdict) return verdict;
    }
    return undefined;
  }

  #checkSubnet({ subnet, network }: FamilyPart): Verdict | undefined {
    // Texts are made only for a skip: the common, valid case formats nothing.
    const text = () => formatNet(subnet);
    if (!netContainsNet(network, subnet)) {
      const detail = `${text()} is not inside the network ${formatNet(network)}`;
      return { reason: "subnet_outside_network", detail };
    }
    if (subnet.prefix <= network.prefix) {
      return { reason: "subnet_outside_network", detail: `${text()} is the network itself` };
    }
    const own = this.#ownSubnets.find((n) => netOverlaps(n, subnet));
    if (own) {
      const detail = `${text()} overlaps this node's subnet ${formatNet(own)}`;
      return { reason: "subnet_overlaps_own", detail };
    }
    const holder = this.#places.holderOver(subnet, network);
    if (holder) {
      const detail = `${text()} overlaps the live lease ${this.#describe(holder)}`;
      return { reason: "subnet_overlaps_lease", detail };
    }
    if (this.#places.coversHeld(subnet)) {
      const detail = `${text()} contains the subnet of a live lease`;
      return { reason: "subnet_overlaps_lease", detail };
    }
    return undefined;
  }

  #checkPublicIP({ family, publicIP }: FamilyPart): Verdict | undefined {
    const name = family === 4 ? "PublicIP" : "PublicIPv6";
    if (!publicIP || publicIP.value === 0n || publicIP.family !== family) {
      return { reason: "public_ip_missing", detail: `no ${name}` };
    }
    const text = () => `${name} ${formatAddr(publicIP)}`;
    const unusable = unusableAddress(publicIP);
    if (unusable) return { reason: "public_ip_unusable", detail: `${text()} is ${unusable}` };
    if (this.#ownAddresses.some((own) => addrEqual(own, publicIP))) {
      return { reason: "public_ip_own", detail: `${text()} is an address of this node` };
    }
    const overlay = [this.#options.networks[4], this.#options.networks[6]]
      .find((n) => n !== undefined && netContains(n, publicIP));
    if (overlay) {
      const detail = `${text()} is inside the overlay network ${formatNet(overlay)}`;
      return { reason: "public_ip_in_overlay", detail };
    }
    return undefined;
  }

  #checksWireguardKey(lease: Lease): boolean {
    return this.#options.checkWireguardKey === true && lease.attrs.backendType === "wireguard";
  }

  #checkWireguardKey({ family, backendData }: FamilyPart): Verdict | undefined {
    const key = wireguardKeyOf(backendData);
    if (!key) {
      const name = family === 4 ? "BackendData" : "BackendV6Data";
      const detail = `${name} has no usable PublicKey (the base64 of 32 bytes, not all zeros)`;
      return { reason: "wireguard_key_unusable", detail };
    }
    if (this.#ownWireguardKeys.has(key)) {
      return { reason: "wireguard_key_own", detail: `PublicKey ${key} is this node's own` };
    }
    return undefined;
  }

  #checkMac(part: FamilyPart): Verdict | undefined {
    const name = part.family === 4 ? "BackendData" : "BackendV6Data";
    const mac = part.mac;
    if (!mac) return { reason: "vtep_mac_unusable", detail: `${name} has no valid VtepMAC` };
    const unusable = unusableMac(mac);
    if (unusable) return { reason: "vtep_mac_unusable", detail: `VtepMAC ${mac} ${unusable}` };
    if (this.#ownMacs.has(mac)) {
      return { reason: "vtep_mac_own", detail: `VtepMAC ${mac} is this node's own` };
    }
    const holder = this.#places.macHolder(part.family, mac);
    if (holder) {
      const detail = `VtepMAC ${mac} is held by the live lease ${this.#describe(holder)}`;
      return { reason: "vtep_mac_taken", detail };
    }
    return undefined;
  }

  #describe(id: string): string {
    const lease = this.#admitted.get(id);
    return lease ? leaseSubnets(lease) : id;
  }
}
