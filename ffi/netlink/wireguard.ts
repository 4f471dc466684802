/**
 * The WireGuard generic netlink API (`linux/wireguard.h`, family "wireguard", version 1):
 * WG_CMD_SET_DEVICE (private key, listen port, peers) and WG_CMD_GET_DEVICE (a dump).
 *
 * Peers and allowed IPs are nested arrays: WGDEVICE_A_PEERS holds one nest per peer and
 * WGPEER_A_ALLOWEDIPS one nest per address, every one flagged NLA_F_NESTED with type 0 (the
 * kernel iterates them and ignores the type). Endpoints are `struct sockaddr_in` / `sockaddr_in6`
 * with the port in network order; every other integer is host-endian.
 *
 * UNVERIFIED against a kernel: the machine this was written on has no wireguard module; the
 * encoding is tested byte by byte against the UAPI header.
 *
 * @module
 */
import { addrFromBytes, type IPAddr, type IPNet, makeNet } from "../../ip/mod.ts";
import {
  addrAttr,
  type Attr,
  attrMap,
  attrU16,
  attrU32,
  attrU8,
  bytesAttr,
  decodeAttrs,
  nestAttr,
  NetlinkDecodeError,
  type NetlinkMessage,
  u16Attr,
  u32Attr,
  u8Attr,
} from "./codec.ts";
import type { GenlFamily } from "./genl.ts";
import { genlRequest } from "./genl.ts";
import { dump, execute, type NetlinkHandle, type NetlinkRequest } from "./socket.ts";
import { AF_INET, AF_INET6 } from "../unix.ts";
import { sockaddrOf } from "../libc.ts";

export const WG_GENL_NAME = "wireguard";
export const WG_GENL_VERSION = 1;
export const WG_KEY_LEN = 32;
export const WG_CMD_GET_DEVICE = 0;
export const WG_CMD_SET_DEVICE = 1;
export const WGDEVICE_F_REPLACE_PEERS = 1;
export const WGDEVICE_A_IFINDEX = 1;
export const WGDEVICE_A_IFNAME = 2;
export const WGDEVICE_A_PRIVATE_KEY = 3;
export const WGDEVICE_A_PUBLIC_KEY = 4;
export const WGDEVICE_A_FLAGS = 5;
export const WGDEVICE_A_LISTEN_PORT = 6;
export const WGDEVICE_A_FWMARK = 7;
export const WGDEVICE_A_PEERS = 8;
export const WGPEER_F_REMOVE_ME = 1;
export const WGPEER_F_REPLACE_ALLOWEDIPS = 2;
export const WGPEER_F_UPDATE_ONLY = 4;
export const WGPEER_A_PUBLIC_KEY = 1;
export const WGPEER_A_PRESHARED_KEY = 2;
export const WGPEER_A_FLAGS = 3;
export const WGPEER_A_ENDPOINT = 4;
export const WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL = 5;
export const WGPEER_A_LAST_HANDSHAKE_TIME = 6;
export const WGPEER_A_RX_BYTES = 7;
export const WGPEER_A_TX_BYTES = 8;
export const WGPEER_A_ALLOWEDIPS = 9;
export const WGPEER_A_PROTOCOL_VERSION = 10;
export const WGALLOWEDIP_A_FAMILY = 1;
export const WGALLOWEDIP_A_IPADDR = 2;
export const WGALLOWEDIP_A_CIDR_MASK = 3;

/** Where a peer's packets go: an IP and UDP port. */
export interface WgEndpoint {
  readonly address: IPAddr;
  readonly port: number;
}

/** One peer change inside WG_CMD_SET_DEVICE. */
export interface WgPeerChange {
  readonly publicKey: Uint8Array;
  /** WGPEER_F_REMOVE_ME: delete the peer (a missing peer is not an error); the rest is unused. */
  readonly remove?: boolean;
  readonly presharedKey?: Uint8Array;
  readonly endpoint?: WgEndpoint;
  /** Seconds, 0 = off. */
  readonly persistentKeepaliveInterval?: number;
  readonly allowedIps?: readonly IPNet[];
  /** WGPEER_F_REPLACE_ALLOWEDIPS: `allowedIps` becomes the whole list instead of being added. */
  readonly replaceAllowedIps?: boolean;
}

/** WG_CMD_SET_DEVICE: what to change on the device with ifindex `index`. */
export interface WgDeviceChange {
  readonly index: number;
  readonly privateKey?: Uint8Array;
  readonly listenPort?: number;
  readonly peers?: readonly WgPeerChange[];
}

