/**
 * A netlink socket (rtnetlink by default, or generic netlink), optionally bound to a named
 * network namespace.
 *
 * Calls are synchronous: the kernel handles a request inside the `sendto` that carries it, so the
 * answer is already queued when we read it, and a dump is produced inside our `recv`. Every read
 * still waits through `poll` with the handle's timeout, so nothing can hang.
 *
 * Three ways to talk:
 * - {@link execute}: one request with NLM_F_ACK; returns the replies before the ACK.
 * - `executeBatch` (batch.ts): many requests per `sendto`, ACKs collected with `recvmmsg` and
 *   matched to their request by sequence number (the kernel keeps going after a failed one).
 * - {@link dump}: NLM_F_DUMP with multipart reading, retried when the kernel flags the dump as
 *   interrupted by a concurrent change.
 *
 * @module
 */
import { EAGAIN, EINTR, EMSGSIZE, errnoName, errnoText, ETIMEDOUT } from "../errno.ts";
import { check, closeFd, lastErrno, libc, pollFd, setIntOption, SyscallError } from "../libc.ts";
import { inNetns } from "../netns.ts";
import { decodeMessages, encodeMessage, type NetlinkBody, type NetlinkMessage } from "./codec.ts";
import {
  NETLINK_ADD_MEMBERSHIP,
  NETLINK_CAP_ACK,
  NETLINK_EXT_ACK,
  NETLINK_GENERIC,
  NETLINK_ROUTE,
  NLM_F_ACK,
  NLM_F_DUMP,
  NLM_F_DUMP_INTR,
  NLM_F_REQUEST,
  SOL_NETLINK,
} from "./constants.ts";
import {
  AF_NETLINK,
  MSG_DONTWAIT,
  MSG_TRUNC,
  POLLIN,
  SO_RCVBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUF,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_RAW,
  SOL_SOCKET,
} from "../unix.ts";
import * as constants from "./constants.ts";

/** rtnetlink message names by number, read off the RTM_* constants themselves. */
const MESSAGE_TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries(constants)
    .filter(([name]) => /^RTM_(NEW|DEL|GET|SET)/.test(name))
    .map(([name, value]) => [value, name]),
);

function operationName(messageType: number, protocol: number): string {
  if (protocol === NETLINK_GENERIC && messageType >= 16) {
    return `generic netlink family ${messageType}`;
  }
  const name = protocol === NETLINK_ROUTE ? MESSAGE_TYPE_NAMES.get(messageType) : undefined;
  return name ?? `netlink message ${messageType}`;
}

/** A request the kernel refused (or could not answer in time): `code` is the errno name. */
export class NetlinkError extends Error {
  /** The errno name, e.g. `"EEXIST"`. */
  readonly code: string;

  constructor(
    readonly errno: number,
    readonly messageType: number,
    readonly extAck?: string,
    /** The socket's protocol: it decides what `messageType` names (NETLINK_ROUTE by default). */
    protocol: number = NETLINK_ROUTE,
  ) {
    const op = operationName(messageType, protocol);
    super(`${op}: ${errnoName(errno)} (${errnoText(errno)})${extAck ? `: ${extAck}` : ""}`);
    this.name = "NetlinkError";
    this.code = errnoName(errno);
  }
}

/** Options of {@link openNetlink}. */
export interface NetlinkOptions {
  /** NETLINK_ROUTE (default) or NETLINK_GENERIC. */
  protocol?: typeof NETLINK_ROUTE | typeof NETLINK_GENERIC;
  /** Network namespace (name under /run/netns, or a path) the socket lives in. */
  netns?: string;
  /** Upper bound for every wait on the kernel, in ms (default 5000). */
  timeoutMs?: number;
  /** Multicast groups to join (for monitors), e.g. RTNLGRP_*. */
  groups?: readonly number[];
}

/** An open netlink socket. Use it from the isolate (thread) that opened it. */
export interface NetlinkHandle {
  readonly fd: number;
  readonly netns: string | undefined;
  /** NETLINK_ROUTE or NETLINK_GENERIC: decides how message types are decoded. */
  readonly protocol: number;
  /** The port id the kernel assigned (replies carry it as nlmsg_pid). */
  readonly portId: number;
  /** Upper bound for every wait on the kernel, in ms; may be changed between calls. */
  timeoutMs: number;
}

