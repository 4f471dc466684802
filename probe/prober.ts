/**
 * The daemon's continuous peer probing: ICMP echo to every peer on the underlay (its public IP,
 * from our interface address) and on the overlay (its tunnel address, from ours, through the
 * routes and encapsulation pods use), plus one DF echo the size of the pods' MTU on the pods'
 * path. Peers are visited on the rolling schedule of `pacing.ts`; replies are matched by
 * sequence number on non-blocking sockets, so nothing here ever waits on the network in a way
 * that holds up another loop.
 *
 * @module
 */
import { errorText, type Logger } from "../log.ts";
import type { Family, IPAddr } from "../ip/mod.ts";
import { ICMP_ECHO_HEADER, IP_HEADER_BYTES } from "./icmp_packet.ts";
import { sleep } from "../sleep.ts";
import {
  IcmpPermissionError,
  type IcmpSocket,
  type IcmpSocketKind,
  type IcmpSocketOptions,
  openIcmpSocket,
} from "./icmp_socket.ts";
import { Backoff } from "../backoff.ts";
import { type PacingOptions, planRound, type RoundPlan } from "./pacing.ts";
import {
  newPeerProbeState,
  type PathState,
  type PeerProbeState,
  type ProbePath,
  recordAnswer,
  recordFailure,
} from "./peer_state.ts";
import { type ProbeTarget, sameTarget } from "./targets.ts";

/** `ping`'s default payload: a small probe is this plus the ICMP and IP headers. */
const SMALL_PAYLOAD_BYTES = 56;

/** The size of a small probe as an IP packet of `family` (84 bytes over IPv4, 104 over IPv6). */
export function smallProbeBytes(family: Family): number {
  return IP_HEADER_BYTES[family] + ICMP_ECHO_HEADER + SMALL_PAYLOAD_BYTES;
}
/** How long a reply may take before the probe counts as lost. */
export const PROBE_TIMEOUT_MS = 1000;
/** Fewest milliseconds between two wake-ups of the schedule (sends are batched below it). */
const MIN_TICK_MS = 100;
/**
 * Longest wait of a receive loop: it notices the stop signal within this, and an idle daemon
 * wakes for it once a second per socket.
 */
const RECEIVE_WAIT_MS = 1000;

/** Retries of sockets that cannot be opened yet: from a second up to half a minute. */
const OPEN_RETRY_MS = { initial: 1000, max: 30_000 } as const;

/** How one echo ended, for the metrics. */
export type ProbeOutcome = "answered" | "lost" | "unsent";

/** One address family the node probes its peers in. */
export interface ProbeFamily {
  /** Our interface address: the source of underlay probes (its family is the one probed). */
  readonly underlaySource: IPAddr;
  /** Our tunnel address in the same family: the source of overlay probes (absent: none). */
  readonly overlaySource?: IPAddr;
  /** The largest packet pods send on this family's path: the size of the full-size DF probe. */
  readonly fullSizeBytes: number;
}

/** Options of {@link createPeerProber}. */
export interface ProberOptions extends PacingOptions {
  /** The families probed (one each at most); a target of another family is left alone. */
  readonly families: readonly ProbeFamily[];
  /** The peers to probe in every family, read at the start of every round. */
  readonly targets: () => ProbeTarget[];
  /** Called with the round-trip time of every answered echo (the metrics histogram). */
  readonly observeRtt?: (path: ProbePath, seconds: number) => void;
  readonly log: Logger;
  /** Reply timeout (default {@link PROBE_TIMEOUT_MS}). */
  readonly timeoutMs?: number;
  /** Opens an echo socket (default {@link openIcmpSocket}; tests pass their own). */
  readonly openSocket?: (options: IcmpSocketOptions) => IcmpSocket;
}

/**
 * Why probing is off: turned off (`--peer-probe-interval=0`), or no permission to send ICMP.
 */
export type ProbingOff = "flag" | "permission";

/** What the prober knows, as the admin API shows it. */
export interface PeerProbeReport {
  /** False until the sockets are open, and for good when they cannot be. */
  readonly enabled: boolean;
  readonly off?: ProbingOff;
  /** Why probing is off, or why its sockets are not open yet. */
  readonly disabledReason?: string;
  readonly socketKind?: IcmpSocketKind;
  readonly intervalMs: number;
  readonly maxPerSecond: number;
  readonly timeoutMs: number;
  /** The size of the full-size probe in each probed family. */
  readonly fullSizeBytes: Readonly<Partial<Record<Family, number>>>;
  /** Length of the current round: how often each peer is probed at the moment. */
  readonly roundDurationMs: number;
  readonly peers: readonly PeerProbeState[];
  /** Echoes that ended since the start, by path and outcome. */
  readonly totals: Readonly<Record<ProbePath, Readonly<Record<ProbeOutcome, number>>>>;
}

