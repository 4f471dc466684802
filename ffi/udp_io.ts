/**
 * The udp backend's socket, through synchronous FFI: open and bind it (main thread), then send
 * and receive through pre-built `msghdr`s (Worker), with UDP GSO on the way out (one `sendmsg`
 * becomes many datagrams of `segmentSize` bytes each) and UDP GRO on the way in (one `recvmsg`
 * returns a run of same-sized datagrams from one sender).
 *
 * Layouts (x86-64): `sockaddr_in` 16 bytes (family host order, port and address network order),
 * `msghdr` 56, `iovec` 16, `cmsghdr` header 16.
 *
 * @module
 */
import { addressOf, kernelMemory, setPointer, setSize } from "./kernel_memory.ts";
import { check, closeFd, lastErrno, libc, setIntOption, sockaddrIn } from "./libc.ts";
import {
  AF_INET,
  MSG_TRUNC,
  SO_RCVBUFFORCE,
  SO_RXQ_OVFL,
  SO_SNDBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
  SOL_UDP,
  UDP_GRO,
  UDP_SEGMENT,
} from "./unix.ts";

/** Kernel limit on segments per UDP GSO send (UDP_MAX_SEGMENTS on older kernels). */
export const MAX_GSO_SEGMENTS = 64;
/** Largest UDP payload in one IPv4 datagram or GSO send. */
export const MAX_UDP_PAYLOAD = 65507;

/** Options of {@link openUdpSocket}. */
export interface UdpSocketOptions {
  /** Local address to bind (unsigned 32-bit; the interface address, as flannel binds). */
  readonly address: number;
  readonly port: number;
  /** Send and receive buffer size (forced past the sysctl maximum: we run as root). */
  readonly bufferBytes: number;
}

function setOption(fd: number, level: number, name: number, value: number, what: string): void {
  check("setsockopt", setIntOption(fd, level, name, value), what);
}

/**
 * A non-blocking UDP/IPv4 socket bound to `address:port`, with big buffers, UDP GRO and the
 * kernel's receive-overflow count enabled. Throws a SyscallError (e.g. EADDRINUSE) and leaks
 * nothing on failure.
 */
