/**
 * TUN devices: open `/dev/net/tun` (optionally inside a named namespace), attach it with
 * TUNSETIFF, and move packets in batches through pre-allocated buffers.
 *
 * Everything is synchronous FFI so that a Worker can run the data path as a plain loop: wait in
 * `poll` with a finite timeout (so it can notice a stop flag), then read every queued packet
 * without waking up again. File descriptors are process-wide: the main thread can open the
 * device and post `fd` to a Worker, which wraps it with {@link tunFromFd}.
 *
 * @module
 */
import { EAGAIN, EINTR, ENOBUFS } from "./errno.ts";
import { check, closeFd, lastErrno, libc, openPath, setNonBlocking, SyscallError } from "./libc.ts";
import { inNetns } from "./netns.ts";
import { O_RDWR, POLLIN } from "./unix.ts";

const TUNSETIFF = 0x400454can;
const TUNSETOFFLOAD = 0x400454d0n;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_VNET_HDR = 0x4000;
const IFNAMSIZ = 16;

/** TUNSETOFFLOAD bits: what the kernel may hand us unsegmented / without checksum. */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;

/** Size of the `virtio_net_hdr` that prefixes every packet when `vnetHdr` is on. */
export const VIRTIO_NET_HDR_LEN = 10;

/** How to open a TUN device. */
export interface TunOptions {
  /** Interface name, or a template such as `flannel%d` (the kernel picks the number). */
  name?: string;
  /** IFF_MULTI_QUEUE: open the same name again to get another queue. */
  multiQueue?: boolean;
  /** IFF_VNET_HDR: every packet carries a 10-byte virtio_net_hdr (needed for offloads). */
  vnetHdr?: boolean;
  /** TUN_F_* bits for TUNSETOFFLOAD (TSO requires `vnetHdr`). */
  offload?: number;
  /** Create the device in this network namespace (name under /run/netns or a path). */
  netns?: string;
}

/** An open TUN queue. Raw IP packets, no packet-info header (IFF_NO_PI); fd non-blocking. */
export interface TunDevice {
  readonly fd: number;
  /** The name the kernel gave the interface. */
  readonly name: string;
  readonly vnetHdr: boolean;
  /** A pre-built pollfd for this fd, so waiting allocates nothing. */
  readonly pollfd: Uint8Array<ArrayBuffer>;
}

/** Pre-allocated buffers for batch reads and writes; `lengths[i]` is packet i's size. */
export interface PacketBatch {
  readonly buffers: Uint8Array<ArrayBuffer>[];
  readonly lengths: Int32Array;
  /** Capacity of each buffer, as the BigInt `read` wants (computed once). */
  readonly capacity: bigint;
}

function makePollfd(fd: number): Uint8Array<ArrayBuffer> {
  const pfd = new Uint8Array(8);
  const view = new DataView(pfd.buffer);
  view.setInt32(0, fd, true);
  view.setInt16(4, POLLIN, true);
  return pfd;
}

/**
 * Create (or attach to) a TUN interface and return its non-blocking queue. The interface is
 * not persistent: it disappears when the last queue is closed.
 *
 * @example
 * ```ts
 * const tun = openTun({ name: "flannel%d", netns: "tt-abc123-a" });
 * ```
 */
