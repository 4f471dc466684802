/**
 * The `virtio_net_hdr` that prefixes every packet on a TUN opened with IFF_VNET_HDR: it tells us
 * when the kernel handed over a TCP super-packet (TSO) or a partial checksum, and lets us hand
 * the kernel one merged super-packet instead of many segments. 10 bytes, little-endian on x86.
 *
 * @module
 */
import { VIRTIO_NET_HDR_LEN } from "../../ffi/tun.ts";
import type { PacketBuffer } from "./packet.ts";

export { VIRTIO_NET_HDR_LEN };

/** `flags`: the checksum from `csumStart` on is partial and must be completed. */
export const VNET_F_NEEDS_CSUM = 1;
/** `gsoType` values. */
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;

/** Field offsets inside the header. */
export const VNET_FLAGS = 0;
export const VNET_GSO_TYPE = 1;
const VNET_HDR_LEN = 2;
export const VNET_GSO_SIZE = 4;
export const VNET_CSUM_START = 6;
export const VNET_CSUM_OFFSET = 8;

/** What a header says (read by the data path field by field; this shape is for writing). */
export interface VnetHeader {
  readonly flags: number;
  readonly gsoType: number;
  /** Length of the headers of each segment (IP + TCP). */
  readonly hdrLen: number;
  /** Payload bytes per segment. */
  readonly gsoSize: number;
  readonly csumStart: number;
  readonly csumOffset: number;
}

/** A header that says "one complete packet": no offload. */
export const PLAIN_PACKET: VnetHeader = {
  flags: 0,
  gsoType: VNET_GSO_NONE,
  hdrLen: 0,
  gsoSize: 0,
  csumStart: 0,
  csumOffset: 0,
};

/** Write `header` at `pos`. */
export function writeVnetHeader(buf: PacketBuffer, pos: number, header: VnetHeader): void {
  const v = buf.view;
  v.setUint8(pos + VNET_FLAGS, header.flags);
  v.setUint8(pos + VNET_GSO_TYPE, header.gsoType);
  v.setUint16(pos + VNET_HDR_LEN, header.hdrLen, true);
  v.setUint16(pos + VNET_GSO_SIZE, header.gsoSize, true);
  v.setUint16(pos + VNET_CSUM_START, header.csumStart, true);
  v.setUint16(pos + VNET_CSUM_OFFSET, header.csumOffset, true);
}
