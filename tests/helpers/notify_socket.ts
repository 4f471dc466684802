/**
 * A bound Unix datagram socket standing in for systemd's notify socket, for testing
 * `NOTIFY_SOCKET`. A name starting with `@` is in the abstract namespace.
 */
import { check, closeFd, lastErrno, libc, pollFdAsync, SyscallError } from "../../ffi/libc.ts";
import { sockaddrUn } from "../../systemd_notify.ts";
import { AF_UNIX, POLLIN, SOCK_DGRAM, SOCK_NONBLOCK } from "../../ffi/unix.ts";

/** More than any `net.unix.max_dgram_qlen` a test machine would set. */
const MAX_FILL = 10_000;

/** What a notify listener offers. */
export interface NotifyListener {
  /** The next datagram as text, or undefined after `timeoutMs` (the event loop keeps running). */
  receive(timeoutMs: number): Promise<string | undefined>;
  /**
   * Queue datagrams of `filler` until the listener's queue is full, and return how many. While it
   * is full, a blocking sender (as the daemon's notify is) waits inside `sendto`.
   */
  fill(filler: string): number;
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
    fill(filler) {
      const sender = check("socket", libc().socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0));
      const data = new TextEncoder().encode(filler);
      try {
        for (let sent = 0; sent < MAX_FILL; sent++) {
          const n = libc().sendto(sender, data, BigInt(data.length), 0, address, length);
          if (n < 0) {
            const err = new SyscallError("sendto", lastErrno(), name);
            if (err.code === "EAGAIN") return sent;
            throw err;
          }
        }
        throw new Error(`notify listener ${name}: queue not full after ${MAX_FILL} datagrams`);
      } finally {
        closeFd(sender);
      }
    },
    close: () => closeFd(fd),
  };
}
