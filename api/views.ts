/**
 * Pure renderings of the daemon state into the admin API's JSON bodies (see `schemas.ts`).
 *
 * Each view does at most one walk over the lease map, so a request stays cheap next to the
 * data path even with thousands of peers.
 *
 * @module
 */
import type { FamilyConfig, NetworkConfig } from "../config/network_config.ts";
import type { DaemonState } from "../state.ts";
import { formatAddr, formatNet, type IPAddr, type IPNet } from "../ip/mod.ts";
import { formatLeaseKey, type JsonValue, type Lease, sameSubnets } from "../subnet/lease.ts";
import { evaluateReadiness, type Readiness, readinessHeadline } from "./readiness.ts";
import type { PeerProbeReport } from "../probe/prober.ts";
import type { ProbeTarget } from "../probe/targets.ts";
import {
  type PathState,
  PEER_VERDICTS,
  type PeerProbeState,
  type PeerVerdict,
  peerVerdict,
} from "../probe/peer_state.ts";
import type {
  BackendBody,
  LeaseBody,
  LeaseListBody,
  NetworkConfigBody,
  PeerProbeBody,
  PeersBody,
  ProbePathBody,
  ReadinessBody,
  ReadinessCheckBody,
  StatusBody,
  TrafficBody,
} from "./schemas.ts";
import { type BackendHealth } from "../backends/backend.ts";
import { type TrafficHealth } from "../traffic/manager.ts";

/** Backend options whose values must not leave the node (WireGuard `PSK`, …). */
const SECRET_OPTION = /psk|secret|password|token|privatekey/i;

function iso(date: Date | undefined): string | null {
  return date ? date.toISOString() : null;
}

function addrText(addr: IPAddr | undefined): string | null {
  return addr ? formatAddr(addr) : null;
}

function netText(net: IPNet | undefined): string | null {
  return net ? formatNet(net) : null;
}

/** The parts of a lease's rendering that depend on the lease alone. */
type LeaseText = Omit<LeaseBody, "key" | "expiresInSeconds" | "own" | "skipped">;

/**
 * Lease objects are immutable values, so their text is computed once per object; a listing of
 * thousands of leases then costs a map walk, not thousands of address formattings.
 */
const leaseTexts = new WeakMap<Lease, LeaseText>();

function leaseText(lease: Lease): LeaseText {
  let text = leaseTexts.get(lease);
  if (!text) {
    text = {
      subnet: netText(lease.subnet),
      ipv6Subnet: netText(lease.ipv6Subnet),
      publicIP: formatAddr(lease.attrs.publicIP),
      publicIPv6: addrText(lease.attrs.publicIPv6),
      backendType: lease.attrs.backendType ?? null,
      backendData: lease.attrs.backendData ?? null,
      backendV6Data: lease.attrs.backendV6Data ?? null,
      expiration: iso(lease.expiration),
      reserved: lease.reserved ?? false,
    };
    leaseTexts.set(lease, text);
  }
  return text;
}

/**
 * Render one lease under its key. Our own lease is rendered from `state.ownLease`, the daemon's
 * own record, which knows the expiry that a watched copy may lack.
 */
export function leaseView(state: DaemonState, key: string, watched: Lease, now: Date): LeaseBody {
  const ownLease = state.ownLease;
  const own = ownLease !== undefined && sameSubnets(watched, ownLease);
  const lease = own ? ownLease : watched;
  const expiry = lease.expiration;
  return {
    key,
    ...leaseText(lease),
    expiresInSeconds: expiry ? Math.trunc((expiry.getTime() - now.getTime()) / 1000) : null,
    own,
    skipped: skippedView(state, watched),
  };
}

function skippedView(state: DaemonState, lease: Lease): LeaseBody["skipped"] {
  const skip = state.skipOf?.(lease);
  return skip ? { reason: skip.reason, detail: skip.detail } : null;
}

/** IPv4 leases first, each family by subnet base. */
function compareLeases(a: Lease, b: Lease): number {
  const [x, y] = [a.subnet ?? a.ipv6Subnet, b.subnet ?? b.ipv6Subnet];
  if (!x || !y) return (x ? 1 : 0) - (y ? 1 : 0);
  if (x.family !== y.family) return x.family - y.family;
  return x.base < y.base ? -1 : x.base > y.base ? 1 : 0;
}

