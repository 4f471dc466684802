/**
 * A bound Unix datagram socket standing in for systemd's notify socket, for testing
 * `NOTIFY_SOCKET`. A name starting with `@` is in the abstract namespace.
 */
import { check, closeFd, libc } from "../../ffi/libc.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const POLLIN = 1;
const CHECK_EVERY_MS = 20;

/** What a notify listener offers. */
export interface NotifyListener {
  /** The next datagram as text, or undefined after `timeoutMs` (the event loop keeps running). */
  receive(timeoutMs: number): Promise<string | undefined>;
  close(): void;
}

/** Bind a notify listener at `name`. */
export function notifyListener(name: string): NotifyListener {
  const fd = check("socket", libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  const address = new Uint8Array(110);
  new DataView(address.buffer).setUint16(0, AF_UNIX, true);
  const abstract = name.startsWith("@");
  const path = new TextEncoder().encode(abstract ? name.slice(1) : name);
  address.set(path, 2 + (abstract ? 1 : 0));
  check("bind", libc().bind(fd, address, 2 + path.length + 1), name);
  const pollfd = new Uint8Array(8);
  new DataView(pollfd.buffer).setInt32(0, fd, true);
  new DataView(pollfd.buffer).setInt16(4, POLLIN, true);
  return {
    async receive(timeoutMs) {
      const deadline = performance.now() + timeoutMs;
      while (libc().poll(pollfd, 1n, 0) !== 1) {
        if (performance.now() > deadline) return undefined;
        await new Promise((r) => setTimeout(r, CHECK_EVERY_MS));
      }
      const buf = new Uint8Array(256);
      const n = check("recvfrom", libc().recvfrom(fd, buf, 256n, 0, null, null));
      return new TextDecoder().decode(buf.subarray(0, n));
    },
    close: () => closeFd(fd),
  };
}
