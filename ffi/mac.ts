/**
 * Hardware (MAC) addresses: canonical text `aa:bb:cc:dd:ee:ff` <-> bytes.
 *
 * The FFI API passes MACs as canonical lower-case strings (what flannel publishes as
 * `VtepMAC`, what `ip -j` prints, and comparable with `===`); bytes only at the codec edge.
 *
 * @module
 */

/** Raised for text that is not a MAC address. */
export class MacParseError extends Error {
  constructor(readonly input: string) {
    super(`${JSON.stringify(input)} is not a MAC address (want aa:bb:cc:dd:ee:ff)`);
    this.name = "MacParseError";
  }
}

const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/**
 * Parse a 6-octet MAC written with colons (either case).
 *
 * @example
 * ```ts
 * parseMac("0A:58:0a:f4:01:01"); // Uint8Array [10, 88, 10, 244, 1, 1]
 * ```
 */
export function parseMac(text: string): Uint8Array<ArrayBuffer> {
  if (!MAC.test(text)) throw new MacParseError(text);
  return Uint8Array.from(text.split(":"), (part) => parseInt(part, 16));
}

/** Lower-case colon hex of any number of octets (link-layer addresses are not all 6 long). */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}

/** The canonical form of a MAC text (throws {@link MacParseError} when invalid). */
export function normalizeMac(text: string): string {
  return formatMac(parseMac(text));
}
