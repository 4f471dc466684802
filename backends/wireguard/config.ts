/**
 * The wireguard devices a net-conf asks for and the lease data that advertises them (spec §6.6):
 * `separate` ⇒ `flannel-wg` (IPv4) and `flannel-wg-v6` (IPv6); every other mode ⇒ `flannel-wg`
 * alone for both families.
 *
 * @module
 */
import type { Family } from "../../ip/mod.ts";
import type { WireguardOptions } from "../../config/backend_options.ts";
import type { JsonValue } from "../../subnet/lease.ts";

/** The device names this backend creates (what `tartan cleanup` removes). */
export const WIREGUARD_DEVICES = /^flannel-wg(-v6)?$/;

/** One WireGuard device and the address families it carries. */
export interface WireguardDevice {
  readonly name: string;
  readonly port: number;
  readonly families: readonly Family[];
}

/**
 * The devices of a mode: `separate` ⇒ `flannel-wg` (IPv4, ListenPort) and `flannel-wg-v6`
 * (IPv6, ListenPortV6); every other mode ⇒ only `flannel-wg`, on ListenPort, for both.
 */
export function wireguardDevices(
  config: WireguardOptions,
  enabled: readonly Family[],
): WireguardDevice[] {
  if (config.mode !== "separate") {
    return enabled.length
      ? [{ name: "flannel-wg", port: config.listenPort, families: enabled }]
      : [];
  }
  return enabled.map((family) =>
    family === 4
      ? { name: "flannel-wg", port: config.listenPort, families: [4] }
      : { name: "flannel-wg-v6", port: config.listenPortV6, families: [6] }
  );
}

/**
 * `BackendData` / `BackendV6Data`: the public key and the port the family's device listens on
 * (flannel advertises ListenPortV6 even in single-device modes, where nothing listens on it).
 */
export function publishedData(
  devices: readonly WireguardDevice[],
  publicKey: string,
): { backendData?: JsonValue; backendV6Data?: JsonValue } {
  const dataFor = (family: Family) => {
    const device = devices.find((d) => d.families.includes(family));
    return device && { PublicKey: publicKey, Port: device.port };
  };
  return { backendData: dataFor(4), backendV6Data: dataFor(6) };
}
