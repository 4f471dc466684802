/**
 * The registered wireguard network: one WireGuard peer per remote wireguard lease, programmed
 * through a {@link WireguardControl} (the kernel's generic netlink, or wireguard-go's UAPI; the
 * same peers either way), compared with what the devices hold on every resync and repaired.
 *
 * @module
 */
import type { WgPeerState } from "../../ffi/netlink/wireguard.ts";
import { formatAddr, formatNet } from "../../ip/mod.ts";
import { errorText, type Logger } from "../../log.ts";
import type { Lease } from "../../subnet/lease.ts";
import { leaseIdentity, LeaseSet } from "../../subnet/lease_set.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";
import type { Network, PeerHealth } from "../backend.ts";
import { followUpdates, SerialJobs } from "../serial_jobs.ts";
import {
  type DevicePeer,
  peerDrift,
  type PeerPlan,
  peerRemoval,
  samePeer,
  wireguardPeers,
} from "./peers.ts";

/** Which WireGuard runs the devices. */
export type WireguardImplementation = "kernel" | "wireguard-go";

/** What the network changes in the devices; a seam so the peer logic is testable without them. */
export interface WireguardControl {
  readonly implementation: WireguardImplementation;
  /** Apply the changes (one request each); one result per change, undefined for success. */
  apply(changes: readonly DevicePeer[]): Promise<(Error | undefined)[]>;
  /** The peers each device holds now, by device name. */
  read(): Promise<ReadonlyMap<string, readonly WgPeerState[]>>;
  /**
   * Restore what a device lost outside our control (a wireguard-go that was restarted comes back
   * without key, port, address and route); resolves how many devices were restored.
   */
  repairDevices(): Promise<number>;
  /** Call `listener` when a device came back empty, so the repair need not wait for the timer. */
  onDeviceRestart(listener: () => void): void;
  /** Re-replace the Network route(s), as flannel does after each peer added. */
  refreshRoutes(): Promise<void>;
  /** Delete the devices (stop wireguard-go) and release what they hold. */
  close(): Promise<void>;
}

/** How the network resyncs and reports. */
export interface WireguardNetworkOptions {
  readonly resyncMs: number;
  readonly log: Logger;
  readonly onReconcile?: (seconds: number, ok: boolean) => void;
}

/** A remote lease, the peers it wants and what is wrong with them. */
interface PeerState {
  readonly lease: Lease;
  readonly wanted: readonly DevicePeer[];
  /** Its data makes no peer (kept until the lease changes). */
  readonly invalid?: string;
  /** The last failure programming its peers (cleared by each resync, which retries). */
  error?: string;
}

const problemOf = (p: PeerState) => p.invalid ?? p.error;

/**
 * The network: programs a WireGuard peer per remote wireguard lease (a peer whose key changed
 * loses the old one), removes it by public key on "removed", and every `resyncMs` compares the
 * devices with the leases and repairs the difference (counted as drift). `control.close` runs
 * on close (the devices go, spec §10.2).
 */
