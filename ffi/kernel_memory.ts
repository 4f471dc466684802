/**
 * Memory the kernel reaches through raw pointers (iovecs, msghdrs, sockaddrs, packet buffers),
 * and pointers stored into such structs as plain numbers. User-space addresses on x86-64 are
 * below 2^47, so a number holds them exactly, and a hot path that fills an iovec per packet
 * allocates no BigInt.
 *
 * @module
 */

/** A fixed block of memory with its address. */
export interface KernelMemory {
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly view: DataView<ArrayBuffer>;
  /** Address of `bytes[0]`. */
  readonly address: number;
}

const TWO_TO_32 = 0x1_0000_0000;

/** The address of `bytes[0]`; stable as long as `bytes` is backed by its own ArrayBuffer. */
export function addressOf(bytes: Uint8Array): number {
  return Number(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
}

/**
 * `size` zeroed bytes in an explicit ArrayBuffer: V8 keeps small typed arrays (≤ 64 bytes) on
 * its moving heap, where an address handed to the kernel would go stale.
 */
export function kernelMemory(size: number): KernelMemory {
  const bytes = new Uint8Array(new ArrayBuffer(size));
  return { bytes, view: new DataView(bytes.buffer), address: addressOf(bytes) };
}

/** Store `address` as a little-endian 64-bit pointer at `at`. */
export function setPointer(view: DataView, at: number, address: number): void {
  view.setUint32(at, address >>> 0, true);
  view.setUint32(at + 4, Math.floor(address / TWO_TO_32), true);
}

/** Store `length` as a little-endian 64-bit size at `at` (below 2^32, as every packet is). */
export function setSize(view: DataView, at: number, length: number): void {
  view.setUint32(at, length, true);
  view.setUint32(at + 4, 0, true);
}
