/**
 * The doorbell between the main thread and the data-path Worker: an eventfd in the Worker's poll
 * set. A Worker blocked in a synchronous `poll` never sees `postMessage` until it returns to its
 * event loop, so every control message is posted first and then rung here; the count read back
 * says how many messages to collect.
 *
 * @module
 */
import { EAGAIN } from "../../ffi/errno.ts";
import { check, lastErrno, libc, SyscallError } from "../../ffi/libc.ts";
import { O_CLOEXEC, O_NONBLOCK } from "../../ffi/unix.ts";

const one = new Uint8Array(new BigUint64Array([1n]).buffer);
const counter = new Uint8Array(8);
const counterView = new DataView(counter.buffer);

/** A non-blocking eventfd (EFD_NONBLOCK and EFD_CLOEXEC equal the O_ flags). */
export function openControlFd(): number {
  return check("eventfd", libc().eventfd(0, O_NONBLOCK | O_CLOEXEC));
}

/** Add one to the counter: wakes a poll on the fd. */
export function ringControl(fd: number): void {
  check("write", libc().write(fd, one, 8n), "eventfd");
}

/** Read and reset the counter: the number of rings since the last read (0 when none). */
export function drainControl(fd: number): number {
  const n = libc().read(fd, counter, 8n);
  if (n === 8) return Number(counterView.getBigUint64(0, true));
  const errno = lastErrno();
  if (n < 0 && errno === EAGAIN) return 0;
  throw new SyscallError("read", errno, "eventfd");
}
