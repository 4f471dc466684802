/**
 * WireGuard's cross-platform userspace API (wireguard.com/xplatform), the `key=value` protocol
 * wireguard-go serves on `/var/run/wireguard/<device>.sock`: a `set=1` request carries the same
 * settings as the kernel's WG_CMD_SET_DEVICE (keys in hex, one `allowed_ip=` per line, a blank
 * line at the end) and answers `errno=N`; `get=1` answers the device and its peers. Pure text in
 * and out; the socket is `uapi_client.ts`.
 *
 * @module
 */
import type { WgEndpoint, WgPeerChange, WgPeerState } from "../../ffi/netlink/wireguard.ts";
import { formatAddr, formatNet, type IPNet, tryParseAddr, tryParseNet } from "../../ip/mod.ts";

/** What a `set=1` request changes (as WG_CMD_SET_DEVICE, keyed by name rather than ifindex). */
export interface UapiSet {
  readonly privateKey?: Uint8Array;
  readonly listenPort?: number;
  readonly peers?: readonly WgPeerChange[];
}

/** A device as `get=1` reports it. */
export interface UapiDevice {
  readonly hasPrivateKey: boolean;
  readonly listenPort: number;
  readonly peers: WgPeerState[];
}

/** An answer that is not the protocol (a wrong socket, a truncated read, another program). */
export class UapiDecodeError extends Error {
  constructor(message: string) {
    super(`wireguard UAPI: ${message}`);
    this.name = "UapiDecodeError";
  }
}

/** The request that reads the device. */
export const UAPI_GET = "get=1\n\n";

const hex = (key: Uint8Array, what: string) => {
  if (key.length !== 32) throw new RangeError(`${what}: ${key.length} bytes, want 32`);
  return key.toHex();
};

/** `192.0.2.1:51820` or `[2001:db8::1]:51820`. */
export function formatEndpoint({ address, port }: WgEndpoint): string {
  const host = address.family === 6 ? `[${formatAddr(address)}]` : formatAddr(address);
  return `${host}:${port}`;
}

function peerLines(peer: WgPeerChange): string[] {
  const lines = [`public_key=${hex(peer.publicKey, "public key")}`];
  if (peer.remove) return [...lines, "remove=true"];
  if (peer.presharedKey) lines.push(`preshared_key=${hex(peer.presharedKey, "preshared key")}`);
  if (peer.endpoint) lines.push(`endpoint=${formatEndpoint(peer.endpoint)}`);
  if (peer.persistentKeepaliveInterval !== undefined) {
    lines.push(`persistent_keepalive_interval=${peer.persistentKeepaliveInterval}`);
  }
  if (peer.replaceAllowedIps) lines.push("replace_allowed_ips=true");
  for (const net of peer.allowedIps ?? []) lines.push(`allowed_ip=${formatNet(net)}`);
  return lines;
}

/** The `set=1` request for a change, terminated by its blank line. */
export function encodeSet(change: UapiSet): string {
  const lines = ["set=1"];
  if (change.privateKey) lines.push(`private_key=${hex(change.privateKey, "private key")}`);
  if (change.listenPort !== undefined) lines.push(`listen_port=${change.listenPort}`);
  for (const peer of change.peers ?? []) lines.push(...peerLines(peer));
  return lines.join("\n") + "\n\n";
}

/** The `key=value` lines of one answer, which must end with `errno=N` and a blank line. */
function answerLines(text: string): { lines: [string, string][]; errno: number } {
  if (!text.endsWith("\n\n")) throw new UapiDecodeError("answer not terminated by a blank line");
  const lines = text.slice(0, -2).split("\n").map((line): [string, string] => {
    const eq = line.indexOf("=");
    if (eq <= 0) throw new UapiDecodeError(`not a key=value line: ${JSON.stringify(line)}`);
    return [line.slice(0, eq), line.slice(eq + 1)];
  });
  const last = lines.pop();
  if (last?.[0] !== "errno" || !/^\d+$/.test(last[1])) {
    throw new UapiDecodeError("answer does not end with errno=N");
  }
  return { lines, errno: Number(last[1]) };
}

/** The errno of a `set=1` answer (0 is success). */
export function decodeSetAnswer(text: string): number {
  const { lines, errno } = answerLines(text);
  if (lines.length) throw new UapiDecodeError(`unexpected ${lines[0][0]}= in a set answer`);
  return errno;
}

function decodeKey(value: string, what: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/.test(value)) throw new UapiDecodeError(`${what} is not 64 hex digits`);
  return Uint8Array.fromHex(value);
}

function decodeInt(value: string, what: string, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n > max) throw new UapiDecodeError(`${what}=${value}`);
  return n;
}

function decodeEndpoint(value: string): WgEndpoint {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(value);
  const address = m && tryParseAddr(m[1] ?? m[2]);
  if (!m || !address) throw new UapiDecodeError(`endpoint=${value}`);
  return { address, port: decodeInt(m[3], "endpoint port", 65535) };
}

function decodeAllowedIp(value: string): IPNet {
  const net = tryParseNet(value);
  if (!net) throw new UapiDecodeError(`allowed_ip=${value}`);
  return net;
}

interface MutablePeer {
  publicKey: Uint8Array;
  endpoint?: WgEndpoint;
  persistentKeepaliveInterval: number;
  allowedIps: IPNet[];
}

/**
 * The answer to `get=1`: the device (`listen_port`, whether it has a private key) and its peers,
 * each starting at its `public_key=` line. Counters, handshake times and unknown keys are
 * skipped (the protocol may grow); a non-zero errno or a malformed line is a
 * {@link UapiDecodeError}.
 */
export function decodeGetAnswer(text: string): UapiDevice {
  const { lines, errno } = answerLines(text);
  if (errno !== 0) throw new UapiDecodeError(`get answered errno=${errno}`);
  let hasPrivateKey = false;
  let listenPort = 0;
  const peers: MutablePeer[] = [];
  for (const [key, value] of lines) {
    const peer = peers.at(-1);
    if (key === "public_key") {
      peers.push({
        publicKey: decodeKey(value, "public_key"),
        persistentKeepaliveInterval: 0,
        allowedIps: [],
      });
    } else if (key === "private_key" && !peer) {
      hasPrivateKey = decodeKey(value, "private_key").some((b) => b !== 0);
    } else if (key === "listen_port" && !peer) {
      listenPort = decodeInt(value, "listen_port", 65535);
    } else if (key === "endpoint" && peer) {
      peer.endpoint = decodeEndpoint(value);
    } else if (key === "persistent_keepalive_interval" && peer) {
      peer.persistentKeepaliveInterval = decodeInt(value, key, 65535);
    } else if (key === "allowed_ip" && peer) {
      peer.allowedIps.push(decodeAllowedIp(value));
    } else if (key === "preshared_key" && peer) {
      decodeKey(value, "preshared_key");
    }
  }
  return { hasPrivateKey, listenPort, peers };
}