/** The report of a daemon that does not probe, and why. */
export function probingOffReport(off: ProbingOff, reason: string): PeerProbeReport {
  const zero = { answered: 0, lost: 0, unsent: 0 };
  return {
    enabled: false,
    off,
    disabledReason: reason,
    intervalMs: 0,
    maxPerSecond: 0,
    timeoutMs: 0,
    fullSizeBytes: {},
    roundDurationMs: 0,
    peers: [],
    totals: { underlay: zero, overlay: zero, fullSize: zero },
  };
}

/** The probing loop and its report. */
export interface PeerProber {
  report(): PeerProbeReport;
  /**
   * Probe until the signal aborts; returns at once (disabled) without permission to open an
   * ICMP socket, and retries sockets that fail for other reasons.
   */
  run(signal: AbortSignal): Promise<void>;
}

interface Pending {
  readonly state: PathState;
  readonly path: ProbePath;
  readonly sentAt: number;
}

/** One socket and the echoes on it still waiting for a reply, oldest first. */
interface Channel {
  readonly socket: IcmpSocket;
  readonly pending: Map<number, Pending>;
  nextSeq: number;
}

/** The sockets of one probed family. */
interface FamilyChannels {
  readonly spec: ProbeFamily;
  readonly underlay: Channel;
  readonly overlay?: Channel;
}

/** Where a peer's history is kept: a dual-stack peer has one per family. */
function stateKey(target: ProbeTarget): string {
  return `${target.publicIP.family} ${target.key}`;
}

/**
 * Build the prober; nothing is opened or sent before {@link PeerProber.run}.
 *
 * @example
 * ```ts
 * const prober = createPeerProber({ intervalMs: 60_000, maxPerSecond: 50,
 *   families: [{ underlaySource, overlaySource, fullSizeBytes: 1450 }],
 *   targets: () => probeTargets(...), log });
 * state.peerProbes = prober.report;
 * await prober.run(signal);
 * ```
 */