/** Every known lease accepted by `keep`, ordered by subnet. */
export function leaseListView(
  state: DaemonState,
  keep: (lease: Lease) => boolean,
  now: Date,
): LeaseListBody {
  const picked = [...state.leases].filter(([, lease]) => keep(lease));
  picked.sort(([, a], [, b]) => compareLeases(a, b));
  return {
    total: state.leases.size,
    leases: picked.map(([key, lease]) => leaseView(state, key, lease, now)),
  };
}

function familyView(family: FamilyConfig | undefined): NetworkConfigBody["ipv4"] {
  if (!family) return null;
  return {
    network: formatNet(family.network),
    subnetLen: family.subnetLen,
    subnetMin: formatAddr(family.subnetMin),
    subnetMax: formatAddr(family.subnetMax),
  };
}

/** The effective network config with secret backend options redacted. */
export function networkView(config: NetworkConfig): NetworkConfigBody {
  const options: Record<string, JsonValue> = {};
  // The options were parsed from the net-conf JSON, so every value is JSON.
  for (const [name, value] of Object.entries(config.backend.options)) {
    options[name] = SECRET_OPTION.test(name) ? "<redacted>" : (value as JsonValue);
  }
  return {
    ipv4: familyView(config.ipv4),
    ipv6: familyView(config.ipv6),
    enableNFTables: config.enableNFTables,
    backend: { type: config.backend.type, options },
  };
}

/** The traffic manager's health. */
export function trafficView(traffic: TrafficHealth): TrafficBody {
  return {
    engine: traffic.engine,
    lastCheck: iso(traffic.lastCheck),
    lastResult: traffic.lastResult ?? null,
    lastError: traffic.lastError ?? null,
    repairs: traffic.repairs,
    failures: traffic.failures,
  };
}

function checksView(readiness: Readiness): ReadinessCheckBody[] {
  return readiness.checks.map((check) => ({
    name: check.name,
    ok: check.ok,
    reason: check.reason ?? null,
  }));
}

/** The readiness verdict as JSON (`/readyz` with `Accept: application/json`). */
export function readinessView(readiness: Readiness): ReadinessBody {
  return {
    ready: readiness.ready,
    message: readinessHeadline(readiness),
    checks: checksView(readiness),
  };
}

/** An endpoint URL without `user:password@` (which flannel would accept there). */
function withoutCredentials(endpoint: string): string {
  try {
    const url = new URL(endpoint);
    if (!url.username && !url.password) return endpoint;
    url.username = "";
    url.password = "";
    return url.href.replace(/\/$/, "");
  } catch {
    return endpoint.replace(/\/\/[^/@]*@/, "//");
  }
}

/** `GET /v1/status`. */
export function statusView(state: DaemonState, now: Date): StatusBody {
  const readiness = evaluateReadiness(state, now);
  const backend = state.backend?.();
  return {
    node: state.nodeName,
    mode: state.mode,
    etcdEndpoints: state.etcdEndpoints?.map(withoutCredentials) ?? null,
    version: state.version,
    startedAt: state.startedAt.toISOString(),
    uptimeSeconds: Math.max(0, Math.floor((now.getTime() - state.startedAt.getTime()) / 1000)),
    publicIP: addrText(state.publicIP),
    publicIPv6: addrText(state.publicIPv6),
    ready: readiness.ready,
    readiness: checksView(readiness),
    lease: state.ownLease
      ? leaseView(state, formatLeaseKey(state.ownLease), state.ownLease, now)
      : null,
    network: state.config ? networkView(state.config) : null,
    backend: backend ? { type: backend.type, ready: backend.ready } : null,
    traffic: state.traffic ? trafficView(state.traffic()) : null,
    lastWatchUpdate: iso(state.lastWatchUpdate),
    counters: {
      leasesKnown: state.leases.size,
      ...state.store,
      leasesSkipped: Object.values(state.skippedNow?.() ?? {}).reduce((a, b) => a + b, 0),
    },
  };
}

