/**
 * systemd's readiness protocol (`Type=notify` units): when `NOTIFY_SOCKET` is set, flanneld
 * sends `READY=1` to it once its backend runs (spec §1.6, §10.1 step 11). A unit written for
 * flanneld keeps working when Tartan replaces it: without the message systemd would consider the
 * start failed and kill the daemon.
 *
 * The socket is a Unix datagram socket; a name starting with `@` is in the abstract namespace.
 *
 * @module
 */
import { check, closeFd, libc } from "./ffi/libc.ts";
import { AF_UNIX, SOCK_CLOEXEC, SOCK_DGRAM } from "./ffi/unix.ts";

/** `sizeof(struct sockaddr_un)`: a 2-byte family, then the path. */
const SOCKADDR_UN_BYTES = 110;
const PATH_AT = 2;

/** A `sockaddr_un` for `name` (`@` first: abstract) and the length to pass with it. */
export function sockaddrUn(name: string): { address: Uint8Array<ArrayBuffer>; length: number } {
  const abstract = name.startsWith("@");
  const path = new TextEncoder().encode(abstract ? name.slice(1) : name);
  // Either way one extra byte: a path's terminating NUL, or the NUL that starts an abstract name.
  const length = PATH_AT + path.length + 1;
  if (path.length === 0 || length > SOCKADDR_UN_BYTES) {
    throw new RangeError(`NOTIFY_SOCKET ${JSON.stringify(name)} is not a usable socket name`);
  }
  const address = new Uint8Array(SOCKADDR_UN_BYTES);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  address.set(path, PATH_AT + (abstract ? 1 : 0));
  return { address, length };
}

/**
 * Send `message` (e.g. `READY=1`) to the notify socket `socketName` (default: `NOTIFY_SOCKET`).
 * Returns false when there is no socket to notify; throws a SyscallError when sending fails.
 */
export function notifySystemd(
  message: string,
  socketName: string | undefined = Deno.env.get("NOTIFY_SOCKET"),
): boolean {
  if (!socketName) return false;
  const { address, length } = sockaddrUn(socketName);
  const fd = check("socket", libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0), "notify");
  try {
    const data = new TextEncoder().encode(message);
    check(
      "sendto",
      libc().sendto(fd, data, BigInt(data.length), 0, address, length),
      `NOTIFY_SOCKET ${socketName}`,
    );
    return true;
  } finally {
    closeFd(fd);
  }
}