export function createPeerProber(options: ProberOptions): PeerProber {
  const timeoutMs = options.timeoutMs ?? PROBE_TIMEOUT_MS;
  const openSocket = options.openSocket ?? openIcmpSocket;
  const { log, observeRtt } = options;
  const zero = (): Record<ProbeOutcome, number> => ({ answered: 0, lost: 0, unsent: 0 });
  const totals = { underlay: zero(), overlay: zero(), fullSize: zero() };
  let peers = new Map<string, PeerProbeState>();
  let enabled = false;
  let off: ProbingOff | undefined;
  let disabledReason: string | undefined;
  let socketKind: IcmpSocketKind | undefined;
  let plan: RoundPlan = planRound(0, options);

  function send(channel: Channel, state: PathState, path: ProbePath, to: IPAddr, bytes: number) {
    const seq = channel.nextSeq;
    channel.nextSeq = (seq + 1) & 0xffff;
    // A sequence number still pending after 65 536 sends is long lost: reuse it.
    channel.pending.delete(seq);
    const error = channel.socket.send(to, seq, bytes);
    if (error === undefined) {
      channel.pending.set(seq, { state, path, sentAt: performance.now() });
      return;
    }
    recordFailure(state, error, new Date());
    totals[path].unsent++;
  }

  function probePeer(peer: PeerProbeState, channels: FamilyChannels) {
    const { target } = peer;
    const { underlay, overlay, spec } = channels;
    const small = smallProbeBytes(spec.underlaySource.family);
    send(underlay, peer.underlay, "underlay", target.publicIP, small);
    if (overlay && peer.overlay && target.overlay) {
      send(overlay, peer.overlay, "overlay", target.overlay, small);
      send(overlay, peer.fullSize, "fullSize", target.overlay, spec.fullSizeBytes);
    } else {
      send(underlay, peer.fullSize, "fullSize", target.publicIP, spec.fullSizeBytes);
    }
  }

  /** Fail every echo older than the timeout; returns when the oldest left one expires. */
  function expire(channel: Channel, now: number): number {
    for (const [seq, pending] of channel.pending) {
      const deadline = pending.sentAt + timeoutMs;
      if (deadline > now) return deadline;
      channel.pending.delete(seq);
      recordFailure(pending.state, `no reply within ${timeoutMs} ms`, new Date());
      totals[pending.path].lost++;
    }
    return Infinity;
  }

  /**
   * Take the new peer list (targets in families not probed are left out): keep the history of
   * peers whose addresses did not change.
   */
  function startRound(probed: ReadonlySet<Family>): PeerProbeState[] {
    const next = new Map<string, PeerProbeState>();
    for (const target of options.targets()) {
      if (!probed.has(target.publicIP.family)) continue;
      const key = stateKey(target);
      const known = peers.get(key);
      next.set(key, known && sameTarget(known.target, target) ? known : newPeerProbeState(target));
    }
    peers = next;
    plan = planRound(next.size, options);
    return [...next.values()];
  }

  async function schedule(families: FamilyChannels[], signal: AbortSignal): Promise<void> {
    const byFamily = new Map(families.map((f) => [f.spec.underlaySource.family, f]));
    const channels = families.flatMap(channelsOf);
    let round: PeerProbeState[] = [];
    let index = 0;
    let roundStart = -Infinity;
    while (!signal.aborted) {
      let now = performance.now();
      if (index >= round.length && now >= roundStart + plan.durationMs) {
        roundStart = now;
        index = 0;
        try {
          round = startRound(new Set(byFamily.keys()));
        } catch (err) {
          // Never throw out of the loop: skip this round, try again after the interval.
          log.warn("peer probe round skipped", { error: errorText(err) });
          round = [];
        }
      }
      while (index < round.length && roundStart + index * plan.spacingMs <= now) {
        // Peers that join or leave are seen at the next round.
        const peer = round[index++];
        try {
          probePeer(peer, byFamily.get(peer.target.publicIP.family)!);
        } catch (err) {
          // Never throw out of the loop (an impossible probe size, say): the peer shows why.
          recordFailure(peer.underlay, errorText(err), new Date());
        }
      }
      now = performance.now();
      const nextExpiry = Math.min(...channels.map((channel) => expire(channel, now)));
      const nextDue = index < round.length
        ? roundStart + index * plan.spacingMs
        : roundStart + plan.durationMs;
      await sleep(Math.max(MIN_TICK_MS, Math.min(nextDue, nextExpiry) - now), signal);
    }
  }

  async function receive(channel: Channel, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      let replies;
      try {
        replies = await channel.socket.receive(RECEIVE_WAIT_MS);
      } catch (err) {
        log.warn("peer probe receive failed", { error: errorText(err) });
        await sleep(RECEIVE_WAIT_MS, signal);
        continue;
      }
      const now = performance.now();
      for (const reply of replies) {
        const pending = channel.pending.get(reply.seq);
        if (!pending) continue; // late: already counted as lost
        channel.pending.delete(reply.seq);
        const rttMs = now - pending.sentAt;
        recordAnswer(pending.state, rttMs, new Date());
        totals[pending.path].answered++;
        observeRtt?.(pending.path, rttMs / 1000);
      }
    }
  }

  /** Open one family's sockets, or throw (having closed whatever it opened). */
  function openFamily(spec: ProbeFamily): FamilyChannels {
    const channel = (socket: IcmpSocket): Channel => ({ socket, pending: new Map(), nextSeq: 0 });
    const underlay = channel(openSocket({ source: spec.underlaySource }));
    try {
      const overlay = spec.overlaySource && channel(openSocket({ source: spec.overlaySource }));
      return { spec, underlay, overlay };
    } catch (err) {
      underlay.socket.close();
      throw err;
    }
  }

  /**
   * Open the sockets. No permission disables probing for good; any other failure (a tunnel
   * address still in IPv6 duplicate address detection cannot be bound yet) is retried.
   */
  async function open(signal: AbortSignal): Promise<FamilyChannels[] | undefined> {
    const backoff = new Backoff(OPEN_RETRY_MS.initial, OPEN_RETRY_MS.max);
    while (!signal.aborted) {
      const opened: FamilyChannels[] = [];
      try {
        for (const spec of options.families) opened.push(openFamily(spec));
        disabledReason = undefined;
        socketKind = opened[0]?.underlay.socket.kind;
        return opened;
      } catch (err) {
        for (const family of opened) closeFamily(family);
        disabledReason = errorText(err);
        if (err instanceof IcmpPermissionError) {
          off = "permission";
          log.warn("peer probing disabled", { error: disabledReason });
          return undefined;
        }
        const retryInMs = backoff.next();
        log.warn("cannot open the probe sockets yet; will retry", {
          error: disabledReason,
          retryInMs,
        });
        await sleep(retryInMs, signal);
      }
    }
    return undefined;
  }

  return {
    report: () => ({
      enabled,
      off,
      disabledReason,
      socketKind,
      intervalMs: options.intervalMs,
      maxPerSecond: options.maxPerSecond,
      timeoutMs,
      fullSizeBytes: Object.fromEntries(
        options.families.map((f) => [f.underlaySource.family, f.fullSizeBytes]),
      ),
      roundDurationMs: plan.durationMs,
      peers: [...peers.values()],
      totals,
    }),
    async run(signal) {
      const families = await open(signal);
      if (!families) return;
      enabled = true;
      try {
        // The receive loops end within RECEIVE_WAIT_MS of the abort; only then are sockets closed.
        await Promise.all([
          schedule(families, signal),
          ...families.flatMap(channelsOf).map((channel) => receive(channel, signal)),
        ]);
      } finally {
        enabled = false;
        for (const family of families) closeFamily(family);
      }
    },
  };
}

function channelsOf(family: FamilyChannels): Channel[] {
  return family.overlay ? [family.underlay, family.overlay] : [family.underlay];
}

function closeFamily(family: FamilyChannels): void {
  for (const channel of channelsOf(family)) channel.socket.close();
}
