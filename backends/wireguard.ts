/**
 * `wireguard` (spec §6.6): kernel WireGuard devices (`flannel-wg`, and `flannel-wg-v6` in the
 * default `separate` mode), the node key pair (`/run/flannel/wgkey`, or `WIREGUARD_KEY_FILE`),
 * device MTU, addresses and the cluster-network route, and the lease flannel publishes
 * (`{"PublicKey":…,"Port":…}`, advertising the port actually listened on: quirk 21 fixed).
 *
 * NOT IMPLEMENTED: programming peers (public key, endpoint, allowed IPs, PSK, keepalive) and the
 * device's private key and listen port go through the generic-netlink WireGuard family, which
 * Tartan's netlink layer does not speak yet. Every peer is therefore reported out of sync with
 * that reason (backend health, `/v1/backend`) and a start-up warning says so.
 *
 * UNVERIFIED: the kernel this was developed on has no wireguard module; only option parsing,
 * keys, device layout, published data and the missing-module error are tested here.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { dirname } from "node:path";
import { RT_SCOPE_LINK } from "../ffi/netlink/constants.ts";
import { replaceAddr } from "../ffi/netlink/addr.ts";
import { deleteLink, getLink, type Link, setLinkUp } from "../ffi/netlink/link.ts";
import { replaceRoute } from "../ffi/netlink/route.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import { errorText } from "../log.ts";
import type { PeerHealth } from "../state.ts";
import {
  bitsOf,
  type Family,
  formatAddr,
  formatNet,
  type IPNet,
  netAddr,
} from "../subnet/ip/mod.ts";
import type { JsonValue, Lease } from "../subnet/lease.ts";
import { leaseIdentity } from "../subnet/lease_set.ts";
import { type Backend, BackendError, backendOption, type Network } from "./backend.ts";
import { createTunnelLink } from "./kernel_module.ts";

/** How devices and families relate (`Mode`). */
export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";

const MODES: readonly WireguardMode[] = ["separate", "auto", "ipv4", "ipv6"];