export function openUdpSocket(options: UdpSocketOptions): number {
  const fd = check(
    "socket",
    libc().socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0),
    "udp",
  );
  try {
    setOption(fd, SOL_SOCKET, SO_RCVBUFFORCE, options.bufferBytes, "SO_RCVBUFFORCE");
    setOption(fd, SOL_SOCKET, SO_SNDBUFFORCE, options.bufferBytes, "SO_SNDBUFFORCE");
    setOption(fd, SOL_UDP, UDP_GRO, 1, "UDP_GRO");
    setOption(fd, SOL_SOCKET, SO_RXQ_OVFL, 1, "SO_RXQ_OVFL");
    const address = sockaddrIn(options.address, options.port);
    check("bind", libc().bind(fd, address, address.length), `udp port ${options.port}`);
    return fd;
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** Sends datagrams from memory the caller owns (addressed by raw pointer value). */
export interface UdpSender {
  /**
   * Send `length` bytes at memory address `base` to `address:port` as datagrams of
   * `segmentSize` bytes (the last may be shorter; 0 or ≥ length: one datagram). Returns the bytes
   * sent, or −errno.
   */
  send(base: number, length: number, segmentSize: number, address: number, port: number): number;
}

/** Offsets in the memory of a sender or receiver: `msghdr` 56, `sockaddr_in` 16, `iovec` 16, control. */
const MSG = 0;
const NAME = 56;
const IOV = 72;
const CONTROL = 88;

/** A {@link UdpSender} on `fd`. */
export function createUdpSender(fd: number): UdpSender {
  // One cmsg: SOL_UDP/UDP_SEGMENT with a u16 (CMSG_LEN 18, CMSG_SPACE 24).
  const controlSpace = 24;
  const mem = kernelMemory(CONTROL + controlSpace);
  const v = mem.view;
  v.setUint16(NAME, AF_INET, true);
  v.setUint32(CONTROL, 18, true);
  v.setInt32(CONTROL + 8, SOL_UDP, true);
  v.setInt32(CONTROL + 12, UDP_SEGMENT, true);
  setPointer(v, MSG, mem.address + NAME);
  v.setUint32(MSG + 8, 16, true);
  setPointer(v, MSG + 16, mem.address + IOV);
  v.setUint32(MSG + 24, 1, true);
  setPointer(v, MSG + 32, mem.address + CONTROL);
  const msg = mem.bytes.subarray(MSG, MSG + 56);
  const sendmsg = libc().sendmsg;
  return {
    send(base, length, segmentSize, address, port) {
      v.setUint16(NAME + 2, port);
      v.setUint32(NAME + 4, address >>> 0);
      setPointer(v, IOV, base);
      setSize(v, IOV + 8, length);
      const segmented = segmentSize > 0 && segmentSize < length;
      v.setUint32(MSG + 40, segmented ? controlSpace : 0, true);
      if (segmented) v.setUint16(CONTROL + 16, segmentSize, true);
      const sent = sendmsg(fd, msg, 0);
      return sent >= 0 ? sent : -lastErrno() || -1;
    },
  };
}

/** Receives into memory the caller owns; the getters describe the last receive. */
export interface UdpReceiver {
  /** Receive into the region: bytes received, or −errno (−11 EAGAIN when drained). */
  receive(): number;
  /** Size of each coalesced datagram of the last receive (0: it was one datagram). */
  readonly segmentSize: number;
  /** Sender of the last receive. */
  readonly sourceAddress: number;
  readonly sourcePort: number;
  /** The last receive did not fit the region. */
  readonly truncated: boolean;
  /** Datagrams the kernel dropped for a full receive buffer, since the socket opened. */
  readonly overflowDrops: number;
}

/**
 * A {@link UdpReceiver} on `fd` that receives into `region`. The kernel writes there through a
 * raw pointer: the caller keeps `region` alive as long as the receiver.
 */
export function createUdpReceiver(fd: number, region: Uint8Array<ArrayBuffer>): UdpReceiver {
  // Room for UDP_GRO (int) and SO_RXQ_OVFL (u32): CMSG_SPACE(4) = 24 each.
  const controlSpace = 64;
  const mem = kernelMemory(CONTROL + controlSpace);
  const v = mem.view;
  setPointer(v, MSG, mem.address + NAME);
  setPointer(v, MSG + 16, mem.address + IOV);
  v.setUint32(MSG + 24, 1, true);
  setPointer(v, MSG + 32, mem.address + CONTROL);
  setPointer(v, IOV, addressOf(region));
  setSize(v, IOV + 8, region.length);
  const msg = mem.bytes.subarray(MSG, MSG + 56);
  const recvmsg = libc().recvmsg;
  const state = {
    segmentSize: 0,
    sourceAddress: 0,
    sourcePort: 0,
    truncated: false,
    overflowDrops: 0,
  };

  function readControl(): void {
    const used = Math.min(v.getUint32(MSG + 40, true), controlSpace);
    let at = 0;
    while (at + 16 <= used) {
      const len = v.getUint32(CONTROL + at, true);
      if (len < 16 || at + len > used) break;
      const level = v.getInt32(CONTROL + at + 8, true);
      const type = v.getInt32(CONTROL + at + 12, true);
      if (level === SOL_UDP && type === UDP_GRO && len >= 20) {
        state.segmentSize = v.getInt32(CONTROL + at + 16, true);
      } else if (level === SOL_SOCKET && type === SO_RXQ_OVFL && len >= 20) {
        state.overflowDrops = v.getUint32(CONTROL + at + 16, true);
      }
      at += (len + 7) & ~7;
    }
  }

  return {
    receive() {
      v.setUint32(MSG + 8, 16, true);
      setSize(v, MSG + 40, controlSpace);
      const n = recvmsg(fd, msg, 0);
      if (n < 0) return -lastErrno() || -1;
      state.segmentSize = 0;
      state.sourceAddress = v.getUint32(NAME + 4);
      state.sourcePort = v.getUint16(NAME + 2);
      state.truncated = (v.getInt32(MSG + 48, true) & MSG_TRUNC) !== 0;
      readControl();
      return n;
    },
    get segmentSize() {
      return state.segmentSize;
    },
    get sourceAddress() {
      return state.sourceAddress;
    },
    get sourcePort() {
      return state.sourcePort;
    },
    get truncated() {
      return state.truncated;
    },
    get overflowDrops() {
      return state.overflowDrops;
    },
  };
}