/** A request without sequence number; NLM_F_REQUEST (and ACK/DUMP) are added by the call. */
export interface NetlinkRequest {
  type: number;
  /** Extra header flags such as NLM_F_CREATE | NLM_F_EXCL. */
  flags?: number;
  body: NetlinkBody;
}

/** Per-socket bookkeeping; exported for batch.ts, which shares the sequence numbers. */
export interface SocketState {
  nextSeq: number;
  /** Set when a call gave up mid-reply: unread replies (or a running dump) must be drained. */
  dirty: boolean;
  /** Requests per `sendto` in a batch, sized so that their ACKs fit the receive buffer. */
  readonly batchLimit: number;
  readonly recvBuffer: Uint8Array<ArrayBuffer>;
}

const states = new WeakMap<NetlinkHandle, SocketState>();

const SOCKET_BUFFER_BYTES = 4 << 20;
const RECV_BUFFER_BYTES = 64 << 10; // a dump datagram is at most 32 KiB
const DUMP_ATTEMPTS = 5;
const DRAIN_LIMIT = 100_000;

function stateOf(h: NetlinkHandle): SocketState {
  const st = states.get(h);
  if (!st) throw new Error("netlink handle is closed or was not made by openNetlink");
  return st;
}

/** Large buffers so that a batch's ACKs never overflow; FORCE needs CAP_NET_ADMIN. */
function sizeBuffers(fd: number): boolean {
  const forced = setIntOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, SOCKET_BUFFER_BYTES) === 0 &&
    setIntOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, SOCKET_BUFFER_BYTES) === 0;
  if (!forced) {
    check("setsockopt", setIntOption(fd, SOL_SOCKET, SO_RCVBUF, SOCKET_BUFFER_BYTES));
    check("setsockopt", setIntOption(fd, SOL_SOCKET, SO_SNDBUF, SOCKET_BUFFER_BYTES));
  }
  return forced;
}

/**
 * Open a netlink socket of `opts.protocol` (rtnetlink by default), in `opts.netns` if given (the
 * thread enters the namespace only for the `socket` call).
 *
 * @example
 * ```ts
 * const h = openNetlink({ netns: "tt-abc123-a" });
 * try { console.log(listLinks(h)); } finally { closeNetlink(h); }
 * ```
 */
export function openNetlink(opts: NetlinkOptions = {}): NetlinkHandle {
  const protocol = opts.protocol ?? NETLINK_ROUTE;
  const fd = inNetns(
    opts.netns,
    () => check("socket", libc().socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, protocol)),
  );
  try {
    const forced = sizeBuffers(fd);
    // Capped ACKs do not echo the request back (36 bytes each); extended ACKs explain errors.
    check("setsockopt", setIntOption(fd, SOL_NETLINK, NETLINK_CAP_ACK, 1));
    check("setsockopt", setIntOption(fd, SOL_NETLINK, NETLINK_EXT_ACK, 1));
    const addr = new Uint8Array(12);
    new DataView(addr.buffer).setUint16(0, AF_NETLINK, true);
    check("bind", libc().bind(fd, addr, addr.length));
    for (const group of opts.groups ?? []) {
      check("setsockopt", setIntOption(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group));
    }
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, addr.length, true);
    check("getsockname", libc().getsockname(fd, addr, len));
    const handle: NetlinkHandle = {
      fd,
      netns: opts.netns,
      protocol,
      portId: new DataView(addr.buffer).getUint32(4, true),
      timeoutMs: opts.timeoutMs ?? 5000,
    };
    states.set(handle, {
      nextSeq: (Math.random() * 0x7fffffff) >>> 0,
      dirty: false,
      batchLimit: forced ? 2048 : 128,
      recvBuffer: new Uint8Array(RECV_BUFFER_BYTES),
    });
    return handle;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** Close the socket. Closing twice is a no-op. */
export function closeNetlink(h: NetlinkHandle): void {
  if (!states.delete(h)) return;
  closeFd(h.fd);
}

