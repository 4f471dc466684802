/**
 * The human-readable `tartan status` view of what the admin API returned.
 *
 * @module
 */
import type {
  BackendBody,
  LeaseBody,
  LeaseListBody,
  PeerProbeBody,
  PeersBody,
  ProbePathBody,
  StatusBody,
} from "./schemas.ts";

/** Everything `tartan status` fetched; `backend` is null before the backend registered. */
export interface StatusReport {
  readonly status: StatusBody;
  readonly backend: BackendBody | null;
  readonly leases: LeaseListBody;
  /** Peer probe results; null from a daemon without `/v1/peers`. */
  readonly peers: PeersBody | null;
}

/** `93784` ⇒ `1d2h`: the two largest units, enough to judge an expiry or an uptime. */
export function formatDuration(totalSeconds: number): string {
  const units: Array<[string, number]> = [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]];
  let rest = Math.max(0, Math.floor(totalSeconds));
  const parts: string[] = [];
  for (const [name, size] of units) {
    if (parts.length === 2) break;
    const count = Math.floor(rest / size);
    rest -= count * size;
    if (count > 0 || parts.length > 0) parts.push(`${count}${name}`);
  }
  return parts.length === 0 ? "0s" : parts.join("");
}

/** `1536` ⇒ `1.5 KiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function since(iso: string | null, now: Date): string {
  if (!iso) return "never";
  return `${formatDuration((now.getTime() - Date.parse(iso)) / 1000)} ago`;
}

function expiryText(lease: LeaseBody): string {
  const left = lease.expiresInSeconds;
  if (lease.reserved) return "never (reserved)";
  if (left === null) return "-";
  return left < 0 ? `expired ${formatDuration(-left)} ago` : `in ${formatDuration(left)}`;
}

function subnetsText(lease: LeaseBody): string {
  return [lease.subnet, lease.ipv6Subnet].filter((net) => net !== null).join(",");
}

function outcome(ok: boolean | null): string {
  return ok === null ? "" : ok ? " (ok)" : " (failed)";
}

/** Left-aligned columns separated by two spaces. */
export function formatTable(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0].map((_, col) => Math.max(...rows.map((row) => row[col].length)));
  return rows.map((row) =>
    row.map((cell, col) => col === row.length - 1 ? cell : cell.padEnd(widths[col])).join("  ")
  );
}

/** `0.21ms`, `lost ×3` or `-`: one probe path in a table cell. */
function probeCell(path: ProbePathBody | null | undefined): string {
  if (!path || path.reachable === null) return "-";
  if (path.reachable) return path.rttMs === null ? "ok" : `${path.rttMs.toFixed(2)}ms`;
  return `lost ×${path.failureStreak}`;
}

/** The UNDERLAY, OVERLAY and PROBE cells of one probed peer. */
function probeCells(probe: PeerProbeBody | undefined): string[] {
  return [probeCell(probe?.underlay), probeCell(probe?.overlay), probe?.verdict ?? "-"];
}

function peerRows(report: StatusReport): string[][] {
  const sync = new Map<string, string>();
  for (const peer of report.backend?.peers ?? []) {
    const text = peer.inSync ? "yes" : `no${peer.error ? `: ${peer.error}` : ""}`;
    for (const subnet of peer.subnet.split(",")) sync.set(subnet.trim(), text);
  }
  const probes = new Map<string, PeerProbeBody>();
  for (const peer of report.peers?.peers ?? []) probes.set(peer.subnet, peer);
  const rows = [[
    "SUBNET",
    "PUBLIC IP",
    "BACKEND",
    "EXPIRES",
    "IN SYNC",
    "UNDERLAY",
    "OVERLAY",
    "PROBE",
  ]];
  for (const lease of report.leases.leases) {
    if (lease.own) continue;
    const inSync = lease.skipped
      ? `skipped: ${lease.skipped.reason}`
      : sync.get(lease.subnet ?? "") ?? sync.get(lease.ipv6Subnet ?? "") ?? "-";
    const publicIP = lease.publicIP === "0.0.0.0" && lease.publicIPv6
      ? lease.publicIPv6
      : lease.publicIP;
    // A dual-stack peer is probed in each family: its IPv6 probe gets a row of its own.
    const [probe, ...more] = [lease.subnet, lease.ipv6Subnet]
      .flatMap((net) => net && probes.has(net) ? [probes.get(net)!] : []);
    rows.push([
      subnetsText(lease),
      probe?.publicIP ?? publicIP,
      lease.backendType ?? "-",
      expiryText(lease),
      inSync,
      ...probeCells(probe),
    ]);
    for (const other of more) rows.push(["", other.publicIP, "", "", "", ...probeCells(other)]);
  }
  return rows;
}

