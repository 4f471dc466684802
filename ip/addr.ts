/**
 * IPv4 and IPv6 addresses as plain values: a family and a bigint.
 *
 * One representation for both families keeps CIDR math, codecs and netlink encoding free of
 * per-family branches; bigint is needed for IPv6 and costs nothing that matters on the
 * control plane (the udp data path does its own u32 math).
 *
 * @module
 */

export type Family = 4 | 6;

/** An IP address: `value` is the address as an unsigned integer of 32 or 128 bits. */
export interface IPAddr {
  readonly family: Family;
  readonly value: bigint;
}

/** Raised for text or bytes that are not a valid address or network. */
export class IPParseError extends Error {
  constructor(readonly input: string, reason: string) {
    super(`${JSON.stringify(input)} ${reason}`);
    this.name = "IPParseError";
  }
}

/** Number of bits in an address of the family. */
export function bitsOf(family: Family): number {
  return family === 4 ? 32 : 128;
}

/** The largest value an address of the family can hold. */
export function maxValue(family: Family): bigint {
  return (1n << BigInt(bitsOf(family))) - 1n;
}

const IPV4_PART = /^(0|[1-9][0-9]{0,2})$/;

function parseV4(text: string): bigint | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let value = 0n;
  for (const part of parts) {
    if (!IPV4_PART.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = (value << 8n) | BigInt(octet);
  }
  return value;
}

const HEXTET = /^[0-9a-fA-F]{1,4}$/;

function parseHextets(text: string): number[] | undefined {
  if (text === "") return [];
  const out: number[] = [];
  for (const group of text.split(":")) {
    if (!HEXTET.test(group)) return undefined;
    out.push(parseInt(group, 16));
  }
  return out;
}

function parseV6(text: string): bigint | undefined {
  // An embedded IPv4 tail (::ffff:1.2.3.4) is rewritten as two hextets first.
  let body = text;
  if (text.includes(".")) {
    const lastColon = text.lastIndexOf(":");
    const v4 = parseV4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    body = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${
      (v4 & 0xffffn).toString(16)
    }`;
  }
  const halves = body.split("::");
  if (halves.length > 2) return undefined;
  const head = parseHextets(halves[0]);
  const rest = halves.length === 2 ? parseHextets(halves[1]) : [];
  if (!head || !rest) return undefined;
  const given = head.length + rest.length;
  if (halves.length === 2 ? given > 7 : given !== 8) return undefined;
  const groups = [...head, ...new Array(8 - given).fill(0), ...rest];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/**
 * Parse an IPv4 dotted quad or an IPv6 address (any valid textual form).
 *
 * @example
 * ```ts
 * parseAddr("10.244.1.0"); // { family: 4, value: 183763200n }
 * ```
 */
export function parseAddr(text: string): IPAddr {
  if (text.includes(":")) {
    const value = parseV6(text);
    if (value === undefined) throw new IPParseError(text, "is not a valid IPv6 address");
    return { family: 6, value };
  }
  const value = parseV4(text);
  if (value === undefined) throw new IPParseError(text, "is not a valid IPv4 address");
  return { family: 4, value };
}

/** Like {@link parseAddr} but returns undefined instead of throwing. */
export function tryParseAddr(text: string): IPAddr | undefined {
  try {
    return parseAddr(text);
  } catch {
    return undefined;
  }
}

function formatV4(value: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((value >> shift) & 0xffn)).join(".");
}

/** RFC 5952: lower case, no leading zeros, the longest run (≥ 2) of zero groups as "::". */
function formatV6(value: bigint): string {
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(":");
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`;
}

/** Canonical text: dotted quad, or RFC 5952 compressed lower-case IPv6. */
export function formatAddr(addr: IPAddr): string {
  return addr.family === 4 ? formatV4(addr.value) : formatV6(addr.value);
}

/** Network-order bytes (4 or 16), as netlink and sockets want them. */
export function addrToBytes(addr: IPAddr): Uint8Array {
  const length = addr.family === 4 ? 4 : 16;
  const out = new Uint8Array(length);
  let v = addr.value;
  for (let i = length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Inverse of {@link addrToBytes}; 4 bytes give IPv4, 16 give IPv6. */
export function addrFromBytes(bytes: Uint8Array): IPAddr {
  if (bytes.length !== 4 && bytes.length !== 16) {
    throw new IPParseError(`<${bytes.length} bytes>`, "is not 4 or 16 bytes long");
  }
  const value = bytes.reduce((acc, b) => (acc << 8n) | BigInt(b), 0n);
  return { family: bytes.length === 4 ? 4 : 6, value };
}

/** Address equality (family and value). */
export function addrEqual(a: IPAddr, b: IPAddr): boolean {
  return a.family === b.family && a.value === b.value;
}

/** The address `delta` above `addr`; throws when it leaves the family's range. */
export function addrAdd(addr: IPAddr, delta: bigint): IPAddr {
  const value = addr.value + delta;
  if (value < 0n || value > maxValue(addr.family)) {
    throw new RangeError(`${formatAddr(addr)} + ${delta} is outside the IPv${addr.family} range`);
  }
  return { family: addr.family, value };
}

/** The IPv4 address from a 32-bit unsigned number (handy for the data path and tests). */
export function ipv4(value: number | bigint): IPAddr {
  return { family: 4, value: BigInt(value) & 0xffffffffn };
}
