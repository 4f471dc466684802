/**
 * The udp backend's peer table: which node an inner address belongs to, and therefore where to
 * send a packet and who may send one on its behalf.
 *
 * Fixes over flannel (quirks 22–23): longest-prefix match instead of the first entry that
 * contains the address; a datagram is accepted only from the public IP of the lease that owns
 * its inner source; leases of another backend type are ignored (a lease without a type is a
 * flannel udp node, so it counts).
 *
 * The main thread builds records from leases and ships them to the Worker as a compact
 * `Uint32Array`; the Worker decodes them into a table it queries per packet.
 *
 * @module
 */
import type { Lease } from "../../subnet/lease.ts";

/** One peer as the data path sees it; addresses are unsigned 32-bit numbers. */
export interface PeerRecord {
  /** Network address of the peer's subnet. */
  readonly base: number;
  readonly prefix: number;
  /** Where its datagrams go, and the only source its datagrams may come from. */
  readonly publicIP: number;
}

/** The netmask of an IPv4 prefix length as an unsigned number. */
export function prefixMask(prefix: number): number {
  return prefix <= 0 ? 0 : (0xffffffff << (32 - Math.min(prefix, 32))) >>> 0;
}

/** Whether a lease is one the udp backend forwards to (quirk 23: a set, other type is not). */
export function isUdpPeer(lease: Lease): boolean {
  const type = lease.attrs.backendType;
  return lease.subnet !== undefined && lease.attrs.publicIP.family === 4 &&
    lease.attrs.publicIP.value !== 0n && (type === undefined || type === "udp");
}

/** The records of the leases that are udp peers. */
export function peerRecords(leases: Iterable<Lease>): PeerRecord[] {
  const records: PeerRecord[] = [];
  for (const lease of leases) {
    if (!isUdpPeer(lease)) continue;
    records.push({
      base: Number(lease.subnet!.base),
      prefix: lease.subnet!.prefix,
      publicIP: Number(lease.attrs.publicIP.value),
    });
  }
  return records;
}

/** Records as `[base, prefix, publicIP]` triples, for postMessage (structured clone copies it). */
export function encodePeerTable(records: readonly PeerRecord[]): Uint32Array<ArrayBuffer> {
  const words = new Uint32Array(records.length * 3);
  records.forEach((r, i) => {
    words[i * 3] = r.base;
    words[i * 3 + 1] = r.prefix;
    words[i * 3 + 2] = r.publicIP;
  });
  return words;
}

/** Decode {@link encodePeerTable}'s triples; entries with an impossible prefix are skipped. */
export function decodePeerTable(words: Uint32Array): PeerRecord[] {
  const records: PeerRecord[] = [];
  for (let i = 0; i + 2 < words.length; i += 3) {
    const prefix = words[i + 1];
    if (prefix > 32) continue;
    records.push({ base: (words[i] & prefixMask(prefix)) >>> 0, prefix, publicIP: words[i + 2] });
  }
  return records;
}

/** Per-packet queries on a fixed set of peers. */
export interface PeerTable {
  readonly size: number;
  /** Index of the most specific peer whose subnet holds `addr`, or -1. */
  lookup(addr: number): number;
  /** Public IP of peer `index` (from {@link lookup}). */
  publicIP(index: number): number;
  /** Whether `outerSource` is the public IP of the peer owning the inner source `innerSource`. */
  sourceAllowed(innerSource: number, outerSource: number): boolean;
}

interface PrefixGroup {
  readonly mask: number;
  readonly bases: Map<number, number>;
}

/**
 * A table over `records`: one hash map per prefix length, searched longest first, plus a
 * one-entry cache (a flow's packets come in runs).
 *
 * @example
 * ```ts
 * const table = createPeerTable(decodePeerTable(message.table));
 * const peer = table.lookup(ipv4Destination(buf, at)); // -1: no lease, answer with ICMP
 * ```
 */
export function createPeerTable(records: readonly PeerRecord[]): PeerTable {
  const groups: PrefixGroup[] = [];
  const publicIPs = records.map((r) => r.publicIP >>> 0);
  records.forEach((r, index) => {
    const mask = prefixMask(r.prefix);
    let group = groups.find((g) => g.mask === mask);
    if (!group) groups.push(group = { mask, bases: new Map() });
    group.bases.set((r.base & mask) >>> 0, index);
  });
  groups.sort((a, b) => b.mask - a.mask); // longer prefix ⇒ larger mask
  let cachedAddr = -1;
  let cachedIndex = -1;

  function lookup(addr: number): number {
    if (addr === cachedAddr) return cachedIndex;
    let found = -1;
    for (const group of groups) {
      const index = group.bases.get((addr & group.mask) >>> 0);
      if (index !== undefined) {
        found = index;
        break;
      }
    }
    cachedAddr = addr;
    cachedIndex = found;
    return found;
  }

  return {
    size: records.length,
    lookup,
    publicIP: (index) => publicIPs[index],
    sourceAllowed(innerSource, outerSource) {
      const index = lookup(innerSource);
      return index >= 0 && publicIPs[index] === outerSource;
    },
  };
}