function probesLine(peers: PeersBody | null): string | undefined {
  if (!peers) return undefined;
  if (!peers.enabled) return field("probes", `off: ${peers.disabledReason ?? "not started"}`);
  const problems = Object.entries(peers.verdicts)
    .filter(([verdict, count]) => count > 0 && verdict !== "ok" && verdict !== "pending")
    .map(([verdict, count]) => `${count} ${verdict}`);
  return field(
    "probes",
    `each peer every ${formatDuration(peers.roundSeconds)}`,
    `${peers.maxPerSecond}/s at most`,
    `${peers.socket} ICMP socket`,
    `${peers.verdicts.ok ?? 0} ok`,
    ...(problems.length > 0 ? problems : ["no problems"]),
  );
}

/** One `label     value` line. */
function field(label: string, ...values: string[]): string {
  return `${label.padEnd(11)}${values.join(", ")}`;
}

function backendLines(backend: BackendBody | null, now: Date): string[] {
  if (!backend) return [field("backend", "not registered yet")];
  const peers = backend.peersInSync + backend.peersOutOfSync;
  const lines = [field(
    "backend",
    backend.implementation ? `${backend.type} (${backend.implementation})` : backend.type,
    backend.ready ? "ready" : "not ready",
    `last reconcile ${since(backend.lastReconcile, now)}${outcome(backend.lastReconcileOk)}`,
    `drift repaired ${backend.driftRepaired}`,
    `${backend.peersInSync}/${peers} peers in sync`,
  )];
  if (backend.lastError) lines.push(field("", `last error: ${backend.lastError}`));
  const path = backend.dataPath;
  if (path) {
    const drops = Object.entries(path.drops).map(([reason, n]) => `${reason}=${n}`).join(" ");
    lines.push(field(
      "udp",
      `tx ${path.packetsTx} packets / ${formatBytes(path.bytesTx)}`,
      `rx ${path.packetsRx} packets / ${formatBytes(path.bytesRx)}`,
      `drops: ${drops || "none"}`,
    ));
  }
  return lines;
}

function leaseLine(lease: LeaseBody | null): string {
  if (!lease) return field("lease", "none yet");
  if (lease.reserved) return field("lease", subnetsText(lease), "reserved, never expires");
  if (!lease.expiration) return field("lease", subnetsText(lease));
  return field("lease", subnetsText(lease), `expires ${lease.expiration} (${expiryText(lease)})`);
}

/** Render the report as the text `tartan status` prints. */
export function renderStatus(report: StatusReport, now: Date = new Date()): string {
  const { status } = report;
  const failing = status.readiness.filter((check) => !check.ok).map((check) => check.reason);
  const publicIPs = [status.publicIP, status.publicIPv6].filter((ip) => ip !== null);
  const lines = [
    field(
      "node",
      `${status.node} (${status.mode} mode`,
      `tartan ${status.version}`,
      `up ${formatDuration(status.uptimeSeconds)})`,
    ),
    field("ready", status.ready ? "yes" : `no: ${failing.join("; ")}`),
    field("public IP", ...(publicIPs.length > 0 ? publicIPs : ["-"])),
    leaseLine(status.lease),
  ];
  const network = status.network;
  if (network) {
    const families = [network.ipv4, network.ipv6].filter((family) => family !== null);
    const nets = families.map((family) => `${family.network} (/${family.subnetLen} per node)`);
    lines.push(field("network", ...nets, `backend ${network.backend.type}`));
  }
  lines.push(...backendLines(report.backend, now));
  const traffic = status.traffic;
  if (traffic) {
    lines.push(field(
      "traffic",
      traffic.engine,
      `last check ${since(traffic.lastCheck, now)}${
        outcome(traffic.lastResult ? traffic.lastResult !== "failed" : null)
      }`,
      `repairs ${traffic.repairs}`,
    ));
  }
  const probes = probesLine(report.peers);
  if (probes) lines.push(probes);
  const c = status.counters;
  lines.push(field(
    "counters",
    `leases ${c.leasesKnown}`,
    `renewals ${c.renewals}`,
    `renewal failures ${c.renewFailures}`,
    `reacquisitions ${c.reacquisitions}`,
  ));
  lines.push(field(
    "",
    `watch events ${c.watchEvents}`,
    `relists ${c.relists}`,
    `watch errors ${c.watchErrors}`,
    `malformed skipped ${c.malformedSkipped}`,
    `leases skipped ${c.leasesSkipped}`,
  ));
  const rows = peerRows(report);
  lines.push("", `peers (${rows.length - 1})`);
  if (rows.length > 1) lines.push(...formatTable(rows));
  const skipped = report.leases.leases.filter((lease) => lease.skipped !== null);
  if (skipped.length > 0) {
    lines.push("", `skipped leases (${skipped.length}): no kernel state is made for them`);
    for (const lease of skipped) lines.push(`${subnetsText(lease)}: ${lease.skipped!.detail}`);
  }
  return lines.join("\n");
}
