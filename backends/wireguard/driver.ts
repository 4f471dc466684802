/**
 * What runs the WireGuard devices: the kernel module (generic netlink), or wireguard-go (a
 * process per device, configured through its UAPI socket) where the kernel has no module. Both
 * take the same key, port and peers; the backend derives those once.
 *
 * @module
 */
import type { WgPeerState } from "../../ffi/netlink/wireguard.ts";
import type { WireguardDevice } from "./config.ts";
import type { WireguardImplementation } from "./network.ts";
import type { DevicePeer } from "./peers.ts";

/** The devices of one implementation, created and keyed. */
export interface WireguardDriver {
  readonly implementation: WireguardImplementation;
  /** The link index of a device now (it changes when wireguard-go restarts). */
  indexOf(device: string): number;
  /** Apply peer changes; one result per change, undefined for success. */
  apply(changes: readonly DevicePeer[]): Promise<(Error | undefined)[]>;
  /** The peers each device holds, by device name. */
  read(): Promise<Map<string, readonly WgPeerState[]>>;
  /**
   * Devices that came back empty since the last call (a restarted wireguard-go), already given
   * their key and port again: their addresses and routes must be set again.
   */
  restarted(): Promise<WireguardDevice[]>;
  /** Call `listener` whenever a device came back empty (so it is configured without delay). */
  onRestart(listener: () => void): void;
  /** Delete the devices (stop the processes, remove their sockets). */
  close(): Promise<void>;
}

/** What a driver needs to create its devices. */
export interface DriverOptions {
  readonly devices: readonly WireguardDevice[];
  readonly mtu: number;
  readonly privateKey: Uint8Array;
}