export function wireguardNetwork(
  lease: Lease,
  mtu: number,
  plan: PeerPlan,
  control: WireguardControl,
  options: WireguardNetworkOptions,
): Network {
  const { log } = options;
  const known = new LeaseSet(lease);
  const peers = new Map<string, PeerState>();
  let ready = false;
  let lastError: string | undefined;
  let lastReconcile: Date | undefined;
  let lastReconcileOk: boolean | undefined;
  let driftRepaired = 0;
  /** One job at a time: events and the timer never program the devices concurrently. */
  const jobs = new SerialJobs();

  /** Apply changes and charge each failure to the peer that wanted it; returns successes. */
  async function program(changes: readonly DevicePeer[]): Promise<number> {
    if (!changes.length) return 0;
    const results = await control.apply(changes);
    let ok = 0;
    results.forEach((result, i) => {
      if (!result) return void ok++;
      const text = errorText(result);
      lastError = text;
      const owner = [...peers.values()].find((p) => p.wanted.some((w) => samePeer(w, changes[i])));
      if (owner && owner.error !== text) {
        log.warn("peer not programmed", { subnet: subnetText(owner.lease), error: text });
      }
      if (owner) owner.error = text;
    });
    return ok;
  }

  async function add(peer: Lease): Promise<void> {
    const id = leaseIdentity(peer);
    const before = peers.get(id)?.wanted ?? [];
    let wanted: DevicePeer[];
    try {
      wanted = wireguardPeers(peer, lease, plan.mode, plan.devices, plan);
    } catch (err) {
      lastError = errorText(err);
      peers.set(id, { lease: peer, wanted: before, invalid: lastError });
      return;
    }
    const stale = before.filter((old) => !wanted.some((w) => samePeer(w, old))).map(peerRemoval);
    const state: PeerState = { lease: peer, wanted };
    peers.set(id, state);
    await program([...stale, ...wanted]);
    if (wanted.length) await control.refreshRoutes();
  }

  async function remove(peer: Lease): Promise<void> {
    const id = leaseIdentity(peer);
    const state = peers.get(id);
    peers.delete(id);
    if (state?.wanted.length) await program(state.wanted.map(peerRemoval));
  }

  /** Compare the devices with the leases and repair; `isRepair` counts what it fixes. */
  async function resync(isRepair: boolean): Promise<void> {
    const started = performance.now();
    let ok = false;
    try {
      const restored = await control.repairDevices();
      for (const state of peers.values()) delete state.error;
      const wanted = [...peers.values()].flatMap((p) => p.wanted);
      const changes = peerDrift(wanted, await control.read());
      if (changes.length) {
        log[isRepair ? "warn" : "debug"]("wireguard peers reconciled", { changes: changes.length });
      }
      const written = await program(changes);
      if (written) await control.refreshRoutes();
      if (isRepair) driftRepaired += restored + written;
      ok = written === changes.length && [...peers.values()].every((p) => !problemOf(p));
      if (ok) lastError = undefined;
      ready = true;
    } catch (err) {
      lastError = `resync: ${errorText(err)}`;
      log.error("reconcile failed", { error: lastError });
    }
    lastReconcile = new Date();
    lastReconcileOk = ok;
    options.onReconcile?.((performance.now() - started) / 1000, ok);
  }

  async function handle(update: LeaseWatchUpdate): Promise<void> {
    for (const event of known.apply(update)) {
      if (event.type === "added" && event.lease.attrs.backendType === "wireguard") {
        await add(event.lease);
      } else {
        await remove(event.lease);
      }
    }
    if (update.type === "snapshot") await resync(false);
  }

  return {
    lease,
    mtu,
    run(updates, signal) {
      const repair = () => resync(true);
      control.onDeviceRestart(() => jobs.run(repair));
      return followUpdates(updates, signal, jobs, {
        handle,
        resync: repair,
        resyncMs: options.resyncMs,
      });
    },
    health() {
      const report: PeerHealth[] = [...peers.values()].map((state) => {
        const error = problemOf(state);
        return {
          subnet: subnetText(state.lease),
          publicIP: formatAddr(state.lease.attrs.publicIP),
          inSync: error === undefined,
          ...(error !== undefined && { error }),
        };
      });
      return {
        type: "wireguard",
        implementation: control.implementation,
        ready,
        lastReconcile,
        lastReconcileOk,
        lastError,
        driftRepaired,
        peers: report,
      };
    },
    async close() {
      await jobs.idle();
      await control.close(); // flannel removes its WireGuard devices on shutdown (spec §10.2)
    },
  };
}

function subnetText(lease: Lease): string {
  return [lease.subnet, lease.ipv6Subnet].filter((n) => n !== undefined)
    .map((n) => formatNet(n!)).join(",");
}