/** `GET /v1/backend`. */
export function backendView(health: BackendHealth): BackendBody {
  const inSync = health.peers.filter((peer) => peer.inSync).length;
  const dataPath = health.dataPath;
  return {
    type: health.type,
    implementation: health.implementation ?? null,
    ready: health.ready,
    lastReconcile: iso(health.lastReconcile),
    lastReconcileOk: health.lastReconcileOk ?? null,
    lastError: health.lastError ?? null,
    driftRepaired: health.driftRepaired,
    peersInSync: inSync,
    peersOutOfSync: health.peers.length - inSync,
    peers: health.peers.map((peer) => ({
      subnet: peer.subnet,
      publicIP: peer.publicIP,
      inSync: peer.inSync,
      error: peer.error ?? null,
    })),
    dataPath: dataPath ? { ...dataPath, drops: { ...dataPath.drops } } : null,
  };
}

/** The text of a probe target's addresses. */
interface TargetText {
  readonly subnet: string;
  readonly publicIP: string;
  readonly overlay: string | null;
}

/** Targets are immutable values: format their addresses once (10 000 peers, every request). */
const targetTexts = new WeakMap<ProbeTarget, TargetText>();

function targetText(target: ProbeTarget): TargetText {
  let text = targetTexts.get(target);
  if (!text) {
    text = {
      subnet: formatNet(target.subnet),
      publicIP: formatAddr(target.publicIP),
      overlay: target.overlay ? formatAddr(target.overlay) : null,
    };
    targetTexts.set(target, text);
  }
  return text;
}

function probePathView(path: PathState, target: string): ProbePathBody {
  const lastProbe = iso(path.lastProbe);
  return {
    target,
    reachable: path.reachable ?? null,
    rttMs: path.rttMs === undefined ? null : Math.round(path.rttMs * 1000) / 1000,
    // After an answer both are the same instant: format it once.
    lastSuccess: path.lastSuccess === path.lastProbe ? lastProbe : iso(path.lastSuccess),
    lastProbe,
    failureStreak: path.failureStreak,
    lastError: path.lastError ?? null,
  };
}

function peerProbeView(
  peer: PeerProbeState,
  verdict: PeerVerdict,
  fullSizeBytes: number,
): PeerProbeBody {
  const text = targetText(peer.target);
  return {
    key: peer.target.key,
    subnet: text.subnet,
    publicIP: text.publicIP,
    verdict,
    underlay: probePathView(peer.underlay, text.publicIP),
    overlay: peer.overlay && text.overlay ? probePathView(peer.overlay, text.overlay) : null,
    fullSize: probePathView(peer.fullSize, text.overlay ?? text.publicIP),
    fullSizeBytes,
  };
}

/** Verdicts that are not problems: left out by `/v1/peers?problems`. */
const FINE: ReadonlySet<PeerVerdict> = new Set(["ok", "pending"]);

/**
 * `GET /v1/peers`: the prober's report, or why there is none. With `problemsOnly` the list keeps
 * only peers with a problem verdict (the counts still cover every peer): what `tartan doctor`
 * needs, without rendering 10 000 healthy peers.
 */
export function peersView(report: PeerProbeReport | undefined, problemsOnly = false): PeersBody {
  const verdicts: Record<string, number> = Object.fromEntries(PEER_VERDICTS.map((v) => [v, 0]));
  const peers: PeerProbeBody[] = [];
  for (const peer of report?.peers ?? []) {
    const verdict = peerVerdict(peer);
    verdicts[verdict]++;
    if (!problemsOnly || !FINE.has(verdict)) {
      const bytes = report?.fullSizeBytes[peer.target.publicIP.family] ?? 0;
      peers.push(peerProbeView(peer, verdict, bytes));
    }
  }
  return {
    enabled: report?.enabled ?? false,
    off: report?.off ?? null,
    disabledReason: report ? report.disabledReason ?? null : "peer probing has not started yet",
    socket: report?.socketKind ?? null,
    intervalSeconds: (report?.intervalMs ?? 0) / 1000,
    maxPerSecond: report?.maxPerSecond ?? 0,
    timeoutMs: report?.timeoutMs ?? 0,
    fullSizeBytes: report?.fullSizeBytes[4] ?? report?.fullSizeBytes[6] ?? 0,
    roundSeconds: (report?.roundDurationMs ?? 0) / 1000,
    verdicts,
    peers,
  };
}
