/**
 * Liveness and readiness of the daemon, computed from its state.
 *
 * Flannel is ready once subnet.env is written and never reverts. Tartan is ready while the
 * node can actually serve pods: it holds an unexpired lease, its backend is initialised,
 * subnet.env is written and the lease watch has delivered its first snapshot. Readiness
 * reverts when one of these stops holding (e.g. the lease expires during an etcd outage).
 *
 * The watch check asks for a snapshot, not for a recent update: a quiet cluster produces no
 * watch traffic for hours, and a time bound would make readiness flap there.
 *
 * @module
 */
import type { DaemonState } from "../state.ts";
import { leaseSubnets } from "../subnet/lease.ts";

/** Flannel's `/healthz` body. */
export const ALIVE_TEXT = "flanneld is running";
/** Flannel's `/readyz` body when ready. */
export const READY_TEXT = "flanneld is ready";
/** Flannel's `/readyz` body when not ready. */
export const NOT_READY_TEXT = "flanneld is not ready yet";

/** One readiness condition and, when it fails, why. */
export interface ReadinessCheck {
  readonly name: "lease" | "backend" | "subnet_env" | "watch";
  readonly ok: boolean;
  readonly reason?: string;
}

/** The verdict with every condition that led to it. */
export interface Readiness {
  readonly ready: boolean;
  readonly checks: readonly ReadinessCheck[];
}

function leaseCheck(state: DaemonState, now: Date): ReadinessCheck {
  const lease = state.ownLease;
  if (!lease) return { name: "lease", ok: false, reason: "no lease acquired yet" };
  const expiry = lease.expiration;
  if (expiry && expiry.getTime() <= now.getTime()) {
    const ago = Math.floor((now.getTime() - expiry.getTime()) / 1000);
    const reason = `lease ${leaseSubnets(lease)} expired ${ago}s ago`;
    return { name: "lease", ok: false, reason };
  }
  return { name: "lease", ok: true };
}

function backendCheck(state: DaemonState): ReadinessCheck {
  if (!state.backend) return { name: "backend", ok: false, reason: "backend not registered yet" };
  const health = state.backend();
  if (health.ready) return { name: "backend", ok: true };
  const detail = health.lastError ? `: ${health.lastError}` : "";
  return { name: "backend", ok: false, reason: `backend ${health.type} not ready${detail}` };
}

/**
 * Evaluate every readiness condition.
 *
 * @example
 * ```ts
 * const { ready, checks } = evaluateReadiness(state);
 * ```
 */
export function evaluateReadiness(state: DaemonState, now: Date = new Date()): Readiness {
  const checks: ReadinessCheck[] = [
    leaseCheck(state, now),
    backendCheck(state),
    state.subnetEnvWritten
      ? { name: "subnet_env", ok: true }
      : { name: "subnet_env", ok: false, reason: "subnet.env not written yet" },
    state.lastWatchUpdate
      ? { name: "watch", ok: true }
      : { name: "watch", ok: false, reason: "no lease snapshot received yet" },
  ];
  return { ready: checks.every((check) => check.ok), checks };
}

/** Flannel's sentence for the verdict. */
export function readinessHeadline(readiness: Readiness): string {
  return readiness.ready ? READY_TEXT : NOT_READY_TEXT;
}

/**
 * The `/readyz` text body: exactly flannel's sentence, or with `verbose` that sentence followed
 * by one line per check in the kube-apiserver style (`[+]lease ok`, `[-]watch failed: …`).
 */
export function readinessText(readiness: Readiness, verbose: boolean): string {
  const headline = readinessHeadline(readiness);
  if (!verbose) return headline;
  const lines = readiness.checks.map((check) =>
    check.ok ? `[+]${check.name} ok` : `[-]${check.name} failed: ${check.reason}`
  );
  return [headline, ...lines].join("\n");
}