export function openTun(opts: TunOptions = {}): TunDevice {
  const wanted = opts.name ?? "tun%d";
  const nameBytes = new TextEncoder().encode(wanted);
  if (nameBytes.length >= IFNAMSIZ) throw new RangeError(`interface name ${wanted} is too long`);
  const ifreq = new Uint8Array(40);
  ifreq.set(nameBytes);
  const flags = IFF_TUN | IFF_NO_PI | (opts.multiQueue ? IFF_MULTI_QUEUE : 0) |
    (opts.vnetHdr ? IFF_VNET_HDR : 0);
  new DataView(ifreq.buffer).setUint16(16, flags, true);
  // The device belongs to the namespace that is current at open() time, so both calls go inside.
  const fd = inNetns(opts.netns, () => {
    const fd = openPath("/dev/net/tun", O_RDWR);
    try {
      check("ioctl", libc().ioctl(fd, TUNSETIFF, ifreq), `TUNSETIFF ${wanted}`);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    return fd;
  });
  try {
    if (opts.offload !== undefined) {
      // TUNSETOFFLOAD takes the bits as the argument itself, not through memory.
      check("ioctl", libc().ioctlInt(fd, TUNSETOFFLOAD, BigInt(opts.offload)), "TUNSETOFFLOAD");
    }
    setNonBlocking(fd);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  const nul = ifreq.indexOf(0);
  const name = new TextDecoder().decode(ifreq.subarray(0, nul < 0 ? IFNAMSIZ : nul));
  return { fd, name, vnetHdr: opts.vnetHdr ?? false, pollfd: makePollfd(fd) };
}

/** Wrap a TUN fd received from another thread (it must already be non-blocking). */
export function tunFromFd(fd: number, name: string, vnetHdr = false): TunDevice {
  return { fd, name, vnetHdr, pollfd: makePollfd(fd) };
}

/** Close the queue (the interface goes away with its last queue). */
export function closeTun(dev: TunDevice): void {
  closeFd(dev.fd);
}

/**
 * Allocate `count` buffers of `bytes` each (one ArrayBuffer, sliced), for reuse across calls.
 *
 * @example
 * ```ts
 * const batch = createPacketBatch(64, 65536 + VIRTIO_NET_HDR_LEN);
 * ```
 */
export function createPacketBatch(count: number, bytes: number): PacketBatch {
  const backing = new ArrayBuffer(count * bytes);
  const buffers = Array.from(
    { length: count },
    (_, i) => new Uint8Array(backing, i * bytes, bytes),
  );
  return { buffers, lengths: new Int32Array(count), capacity: BigInt(bytes) };
}

/**
 * Wait up to `timeoutMs` for the device to become readable. Returns false on timeout.
 * Synchronous: it blocks this isolate, which is what a data-path Worker wants.
 */
export function waitReadable(dev: TunDevice, timeoutMs: number): boolean {
  const n = libc().poll(dev.pollfd, 1n, timeoutMs);
  if (n < 0) {
    const errno = lastErrno();
    if (errno === EINTR) return false;
    throw new SyscallError("poll", errno, dev.name);
  }
  return n > 0;
}

/**
 * Read up to `batch.buffers.length` queued packets without blocking; `batch.lengths[i]` gets
 * each size. Returns how many were read (0 when the queue is empty).
 */
export function readPackets(dev: TunDevice, batch: PacketBatch): number {
  const { buffers, lengths, capacity } = batch;
  const read = libc().read;
  let n = 0;
  while (n < buffers.length) {
    const len = read(dev.fd, buffers[n], capacity);
    if (len < 0) {
      const errno = lastErrno();
      if (errno === EAGAIN) break;
      if (errno === EINTR) continue;
      throw new SyscallError("read", errno, dev.name);
    }
    lengths[n++] = len;
  }
  return n;
}

/**
 * Poll once (up to `timeoutMs`) and then read a batch: the usual data-path step.
 * Returns the number of packets read, 0 after a timeout.
 */
export function pollAndReadPackets(dev: TunDevice, batch: PacketBatch, timeoutMs: number): number {
  const n = readPackets(dev, batch);
  if (n > 0 || !waitReadable(dev, timeoutMs)) return n;
  return readPackets(dev, batch);
}

/**
 * Write packets `0..count-1` of the batch (`batch.lengths[i]` bytes each). A TUN write hands
 * the packet to the kernel's receive path and does not block in practice; if the kernel
 * pushes back (EAGAIN/ENOBUFS) the remaining packets are dropped, as a NIC would, and the
 * number written so far is returned.
 */
export function writePackets(dev: TunDevice, batch: PacketBatch, count: number): number {
  const { buffers, lengths } = batch;
  const write = libc().write;
  let i = 0;
  while (i < count) {
    if (write(dev.fd, buffers[i], BigInt(lengths[i])) >= 0) {
      i++;
      continue;
    }
    const errno = lastErrno();
    if (errno === EAGAIN || errno === ENOBUFS) return i;
    if (errno !== EINTR) throw new SyscallError("write", errno, dev.name);
  }
  return count;
}
