/**
 * The admin API's JSON shapes as zod schemas: they document the API, type the server's views
 * and let `tartan status` parse what it fetched.
 *
 * Conventions: addresses and CIDRs in canonical text, times as ISO 8601 UTC strings, absent
 * values as `null` (never a missing member), counters as non-negative integers.
 *
 * @example
 * ```ts
 * const status = StatusSchema.parse(await (await fetch(`${url}/v1/status`)).json());
 * console.log(status.lease?.subnet);
 * ```
 *
 * @module
 */
import { z } from "zod";
import { PEER_VERDICTS } from "../probe/peer_state.ts";

const Timestamp = z.iso.datetime();
const Count = z.number().int().nonnegative();

/** Body of every 4xx/5xx JSON response. */
export const ErrorSchema = z.object({ error: z.string() });
export type ErrorBody = z.infer<typeof ErrorSchema>;

/** One readiness condition. */
export const ReadinessCheckSchema = z.object({
  /** `lease`, `backend`, `subnet_env` or `watch`. */
  name: z.string(),
  ok: z.boolean(),
  /** Why the check fails; null when it passes. */
  reason: z.string().nullable(),
});
export type ReadinessCheckBody = z.infer<typeof ReadinessCheckSchema>;

/** `GET /readyz` with `Accept: application/json`. */
export const ReadinessSchema = z.object({
  ready: z.boolean(),
  /** The flannel-compatible text: `flanneld is ready` or `flanneld is not ready yet`. */
  message: z.string(),
  checks: z.array(ReadinessCheckSchema),
});
export type ReadinessBody = z.infer<typeof ReadinessSchema>;

/** One lease as stored in etcd or derived from a Kubernetes node. */
export const LeaseSchema = z.object({
  /** Lease key, e.g. `10.244.3.0-24` or `10.244.3.0-24&fc00:0:0:3::-64`. */
  key: z.string(),
  subnet: z.string().nullable(),
  ipv6Subnet: z.string().nullable(),
  publicIP: z.string(),
  publicIPv6: z.string().nullable(),
  /** Null for udp and alloc nodes, which publish none. */
  backendType: z.string().nullable(),
  backendData: z.json().nullable(),
  backendV6Data: z.json().nullable(),
  /**
   * Null when the lease never expires (reservations, Kubernetes) or its expiry is not known:
   * in etcd mode only our own lease's expiry is, as flannel reads no peer TTLs.
   */
  expiration: Timestamp.nullable(),
  /** Whole seconds until expiry, negative once expired; null as for `expiration`. */
  expiresInSeconds: z.number().int().nullable(),
  /** An etcd key without an etcd lease: never expires, never renewed. */
  reserved: z.boolean(),
  /** Whether this is our own lease. */
  own: z.boolean(),
  /**
   * Why the lease gate keeps this lease from the backend (no route, neighbour or FDB entry is
   * made for it), e.g. `{"reason":"subnet_overlaps_lease","detail":"…"}`; null when it passed.
   */
  skipped: z.object({ reason: z.string(), detail: z.string() }).nullable(),
});
export type LeaseBody = z.infer<typeof LeaseSchema>;

/** `GET /v1/leases`. */
export const LeaseListSchema = z.object({
  /** Leases known in total, before the `subnet` filter. */
  total: Count,
  /** Matching leases, ordered by subnet. */
  leases: z.array(LeaseSchema),
});
export type LeaseListBody = z.infer<typeof LeaseListSchema>;

/** One address family of the network config. */
export const FamilyConfigSchema = z.object({
  network: z.string(),
  subnetLen: z.number().int(),
  subnetMin: z.string(),
  subnetMax: z.string(),
});

/** The effective net-conf; secret backend options (e.g. a WireGuard PSK) are redacted. */
export const NetworkConfigSchema = z.object({
  ipv4: FamilyConfigSchema.nullable(),
  ipv6: FamilyConfigSchema.nullable(),
  enableNFTables: z.boolean(),
  backend: z.object({ type: z.string(), options: z.record(z.string(), z.json()) }),
});
export type NetworkConfigBody = z.infer<typeof NetworkConfigSchema>;

/** The traffic (masquerade/forward rule) manager. */
export const TrafficSchema = z.object({
  engine: z.enum(["iptables", "nftables"]),
  lastCheck: Timestamp.nullable(),
  lastResult: z.enum(["in-sync", "repaired", "failed"]).nullable(),
  lastError: z.string().nullable(),
  repairs: Count,
  failures: Count,
});
export type TrafficBody = z.infer<typeof TrafficSchema>;

/** Lease store counters since the daemon started. */
export const CountersSchema = z.object({
  leasesKnown: Count,
  renewals: Count,
  renewFailures: Count,
  reacquisitions: Count,
  watchEvents: Count,
  relists: Count,
  watchErrors: Count,
  malformedSkipped: Count,
  /** Leases the lease gate keeps from the backend now (`/v1/leases` says why). */
  leasesSkipped: Count,
});
export type CountersBody = z.infer<typeof CountersSchema>;

