/**
 * What a peer lease publishes, read defensively, and whether it can name a peer: the VTEP MAC and
 * the WireGuard key in its backend data, and the addresses and MACs no tunnel may point at. Pure:
 * the lease gate judges with it, the vxlan backend reads MACs with it.
 *
 * @module
 */
import { decodeWireguardKey } from "../config/backend_options.ts";
import { normalizeMac } from "../ffi/mac.ts";
import type { IPAddr } from "../ip/mod.ts";
import { isRecord } from "../json.ts";
import type { JsonValue } from "./lease.ts";

/**
 * The VTEP MAC a vxlan lease publishes in `BackendData` / `BackendV6Data`, in canonical form;
 * undefined when absent or malformed.
 */
export function vtepMacOf(data: JsonValue | undefined): string | undefined {
  if (!isRecord(data)) return undefined;
  const mac = data.VtepMAC;
  if (typeof mac !== "string") return undefined;
  if (CANONICAL_MAC.test(mac)) return mac; // what flannel writes: no parse and format needed
  try {
    return normalizeMac(mac);
  } catch {
    return undefined;
  }
}

const CANONICAL_MAC = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

/**
 * The WireGuard public key a wireguard lease publishes in `BackendData` / `BackendV6Data`, as
 * canonical base64; undefined when absent, not the base64 of 32 bytes, or all zeros (no peer can
 * have it).
 */
export function wireguardKeyOf(data: JsonValue | undefined): string | undefined {
  if (!isRecord(data)) return undefined;
  const text = data.PublicKey;
  if (typeof text !== "string") return undefined;
  return decodeWireguardKey(text)?.some((b) => b !== 0) ? text.trim() : undefined;
}

/** Why no tunnel may point at `addr`, or undefined when it is a usable unicast address. */
export function unusableAddress(addr: IPAddr): string | undefined {
  const v = addr.value;
  if (addr.family === 4) {
    if (v >> 24n === 0n) return "in 0.0.0.0/8";
    if (v >> 24n === 127n) return "a loopback address";
    if (v >> 16n === 0xa9fen) return "a link-local address";
    if (v >> 28n === 0xen) return "a multicast address";
    if (v === 0xffff_ffffn) return "the broadcast address";
    return undefined;
  }
  if (v === 1n) return "the loopback address";
  if (v >> 120n === 0xffn) return "a multicast address";
  if (v >> 118n === 0x3fan) return "a link-local address";
  if (v >> 32n === 0xffffn) return "an IPv4-mapped address";
  return undefined;
}

/** Why a VTEP MAC cannot name a peer's device, or undefined when it can. */
export function unusableMac(mac: string): string | undefined {
  if (mac === "00:00:00:00:00:00") return "is all zeros";
  if (mac === "ff:ff:ff:ff:ff:ff") return "is the broadcast address";
  if ((parseInt(mac.slice(0, 2), 16) & 1) === 1) return "is a multicast address";
  return undefined;
}