/**
 * Open a handle, run `fn`, and close the handle whatever happens.
 *
 * @example
 * ```ts
 * const links = await withNetlink({ netns: "tt-abc123-a" }, (h) => listLinks(h));
 * ```
 */
export async function withNetlink<T>(
  opts: NetlinkOptions,
  fn: (h: NetlinkHandle) => T | Promise<T>,
): Promise<T> {
  const h = openNetlink(opts);
  try {
    return await fn(h);
  } finally {
    closeNetlink(h);
  }
}

function takeSeq(st: SocketState): number {
  const seq = st.nextSeq;
  st.nextSeq = (st.nextSeq + 1) >>> 0;
  return seq;
}

/** Send one datagram (retried on EINTR). */
export function send(h: NetlinkHandle, bytes: Uint8Array<ArrayBuffer>): void {
  for (;;) {
    const n = libc().sendto(h.fd, bytes, BigInt(bytes.length), 0, null, 0);
    if (n === bytes.length) return;
    if (n >= 0) throw new SyscallError("sendto", 0, `short write ${n}/${bytes.length}`);
    const errno = lastErrno();
    if (errno !== EINTR) throw new SyscallError("sendto", errno, "(netlink)");
  }
}

/** Wait for readability until `deadline`; throws ETIMEDOUT past it. */
export function waitReadable(h: NetlinkHandle, deadline: number, messageType: number): void {
  const left = deadline - performance.now();
  if (left <= 0 || pollFd(h.fd, POLLIN, left) === 0) {
    throw new NetlinkError(ETIMEDOUT, messageType, undefined, h.protocol);
  }
}

/**
 * Read one datagram (waiting until `deadline`); a truncated datagram is an error. Returns a
 * copy: decoded attributes are views into it and must outlive the next read.
 */
function receive(h: NetlinkHandle, st: SocketState, deadline: number, type: number): Uint8Array {
  for (;;) {
    waitReadable(h, deadline, type);
    const buf = st.recvBuffer;
    const n = libc().recvfrom(h.fd, buf, BigInt(buf.length), MSG_DONTWAIT | MSG_TRUNC, null, null);
    if (n > buf.length) {
      throw new NetlinkError(EMSGSIZE, type, `datagram of ${n} bytes`, h.protocol);
    }
    if (n >= 0) return buf.slice(0, n);
    const errno = lastErrno();
    if (errno === EAGAIN || errno === EINTR) continue;
    // ENOBUFS: the kernel dropped messages for us; whatever was in flight is lost.
    throw new NetlinkError(errno, type, undefined, h.protocol);
  }
}

/** Throw away replies left over from a call that gave up (bounded in count and time). */
function drain(h: NetlinkHandle, st: SocketState): void {
  const buf = st.recvBuffer;
  const deadline = performance.now() + h.timeoutMs;
  for (let i = 0; i < DRAIN_LIMIT && performance.now() < deadline; i++) {
    const n = libc().recvfrom(h.fd, buf, BigInt(buf.length), MSG_DONTWAIT | MSG_TRUNC, null, null);
    if (n < 0 && lastErrno() === EAGAIN) {
      st.dirty = false;
      return;
    }
  }
  throw new NetlinkError(ETIMEDOUT, 0, "could not drain stale netlink replies");
}

/** The socket's state, with replies of an abandoned call drained first. */
export function begin(h: NetlinkHandle): SocketState {
  const st = stateOf(h);
  if (st.dirty) drain(h, st);
  return st;
}

/**
 * Read every message of sequence `seq` until `isLast` says stop, handing each other one to
 * `take` as soon as its datagram is decoded; other sequences are stale replies of abandoned
 * calls and are skipped.
 */
function collect(
  h: NetlinkHandle,
  st: SocketState,
  req: NetlinkRequest,
  seq: number,
  isLast: (m: NetlinkMessage) => boolean,
  take: (m: NetlinkMessage) => void,
): void {
  const deadline = performance.now() + h.timeoutMs;
  st.dirty = true;
  for (;;) {
    for (const m of decodeMessages(receive(h, st, deadline, req.type), h.protocol)) {
      if (m.header.seq !== seq) continue;
      if (m.body.kind === "error" && m.body.errno !== 0) {
        throw new NetlinkError(m.body.errno, req.type, m.body.extAck, h.protocol);
      }
      if (m.body.kind === "done" && m.body.errno !== 0) {
        throw new NetlinkError(m.body.errno, req.type, undefined, h.protocol);
      }
      if (isLast(m)) {
        st.dirty = false;
        return;
      }
      take(m);
    }
  }
}

