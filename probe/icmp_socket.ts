/**
 * ICMP echo over IPv4 or IPv6, on a socket opened through FFI: a raw socket (`CAP_NET_RAW`, which
 * the daemon has as root) or else an unprivileged ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP` or
 * `IPPROTO_ICMPV6`), which the kernel allows only to groups in `net.ipv4.ping_group_range` (for
 * both families). Non-blocking: sends are one synchronous `sendto`, and replies are drained after
 * an asynchronous `poll`, so no loop of the daemon waits.
 *
 * Every echo is sent unfragmented with the kernel's path-MTU cache ignored (`IP_PMTUDISC_PROBE`;
 * on IPv6 also `IPV6_DONTFRAG`, as the host would otherwise fragment), so a probe of N bytes
 * leaves as one packet of N bytes or not at all: what a path-MTU check needs.
 *
 * @module
 */
import {
  check,
  closeFd,
  lastErrno,
  libc,
  pollFdAsync,
  setIntOption,
  sockaddrOf,
  SyscallError,
} from "../ffi/libc.ts";
import {
  AF_INET,
  AF_INET6,
  ICMP_FILTER,
  ICMPV6_FILTER,
  IP_MTU_DISCOVER,
  IP_PMTUDISC_PROBE,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPV6_DONTFRAG,
  IPV6_MTU_DISCOVER,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_RAW,
} from "../ffi/unix.ts";
import { errnoName } from "../ffi/errno.ts";
import { type Family, formatAddr, type IPAddr } from "../ip/mod.ts";
import {
  ECHO_TYPES,
  type EchoReply,
  echoRequest,
  IP_HEADER_BYTES,
  parseEchoReply,
} from "./icmp_packet.ts";

/** The socket calls of each family. */
const FAMILIES = {
  4: { domain: AF_INET, protocol: IPPROTO_ICMP, ipLevel: IPPROTO_IP, mtuOption: IP_MTU_DISCOVER },
  6: {
    domain: AF_INET6,
    protocol: IPPROTO_ICMPV6,
    ipLevel: IPPROTO_IPV6,
    mtuOption: IPV6_MTU_DISCOVER,
  },
} as const;
/** Large enough for any reply to a probe we send (the overlay MTU is at most 65 535). */
const RECEIVE_BUFFER = 65_536;

/** How the socket talks ICMP. */
export type IcmpSocketKind = "raw" | "ping";

/** An open echo socket. */
export interface IcmpSocket {
  readonly kind: IcmpSocketKind;
  /** The identifier of our echo requests (a ping socket's is chosen by the kernel). */
  readonly id: number;
  readonly family: Family;
  /**
   * Send an echo request that is `packetBytes` long as an IP packet (header included).
   * Returns `undefined` when sent, else the errno name (`EMSGSIZE`, `ENETUNREACH`, …).
   */
  send(destination: IPAddr, seq: number, packetBytes: number): string | undefined;
  /** Wait up to `timeoutMs` for something to read; then read every reply that is there. */
  receive(timeoutMs: number): Promise<EchoReply[]>;
  close(): void;
}

/** Options of {@link openIcmpSocket}. */
export interface IcmpSocketOptions {
  /** Source address (bind); replies to other local addresses are not seen. */
  readonly source?: IPAddr;
  /** The family when there is no source (default 4). */
  readonly family?: Family;
  /** The identifier of a raw socket's requests (default random). */
  readonly id?: number;
}

/** Neither a raw nor a ping socket could be opened: says which permission is missing. */
export class IcmpPermissionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "IcmpPermissionError";
  }
}

function setOption(fd: number, level: number, name: number, value: number, what: string): void {
  check("setsockopt", setIntOption(fd, level, name, value), what);
}

/** Have a raw socket drop every ICMP type but the echo reply (a set bit drops that type). */
function onlyEchoReplies(fd: number, family: Family): void {
  const reply = ECHO_TYPES[family].reply;
  if (family === 4) {
    setOption(fd, SOL_RAW, ICMP_FILTER, ~(1 << reply) >>> 0, "ICMP_FILTER");
    return;
  }
  const bits = new Uint32Array(8).fill(0xffffffff);
  bits[reply >> 5] &= ~(1 << (reply & 31)) >>> 0;
  const filter = new Uint8Array(bits.buffer);
  check(
    "setsockopt",
    libc().setsockopt(fd, IPPROTO_ICMPV6, ICMPV6_FILTER, filter, filter.length),
    "ICMPV6_FILTER",
  );
}

