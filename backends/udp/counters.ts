import { type DataPathCounters } from "../backend.ts";
/**
 * The data path's counters in a SharedArrayBuffer: the Worker adds, the main thread reads for
 * the admin API and metrics without asking the Worker anything. One writer per slot, 64-bit
 * floats (exact to 2^53), so plain loads and stores are enough.
 *
 * @module
 */

/** Why the data path drops a packet (the `reason` label of `tartan_udp_drops_total`). */
const DROP_REASONS = [
  /** No lease covers the destination (an ICMP net-unreachable goes back). */
  "no_route",
  /** TTL would reach 0. */
  "ttl",
  /** The outer source is not the public IP of the lease owning the inner source. */
  "bad_source",
  /** Not a valid IPv4 packet. */
  "malformed",
  /** Larger than the TUN MTU (flannel truncates these, quirk 22). */
  "oversized",
  /** A socket or TUN queue was full (including kernel receive-buffer overflows). */
  "buffer_full",
  /** The kernel refused to send (no route to the peer, …). */
  "send_error",
] as const;

/** One of {@link DROP_REASONS}. */
export type DropReason = typeof DROP_REASONS[number];

/** Slot numbers in the counter array. */
export const SLOT = {
  packetsTx: 0,
  bytesTx: 1,
  packetsRx: 2,
  bytesRx: 3,
  /** The last peer-table generation the Worker installed (not a counter). */
  appliedGeneration: 4,
  /** The socket's cumulative overflow count already added to `buffer_full` (across restarts). */
  rxOverflowSeen: 5,
} as const;

const FIRST_DROP = 6;

/** Slot of a drop reason. */
export function dropSlot(reason: DropReason): number {
  return FIRST_DROP + DROP_REASONS.indexOf(reason);
}

/** A zeroed counter buffer to share with the Worker. */
export function createCounterBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer((FIRST_DROP + DROP_REASONS.length) * 8);
}

/** A snapshot of the counters in the shape the daemon state uses. */
export function readCounters(buffer: SharedArrayBuffer): DataPathCounters {
  const slots = new Float64Array(buffer);
  return {
    packetsTx: slots[SLOT.packetsTx],
    packetsRx: slots[SLOT.packetsRx],
    bytesTx: slots[SLOT.bytesTx],
    bytesRx: slots[SLOT.bytesRx],
    drops: Object.fromEntries(DROP_REASONS.map((reason) => [reason, slots[dropSlot(reason)]])),
  };
}