/** A peer as WG_CMD_GET_DEVICE reports it. */
export interface WgPeerState {
  readonly publicKey: Uint8Array;
  readonly endpoint?: WgEndpoint;
  readonly persistentKeepaliveInterval: number;
  readonly allowedIps: IPNet[];
}

/** A device as WG_CMD_GET_DEVICE reports it. */
export interface WgDeviceState {
  readonly index: number;
  readonly name: string;
  readonly publicKey?: Uint8Array;
  readonly listenPort: number;
  readonly peers: WgPeerState[];
}

function keyAttr(type: number, key: Uint8Array, what: string): Attr {
  if (key.length !== WG_KEY_LEN) throw new RangeError(`${what}: ${key.length} bytes, want 32`);
  return bytesAttr(type, key);
}

/** `struct sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes, flow info and scope 0). */
export function encodeSockaddr(endpoint: WgEndpoint): Uint8Array {
  const { address, port } = endpoint;
  if (!Number.isInteger(port) || port < 0 || port > 0xffff) {
    throw new RangeError(`endpoint port ${port} is outside 0..65535`);
  }
  return sockaddrOf(address, port);
}

/** Decode an endpoint written by the kernel (sockaddr_in or sockaddr_in6). */
export function decodeSockaddr(data: Uint8Array): WgEndpoint {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const family = data.length >= 2 ? view.getUint16(0, true) : -1;
  if (family === AF_INET && data.length === 16) {
    return { address: addrFromBytes(data.subarray(4, 8)), port: view.getUint16(2) };
  }
  if (family === AF_INET6 && data.length === 28) {
    return { address: addrFromBytes(data.subarray(8, 24)), port: view.getUint16(2) };
  }
  throw new NetlinkDecodeError(`endpoint: family ${family} in ${data.length} bytes`, 0);
}

function allowedIpAttr(net: IPNet): Attr {
  return nestAttr(0, [
    u16Attr(WGALLOWEDIP_A_FAMILY, net.family === 4 ? AF_INET : AF_INET6),
    addrAttr(WGALLOWEDIP_A_IPADDR, { family: net.family, value: net.base }),
    u8Attr(WGALLOWEDIP_A_CIDR_MASK, net.prefix),
  ]);
}

function peerAttr(peer: WgPeerChange): Attr {
  const attrs = [keyAttr(WGPEER_A_PUBLIC_KEY, peer.publicKey, "peer public key")];
  if (peer.remove) {
    attrs.push(u32Attr(WGPEER_A_FLAGS, WGPEER_F_REMOVE_ME));
    return nestAttr(0, attrs);
  }
  if (peer.replaceAllowedIps) attrs.push(u32Attr(WGPEER_A_FLAGS, WGPEER_F_REPLACE_ALLOWEDIPS));
  if (peer.presharedKey) {
    attrs.push(keyAttr(WGPEER_A_PRESHARED_KEY, peer.presharedKey, "preshared key"));
  }
  if (peer.endpoint) attrs.push(bytesAttr(WGPEER_A_ENDPOINT, encodeSockaddr(peer.endpoint)));
  if (peer.persistentKeepaliveInterval !== undefined) {
    attrs.push(
      u16Attr(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL, peer.persistentKeepaliveInterval),
    );
  }
  if (peer.allowedIps) {
    attrs.push(nestAttr(WGPEER_A_ALLOWEDIPS, peer.allowedIps.map(allowedIpAttr)));
  }
  return nestAttr(0, attrs);
}

/** The WG_CMD_SET_DEVICE request for `change` (send it with {@link execute} or a batch). */
export function setDeviceRequest(familyId: number, change: WgDeviceChange): NetlinkRequest {
  const attrs = [u32Attr(WGDEVICE_A_IFINDEX, change.index)];
  if (change.privateKey) {
    attrs.push(keyAttr(WGDEVICE_A_PRIVATE_KEY, change.privateKey, "private key"));
  }
  if (change.listenPort !== undefined) {
    attrs.push(u16Attr(WGDEVICE_A_LISTEN_PORT, change.listenPort));
  }
  if (change.peers?.length) attrs.push(nestAttr(WGDEVICE_A_PEERS, change.peers.map(peerAttr)));
  return genlRequest(familyId, WG_CMD_SET_DEVICE, WG_GENL_VERSION, attrs);
}

