/**
 * A client of wireguard-go's UAPI socket: one request per connection, the answer read up to its
 * terminating blank line, bounded in time and size.
 *
 * @module
 */
import {
  decodeGetAnswer,
  decodeSetAnswer,
  encodeSet,
  UAPI_GET,
  UapiDecodeError,
  type UapiDevice,
  type UapiSet,
} from "./uapi.ts";

/**
 * Where wireguard-go (and `wg`) put the device sockets. The path is compiled into both, so it is
 * not a setting: two nodes on one host each need a private mount namespace with their own
 * directory bind-mounted here (the lab does this).
 */
export const WIREGUARD_SOCKET_DIR = "/var/run/wireguard";

/** The UAPI socket of a device. */
export function uapiSocketPath(device: string): string {
  return `${WIREGUARD_SOCKET_DIR}/${device}.sock`;
}

/** wireguard-go refused a `set=1` (its errno, e.g. EINVAL for a bad key). */
export class UapiError extends Error {
  constructor(readonly device: string, readonly errno: number) {
    super(`wireguard-go refused the change on ${device}: errno ${errno}`);
    this.name = "UapiError";
  }
}

const MAX_ANSWER = 16 << 20;
const TIMEOUT_MS = 5000;

/** Send one request on the socket and read its whole answer. */
export async function uapiExchange(path: string, request: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path });
  const timer = setTimeout(() => conn.close(), TIMEOUT_MS);
  try {
    const bytes = new TextEncoder().encode(request);
    for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
    const decoder = new TextDecoder();
    const buf = new Uint8Array(65536);
    let text = "";
    while (!text.endsWith("\n\n")) {
      const n = await conn.read(buf);
      if (n === null) throw new UapiDecodeError("the socket closed before the answer ended");
      text += decoder.decode(buf.subarray(0, n), { stream: true });
      if (text.length > MAX_ANSWER) throw new UapiDecodeError("answer too long");
    }
    return text;
  } catch (err) {
    if (err instanceof Deno.errors.BadResource) {
      throw new UapiDecodeError(`no answer within ${TIMEOUT_MS} ms on ${path}`);
    }
    throw err;
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

/** Read a device's state. */
export async function uapiGet(device: string): Promise<UapiDevice> {
  return decodeGetAnswer(await uapiExchange(uapiSocketPath(device), UAPI_GET));
}

/** Apply a change to a device; a non-zero errno is a {@link UapiError}. */
export async function uapiSet(device: string, change: UapiSet): Promise<void> {
  const errno = decodeSetAnswer(await uapiExchange(uapiSocketPath(device), encodeSet(change)));
  if (errno !== 0) throw new UapiError(device, errno);
}
