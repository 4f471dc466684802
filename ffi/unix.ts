/**
 * The kernel's syscall-level numbers (x86-64 Linux, from `sys/socket.h`, `fcntl.h`, `poll.h`,
 * `linux/udp.h`): socket families, types and options, message flags, open flags and poll bits.
 * The role `golang.org/x/sys/unix` plays for Go; netlink's protocol numbers are in
 * `netlink/constants.ts`, errno numbers in `errno.ts`. Each number is written here once.
 *
 * @module
 */

// Address families.
export const AF_UNSPEC = 0;
export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;

// Socket types, and the flags or-ed into them.
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

// Socket options.
export const SOL_SOCKET = 1;
export const SO_SNDBUF = 7;
export const SO_RCVBUF = 8;
export const SO_SNDBUFFORCE = 32;
export const SO_RCVBUFFORCE = 33;
/** Count datagrams the socket dropped (delivered as a control message). */
export const SO_RXQ_OVFL = 40;
export const SOL_UDP = 17;
export const SOL_RAW = 255;
/** On a raw ICMP socket: a bit mask of the ICMP types to drop. */
export const ICMP_FILTER = 1;

// IP protocols and IP-level options.
export const IPPROTO_IP = 0;
export const IPPROTO_ICMP = 1;
export const IP_MTU_DISCOVER = 10;
/** Set DF and ignore the path-MTU cache: a probe leaves whole or not at all. */
export const IP_PMTUDISC_PROBE = 3;
export const IPPROTO_IPV6 = 41;
export const IPPROTO_ICMPV6 = 58;
/** IPv6's IP_MTU_DISCOVER; it takes the same IP_PMTUDISC_* values. */
export const IPV6_MTU_DISCOVER = 23;
/** Refuse (EMSGSIZE) rather than fragment a datagram larger than the MTU. */
export const IPV6_DONTFRAG = 62;
/** On a raw ICMPv6 socket (level IPPROTO_ICMPV6): 256 bits, a set bit drops that type. */
export const ICMPV6_FILTER = 1;
/** UDP GSO: one send becomes datagrams of this size. */
export const UDP_SEGMENT = 103;
/** UDP GRO: one receive returns a run of same-sized datagrams. */
export const UDP_GRO = 104;

// send/recv flags.
export const MSG_TRUNC = 0x20;
export const MSG_DONTWAIT = 0x40;

// open(2) and fcntl(2).
export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const F_GETFL = 3;
export const F_SETFL = 4;

// poll(2) events.
export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLNVAL = 0x020;