/** The net-conf options of the wireguard backend. */
export interface WireguardConfig {
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

/** IPv4/IPv6 outer header + UDP + WireGuard header, as flannel reserves it. */
const WIREGUARD_OVERHEAD = 80;
/** Where flannel keeps the node's private key. */
export const DEFAULT_KEY_FILE = "/run/flannel/wgkey";
/** Why peers are out of sync (see the module comment). */
export const PEERS_UNSUPPORTED =
  "programming WireGuard peers needs the generic-netlink WireGuard API, which Tartan does not " +
  "implement yet";

function port(options: Readonly<Record<string, unknown>>, name: string, fallback: number): number {
  const value = backendOption("wireguard", options, name, "number", fallback);
  if (value < 0 || value > 65535) {
    throw new BackendError("wireguard", `Backend.${name} ${value} is outside 0..65535`);
  }
  return value;
}

/** Decode a base64 WireGuard key (32 bytes) or throw a {@link BackendError} naming `what`. */
export function decodeKey(text: string, what: string): Uint8Array {
  const bytes = Buffer.from(text.trim(), "base64");
  if (bytes.length !== 32 || bytes.toString("base64") !== text.trim()) {
    throw new BackendError("wireguard", `${what} must be the base64 encoding of 32 bytes`);
  }
  return new Uint8Array(bytes);
}

/** Read and check the wireguard members of the net-conf Backend object. */
export function readWireguardConfig(options: Readonly<Record<string, unknown>>): WireguardConfig {
  const mode = backendOption("wireguard", options, "Mode", "string", "separate");
  if (!MODES.includes(mode as WireguardMode)) {
    throw new BackendError("wireguard", `no valid Mode configured: ${JSON.stringify(mode)}`);
  }
  const psk = backendOption("wireguard", options, "PSK", "string", "");
  if (psk) decodeKey(psk, "Backend.PSK");
  const keepalive = backendOption("wireguard", options, "PersistentKeepaliveInterval", "number", 0);
  if (keepalive < 0 || keepalive > 65535) {
    throw new BackendError(
      "wireguard",
      `Backend.PersistentKeepaliveInterval ${keepalive} is outside 0..65535 seconds`,
    );
  }
  const mtu = backendOption("wireguard", options, "MTU", "number", 0);
  if (mtu < 0) throw new BackendError("wireguard", `Backend.MTU ${mtu} is negative`);
  return {
    listenPort: port(options, "ListenPort", 51820),
    listenPortV6: port(options, "ListenPortV6", 51821),
    mtu,
    ...(psk && { psk }),
    persistentKeepaliveInterval: keepalive,
    mode: mode as WireguardMode,
  };
}

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
  config: WireguardConfig,
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

/** A node's key pair, base64 as `wg` prints it. */
export interface WireguardKeys {
  readonly privateKey: string;
  readonly publicKey: string;
}

/** PKCS#8 header of an X25519 private key (RFC 8410): the raw 32 bytes follow it. */
const X25519_PKCS8_PREFIX = Uint8Array.from([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** The public key of a raw X25519 private key (Curve25519 scalar × base point). */
export async function publicKeyOf(privateKey: Uint8Array): Promise<Uint8Array> {
  const pkcs8 = new Uint8Array(X25519_PKCS8_PREFIX.length + 32);
  pkcs8.set(X25519_PKCS8_PREFIX);
  pkcs8.set(privateKey, X25519_PKCS8_PREFIX.length);
  const key = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "X25519" }, true, [
    "deriveBits",
  ]);
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return new Uint8Array(Buffer.from(jwk.x!, "base64url"));
}

/** A new private key, clamped as `wg genkey` makes it. */
export function generatePrivateKey(): Uint8Array {
  const key = crypto.getRandomValues(new Uint8Array(32));
  key[0] &= 248;
  key[31] = (key[31] & 127) | 64;
  return key;
}

/**
 * Read the node's private key from `path`, or generate one and store it there (base64 text,
 * mode 0400, directory 0755) as flannel does; returns both keys.
 */
export async function loadOrCreateKeys(path: string): Promise<WireguardKeys> {
  let privateKey: Uint8Array;
  try {
    privateKey = decodeKey(await Deno.readTextFile(path), `the key in ${path}`);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    privateKey = generatePrivateKey();
    await Deno.mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await Deno.writeTextFile(path, Buffer.from(privateKey).toString("base64"), { mode: 0o400 });
  }
  return {
    privateKey: Buffer.from(privateKey).toString("base64"),
    publicKey: Buffer.from(await publicKeyOf(privateKey)).toString("base64"),
  };
}

/** Delete any device of that name and create a fresh one (flannel never reuses them). */
function recreateDevice(h: NetlinkHandle, name: string, mtu: number): Link {
  const existing = getLink(h, name);
  if (existing) deleteLink(h, existing.index);
  return createTunnelLink(h, { name, kind: "wireguard", mtu }, "wireguard", "wireguard");
}

/** The wireguard backend. */
export const wireguardBackend: Backend = {
  type: "wireguard",
  async register(ctx): Promise<Network> {
    const config = readWireguardConfig(ctx.config.backend.options);
    const h = ctx.netlink;
    const networks = new Map<Family, IPNet>();
    if (ctx.config.ipv4) networks.set(4, ctx.config.ipv4.network);
    if (ctx.config.ipv6) networks.set(6, ctx.config.ipv6.network);
    const specs = wireguardDevices(config, [...networks.keys()]);
    const mtu = (config.mtu || ctx.ext.mtu) - WIREGUARD_OVERHEAD;
    // Devices first: on a kernel without the module this fails before any file or lease exists.
    const devices = specs.map((spec) => ({ spec, link: recreateDevice(h, spec.name, mtu) }));
    try {
      const keys = await loadOrCreateKeys(Deno.env.get("WIREGUARD_KEY_FILE") || DEFAULT_KEY_FILE);
      const lease = await ctx.manager.acquireLease({
        publicIP: ctx.ext.publicIP ?? { family: 4, value: 0n },
        publicIPv6: ctx.ext.publicIPv6,
        backendType: "wireguard",
        ...publishedData(specs, keys.publicKey),
      }, ctx.signal);
      for (const { spec, link } of devices) {
        for (const family of spec.families) {
          const own = family === 4 ? lease.subnet : lease.ipv6Subnet;
          if (!own) throw new BackendError("wireguard", `the lease has no IPv${family} subnet`);
          replaceAddr(h, { index: link.index, address: netAddr(own), prefix: bitsOf(family) });
        }
        setLinkUp(h, link.index);
        for (const family of spec.families) {
          replaceRoute(h, { dst: networks.get(family)!, oif: link.index, scope: RT_SCOPE_LINK });
        }
      }
      ctx.log.warn(PEERS_UNSUPPORTED + ": traffic to peers will not flow", {
        devices: specs.map((s) => s.name).join(","),
      });
      return wireguardNetwork(lease, mtu, () => {
        for (const { link } of devices) deleteLink(h, link.index);
      });
    } catch (err) {
      for (const { link } of devices) {
        try {
          deleteLink(h, link.index);
        } catch (cleanup) {
          ctx.log.warn("device not removed", { device: link.name, error: errorText(cleanup) });
        }
      }
      throw err;
    }
  },
};

/**
 * The registered network: follows the wireguard peers and reports each as not programmable (see
 * the module comment); `deleteDevices` runs on close.
 */
export function wireguardNetwork(lease: Lease, mtu: number, deleteDevices: () => void): Network {
  const ownKey = leaseIdentity(lease);
  const peers = new Map<string, Lease>();
  const track = (peer: Lease) => {
    const key = leaseIdentity(peer);
    if (key !== ownKey && peer.attrs.backendType === "wireguard") peers.set(key, peer);
    else peers.delete(key);
  };
  return {
    lease,
    mtu,
    async run(updates, signal) {
      for await (const update of updates) {
        if (signal.aborted) break;
        if (update.type === "snapshot") {
          peers.clear();
          update.leases.forEach(track);
          continue;
        }
        for (const event of update.events) {
          if (event.type === "added") track(event.lease);
          else peers.delete(leaseIdentity(event.lease));
        }
      }
    },
    health() {
      const report: PeerHealth[] = [...peers.values()].map((peer) => ({
        subnet: [peer.subnet, peer.ipv6Subnet].filter((n) => n !== undefined)
          .map((n) => formatNet(n!)).join(","),
        publicIP: formatAddr(peer.attrs.publicIP),
        inSync: false,
        error: PEERS_UNSUPPORTED,
      }));
      return {
        type: "wireguard",
        ready: true,
        lastError: report.length ? PEERS_UNSUPPORTED : undefined,
        driftRepaired: 0,
        peers: report,
      };
    },
    close() {
      deleteDevices(); // flannel removes its WireGuard devices on shutdown (spec §10.2)
      return Promise.resolve();
    },
  };
}
