/**
 * The backend seam (flannel's Backend/Network split): a backend registers a network on this
 * node — devices plus our lease — and the network then follows the peer leases.
 *
 * @module
 */
import type { NetworkConfig } from "../config/network_config.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import type { Logger } from "../log.ts";
import type { Lease } from "../subnet/lease.ts";
import type { LeaseWatchUpdate, SubnetManager } from "../subnet/manager.ts";
import type { ExternalInterface } from "./external_interface.ts";

/** One peer's kernel state as the backend last saw it. */
export interface PeerHealth {
  /** The peer's subnet(s) as text, e.g. `10.244.3.0/24`. */
  readonly subnet: string;
  readonly publicIP: string;
  /** Whether every kernel object the peer needs is present and correct. */
  readonly inSync: boolean;
  /** Why not, when not (e.g. `network is unreachable`). */
  readonly error?: string;
}

/** Packet counters of a userspace data path (udp backend). */
export interface DataPathCounters {
  readonly packetsTx: number;
  readonly packetsRx: number;
  readonly bytesTx: number;
  readonly bytesRx: number;
  /** Dropped packets by reason (`no_route`, `ttl`, `bad_source`, `malformed`, …). */
  readonly drops: Readonly<Record<string, number>>;
}

/** What a backend reports about itself. */
export interface BackendHealth {
  readonly type: string;
  /** Which implementation runs the devices, where there is a choice (wireguard: `kernel` or `wireguard-go`). */
  readonly implementation?: string;
  /** Devices created and the first reconcile done. */
  readonly ready: boolean;
  readonly lastReconcile?: Date;
  readonly lastReconcileOk?: boolean;
  readonly lastError?: string;
  /** Kernel objects re-created or removed because they differed from the desired state. */
  readonly driftRepaired: number;
  readonly peers: readonly PeerHealth[];
  readonly dataPath?: DataPathCounters;
}

/** What every backend gets at registration. */
export interface BackendContext {
  readonly config: NetworkConfig;
  readonly ext: ExternalInterface;
  readonly manager: SubnetManager;
  /** Netlink in the node's namespace, shared by everything the backend programs. */
  readonly netlink: NetlinkHandle;
  readonly signal: AbortSignal;
  readonly log: Logger;
  /** Full kernel resync period (flannel re-checks host-gw routes every 10 s). */
  readonly resyncMs: number;
  /** Called after each reconcile pass with its duration (the metrics histogram). */
  readonly observeReconcile?: (seconds: number, ok: boolean) => void;
}

/** A registered network: our lease and the loop that follows the peers. */
export interface Network {
  readonly lease: Lease;
  /** MTU for pods (FLANNEL_MTU). */
  readonly mtu: number;
  /** Follow lease updates until the signal aborts. */
  run(updates: AsyncIterable<LeaseWatchUpdate>, signal: AbortSignal): Promise<void>;
  health(): BackendHealth;
  /** Release what must not outlive the process (the udp TUN); devices flannel keeps stay. */
  close(): Promise<void>;
}

/** A backend type (`vxlan`, `host-gw`, …). */
export interface Backend {
  readonly type: string;
  /** The names of the devices this backend creates: what `tartan cleanup` removes. */
  readonly devices?: RegExp;
  /**
   * Whether its device holds the node subnet's network address (`10.244.3.0/32`, spec §6.1):
   * an address on the peer that is reached through the overlay (what the prober pings).
   */
  readonly tunnelAddress?: boolean;
  /** Create devices, acquire our lease, configure addresses. */
  register(ctx: BackendContext): Promise<Network>;
}

/** Raised for a backend that cannot run here (unknown type, missing kernel module). */
export class BackendError extends Error {
  constructor(readonly backend: string, message: string) {
    super(`${backend}: ${message}`);
    this.name = "BackendError";
  }
}