/** Where `net.ipv4.ping_group_range` lives (per network namespace). */
export const PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range";

function openFd(family: Family): { fd: number; kind: IcmpSocketKind } {
  const { domain, protocol } = FAMILIES[family];
  const flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  const raw = libc().socket(domain, SOCK_RAW | flags, protocol);
  if (raw >= 0) return { fd: raw, kind: "raw" };
  const rawError = errnoName(lastErrno());
  const ping = libc().socket(domain, SOCK_DGRAM | flags, protocol);
  if (ping >= 0) return { fd: ping, kind: "ping" };
  const pingError = errnoName(lastErrno());
  let range = "unreadable";
  try {
    range = Deno.readTextFileSync(PING_GROUP_RANGE).trim().replace(/\s+/, "-");
  } catch { /* reported as unreadable */ }
  throw new IcmpPermissionError(
    `cannot send ICMPv${
      family === 4 ? "4" : "6"
    } echo: raw socket ${rawError} (needs CAP_NET_RAW), ping socket ` +
      `${pingError} (gid ${Deno.gid()} outside net.ipv4.ping_group_range ${range})`,
  );
}

/** The bound identifier of a ping socket (its "port", at the same offset in both families). */
function boundPort(fd: number): number {
  const address = new Uint8Array(28);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, address.length, true);
  check("getsockname", libc().getsockname(fd, address, length));
  return new DataView(address.buffer).getUint16(2);
}

/**
 * Open an echo socket bound to `source` (any local address when absent).
 *
 * @throws {IcmpPermissionError} when neither socket kind is allowed.
 * @example
 * ```ts
 * const socket = openIcmpSocket({ source: parseAddr("10.244.1.0") });
 * socket.send(parseAddr("10.244.2.0"), 1, 84);
 * const replies = await socket.receive(1000);
 * ```
 */
export function openIcmpSocket(options: IcmpSocketOptions = {}): IcmpSocket {
  const family = options.source?.family ?? options.family ?? 4;
  const { ipLevel, mtuOption } = FAMILIES[family];
  const { fd, kind } = openFd(family);
  try {
    if (kind === "raw") onlyEchoReplies(fd, family);
    setOption(fd, ipLevel, mtuOption, IP_PMTUDISC_PROBE, "path-MTU discovery off");
    if (family === 6) setOption(fd, IPPROTO_IPV6, IPV6_DONTFRAG, 1, "IPV6_DONTFRAG");
    const local = sockaddrOf(options.source ?? { family, value: 0n });
    const where = options.source ? formatAddr(options.source) : "any address";
    check("bind", libc().bind(fd, local, local.length), `icmp ${where}`);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  const id = kind === "ping"
    ? boundPort(fd)
    : (options.id ?? crypto.getRandomValues(new Uint16Array(1))[0]);
  const buffer = new Uint8Array(RECEIVE_BUFFER);
  let closed = false;

  function readAll(): EchoReply[] {
    const replies: EchoReply[] = [];
    for (;;) {
      const n = libc().recvfrom(fd, buffer, BigInt(buffer.length), 0, null, null);
      if (n < 0) {
        const errno = lastErrno();
        const name = errnoName(errno);
        if (name === "EAGAIN" || name === "EINTR") return replies;
        throw new SyscallError("recvfrom", errno, "icmp");
      }
      // Only a raw IPv4 socket hands over the IP header.
      const reply = parseEchoReply(family, buffer.subarray(0, n), kind === "raw" && family === 4);
      if (reply && reply.id === id) replies.push(reply);
    }
  }

  return {
    kind,
    id,
    family,
    send(destination, seq, packetBytes) {
      const packet = echoRequest(family, id, seq, packetBytes - IP_HEADER_BYTES[family]);
      const to = sockaddrOf(destination);
      const sent = libc().sendto(fd, packet, BigInt(packet.length), 0, to, to.length);
      return sent < 0 ? errnoName(lastErrno()) : undefined;
    },
    async receive(timeoutMs) {
      if (closed) return [];
      const events = await pollFdAsync(fd, POLLIN, timeoutMs);
      // The socket may have been closed while the poll waited on its pool thread.
      if (closed || (events & POLLIN) === 0) return [];
      return readAll();
    },
    close() {
      if (closed) return;
      closed = true;
      closeFd(fd);
    },
  };
}
