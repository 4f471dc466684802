/**
 * `wireguard` (spec §6.6): kernel WireGuard devices (`flannel-wg`, and `flannel-wg-v6` in the
 * default `separate` mode), the node key pair (`/run/flannel/wgkey`, or `WIREGUARD_KEY_FILE`),
 * device MTU, addresses and the cluster-network route, and the lease flannel publishes
 * (`{"PublicKey":…,"Port":…}`, advertising the port actually listened on: quirk 21 fixed).
 * The private key, listen ports and peers (public key, endpoint, allowed IPs, PSK, keepalive) are
 * set through the WireGuard generic netlink family; each peer's last result is its health.
 *
 * UNVERIFIED: the kernel this was developed on has no wireguard module; option parsing, keys,
 * device layout, published data, the peers derived from leases (against a recording kernel
 * seam), the netlink encoding (bytes) and the missing-module error are tested here.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { dirname } from "node:path";
import {
  decodeWireguardKey,
  readWireguardOptions,
  WIREGUARD_OVERHEAD,
  type WireguardMode,
  type WireguardOptions,
} from "../config/backend_options.ts";
import { NETLINK_GENERIC, RT_SCOPE_LINK } from "../ffi/netlink/constants.ts";
import { replaceAddr } from "../ffi/netlink/addr.ts";
import { resolveFamily } from "../ffi/netlink/genl.ts";
import { deleteLink, getLink, type Link, setLinkUp } from "../ffi/netlink/link.ts";
import { replaceRoute } from "../ffi/netlink/route.ts";
import { closeNetlink, type NetlinkHandle, openNetlink } from "../ffi/netlink/socket.ts";
import {
  setDevice,
  setDeviceRequest,
  WG_GENL_NAME,
  type WgEndpoint,
  type WgPeerChange,
} from "../ffi/netlink/wireguard.ts";
import { errorText } from "../log.ts";
import {
  bitsOf,
  type Family,
  formatAddr,
  formatNet,
  type IPAddr,
  type IPNet,
  netAddr,
  netContains,
  parseNet,
} from "../ip/mod.ts";
import type { JsonValue, Lease } from "../subnet/lease.ts";
import { leaseIdentity, LeaseSet } from "../subnet/lease_set.ts";
import { type Backend, BackendError, type Network, type PeerHealth } from "./backend.ts";
import { createTunnelLink } from "./kernel_module.ts";
import { executeBatch } from "../ffi/netlink/batch.ts";

/** Where flannel keeps the node's private key. */
export const DEFAULT_KEY_FILE = "/run/flannel/wgkey";

