/**
 * The node's WireGuard key pair (spec §6.6): one private key for all devices, kept where flannel
 * keeps it (`/run/flannel/wgkey`, or `WIREGUARD_KEY_FILE`) as base64 text, mode 0400.
 *
 * @module
 */
import { parentDir } from "../../fsync.ts";
import { decodeWireguardKey } from "../../config/backend_options.ts";
import { BackendError } from "../backend.ts";

/** Where flannel keeps the node's private key. */
export const DEFAULT_KEY_FILE = "/run/flannel/wgkey";

/** The key file flannel reads: `WIREGUARD_KEY_FILE` when set, else {@link DEFAULT_KEY_FILE}. */
export function keyFilePath(): string {
  return Deno.env.get("WIREGUARD_KEY_FILE") || DEFAULT_KEY_FILE;
}

/** Decode a base64 WireGuard key (32 bytes) or throw a {@link BackendError} naming `what`. */
export function decodeKey(text: string, what: string): Uint8Array {
  const key = decodeWireguardKey(text);
  if (!key) throw new BackendError("wireguard", `${what} must be the base64 encoding of 32 bytes`);
  return key;
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
  return Uint8Array.fromBase64(jwk.x!, { alphabet: "base64url" });
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
    await Deno.mkdir(parentDir(path), { recursive: true, mode: 0o755 });
    await Deno.writeTextFile(path, privateKey.toBase64(), { mode: 0o400 });
  }
  return {
    privateKey: privateKey.toBase64(),
    publicKey: (await publicKeyOf(privateKey)).toBase64(),
  };
}
