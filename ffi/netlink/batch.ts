/**
 * Many netlink requests at once: up to 2048 per `sendto`, their ACKs read 128 per `recvmmsg`
 * into a ring of pre-built `msghdr`s and matched to their request by sequence number (the kernel
 * keeps going after a failed one). Only a refusal is decoded in full, for its extended-ACK text.
 *
 * @module
 */
import { EAGAIN, EINTR, EMSGSIZE } from "../errno.ts";
import { lastErrno, libc } from "../libc.ts";
import { MSG_DONTWAIT, MSG_TRUNC } from "../unix.ts";
import {
  decodeMessages,
  encodeMessages,
  NetlinkDecodeError,
  type NetlinkMessage,
} from "./codec.ts";
import { NLM_F_ACK, NLMSG_ERROR } from "./constants.ts";
import {
  begin,
  NetlinkError,
  type NetlinkHandle,
  type NetlinkRequest,
  requestMessage,
  send,
  waitReadable,
} from "./socket.ts";

const MAX_SEND_BYTES = 1 << 20;
const RING_SLOTS = 128;
const RING_SLOT_BYTES = 2048; // capped ACKs are 36 bytes, refusals with extack text a few hundred
const HEADER_BYTES = 16;

/** recvmmsg slots for batch ACKs, allocated on first batch. */
interface AckRing {
  readonly count: number;
  readonly slotBytes: number;
  readonly data: Uint8Array<ArrayBuffer>;
  /** Only referenced by raw address from `headers`; kept here so it stays alive. */
  readonly iovecs: Uint8Array<ArrayBuffer>;
  readonly dataView: DataView;
  readonly headers: Uint8Array<ArrayBuffer>;
  readonly headerView: DataView;
}

/** Each socket's ring, allocated on its first batch. */
const rings = new WeakMap<NetlinkHandle, AckRing>();

function makeRing(count: number, slotBytes: number): AckRing {
  const data = new Uint8Array(count * slotBytes);
  const iovecs = new Uint8Array(count * 16);
  const headers = new Uint8Array(count * 64);
  const iov = new DataView(iovecs.buffer);
  const hdr = new DataView(headers.buffer);
  const dataAt = Deno.UnsafePointer.value(Deno.UnsafePointer.of(data));
  const iovAt = Deno.UnsafePointer.value(Deno.UnsafePointer.of(iovecs));
  for (let i = 0; i < count; i++) {
    iov.setBigUint64(i * 16, BigInt(dataAt) + BigInt(i * slotBytes), true); // iov_base
    iov.setBigUint64(i * 16 + 8, BigInt(slotBytes), true); // iov_len
    hdr.setBigUint64(i * 64 + 16, BigInt(iovAt) + BigInt(i * 16), true); // msg_iov
    hdr.setBigUint64(i * 64 + 24, 1n, true); // msg_iovlen
  }
  return {
    count,
    slotBytes,
    data,
    dataView: new DataView(data.buffer),
    iovecs,
    headers,
    headerView: hdr,
  };
}

/**
 * Pipeline many requests: up to 2048 per `sendto`, ACKs read 128 per `recvmmsg`.
 * Returns one entry per request, in order: `undefined` for success or the {@link NetlinkError}.
 * Replies other than ACKs (requests should be changes, not GETs) are ignored.
 *
 * @example
 * ```ts
 * const errors = executeBatch(h, routes.map((r) => routeRequest("replace", r)));
 * ```
 */
export function executeBatch(
  h: NetlinkHandle,
  reqs: readonly NetlinkRequest[],
): (NetlinkError | undefined)[] {
  const st = begin(h);
  let ring = rings.get(h);
  if (!ring) rings.set(h, ring = makeRing(RING_SLOTS, RING_SLOT_BYTES));
  const results = new Array<NetlinkError | undefined>(reqs.length).fill(undefined);
  for (let first = 0; first < reqs.length;) {
    const firstSeq = st.nextSeq;
    let count = Math.min(st.batchLimit, reqs.length - first);
    let batch = encodeChunk(h, reqs, first, count, firstSeq);
    // Unusually large messages: fewer per sendto, to stay far below the socket's send buffer.
    while (batch.length > MAX_SEND_BYTES && count > 1) {
      count >>= 1;
      batch = encodeChunk(h, reqs, first, count, firstSeq);
    }
    st.nextSeq = (firstSeq + count) >>> 0;
    st.dirty = true;
    send(h, batch);
    collectAcks(h, ring, reqs, first, firstSeq, count, results);
    st.dirty = false;
    first += count;
  }
  return results;
}

function encodeChunk(
  h: NetlinkHandle,
  reqs: readonly NetlinkRequest[],
  first: number,
  count: number,
  firstSeq: number,
): Uint8Array<ArrayBuffer> {
  const msgs = new Array<NetlinkMessage>(count);
  for (let i = 0; i < count; i++) {
    msgs[i] = requestMessage(h, reqs[first + i], (firstSeq + i) >>> 0, NLM_F_ACK);
  }
  return encodeMessages(msgs, h.protocol);
}

/**
 * Count ACKs until every request of the chunk has one. ACKs are read straight from the ring's
 * bytes; only a refusal is decoded in full (for its extended-ACK text).
 */
function collectAcks(
  h: NetlinkHandle,
  ring: AckRing,
  reqs: readonly NetlinkRequest[],
  first: number,
  firstSeq: number,
  count: number,
  results: (NetlinkError | undefined)[],
): void {
  const deadline = performance.now() + h.timeoutMs;
  const type = reqs[first].type;
  const { headerView, dataView, slotBytes } = ring;
  let pending = count;
  while (pending > 0) {
    waitReadable(h, deadline, type);
    const n = libc().recvmmsg(h.fd, ring.headers, ring.count, MSG_DONTWAIT, null);
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EAGAIN || errno === EINTR) continue;
      throw new NetlinkError(errno, type, "while collecting batch ACKs", h.protocol);
    }
    for (let i = 0; i < n; i++) {
      if (headerView.getInt32(i * 64 + 48, true) & MSG_TRUNC) {
        throw new NetlinkError(EMSGSIZE, type, "batch reply truncated", h.protocol);
      }
      const end = i * slotBytes + headerView.getUint32(i * 64 + 56, true);
      for (let at = i * slotBytes; at + HEADER_BYTES <= end;) {
        const len = dataView.getUint32(at, true);
        if (len < HEADER_BYTES || at + len > end) {
          throw new NetlinkDecodeError(`message length ${len} out of bounds`, at);
        }
        const offset = (dataView.getUint32(at + 8, true) - firstSeq) >>> 0;
        if (dataView.getUint16(at + 4, true) === NLMSG_ERROR && offset < count) {
          if (len < HEADER_BYTES + 4) throw new NetlinkDecodeError("truncated nlmsgerr", at);
          if (dataView.getInt32(at + HEADER_BYTES, true) !== 0) {
            const [m] = decodeMessages(ring.data.subarray(at, at + len));
            if (m.body.kind === "error") {
              results[first + offset] = new NetlinkError(
                m.body.errno,
                reqs[first + offset].type,
                m.body.extAck,
                h.protocol,
              );
            }
          }
          pending--;
        }
        at += (len + 3) & ~3;
      }
    }
  }
}
