/**
 * fast-check generators of IPv4 headers for the udp data-path tests (the packet builders are in
 * lab/packets.ts).
 *
 * @module
 */
import fc from "fast-check";

/** Arbitrary IPv4 options blocks (0..40 bytes, multiple of 4). */
export const arbOptions = fc.integer({ min: 0, max: 10 }).chain((words) =>
  fc.uint8Array({ minLength: words * 4, maxLength: words * 4 })
);

/** Arbitrary header fields of a valid, unfragmented IPv4 packet. */
export const arbIpv4Fields = fc.record({
  src: fc.integer({ min: 0, max: 0xffffffff }),
  dst: fc.integer({ min: 0, max: 0xffffffff }),
  ttl: fc.integer({ min: 0, max: 255 }),
  tos: fc.integer({ min: 0, max: 255 }),
  id: fc.integer({ min: 0, max: 0xffff }),
  fragment: fc.constantFrom(0, 0x4000),
  options: arbOptions,
});