/** `GET /v1/status`. */
export const StatusSchema = z.object({
  node: z.string(),
  mode: z.enum(["etcd", "kube"]),
  /** The etcd endpoints in use, credentials removed; null in kube mode. */
  etcdEndpoints: z.array(z.string()).nullable(),
  version: z.string(),
  startedAt: Timestamp,
  uptimeSeconds: Count,
  publicIP: z.string().nullable(),
  publicIPv6: z.string().nullable(),
  ready: z.boolean(),
  readiness: z.array(ReadinessCheckSchema),
  lease: LeaseSchema.nullable(),
  network: NetworkConfigSchema.nullable(),
  /** Summary; `GET /v1/backend` has the details. Null before the backend registered. */
  backend: z.object({ type: z.string(), ready: z.boolean() }).nullable(),
  traffic: TrafficSchema.nullable(),
  lastWatchUpdate: Timestamp.nullable(),
  counters: CountersSchema,
});
export type StatusBody = z.infer<typeof StatusSchema>;

/** One peer's kernel state. */
export const PeerSchema = z.object({
  subnet: z.string(),
  publicIP: z.string(),
  inSync: z.boolean(),
  error: z.string().nullable(),
});
export type PeerBody = z.infer<typeof PeerSchema>;

/** Userspace data path counters (udp backend). */
export const DataPathSchema = z.object({
  packetsTx: Count,
  packetsRx: Count,
  bytesTx: Count,
  bytesRx: Count,
  /** Dropped packets by reason (`no_route`, `ttl`, `bad_source`, `malformed`, …). */
  drops: z.record(z.string(), Count),
});
export type DataPathBody = z.infer<typeof DataPathSchema>;

/** `GET /v1/backend`. */
export const BackendSchema = z.object({
  type: z.string(),
  /** What runs the devices where there is a choice (wireguard: `kernel` or `wireguard-go`). */
  implementation: z.string().nullable(),
  ready: z.boolean(),
  lastReconcile: Timestamp.nullable(),
  lastReconcileOk: z.boolean().nullable(),
  lastError: z.string().nullable(),
  driftRepaired: Count,
  peersInSync: Count,
  peersOutOfSync: Count,
  peers: z.array(PeerSchema),
  /** Null for kernel data paths (everything but udp). */
  dataPath: DataPathSchema.nullable(),
});
export type BackendBody = z.infer<typeof BackendSchema>;

/** One probe path of a peer. */
export const ProbePathSchema = z.object({
  /** The address probed. */
  target: z.string(),
  /** The last probe's outcome; null before the first one. */
  reachable: z.boolean().nullable(),
  /** Round-trip time of the last answered probe. */
  rttMs: z.number().nonnegative().nullable(),
  lastSuccess: Timestamp.nullable(),
  lastProbe: Timestamp.nullable(),
  /** Unanswered probes in a row. */
  failureStreak: Count,
  /** Why the last probe failed (`no reply within 1000 ms`, `ENETUNREACH`, …). */
  lastError: z.string().nullable(),
});
export type ProbePathBody = z.infer<typeof ProbePathSchema>;

/** What probing says about one peer. */
export const PeerProbeSchema = z.object({
  /** Lease key, e.g. `10.244.3.0-24`. */
  key: z.string(),
  subnet: z.string(),
  publicIP: z.string(),
  /** `ok`, `pending`, `unreachable`, `overlay-blocked`, `mtu-black-hole`, `underlay-unanswered`. */
  verdict: z.enum(PEER_VERDICTS),
  /** ICMP echo to the peer's public IP from our interface address. */
  underlay: ProbePathSchema,
  /** ICMP echo to the peer's tunnel address from ours; null without a tunnel (host-gw). */
  overlay: ProbePathSchema.nullable(),
  /** A DF echo of the pods' MTU on the pods' path (overlay, else underlay). */
  fullSize: ProbePathSchema,
  /** The size of that echo in the peer's family (IPv6's path may carry less than IPv4's). */
  fullSizeBytes: Count,
});
export type PeerProbeBody = z.infer<typeof PeerProbeSchema>;

/** `GET /v1/peers`. */
export const PeersSchema = z.object({
  /** False when probing is off (`--peer-probe-interval=0`) or cannot run here. */
  enabled: z.boolean(),
  /**
   * Why probing is off: `flag` (`--peer-probe-interval=0`), `permission` (no ICMP socket
   * allowed); null while on or not started yet.
   */
  off: z.enum(["flag", "permission"]).nullable(),
  disabledReason: z.string().nullable(),
  /** `raw` (CAP_NET_RAW) or `ping` (an unprivileged ICMP socket). */
  socket: z.enum(["raw", "ping"]).nullable(),
  intervalSeconds: z.number().nonnegative(),
  maxPerSecond: z.number().nonnegative(),
  timeoutMs: Count,
  /**
   * Size of the full-size probe: the pods' MTU (FLANNEL_MTU), in IPv4 (or, on an IPv6-only
   * node, IPv6); each peer carries the size of its own family's.
   */
  fullSizeBytes: Count,
  /** How often each peer is probed at the current peer count. */
  roundSeconds: z.number().nonnegative(),
  /** Peers per verdict. */
  verdicts: z.record(z.string(), Count),
  peers: z.array(PeerProbeSchema),
});
export type PeersBody = z.infer<typeof PeersSchema>;
