/**
 * A hand-built daemon state for the admin API tests: a vxlan node in etcd mode holding
 * 10.244.1.0/24 with three peers, one of them dual-stack and one out of sync.
 */
import { networkConfig } from "../helpers/network_config.ts";
import type { NetworkConfig } from "../../config/network_config.ts";
import type { DaemonState } from "../../state.ts";
import { newDaemonState } from "../../state.ts";
import { createApp } from "../../api/app.ts";
import { createMetrics } from "../../api/metrics.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { LeaseGate } from "../../subnet/lease_gate.ts";
import type { BackendHealth } from "../../backends/backend.ts";
import type { PeerProbeState } from "../../probe/peer_state.ts";
import type { PeerProbeReport } from "../../probe/prober.ts";

export const HOUR_MS = 3600_000;

/**
 * A vxlan lease for `cidr` published by `publicIP`, expiring `ttlMs` from now; without `ttlMs`
 * no expiry, as the etcd manager reports peers' leases.
 */
export function vxlanLease(cidr: string, publicIP: string, ttlMs?: number): Lease {
  return {
    subnet: parseNet(cidr),
    attrs: {
      publicIP: parseAddr(publicIP),
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
    },
    expiration: ttlMs === undefined ? undefined : new Date(Date.now() + ttlMs),
  };
}

export const CONFIG: NetworkConfig = networkConfig("vxlan", { vni: 1, psk: "do-not-leak" });

/** Backend health of the sample node: 10.244.2.0/24 in sync, 10.244.3.0/24 not. */
export function sampleBackend(overrides: Partial<BackendHealth> = {}): BackendHealth {
  return {
    type: "vxlan",
    ready: true,
    lastReconcile: new Date(Date.now() - 2000),
    lastReconcileOk: true,
    driftRepaired: 3,
    peers: [
      { subnet: "10.244.2.0/24", publicIP: "198.18.0.2", inSync: true },
      {
        subnet: "10.244.3.0/24",
        publicIP: "198.18.0.3",
        inSync: false,
        error: "network is unreachable",
      },
      { subnet: "10.244.4.0/24,fc00:0:0:4::/64", publicIP: "198.18.0.4", inSync: true },
    ],
    ...overrides,
  };
}

/** A state that is fully ready. */
export function readyState(): DaemonState {
  const state = newDaemonState("0.1.0-test", "node-a", "etcd");
  state.publicIP = parseAddr("198.18.0.1");
  state.config = CONFIG;
  // The watched copy of our own lease carries no expiry; the daemon's own record does.
  state.ownLease = vxlanLease("10.244.1.0/24", "198.18.0.1", 24 * HOUR_MS);
  state.leases.set("10.244.1.0-24", vxlanLease("10.244.1.0/24", "198.18.0.1"));
  state.leases.set("10.244.2.0-24", vxlanLease("10.244.2.0/24", "198.18.0.2"));
  state.leases.set("10.244.3.0-24", vxlanLease("10.244.3.0/24", "198.18.0.3"));
  state.leases.set("10.244.4.0-24&fc00:0:0:4::-64", {
    ...vxlanLease("10.244.4.0/24", "198.18.0.4"),
    ipv6Subnet: parseNet("fc00:0:0:4::/64"),
  });
  state.lastWatchUpdate = new Date(Date.now() - 1000);
  state.subnetEnvWritten = true;
  state.backend = () => sampleBackend();
  state.traffic = () => ({
    engine: "iptables",
    lastCheck: new Date(Date.now() - 1000),
    lastResult: "in-sync",
    repairs: 2,
    failures: 0,
  });
  Object.assign(state.store, {
    renewals: 4,
    renewFailures: 1,
    watchEvents: 17,
    relists: 2,
    watchErrors: 1,
    malformedSkipped: 5,
  });
  return state;
}

/**
 * The ready state plus a hostile lease for the whole network (`10.244.0.0-16`), put through a
 * real lease gate wired into the state as the daemon wires it.
 */
export function stateWithSkippedLease(): DaemonState {
  const state = readyState();
  state.leases.set("10.244.0.0-16", vxlanLease("10.244.0.0/16", "198.18.0.66"));
  const gate = new LeaseGate({
    networks: { 4: CONFIG.ipv4!.network },
    own: state.ownLease!,
    ownAddresses: [],
    checkVtepMac: false,
    onSkip: ({ reason }) => state.leaseSkips[reason]++,
  });
  gate.apply({ type: "snapshot", leases: [...state.leases.values()] });
  state.skipOf = (lease) => gate.skipOf(lease);
  state.skippedNow = () => gate.skippedByReason();
  return state;
}

/** A running prober's report over `peers`, with the daemon's default settings (raw socket). */
export function probeReport(
  peers: readonly PeerProbeState[],
  totals: PeerProbeReport["totals"],
): PeerProbeReport {
  return {
    enabled: true,
    socketKind: "raw",
    intervalMs: 60_000,
    maxPerSecond: 50,
    timeoutMs: 1000,
    fullSizeBytes: { 4: 1450, 6: 1430 },
    roundDurationMs: 60_000,
    peers,
    totals,
  };
}

/** The admin app over `state` (no process metrics). */
export function appFor(state: DaemonState) {
  return createApp(state, createMetrics(state, { defaultMetrics: false }));
}

/** GET (or `init`) `path` from {@link appFor}`(state)`, the body parsed as JSON. */
export async function getJson(state: DaemonState, path: string, init?: RequestInit) {
  const res = await appFor(state).request(path, init);
  return { status: res.status, headers: res.headers, body: await res.json() };
}
