/**
 * `udp` (spec §6.3): flannel's userspace tunnel, wire-compatible with it, forwarding in a Worker
 * with TUN offloads and UDP GSO/GRO instead of one packet per syscall.
 *
 * Registration: acquire the lease exactly as flannel's udp backend writes it
 * (`{"PublicIP":…,"PublicIPv6":null}`, no type), create `flannel0`, bind the UDP socket to the
 * interface address and `Port` (default 8285), start the data path. Then every lease update
 * becomes a new peer table for the Worker. `close()` stops the Worker and closes the fds, so
 * `flannel0` vanishes as it does with flannel.
 *
 * @module
 */
import { readUdpOptions } from "../../config/backend_options.ts";
import { closeFd } from "../../ffi/libc.ts";
import { closeTun } from "../../ffi/tun.ts";
import { errorText } from "../../log.ts";
import { addrEqual, formatAddr, formatNet } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { leaseIdentity } from "../../subnet/lease_set.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";
import {
  type Backend,
  type BackendContext,
  BackendError,
  type BackendHealth,
  type Network,
  type PeerHealth,
} from "../backend.ts";
import { type DataPath, startDataPath } from "./data_path.ts";
import { isUdpPeer, peerRecords } from "./peers.ts";
import {
  openTunnelDevice,
  reconcileTunnelDevice,
  TUN_DEVICE_NAMES,
  type TunnelDevice,
  type TunnelSpec,
  UDP_OVERHEAD,
} from "./tun_device.ts";
import { openUdpSocket } from "../../ffi/udp_io.ts";

/** Socket buffers: the default 208 KiB overflow under load and cause most retransmits. */
const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

/** A peer lease and the first table generation that carried it as it is now. */
interface KnownPeer {
  readonly lease: Lease;
  readonly since: number;
}

/** Set up everything after the lease; on failure nothing is left open. */
function openDataPlane(ctx: BackendContext, spec: TunnelSpec, port: number) {
  const device = openTunnelDevice(ctx.netlink, spec);
  let udpFd = -1;
  try {
    udpFd = openUdpSocket({
      address: Number(ctx.ext.ifaceAddr!.value),
      port,
      bufferBytes: SOCKET_BUFFER_BYTES,
    });
    const dataPath = startDataPath({
      tunFd: device.tun.fd,
      udpFd,
      tunMtu: spec.mtu,
      ownAddress: Number(spec.subnet.base),
      port,
      log: ctx.log,
    });
    return { device, udpFd, dataPath };
  } catch (err) {
    if (udpFd >= 0) closeFd(udpFd);
    closeTun(device.tun);
    throw new BackendError("udp", errorText(err));
  }
}

/** The udp backend. */
export const udpBackend: Backend = {
  type: "udp",
  devices: TUN_DEVICE_NAMES,
  tunnelAddress: true,
  async register(ctx) {
    const { port } = readUdpOptions(ctx.config.backend.options);
    const ipv4 = ctx.config.ipv4;
    if (!ipv4 || ctx.config.ipv6) {
      throw new BackendError("udp", "the udp backend carries IPv4 only (EnableIPv4, no IPv6)");
    }
    if (!ctx.ext.ifaceAddr || !ctx.ext.publicIP) {
      throw new BackendError("udp", `${ctx.ext.name} has no IPv4 address to bind to`);
    }
    const lease = await ctx.manager.acquireLease({ publicIP: ctx.ext.publicIP }, ctx.signal);
    if (!lease.subnet) throw new BackendError("udp", "the lease has no IPv4 subnet");
    const spec: TunnelSpec = {
      mtu: ctx.ext.mtu - UDP_OVERHEAD,
      subnet: lease.subnet,
      network: ipv4.network,
    };
    const { device, udpFd, dataPath } = openDataPlane(ctx, spec, port);
    ctx.log.info("udp data path started", { device: device.tun.name, port, mtu: spec.mtu });
    return udpNetwork(ctx, lease, spec, { device, udpFd, dataPath });
  },
};

