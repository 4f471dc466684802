/**
 * A bound Unix datagram socket standing in for systemd's notify socket, for testing
 * `NOTIFY_SOCKET`. A name starting with `@` is in the abstract namespace.
 */
import { check, closeFd, libc, pollFdAsync, POLLIN } from "../../ffi/libc.ts";
import { sockaddrUn } from "../../systemd_notify.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;

/** What a notify listener offers. */
export interface NotifyListener {
  /** The next datagram as text, or undefined after `timeoutMs` (the event loop keeps running). */
  receive(timeoutMs: number): Promise<string | undefined>;
  close(): void;
}

/** Bind a notify listener at `name`. */
export function notifyListener(name: string): NotifyListener {
  const fd = check("socket", libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0));
  const { address, length } = sockaddrUn(name);
  check("bind", libc().bind(fd, address, length), name);
  return {
    async receive(timeoutMs) {
      if (await pollFdAsync(fd, POLLIN, timeoutMs) === 0) return undefined;
      const buf = new Uint8Array(256);
      const n = check("recvfrom", libc().recvfrom(fd, buf, 256n, 0, null, null));
      return new TextDecoder().decode(buf.subarray(0, n));
    },
    close: () => closeFd(fd),
  };
}
