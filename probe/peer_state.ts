/**
 * Per-peer probe history and the verdict drawn from it. Pure: the prober feeds results in, the
 * admin API, the metrics and `tartan doctor` read verdicts out.
 *
 * @module
 */
import type { ProbeTarget } from "./targets.ts";

/** The history of one path (underlay, overlay, or the full-size overlay probe). */
export interface PathState {
  /** The last probe's outcome; undefined before the first one completed. */
  reachable?: boolean;
  /** Round-trip time of the last answered probe, in milliseconds. */
  rttMs?: number;
  lastSuccess?: Date;
  lastProbe?: Date;
  /** Probes in a row that went unanswered (0 after an answer). */
  failureStreak: number;
  /** Why the last probe failed (`no reply within 1000 ms`, `ENETUNREACH`, …). */
  lastError?: string;
}

/** The three paths of a peer. */
export type ProbePath = "underlay" | "overlay" | "fullSize";

/** Everything known about one peer. */
export interface PeerProbeState {
  readonly target: ProbeTarget;
  readonly underlay: PathState;
  /** Absent when the backend has no overlay address (host-gw, alloc). */
  readonly overlay?: PathState;
  /** A DF probe the size of the pods' MTU, on the path pods use (overlay, else underlay). */
  readonly fullSize: PathState;
}

/**
 * What the history says (a path is down after {@link FAILURES_TO_DOWN} unanswered probes in a
 * row), in order of precedence:
 * - `pending`: no verdict yet;
 * - `unreachable`: neither path answers (node down, wrong public IP, or everything blocked);
 * - `overlay-blocked`: the underlay answers, the overlay does not (a firewall dropping the
 *   encapsulation: the classic "nodes ping each other, pods do not");
 * - `mtu-black-hole`: small probes on the pods' path pass, full-size DF probes vanish;
 * - `underlay-unanswered`: the overlay works but the public IP ignores ICMP (harmless to pods);
 * - `ok`.
 */
export type PeerVerdict =
  | "pending"
  | "ok"
  | "unreachable"
  | "overlay-blocked"
  | "mtu-black-hole"
  | "underlay-unanswered";

/** Every verdict, for bounded metric labels. */
export const PEER_VERDICTS: readonly PeerVerdict[] = [
  "pending",
  "ok",
  "unreachable",
  "overlay-blocked",
  "mtu-black-hole",
  "underlay-unanswered",
];

/** A fresh history for a target. */
export function newPeerProbeState(target: ProbeTarget): PeerProbeState {
  return {
    target,
    underlay: { failureStreak: 0 },
    overlay: target.overlay ? { failureStreak: 0 } : undefined,
    fullSize: { failureStreak: 0 },
  };
}

/** Record an answered probe. */
export function recordAnswer(path: PathState, rttMs: number, at: Date): void {
  path.reachable = true;
  path.rttMs = rttMs;
  path.lastSuccess = at;
  path.lastProbe = at;
  path.failureStreak = 0;
  path.lastError = undefined;
}

/** Record a probe that failed (timed out, or could not be sent). */
export function recordFailure(path: PathState, error: string, at: Date): void {
  path.reachable = false;
  path.lastProbe = at;
  path.failureStreak++;
  path.lastError = error;
}

/** Unanswered probes in a row before a path counts as down: one lost packet is noise. */
export const FAILURES_TO_DOWN = 2;

/**
 * Whether a path is up (true), down (false) or not known yet (undefined). A single lost probe
 * after an answer leaves it up; a path never answered is unknown until it is down.
 */
export function pathUp(path: PathState): boolean | undefined {
  if (path.failureStreak >= FAILURES_TO_DOWN) return false;
  return path.lastSuccess !== undefined ? true : undefined;
}

/** The verdict on a peer (see {@link PeerVerdict}). */
export function peerVerdict(peer: PeerProbeState): PeerVerdict {
  const under = pathUp(peer.underlay);
  // The pods' path: the overlay where there is one, else the underlay itself.
  const pods = peer.overlay ? pathUp(peer.overlay) : under;
  if (pods === false) {
    if (under === undefined) return "pending";
    return under ? "overlay-blocked" : "unreachable";
  }
  if (under === undefined || pods === undefined) return "pending";
  if (pathUp(peer.fullSize) === false) return "mtu-black-hole";
  if (!under) return "underlay-unanswered";
  return "ok";
}