function udpNetwork(
  ctx: BackendContext,
  lease: Lease,
  spec: TunnelSpec,
  plane: { device: TunnelDevice; udpFd: number; dataPath: DataPath },
): Network {
  const { device, dataPath } = plane;
  const ownKey = leaseIdentity(lease);
  const leases = new Map<string, Lease>();
  let peers = new Map<string, KnownPeer>();
  let generation = 0;
  let lastReconcile: Date | undefined;
  let lastReconcileOk: boolean | undefined;
  let lastError: string | undefined;
  let driftRepaired = 0;
  let closed = false;

  /** Fold an update into the known leases (own lease excluded). */
  function absorb(update: LeaseWatchUpdate): void {
    if (update.type === "snapshot") {
      leases.clear();
      for (const l of update.leases) leases.set(leaseIdentity(l), l);
    } else {
      for (const event of update.events) {
        const key = leaseIdentity(event.lease);
        if (event.type === "added") leases.set(key, event.lease);
        else leases.delete(key);
      }
    }
    leases.delete(ownKey);
  }

  /** Ship the current peers to the Worker. */
  function publish(): void {
    const started = performance.now();
    const current = [...leases.entries()].filter(([, l]) => isUdpPeer(l));
    generation = dataPath.setPeers(peerRecords(current.map(([, l]) => l)));
    const next = new Map<string, KnownPeer>();
    for (const [key, l] of current) {
      const before = peers.get(key);
      const same = before && addrEqual(before.lease.attrs.publicIP, l.attrs.publicIP);
      next.set(key, { lease: l, since: same ? before.since : generation });
    }
    peers = next;
    lastReconcile = new Date();
    lastReconcileOk = true;
    ctx.observeReconcile?.((performance.now() - started) / 1000, true);
  }

  /** Put back device settings changed behind our back (flannel never looks again). */
  function resync(): void {
    try {
      const changes = reconcileTunnelDevice(ctx.netlink, device, spec);
      if (changes > 0) {
        driftRepaired += changes;
        ctx.log.warn("flannel0 settings restored", { device: device.tun.name, changes });
      }
    } catch (err) {
      lastReconcileOk = false;
      lastError = errorText(err);
      ctx.log.error("device resync failed", { error: lastError });
    }
  }

  function peerHealth(): PeerHealth[] {
    const applied = dataPath.appliedGeneration;
    const running = dataPath.running;
    return [...peers.values()].map(({ lease: l, since }) => {
      const inSync = running && applied >= since;
      return {
        subnet: formatNet(l.subnet!),
        publicIP: formatAddr(l.attrs.publicIP),
        inSync,
        ...(!inSync && {
          error: running ? "not yet in the data path's table" : "the data path is not running",
        }),
      };
    });
  }

  return {
    lease,
    mtu: spec.mtu,
    async run(updates: AsyncIterable<LeaseWatchUpdate>, signal: AbortSignal) {
      const timer = setInterval(resync, ctx.resyncMs);
      const follow = (async () => {
        for await (const update of updates) {
          if (signal.aborted) break;
          absorb(update);
          publish();
        }
      })();
      try {
        // A data path that keeps dying ends the daemon (non-zero), so a supervisor restarts it.
        await Promise.race([follow, dataPath.done]);
      } catch (err) {
        follow.catch(() => {}); // the error reported is the one that ended the race
        throw err;
      } finally {
        clearInterval(timer);
      }
    },
    health(): BackendHealth {
      const running = dataPath.running;
      return {
        type: "udp",
        ready: running && generation > 0 && dataPath.appliedGeneration >= generation,
        lastReconcile,
        lastReconcileOk,
        lastError: running ? lastError : `data path down: ${dataPath.lastError ?? "starting"}`,
        driftRepaired,
        peers: peerHealth(),
        dataPath: dataPath.counters(),
      };
    },
    async close() {
      if (closed) return;
      closed = true;
      await dataPath.stop();
      closeFd(plane.udpFd);
      closeTun(device.tun);
    },
  };
}
