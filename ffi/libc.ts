/**
 * The slice of libc that Tartan talks to the kernel with, loaded once per isolate.
 *
 * Every symbol is synchronous except `pollAsync`: a sync call costs ~0.2 µs and its errno is
 * still on this thread afterwards, while a `nonblocking` call costs ~26 µs and runs on a pool
 * thread whose errno is lost. Workers must use this module from their own isolate (a
 * `Deno.dlopen` handle belongs to one isolate; the module is re-evaluated per Worker).
 *
 * Result types: `ssize_t` results are declared `i32` (exact on x86-64 below 2 GiB, including
 * -1) so they come back as numbers, not BigInts. `size_t` arguments stay `usize` (pass a BigInt;
 * a `u32` would leave the register's upper half to chance) and ioctl requests `u64`.
 *
 * @module
 */
import { errnoName, errnoText } from "./errno.ts";
import { addrToBytes, type IPAddr } from "../ip/mod.ts";
import { AF_INET, AF_INET6, F_GETFL, F_SETFL, O_CLOEXEC, O_NONBLOCK } from "./unix.ts";

const SYMBOLS = {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  sendto: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "u32"], result: "i32" },
  recvfrom: { parameters: ["i32", "buffer", "usize", "i32", "buffer", "buffer"], result: "i32" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  sendmmsg: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  recvmmsg: { parameters: ["i32", "buffer", "u32", "i32", "pointer"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  write: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  /** `iovcnt` is an int, so a hot path can write without a BigInt length. */
  writev: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  /** ioctl whose argument is an integer, not a pointer (TUNSETOFFLOAD). */
  ioctlInt: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32" },
  pollAsync: {
    name: "poll",
    parameters: ["buffer", "u64", "i32"],
    result: "i32",
    nonblocking: true,
  },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  if_nametoindex: { parameters: ["buffer"], result: "u32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  /** A counter fd in a poll set: how the main thread wakes a Worker blocked in `poll`. */
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded libc symbols (see the module doc for the declared types). */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let errnoCell: Int32Array | undefined;

/**
 * The libc symbols, opening `libc.so.6` on first use in this isolate.
 *
 * @example
 * ```ts
 * const fd = check("socket", libc().socket(AF_NETLINK, SOCK_RAW, 0));
 * ```
 */
export function libc(): Libc {
  library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return library.symbols;
}

/**
 * The calling thread's errno; only meaningful right after a failed synchronous call. It is read
 * through an Int32Array laid over this thread's errno (each isolate runs on one thread and loads
 * this module for itself): a plain load, where an `UnsafePointerView` read is a runtime call that
 * cost ~14 µs on the data path's cold wake-ups. Nothing may run on this thread between the call
 * and the read: the daemon's V8 flags keep Sparkplug compiles off it (see v8_flags.ts).
 */
export function lastErrno(): number {
  if (!errnoCell) {
    const location = libc().__errno_location();
    if (location === null) throw new Error("__errno_location returned NULL");
    errnoCell = new Int32Array(Deno.UnsafePointerView.getArrayBuffer(location, 4));
  }
  return errnoCell[0];
}

/** A failed libc call: `code` is the errno name (`"EPERM"`, `"ENODEV"`, ...). */
export class SyscallError extends Error {
  /** The errno name, e.g. `"EEXIST"`. */
  readonly code: string;

  constructor(readonly call: string, readonly errno: number, detail?: string) {
    const name = errnoName(errno);
    super(`${call}${detail ? ` ${detail}` : ""}: ${name} (${errnoText(errno)})`);
    this.name = "SyscallError";
    this.code = name;
  }
}

/**
 * Return `result`, or throw a {@link SyscallError} with the current errno when it is negative.
 * Call it directly on the result of a synchronous libc call, before anything else touches errno.
 */
export function check(call: string, result: number, detail?: string): number {
  if (result < 0) throw new SyscallError(call, lastErrno(), detail);
  return result;
}

const encoder = new TextEncoder();

/** A NUL-terminated UTF-8 copy of `text`, for `char *` arguments. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** `open(2)` that throws a {@link SyscallError} naming the path. */
export function openPath(path: string, flags: number): number {
  return check("open", libc().open(cString(path), flags | O_CLOEXEC, 0), path);
}

/** `close(2)`; errors are reported (a failed close means a bug in fd ownership). */
export function closeFd(fd: number): void {
  check("close", libc().close(fd));
}

/** `setsockopt(2)` with a 32-bit integer value; its raw result (negative: see errno). */
export function setIntOption(fd: number, level: number, name: number, value: number): number {
  const optval = new Uint8Array(4);
  new DataView(optval.buffer).setInt32(0, value, true);
  return libc().setsockopt(fd, level, name, optval, 4);
}

/**
 * A `sockaddr_in` (16 bytes: family in host order, port and address in network order) for the
 * IPv4 `address` as an unsigned 32-bit number and `port`.
 */
export function sockaddrIn(address: number, port = 0): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, AF_INET, true);
  view.setUint16(2, port);
  view.setUint32(4, address >>> 0);
  return bytes;
}

/**
 * A `sockaddr_in` (16 bytes) or `sockaddr_in6` (28 bytes, flow info and scope 0) for `address`
 * and `port`: family in host order, port and address in network order.
 */
export function sockaddrOf(address: IPAddr, port = 0): Uint8Array<ArrayBuffer> {
  if (address.family === 4) return sockaddrIn(Number(address.value), port);
  const bytes = new Uint8Array(28);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, AF_INET6, true);
  view.setUint16(2, port);
  bytes.set(addrToBytes(address), 8);
  return bytes;
}

/** Put a file descriptor into non-blocking mode. */
export function setNonBlocking(fd: number): void {
  const flags = check("fcntl", libc().fcntl(fd, F_GETFL, 0));
  check("fcntl", libc().fcntl(fd, F_SETFL, flags | O_NONBLOCK));
}

/**
 * Wait up to `timeoutMs` for `events` on one fd (synchronously, blocking this isolate).
 * Returns the `revents` bits, 0 on timeout; EINTR counts as a timeout-free retry.
 */
export function pollFd(fd: number, events: number, timeoutMs: number): number {
  const pfd = new Uint8Array(8);
  const view = new DataView(pfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const wait = Math.max(0, Math.ceil(deadline - performance.now()));
    const n = libc().poll(pfd, 1n, wait);
    if (n >= 0) return n === 0 ? 0 : view.getUint16(6, true);
    const errno = lastErrno();
    if (errnoName(errno) !== "EINTR") throw new SyscallError("poll", errno);
  }
}

/**
 * Like {@link pollFd} but waits on a libc pool thread so the event loop keeps running.
 * Costs ~26 µs per call: use it for event streams (monitors), never per packet.
 */
export async function pollFdAsync(fd: number, events: number, timeoutMs: number): Promise<number> {
  const pfd = new Uint8Array(8);
  const view = new DataView(pfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, events, true);
  const n = await libc().pollAsync(pfd, 1n, Math.max(0, Math.ceil(timeoutMs)));
  // errno of a pool thread is unreadable; a failed poll is reported by its return value only.
  if (n < 0) throw new SyscallError("poll", 0, "(async)");
  return n === 0 ? 0 : view.getUint16(6, true);
}
