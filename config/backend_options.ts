/**
 * The options of each backend in the net-conf `Backend` object (spec §6), read and checked when
 * the config is parsed, so that start-up and `tartan config check` report a bad value before any
 * device exists (flannel passes them to netlink unchecked: a vxlan MTU of -100 fails there).
 * Backends read their typed options from here. Names are the lower-cased member names the
 * parser leaves in `BackendConfig.options`; messages name the member as flannel spells it.
 *
 * @module
 */
import { ConfigError } from "./config_error.ts";

type RawOptions = Readonly<Record<string, unknown>>;

/** Outer headers the vxlan device's MTU leaves room for: IPv4 underlay 50, IPv6 underlay 70. */
export const VXLAN_OVERHEAD = { 4: 50, 6: 70 } as const;
/** IPv4/IPv6 outer header + UDP + WireGuard header, as flannel reserves it. */
export const WIREGUARD_OVERHEAD = 80;
/** The smallest MTU the kernel lets an IPv4 link have (ETH_MIN_MTU). */
const MIN_LINK_MTU = 68;
/** The largest IP packet, and so the largest useful MTU. */
const MAX_MTU = 65535;

/** The vxlan options (spec §6.2). */
export interface VxlanOptions {
  readonly vni: number;
  /** UDP port; 0 leaves the kernel default (8472). */
  readonly port: number;
  /** Underlay MTU; 0 means the external interface's. */
  readonly mtu: number;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly directRouting: boolean;
}

/** The udp options (spec §6.3). */
export interface UdpOptions {
  readonly port: number;
}

/** The ipip options (spec §6.5). */
export interface IpipOptions {
  readonly directRouting: boolean;
}

/** How WireGuard devices and families relate (`Mode`). */
export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";

const WIREGUARD_MODES: readonly WireguardMode[] = ["separate", "auto", "ipv4", "ipv6"];

/** The wireguard options (spec §6.6). */
export interface WireguardOptions {
  readonly listenPort: number;
  readonly listenPortV6: number;
  /** Underlay MTU; 0 means the external interface's. */
  readonly mtu: number;
  /** Pre-shared key, base64 of 32 bytes. */
  readonly psk?: string;
  /** Seconds; 0 is off. */
  readonly persistentKeepaliveInterval: number;
  readonly mode: WireguardMode;
}

/** The kernel's VXLAN port, used when the net-conf gives none (flannel's default too). */
export const KERNEL_VXLAN_PORT = 8472;

/** The udp backend's port when none is given (flannel's). */
export const DEFAULT_UDP_PORT = 8285;

type Kind = "integer" | "boolean" | "string";
type ValueOf<K extends Kind> = K extends "integer" ? number : K extends "boolean" ? boolean
: string;

const KINDS: Readonly<Record<Kind, { accepts(value: unknown): boolean; wanted: string }>> = {
  integer: { accepts: Number.isSafeInteger, wanted: "an integer" },
  boolean: { accepts: (value) => typeof value === "boolean", wanted: "true or false" },
  string: { accepts: (value) => typeof value === "string", wanted: "a string" },
};

/** Member `name` as one type, `fallback` when absent, or a {@link ConfigError}. */
function option<K extends Kind>(
  options: RawOptions,
  name: string,
  kind: K,
  fallback: ValueOf<K>,
): ValueOf<K> {
  const value = options[name.toLowerCase()];
  if (value === undefined || value === null) return fallback;
  if (!KINDS[kind].accepts(value)) {
    const wanted = KINDS[kind].wanted;
    throw new ConfigError(`Backend.${name}`, `must be ${wanted}, got ${JSON.stringify(value)}`);
  }
  return value as ValueOf<K>;
}

/** An integer member within `min..max`; `zero` explains a 0 that is also allowed. */
function integer(
  options: RawOptions,
  name: string,
  fallback: number,
  range: { min: number; max: number; zero?: string; unit?: string },
): number {
  const value = option(options, name, "integer", fallback);
  if ((value === 0 && range.zero) || (value >= range.min && value <= range.max)) return value;
  const unit = range.unit ? ` ${range.unit}` : "";
  const zero = range.zero ? ` (0 or absent: ${range.zero})` : "";
  throw new ConfigError(
    `Backend.${name}`,
    `must be between ${range.min} and ${range.max}${unit}${zero}, got ${value}`,
  );
}

function port(options: RawOptions, name: string, fallback: number, zero?: string): number {
  return integer(options, name, fallback, { min: 1, max: 65535, zero });
}

/** The underlay MTU: 0 (the external interface's) or enough for the device's own minimum. */
function underlayMtu(options: RawOptions, overhead: number): number {
  return integer(options, "MTU", 0, {
    min: MIN_LINK_MTU + overhead,
    max: MAX_MTU,
    zero: "the external interface's MTU",
  });
}

