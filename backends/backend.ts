/**
 * The backend seam (flannel's Backend/Network split): a backend registers a network on this
 * node — devices plus our lease — and the network then follows the peer leases.
 *
 * @module
 */
import type { NetworkConfig } from "../config/network_config.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import type { Logger } from "../log.ts";
import type { BackendHealth } from "../state.ts";
import type { Lease } from "../subnet/lease.ts";
import type { LeaseWatchUpdate, SubnetManager } from "../subnet/manager.ts";
import type { ExternalInterface } from "./external_interface.ts";

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