/** Decode a base64 WireGuard key (32 bytes) or throw a {@link BackendError} naming `what`. */
export function decodeKey(text: string, what: string): Uint8Array {
  const key = decodeWireguardKey(text);
  if (!key) throw new BackendError("wireguard", `${what} must be the base64 encoding of 32 bytes`);
  return key;
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

/** `BackendData` / `BackendV6Data` of a peer, checked. */
interface PeerData {
  readonly publicKey: Uint8Array;
  readonly port: number;
}

function readPeerData(data: JsonValue | undefined, what: string): PeerData | undefined {
  if (data === undefined || data === null) return undefined;
  const record = typeof data === "object" && !Array.isArray(data) ? data : {};
  const { PublicKey: key, Port: port } = record;
  if (typeof key !== "string") {
    throw new BackendError("wireguard", `${what} has no PublicKey`);
  }
  if (typeof port !== "number" || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new BackendError("wireguard", `${what}.Port is not a port number`);
  }
  return { publicKey: decodeKey(key, `${what}.PublicKey`), port };
}

const RFC1918 = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"].map(parseNet);
const ULA = parseNet("fc00::/7");
const isPrivate4 = (ip: IPAddr) => RFC1918.some((n) => netContains(n, ip));
const isGlobal6 = (ip: IPAddr | undefined) => ip !== undefined && !netContains(ULA, ip);

/** The settings every peer gets: the pre-shared key and keepalive. */
export interface PeerDefaults {
  readonly presharedKey?: Uint8Array;
  readonly persistentKeepaliveInterval: number;
}

/** One peer to program on one device. */
export interface DevicePeer {
  readonly device: string;
  readonly peer: WgPeerChange;
}

/**
 * The WireGuard peer(s) a remote lease needs (spec §6.6): in `separate` mode one per family on
 * that family's device, otherwise one on `flannel-wg` with both subnets and an endpoint family
 * chosen by the mode. Port 0 in the data means our own listen port. Allowed IPs replace the
 * peer's list. Leases of other backends need none; malformed data is a {@link BackendError}.
 */
export function wireguardPeers(
  peer: Lease,
  own: Lease,
  mode: WireguardMode,
  devices: readonly WireguardDevice[],
  defaults: PeerDefaults,
): DevicePeer[] {
  if (peer.attrs.backendType !== "wireguard") return [];
  const v4 = readPeerData(peer.attrs.backendData, "BackendData");
  const v6 = readPeerData(peer.attrs.backendV6Data, "BackendV6Data");
  const endpointOf = (family: Family, device: WireguardDevice): WgEndpoint | undefined => {
    const data = family === 4 ? v4 : v6;
    const address = family === 4 ? peer.attrs.publicIP : peer.attrs.publicIPv6;
    return data && address && { address, port: data.port || device.port };
  };
  const change = (key: Uint8Array, endpoint: WgEndpoint | undefined, allowedIps: IPNet[]) => ({
    publicKey: key,
    ...(endpoint && { endpoint }),
    allowedIps,
    replaceAllowedIps: true,
    ...defaults,
  });
  const subnetOf = (family: Family) => family === 4 ? peer.subnet : peer.ipv6Subnet;
  if (mode === "separate") {
    return devices.flatMap((device) => {
      const family = device.families[0];
      const data = family === 4 ? v4 : v6;
      const subnet = subnetOf(family);
      if (!data || !subnet) return [];
      return [{
        device: device.name,
        peer: change(data.publicKey, endpointOf(family, device), [subnet]),
      }];
    });
  }
  const [device] = devices;
  const key = (v4 ?? v6)?.publicKey;
  if (!device || !key) return [];
  const allowedIps = device.families.map(subnetOf).filter((n) => n !== undefined);
  const preferV6 = mode === "ipv6" || (mode === "auto" && peer.attrs.publicIPv6 !== undefined &&
    (isPrivate4(peer.attrs.publicIP) || own.attrs.publicIP.value === 0n) &&
    isGlobal6(peer.attrs.publicIPv6) && isGlobal6(own.attrs.publicIPv6));
  return [{
    device: device.name,
    peer: change(key, endpointOf(preferV6 ? 6 : 4, device), allowedIps),
  }];
}

/** What the network changes in the kernel; a seam so the peer logic is testable without it. */
export interface WireguardKernel {
  /** Apply the changes (one request each); one result per change, undefined for success. */
  apply(changes: readonly DevicePeer[]): (Error | undefined)[];
  /** Re-replace the Network route(s), as flannel does after each peer added. */
  refreshRoutes(): void;
  /** Delete the devices and release the netlink socket. */
  close(): void;
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
  devices: /^flannel-wg(-v6)?$/,
  async register(ctx): Promise<Network> {
    const config = readWireguardOptions(ctx.config.backend.options);
    const h = ctx.netlink;
    const networks = new Map<Family, IPNet>();
    if (ctx.config.ipv4) networks.set(4, ctx.config.ipv4.network);
    if (ctx.config.ipv6) networks.set(6, ctx.config.ipv6.network);
    const specs = wireguardDevices(config, [...networks.keys()]);
    const mtu = (config.mtu || ctx.ext.mtu) - WIREGUARD_OVERHEAD;
    // Devices first: on a kernel without the module this fails before any file or lease exists.
    const devices = specs.map((spec) => ({ spec, link: recreateDevice(h, spec.name, mtu) }));
    let genl: NetlinkHandle | undefined;
    const release = () => {
      for (const { link } of devices) {
        try {
          deleteLink(h, link.index);
        } catch (cleanup) {
          ctx.log.warn("device not removed", { device: link.name, error: errorText(cleanup) });
        }
      }
      if (genl) closeNetlink(genl);
    };
    try {
      genl = openNetlink({ netns: h.netns, protocol: NETLINK_GENERIC });
      const family = resolveFamily(genl, WG_GENL_NAME);
      if (!family) {
        throw new BackendError(
          "wireguard",
          `the kernel has no ${WG_GENL_NAME} generic netlink family: load the module ` +
            "(modprobe wireguard) or choose another backend",
        );
      }
      const keys = await loadOrCreateKeys(Deno.env.get("WIREGUARD_KEY_FILE") || DEFAULT_KEY_FILE);
      const privateKey = decodeKey(keys.privateKey, "the private key");
      for (const { spec, link } of devices) {
        setDevice(genl, family, { index: link.index, privateKey, listenPort: spec.port });
      }
      const lease = await ctx.manager.acquireLease({
        publicIP: ctx.ext.publicIP ?? { family: 4, value: 0n },
        publicIPv6: ctx.ext.publicIPv6,
        backendType: "wireguard",
        ...publishedData(specs, keys.publicKey),
      }, ctx.signal);
      const refreshRoutes = () => {
        for (const { spec, link } of devices) {
          for (const family of spec.families) {
            replaceRoute(h, { dst: networks.get(family)!, oif: link.index, scope: RT_SCOPE_LINK });
          }
        }
      };
      for (const { spec, link } of devices) {
        for (const family of spec.families) {
          const own = family === 4 ? lease.subnet : lease.ipv6Subnet;
          if (!own) throw new BackendError("wireguard", `the lease has no IPv${family} subnet`);
          replaceAddr(h, { index: link.index, address: netAddr(own), prefix: bitsOf(family) });
        }
        setLinkUp(h, link.index);
      }
      refreshRoutes();
      const indexOf = new Map(devices.map(({ spec, link }) => [spec.name, link.index]));
      const socket = genl;
      const kernel: WireguardKernel = {
        apply: (changes) =>
          executeBatch(
            socket,
            changes.map((c) =>
              setDeviceRequest(family.id, { index: indexOf.get(c.device)!, peers: [c.peer] })
            ),
          ),
        refreshRoutes,
        close: release,
      };
      return wireguardNetwork(lease, mtu, {
        mode: config.mode,
        devices: specs,
        ...peerDefaults(config),
      }, kernel);
    } catch (err) {
      release();
      throw err;
    }
  },
};

function peerDefaults(config: WireguardOptions): PeerDefaults {
  return {
    ...(config.psk && { presharedKey: decodeKey(config.psk, "Backend.PSK") }),
    persistentKeepaliveInterval: config.persistentKeepaliveInterval,
  };
}

/** How the network derives peers: the mode, its devices and the per-peer settings. */
export interface PeerPlan extends PeerDefaults {
  readonly mode: WireguardMode;
  readonly devices: readonly WireguardDevice[];
}

/** A remote lease and what programming it last gave. */
interface PeerState {
  readonly lease: Lease;
  readonly applied: readonly DevicePeer[];
  readonly error?: string;
}

const removal = ({ device, peer }: DevicePeer): DevicePeer => ({
  device,
  peer: { publicKey: peer.publicKey, remove: true },
});

/**
 * The registered network: programs a WireGuard peer per remote wireguard lease (re-applied
 * idempotently on every "added"; a peer whose key changed loses the old one), removes it by
 * public key on "removed", and reports each peer's last result as its health. `kernel.close`
 * runs on close (the devices go, spec §10.2).
 */
export function wireguardNetwork(
  lease: Lease,
  mtu: number,
  plan: PeerPlan,
  kernel: WireguardKernel,
): Network {
  const known = new LeaseSet(lease);
  const peers = new Map<string, PeerState>();
  let lastError: string | undefined;

  const add = (peer: Lease) => {
    if (peer.attrs.backendType !== "wireguard") return remove(peer);
    const id = leaseIdentity(peer);
    const before = peers.get(id)?.applied ?? [];
    let wanted: DevicePeer[];
    try {
      wanted = wireguardPeers(peer, lease, plan.mode, plan.devices, plan);
    } catch (err) {
      lastError = errorText(err);
      peers.set(id, { lease: peer, applied: before, error: lastError });
      return;
    }
    const stale = before.filter((old) =>
      !wanted.some((w) =>
        w.device === old.device && Buffer.from(w.peer.publicKey).equals(old.peer.publicKey)
      )
    ).map(removal);
    const results = kernel.apply([...stale, ...wanted]);
    const failures = results.filter((r) => r !== undefined).map(errorText);
    if (failures.length) lastError = failures.join("; ");
    peers.set(id, {
      lease: peer,
      applied: wanted,
      ...(failures.length > 0 && { error: failures.join("; ") }),
    });
    if (wanted.length) kernel.refreshRoutes();
  };

  const remove = (peer: Lease) => {
    const id = leaseIdentity(peer);
    const state = peers.get(id);
    peers.delete(id);
    if (!state?.applied.length) return;
    const failure = kernel.apply(state.applied.map(removal)).find((r) => r !== undefined);
    if (failure) lastError = errorText(failure);
  };

  return {
    lease,
    mtu,
    async run(updates, signal) {
      for await (const update of updates) {
        if (signal.aborted) break;
        for (const event of known.apply(update)) {
          if (event.type === "added") add(event.lease);
          else remove(event.lease);
        }
      }
    },
    health() {
      const report: PeerHealth[] = [...peers.values()].map(({ lease: peer, error }) => ({
        subnet: [peer.subnet, peer.ipv6Subnet].filter((n) => n !== undefined)
          .map((n) => formatNet(n!)).join(","),
        publicIP: formatAddr(peer.attrs.publicIP),
        inSync: error === undefined,
        ...(error !== undefined && { error }),
      }));
      return { type: "wireguard", ready: true, lastError, driftRepaired: 0, peers: report };
    },
    close() {
      kernel.close(); // flannel removes its WireGuard devices on shutdown (spec §10.2)
      return Promise.resolve();
    },
  };
}