/**
 * Apply `change` to a WireGuard device (WG_CMD_SET_DEVICE); throws NetlinkError on refusal.
 *
 * @example
 * ```ts
 * setDevice(genl, wg, { index, privateKey, listenPort: 51820 });
 * ```
 */
export function setDevice(h: NetlinkHandle, family: GenlFamily, change: WgDeviceChange): void {
  execute(h, setDeviceRequest(family.id, change));
}

/** The WG_CMD_GET_DEVICE request for the device with ifindex `index` (a dump). */
export function getDeviceRequest(familyId: number, index: number): NetlinkRequest {
  return genlRequest(familyId, WG_CMD_GET_DEVICE, WG_GENL_VERSION, [
    u32Attr(WGDEVICE_A_IFINDEX, index),
  ]);
}

function decodeAllowedIp(a: Attr): IPNet {
  const m = attrMap(decodeAttrs(a.data));
  const addr = m.get(WGALLOWEDIP_A_IPADDR);
  const mask = m.get(WGALLOWEDIP_A_CIDR_MASK);
  if (!addr || !mask || (addr.data.length !== 4 && addr.data.length !== 16)) {
    throw new NetlinkDecodeError("allowed IP without a 4- or 16-byte address and mask", 0);
  }
  const address = addrFromBytes(addr.data);
  const prefix = attrU8(mask);
  if (prefix > addr.data.length * 8) throw new NetlinkDecodeError(`allowed IP mask /${prefix}`, 0);
  return makeNet(address, prefix);
}

function decodePeer(a: Attr): WgPeerState {
  const m = attrMap(decodeAttrs(a.data));
  const key = m.get(WGPEER_A_PUBLIC_KEY);
  if (key?.data.length !== WG_KEY_LEN) throw new NetlinkDecodeError("peer without a key", 0);
  const endpoint = m.get(WGPEER_A_ENDPOINT);
  const keepalive = m.get(WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL);
  const ips = m.get(WGPEER_A_ALLOWEDIPS);
  return {
    publicKey: key.data.slice(),
    ...(endpoint && { endpoint: decodeSockaddr(endpoint.data) }),
    persistentKeepaliveInterval: keepalive ? attrU16(keepalive) : 0,
    allowedIps: ips ? decodeAttrs(ips.data).map(decodeAllowedIp) : [],
  };
}

const sameKey = (a: Uint8Array, b: Uint8Array) => a.every((byte, i) => byte === b[i]);

/**
 * Merge the messages of one WG_CMD_GET_DEVICE dump. The kernel splits a large device over
 * several messages: device attributes come in the first only, and a peer whose allowed IPs did
 * not fit is repeated in the next with its key and the remaining allowed IPs.
 */
export function deviceFromMessages(messages: readonly NetlinkMessage[]): WgDeviceState {
  let device: WgDeviceState | undefined;
  for (const msg of messages) {
    if (msg.body.kind !== "genl") continue;
    const m = attrMap(msg.body.attrs);
    if (!device) {
      const index = m.get(WGDEVICE_A_IFINDEX);
      const name = m.get(WGDEVICE_A_IFNAME);
      const key = m.get(WGDEVICE_A_PUBLIC_KEY);
      const port = m.get(WGDEVICE_A_LISTEN_PORT);
      if (!index || !name) throw new NetlinkDecodeError("device without index or name", 0);
      device = {
        index: attrU32(index),
        name: new TextDecoder().decode(name.data).replace(/\0.*$/s, ""),
        ...(key && { publicKey: key.data.slice() }),
        listenPort: port ? attrU16(port) : 0,
        peers: [],
      };
    }
    const peers = m.get(WGDEVICE_A_PEERS);
    for (const peer of peers ? decodeAttrs(peers.data).map(decodePeer) : []) {
      const last = device.peers.at(-1);
      if (last && sameKey(last.publicKey, peer.publicKey)) last.allowedIps.push(...peer.allowedIps);
      else device.peers.push(peer);
    }
  }
  if (!device) throw new NetlinkDecodeError("WG_CMD_GET_DEVICE answered no device", 0);
  return device;
}

/** Read a WireGuard device's public state and peers (WG_CMD_GET_DEVICE). */
export function getDevice(h: NetlinkHandle, family: GenlFamily, index: number): WgDeviceState {
  return deviceFromMessages(dump(h, getDeviceRequest(family.id, index)));
}
