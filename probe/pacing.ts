/**
 * The rolling schedule of peer probes: every peer once per round, rounds at least `intervalMs`
 * apart, and the probes of a round spread evenly over it, never faster than `maxPerSecond`.
 * Ten peers every minute cost a probe every 6 s; 10 000 peers at 50/s make a 200 s round. Pure.
 *
 * @module
 */

/** How soon a round without peers is followed by the next. */
export const EMPTY_ROUND_MS = 1000;

/** Options of {@link planRound}. */
export interface PacingOptions {
  /** Least time between two probes of one peer. */
  readonly intervalMs: number;
  /** Most peers probed per second, all peers together. */
  readonly maxPerSecond: number;
}

/** When each probe of a round is due, relative to the round's start. */
export interface RoundPlan {
  /** Time between two consecutive probes. */
  readonly spacingMs: number;
  /** Length of the round: the next one starts this long after this one did. */
  readonly durationMs: number;
}

/**
 * Plan a round over `peers` peers.
 *
 * @example
 * ```ts
 * planRound(10_000, { intervalMs: 60_000, maxPerSecond: 50 }); // { spacingMs: 20, durationMs: 200_000 }
 * ```
 */
export function planRound(peers: number, options: PacingOptions): RoundPlan {
  const { intervalMs, maxPerSecond } = options;
  if (!(intervalMs > 0) || !(maxPerSecond > 0)) {
    throw new RangeError(`probe interval ${intervalMs} ms and rate ${maxPerSecond}/s must be > 0`);
  }
  // No peers yet (the watch's first snapshot may not be in): look again soon, not a minute later.
  if (peers === 0) {
    return { spacingMs: intervalMs, durationMs: Math.min(intervalMs, EMPTY_ROUND_MS) };
  }
  const spacingMs = Math.max(1000 / maxPerSecond, intervalMs / peers);
  return { spacingMs, durationMs: Math.max(intervalMs, spacingMs * peers) };
}