/** Read and check the vxlan members of the Backend object. */
export function readVxlanOptions(options: RawOptions): VxlanOptions {
  return {
    vni: integer(options, "VNI", 1, { min: 0, max: 0xffffff }),
    port: port(options, "Port", 0, `the kernel's default, ${KERNEL_VXLAN_PORT}`),
    // The larger (IPv6 underlay) overhead: which underlay family is used is known only later.
    mtu: underlayMtu(options, VXLAN_OVERHEAD[6]),
    gbp: option(options, "GBP", "boolean", false),
    learning: option(options, "Learning", "boolean", false),
    directRouting: option(options, "DirectRouting", "boolean", false),
  };
}

/** Read and check the udp members of the Backend object. */
export function readUdpOptions(options: RawOptions): UdpOptions {
  return { port: port(options, "Port", DEFAULT_UDP_PORT) };
}

/** Read and check the ipip members of the Backend object. */
export function readIpipOptions(options: RawOptions): IpipOptions {
  return { directRouting: option(options, "DirectRouting", "boolean", false) };
}

/** A base64 WireGuard key as its 32 bytes, or undefined when it is not one. */
export function decodeWireguardKey(text: string): Uint8Array | undefined {
  const trimmed = text.trim();
  let bytes: Uint8Array;
  try {
    bytes = Uint8Array.fromBase64(trimmed);
  } catch {
    return undefined; // not base64 at all
  }
  return bytes.length === 32 && bytes.toBase64() === trimmed ? bytes : undefined;
}

/** Read and check the wireguard members of the Backend object. */
export function readWireguardOptions(options: RawOptions): WireguardOptions {
  const mode = option(options, "Mode", "string", "separate");
  if (!WIREGUARD_MODES.includes(mode as WireguardMode)) {
    const known = WIREGUARD_MODES.join(", ");
    throw new ConfigError(
      "Backend.Mode",
      `no valid Mode configured: ${JSON.stringify(mode)} (known: ${known})`,
    );
  }
  const psk = option(options, "PSK", "string", "");
  if (psk && !decodeWireguardKey(psk)) {
    throw new ConfigError(
      "Backend.PSK",
      "could not parse psk: must be the base64 encoding of 32 bytes (`wg genpsk` makes one)",
    );
  }
  return {
    listenPort: port(options, "ListenPort", 51820),
    listenPortV6: port(options, "ListenPortV6", 51821),
    mtu: underlayMtu(options, WIREGUARD_OVERHEAD),
    ...(psk && { psk }),
    persistentKeepaliveInterval: integer(options, "PersistentKeepaliveInterval", 0, {
      min: 1,
      max: 65535,
      zero: "off",
      unit: "seconds",
    }),
    mode: mode as WireguardMode,
  };
}

/** The extension options (spec §6.8): commands, each run without a shell; empty is none. */
export interface ExtensionOptions {
  readonly preStartupCommand: string;
  readonly postStartupCommand: string;
  readonly subnetAddCommand: string;
  readonly subnetRemoveCommand: string;
}

/** Read and check the extension members of the Backend object. */
export function readExtensionOptions(options: RawOptions): ExtensionOptions {
  const command = (name: string) => {
    const text = option(options, name, "string", "");
    if (text && !text.trim()) throw new ConfigError(`Backend.${name}`, "names no program");
    return text;
  };
  return {
    preStartupCommand: command("PreStartupCommand"),
    postStartupCommand: command("PostStartupCommand"),
    subnetAddCommand: command("SubnetAddCommand"),
    subnetRemoveCommand: command("SubnetRemoveCommand"),
  };
}

/** Member names (as flannel spells them) and reader of each backend that has options. */
const BACKEND_OPTIONS: Readonly<Record<string, { names: string[]; read(o: RawOptions): unknown }>> =
  {
    vxlan: {
      names: ["VNI", "Port", "MTU", "GBP", "Learning", "DirectRouting", "MacPrefix", "Name"],
      read: readVxlanOptions,
    },
    udp: { names: ["Port"], read: readUdpOptions },
    ipip: { names: ["DirectRouting"], read: readIpipOptions },
    wireguard: {
      names: ["ListenPort", "ListenPortV6", "MTU", "PSK", "PersistentKeepaliveInterval", "Mode"],
      read: readWireguardOptions,
    },
    extension: {
      names: ["PreStartupCommand", "PostStartupCommand", "SubnetAddCommand", "SubnetRemoveCommand"],
      read: readExtensionOptions,
    },
    "host-gw": { names: [], read: () => ({}) },
    alloc: { names: [], read: () => ({}) },
  };

/**
 * Check the options of backend `type` (lower-cased) as its reader will read them; returns
 * warnings for members that backend does not know (usually typos). Types without a table here
 * (ipsec, tencent-vpc) are not checked.
 *
 * @throws {ConfigError} for the first bad member.
 */
export function checkBackendOptions(type: string, options: RawOptions): string[] {
  const known = BACKEND_OPTIONS[type];
  if (!known) return [];
  known.read(options);
  const names = new Set(known.names.map((name) => name.toLowerCase()));
  return Object.keys(options).filter((name) => !names.has(name)).map((name) =>
    `ignoring member Backend.${JSON.stringify(name)}: the ${type} backend has no such option`
  );
}