/** A request as a message with our port id, sequence number and `flags`. */
export function requestMessage(
  h: NetlinkHandle,
  req: NetlinkRequest,
  seq: number,
  flags: number,
): NetlinkMessage {
  return {
    header: { type: req.type, flags: NLM_F_REQUEST | flags | (req.flags ?? 0), seq, pid: h.portId },
    body: req.body,
  };
}

/**
 * Send one request with NLM_F_ACK and wait for its ACK. Returns the replies that came before
 * the ACK (a non-dump GET answers with one message). Throws {@link NetlinkError} on refusal.
 *
 * @example
 * ```ts
 * execute(h, { type: RTM_NEWLINK, body: { kind: "link", msg, attrs } });
 * ```
 */
export function execute(h: NetlinkHandle, req: NetlinkRequest): NetlinkMessage[] {
  const st = begin(h);
  const seq = takeSeq(st);
  send(h, encodeMessage(requestMessage(h, req, seq, NLM_F_ACK), h.protocol));
  const replies: NetlinkMessage[] = [];
  collect(h, st, req, seq, (m) => m.body.kind === "error", (m) => replies.push(m));
  return replies;
}

/**
 * Dump a table (NLM_F_DUMP) and return what `pick` makes of each object message (undefined
 * drops it); without `pick`, the messages themselves. Picking while reading keeps only the
 * results alive, not every decoded message of a 10 000-entry table. An interrupted dump (the
 * table changed meanwhile, NLM_F_DUMP_INTR) is retried a few times before failing with EINTR.
 *
 * @example
 * ```ts
 * const names = dump(h, req, (m) => m.body.kind === "link" ? linkFromMessage(m).name : undefined);
 * ```
 */
export function dump(h: NetlinkHandle, req: NetlinkRequest): NetlinkMessage[];
export function dump<T>(
  h: NetlinkHandle,
  req: NetlinkRequest,
  pick: (m: NetlinkMessage) => T | undefined,
): T[];
export function dump<T>(
  h: NetlinkHandle,
  req: NetlinkRequest,
  pick: (m: NetlinkMessage) => T | undefined = (m) => m as T,
): T[] {
  for (let attempt = 0; attempt < DUMP_ATTEMPTS; attempt++) {
    const st = begin(h);
    const seq = takeSeq(st);
    send(h, encodeMessage(requestMessage(h, req, seq, NLM_F_DUMP), h.protocol));
    let interrupted = false;
    const picked: T[] = [];
    collect(h, st, req, seq, (m) => {
      if (m.header.flags & NLM_F_DUMP_INTR) interrupted = true;
      return m.body.kind === "done" || m.body.kind === "error";
    }, (m) => {
      const result = pick(m);
      if (result !== undefined) picked.push(result);
    });
    if (!interrupted) return picked;
  }
  throw new NetlinkError(
    EINTR,
    req.type,
    `dump interrupted ${DUMP_ATTEMPTS} times`,
    h.protocol,
  );
}

/**
 * Read whatever multicast messages are queued (for a handle opened with `groups`), waiting up to
 * `timeoutMs` for the first. Returns an empty list on timeout.
 */
export function readEvents(h: NetlinkHandle, timeoutMs: number): NetlinkMessage[] {
  const st = stateOf(h);
  if (pollFd(h.fd, POLLIN, timeoutMs) === 0) return [];
  const out: NetlinkMessage[] = [];
  const buf = st.recvBuffer;
  for (let i = 0; i < 1024; i++) {
    const n = libc().recvfrom(h.fd, buf, BigInt(buf.length), MSG_DONTWAIT | MSG_TRUNC, null, null);
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EAGAIN) break;
      throw new NetlinkError(errno, 0, "while reading events");
    }
    if (n > buf.length) throw new NetlinkError(EMSGSIZE, 0, `event of ${n} bytes`);
    out.push(...decodeMessages(buf.slice(0, n), h.protocol));
  }
  return out;
}
