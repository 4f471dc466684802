/**
 * The peers a remote lease needs (spec §6.6), derived once for both implementations (kernel
 * generic netlink and wireguard-go's UAPI), and the drift between what a device holds and what
 * the leases want.
 *
 * @module
 */
import type { WireguardMode, WireguardOptions } from "../../config/backend_options.ts";
import type { WgEndpoint, WgPeerChange, WgPeerState } from "../../ffi/netlink/wireguard.ts";
import {
  type Family,
  formatNet,
  type IPAddr,
  type IPNet,
  netContains,
  parseNet,
} from "../../ip/mod.ts";
import type { JsonValue, Lease } from "../../subnet/lease.ts";
import { BackendError } from "../backend.ts";
import type { WireguardDevice } from "./config.ts";
import { decodeKey } from "./keys.ts";

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

/** How the network derives peers: the mode, its devices and the per-peer settings. */
export interface PeerPlan extends PeerDefaults {
  readonly mode: WireguardMode;
  readonly devices: readonly WireguardDevice[];
}

/** The per-peer settings of a net-conf (the PSK checked as a key). */
export function peerDefaults(config: WireguardOptions): PeerDefaults {
  return {
    ...(config.psk && { presharedKey: decodeKey(config.psk, "Backend.PSK") }),
    persistentKeepaliveInterval: config.persistentKeepaliveInterval,
  };
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

/** The change that deletes a peer by its public key. */
export const peerRemoval = ({ device, peer }: DevicePeer): DevicePeer => ({
  device,
  peer: { publicKey: peer.publicKey, remove: true },
});

const keyText = (key: Uint8Array) => key.toBase64();
const netsText = (nets: readonly IPNet[]) => nets.map(formatNet).sort().join(",");

/** Whether a device's peer holds what `want` programs (an endpoint it roamed to is kept). */
function holds(state: WgPeerState, want: WgPeerChange): boolean {
  return netsText(state.allowedIps) === netsText(want.allowedIps ?? []) &&
    state.persistentKeepaliveInterval === (want.persistentKeepaliveInterval ?? 0) &&
    (want.endpoint === undefined || state.endpoint !== undefined);
}

/**
 * What brings the devices back to the wanted peers: a removal for each peer no lease wants, and
 * the wanted change again for each peer missing or different (allowed IPs, keepalive, no
 * endpoint). `actual` maps each device to the peers it holds.
 */
export function peerDrift(
  wanted: readonly DevicePeer[],
  actual: ReadonlyMap<string, readonly WgPeerState[]>,
): DevicePeer[] {
  const wantedKeys = new Set(wanted.map((w) => `${w.device}/${keyText(w.peer.publicKey)}`));
  const stray = [...actual].flatMap(([device, states]) =>
    states.filter((s) => !wantedKeys.has(`${device}/${keyText(s.publicKey)}`))
      .map((s) => peerRemoval({ device, peer: { publicKey: s.publicKey } }))
  );
  const differing = wanted.filter((w) => {
    const state = actual.get(w.device)?.find((s) =>
      keyText(s.publicKey) === keyText(w.peer.publicKey)
    );
    return !state || !holds(state, w.peer);
  });
  return [...stray, ...differing];
}

/** Whether two changes program the same peer on the same device. */
export function samePeer(a: DevicePeer, b: DevicePeer): boolean {
  return a.device === b.device && keyText(a.peer.publicKey) === keyText(b.peer.publicKey);
}
