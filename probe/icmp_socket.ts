/**
 * ICMPv4 echo over a socket opened through FFI: a raw socket (`CAP_NET_RAW`, which the daemon has
 * as root) or else an unprivileged ping socket (`SOCK_DGRAM`, `IPPROTO_ICMP`), which the kernel
 * allows only to groups in `net.ipv4.ping_group_range`. Non-blocking: sends are one synchronous
 * `sendto`, and replies are drained after an asynchronous `poll`, so no loop of the daemon waits.
 *
 * Every echo is sent with DF set and the kernel's path-MTU cache ignored (`IP_PMTUDISC_PROBE`),
 * so a probe of N bytes leaves as one packet of N bytes or not at all: what a path-MTU check needs.
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
  sockaddrIn,
  SyscallError,
} from "../ffi/libc.ts";
import {
  AF_INET,
  ICMP_FILTER,
  IP_MTU_DISCOVER,
  IP_PMTUDISC_PROBE,
  IPPROTO_ICMP,
  IPPROTO_IP,
  POLLIN,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOL_RAW,
} from "../ffi/unix.ts";
import { errnoName } from "../ffi/errno.ts";
import { formatAddr, type IPAddr } from "../ip/mod.ts";
import { type EchoReply, echoRequest, IPV4_HEADER, parseEchoReply } from "./icmp_packet.ts";

/** The ICMP types a raw socket drops: every type but echo reply (0). */
const ONLY_ECHO_REPLIES = 0xfffffffe;
/** Large enough for any reply to a probe we send (the overlay MTU is at most 65 535). */
const RECEIVE_BUFFER = 65_536;

/** How the socket talks ICMP. */
export type IcmpSocketKind = "raw" | "ping";

/** An open echo socket. */
export interface IcmpSocket {
  readonly kind: IcmpSocketKind;
  /** The identifier of our echo requests (a ping socket's is chosen by the kernel). */
  readonly id: number;
  /**
   * Send an echo request that is `packetBytes` long as an IPv4 packet (header included).
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

/** Where `net.ipv4.ping_group_range` lives (per network namespace). */
export const PING_GROUP_RANGE = "/proc/sys/net/ipv4/ping_group_range";

function openFd(): { fd: number; kind: IcmpSocketKind } {
  const flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
  const raw = libc().socket(AF_INET, SOCK_RAW | flags, IPPROTO_ICMP);
  if (raw >= 0) return { fd: raw, kind: "raw" };
  const rawError = errnoName(lastErrno());
  const ping = libc().socket(AF_INET, SOCK_DGRAM | flags, IPPROTO_ICMP);
  if (ping >= 0) return { fd: ping, kind: "ping" };
  const pingError = errnoName(lastErrno());
  let range = "unreadable";
  try {
    range = Deno.readTextFileSync(PING_GROUP_RANGE).trim().replace(/\s+/, "-");
  } catch { /* reported as unreadable */ }
  throw new IcmpPermissionError(
    `cannot send ICMP echo: raw socket ${rawError} (needs CAP_NET_RAW), ping socket ` +
      `${pingError} (gid ${Deno.gid()} outside net.ipv4.ping_group_range ${range})`,
  );
}

/** The bound identifier of a ping socket (its "port"). */
function boundPort(fd: number): number {
  const address = new Uint8Array(16);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, 16, true);
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
  const { fd, kind } = openFd();
  try {
    if (kind === "raw") setOption(fd, SOL_RAW, ICMP_FILTER, ONLY_ECHO_REPLIES, "ICMP_FILTER");
    setOption(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE, "IP_MTU_DISCOVER");
    const local = sockaddrIn(Number(options.source?.value ?? 0n));
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
      const reply = parseEchoReply(buffer.subarray(0, n), kind === "raw");
      if (reply && reply.id === id) replies.push(reply);
    }
  }

  return {
    kind,
    id,
    send(destination, seq, packetBytes) {
      const packet = echoRequest(id, seq, packetBytes - IPV4_HEADER);
      const to = sockaddrIn(Number(destination.value));
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
