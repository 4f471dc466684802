/**
 * Lease types shared by subnet managers, backends and the API, and the two codecs flannel
 * nodes agree on: the etcd key name of a lease (spec §3.1) and its value JSON (spec §3.3).
 *
 * @module
 */
import {
  addrEqual,
  formatAddr,
  formatNet,
  type IPAddr,
  type IPNet,
  makeNet,
  netAddr,
  netEqual,
  tryParseAddr,
} from "../ip/mod.ts";
import { isRecord } from "../json.ts";

/** JSON value as stored in BackendData (embedded verbatim, compacted). */
export type JsonValue =
  | null
  | boolean
  | number
  | string
  | JsonValue[]
  | { [key: string]: JsonValue };

/** What a node publishes about itself (spec §3.3). */
export interface LeaseAttrs {
  /** IPv4 public address; 0.0.0.0 when the node has none. */
  readonly publicIP: IPAddr;
  readonly publicIPv6?: IPAddr;
  /** Absent for udp and alloc, as flannel writes it. */
  readonly backendType?: string;
  readonly backendData?: JsonValue;
  readonly backendV6Data?: JsonValue;
}

/** The subnet(s) a lease covers: IPv4, IPv6 or both. */
export interface LeaseSubnets {
  /** IPv4 subnet (absent in IPv6-only). */
  readonly subnet?: IPNet;
  /** IPv6 subnet (dual stack or IPv6-only). */
  readonly ipv6Subnet?: IPNet;
}

/** One node's lease: its subnet(s), attributes and expiry. */
export interface Lease extends LeaseSubnets {
  readonly attrs: LeaseAttrs;
  /**
   * When the lease expires, where known: the etcd manager knows it for its own lease only
   * (a peer's expiry costs one etcd request per lease and nothing consumes it); kube leases
   * and reservations never expire.
   */
  readonly expiration?: Date;
  /** A reservation: an etcd key with no etcd lease, never expiring and never renewed. */
  readonly reserved?: boolean;
  /**
   * When its store entry was created, as an order within one store (etcd: the key's
   * create_revision; Kubernetes: the Node's creationTimestamp in ms). Every node reads the same
   * value, so the lease gate lets the oldest of two conflicting leases keep its place even on a
   * node that meets both at once (start-up, relist). Not part of what a lease publishes.
   */
  readonly created?: number;
}

/** A change to the set of leases, as backends consume it (spec §6.1). */
export type LeaseEvent =
  | { readonly type: "added"; readonly lease: Lease }
  | { readonly type: "removed"; readonly lease: Lease };

// ---------------------------------------------------------------------------------------------
// Key codec (spec §3.1)

/** Raised for a lease key name that is not exactly what flannel writes. */
export class LeaseKeyError extends Error {
  constructor(readonly key: string, reason: string) {
    super(`lease key ${JSON.stringify(key)} ${reason}`);
    this.name = "LeaseKeyError";
  }
}

/** The IPv4 part flannel writes for an IPv6-only lease (its zero IPv4 network). */
const NO_IPV4 = "0.0.0.0-0";

const KEY_PATTERN = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,3})(?:&([0-9a-f:]+)-(\d{1,3}))?$/;

const DECIMAL = /^(0|[1-9][0-9]*)$/;

function formatKeyPart(net: IPNet): string {
  return `${formatAddr(netAddr(net))}-${net.prefix}`;
}

/**
 * The key name of a lease under `<prefix>/subnets/`: `10.5.34.0-24`, dual stack
 * `10.5.34.0-24&fc00:0:0:22::-64`, IPv6-only `0.0.0.0-0&fc00:0:0:22::-64` (flannel writes
 * its zero IPv4 network there).
 *
 * @example
 * ```ts
 * formatLeaseKey({ subnet: parseNet("10.5.34.0/24") }); // "10.5.34.0-24"
 * ```
 */
export function formatLeaseKey(subnets: LeaseSubnets): string {
  const { subnet, ipv6Subnet } = subnets;
  if (subnet && (subnet.family !== 4 || subnet.prefix === 0 || subnet.prefix > 31)) {
    throw new LeaseKeyError(formatKeyPart(subnet), "cannot name an IPv4 subnet (need /1../31)");
  }
  if (ipv6Subnet && (ipv6Subnet.family !== 6 || ipv6Subnet.prefix > 127)) {
    throw new LeaseKeyError(
      formatKeyPart(ipv6Subnet),
      "cannot name an IPv6 subnet (need /0../127)",
    );
  }
  if (!subnet && !ipv6Subnet) throw new LeaseKeyError("", "would name no subnet");
  const v4 = subnet ? formatKeyPart(subnet) : NO_IPV4;
  return ipv6Subnet ? `${v4}&${formatKeyPart(ipv6Subnet)}` : v4;
}

function parseKeyPart(name: string, addrText: string, lenText: string, family: 4 | 6): IPNet {
  const addr = tryParseAddr(addrText);
  if (!addr || addr.family !== family) {
    throw new LeaseKeyError(name, `has an invalid IPv${family} address ${addrText}`);
  }
  const prefix = Number(lenText);
  const maxPrefix = family === 4 ? 31 : 127;
  if (!DECIMAL.test(lenText) || prefix > maxPrefix) {
    throw new LeaseKeyError(name, `has an invalid IPv${family} prefix length ${lenText}`);
  }
  const net = makeNet(addr, prefix);
  // IPv4 text that parses is canonical already; IPv6 has many spellings of one address.
  if (net.base !== addr.value || (family === 6 && formatAddr(addr) !== addrText)) {
    throw new LeaseKeyError(name, `is not canonical (${addrText}-${lenText})`);
  }
  return net;
}

/**
 * Parse a lease key name strictly: exactly the forms {@link formatLeaseKey} writes, with
 * canonical addresses and host bits clear. Anything else throws {@link LeaseKeyError}.
 *
 * @example
 * ```ts
 * parseLeaseKey("10.5.34.0-24&fc00:0:0:22::-64"); // { subnet: 10.5.34.0/24, ipv6Subnet: fc00:0:0:22::/64 }
 * ```
 */
export function parseLeaseKey(name: string): LeaseSubnets {
  const match = KEY_PATTERN.exec(name);
  if (!match) throw new LeaseKeyError(name, "does not look like A.B.C.D-L[&IPv6-L]");
  const [, v4Addr, v4Len, v6Addr, v6Len] = match;
  const ipv6Subnet = v6Addr === undefined ? undefined : parseKeyPart(name, v6Addr, v6Len, 6);
  if (ipv6Subnet && `${v4Addr}-${v4Len}` === NO_IPV4) return { ipv6Subnet };
  const subnet = parseKeyPart(name, v4Addr, v4Len, 4);
  if (subnet.prefix === 0) throw new LeaseKeyError(name, "names no subnet");
  return ipv6Subnet ? { subnet, ipv6Subnet } : { subnet };
}

const LOOSE_V4_RANGE = /(\d{1,3}(?:\.\d{1,3}){3})-(\d{1,2})/g;
const LOOSE_V6_RANGE = /([0-9a-fA-F]*:[0-9a-fA-F:]*)-(\d{1,3})/g;

/**
 * Every address range that can be read out of a key name, however malformed the rest is
 * (`10.5.34.0-24.bak`, `old-10.5.34.7-24`): allocation treats them all as occupied (quirk 2).
 * Zero-length prefixes are ignored: `0.0.0.0-0` is how flannel spells "no IPv4".
 */
export function rangesInKeyName(name: string): IPNet[] {
  const out: IPNet[] = [];
  for (const [pattern, family] of [[LOOSE_V4_RANGE, 4], [LOOSE_V6_RANGE, 6]] as const) {
    for (const [, addrText, lenText] of name.matchAll(pattern)) {
      const addr = tryParseAddr(addrText);
      const prefix = Number(lenText);
      if (addr?.family === family && prefix > 0 && prefix <= (family === 4 ? 32 : 128)) {
        out.push(makeNet(addr, prefix));
      }
    }
  }
  return out;
}

/** A lease's subnets as text, e.g. `10.244.3.0/24` or `10.244.3.0/24,fc00:0:0:3::/64`. */
export function leaseSubnets(lease: LeaseSubnets): string {
  return [lease.subnet, lease.ipv6Subnet].filter((net) => net !== undefined).map(formatNet)
    .join(",");
}

/** Whether two leases cover the same subnet(s). */
export function sameSubnets(a: LeaseSubnets, b: LeaseSubnets): boolean {
  const same = (x?: IPNet, y?: IPNet) => x === undefined ? y === undefined : !!y && netEqual(x, y);
  return same(a.subnet, b.subnet) && same(a.ipv6Subnet, b.ipv6Subnet);
}

// ---------------------------------------------------------------------------------------------
// Value codec (spec §3.3)

/** Raised for a lease value that is not lease JSON flannel would accept. */
export class LeaseValueError extends Error {
  constructor(reason: string) {
    super(`lease value ${reason}`);
    this.name = "LeaseValueError";
  }
}

/** Go's encoding/json escapes these even inside strings; flannel's bytes carry the escapes. */
const GO_ESCAPED = /[<>&\u2028\u2029]/g;

/**
 * Compact JSON exactly as Go's `encoding/json` writes it (`<`, `>`, `&`, U+2028/9 escaped): the
 * bytes flannel stores for BackendData, in etcd values and in node annotations alike.
 */
export function goJson(value: JsonValue): string {
  return JSON.stringify(value).replace(
    GO_ESCAPED,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

/**
 * Serialise lease attributes exactly as flannel does: members `PublicIP`, `PublicIPv6`
 * (`null` when none), then `BackendType`, `BackendData`, `BackendV6Data` only when set;
 * compact, no trailing newline.
 *
 * @example
 * ```ts
 * encodeLeaseAttrs({ publicIP: parseAddr("1.2.3.4") }); // '{"PublicIP":"1.2.3.4","PublicIPv6":null}'
 * ```
 */
export function encodeLeaseAttrs(attrs: LeaseAttrs): string {
  if (attrs.publicIP.family !== 4) throw new LeaseValueError("PublicIP must be an IPv4 address");
  if (attrs.publicIPv6 && attrs.publicIPv6.family !== 6) {
    throw new LeaseValueError("PublicIPv6 must be an IPv6 address");
  }
  let out = `{"PublicIP":${goJson(formatAddr(attrs.publicIP))}`;
  out += `,"PublicIPv6":${attrs.publicIPv6 ? goJson(formatAddr(attrs.publicIPv6)) : "null"}`;
  if (attrs.backendType) out += `,"BackendType":${goJson(attrs.backendType)}`;
  if (attrs.backendData !== undefined) out += `,"BackendData":${goJson(attrs.backendData)}`;
  if (attrs.backendV6Data !== undefined) out += `,"BackendV6Data":${goJson(attrs.backendV6Data)}`;
  return `${out}}`;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new LeaseValueError(`is not JSON: ${JSON.stringify(text.slice(0, 80))}`);
  }
}

function ipMember(name: string, value: unknown, family: 4 | 6): IPAddr {
  const addr = typeof value === "string" ? tryParseAddr(value) : undefined;
  if (!addr || addr.family !== family) {
    throw new LeaseValueError(`has an invalid ${name}: ${JSON.stringify(value)}`);
  }
  return addr;
}

/**
 * Read lease attributes as flannel does: member names case-insensitive (last one wins),
 * `PublicIP` must be an IPv4 string when present (absent reads as 0.0.0.0), `PublicIPv6` may
 * be null or absent, unknown members are ignored. Anything else throws {@link LeaseValueError}.
 */
export function decodeLeaseAttrs(text: string): LeaseAttrs {
  const parsed = parseJson(text);
  if (!isRecord(parsed)) throw new LeaseValueError("is not a JSON object");
  let publicIP: IPAddr = { family: 4, value: 0n };
  let publicIPv6: IPAddr | undefined;
  let backendType: string | undefined;
  let backendData: JsonValue | undefined;
  let backendV6Data: JsonValue | undefined;
  for (const [name, value] of Object.entries(parsed as Record<string, JsonValue>)) {
    switch (name.toLowerCase()) {
      case "publicip":
        publicIP = ipMember("PublicIP", value, 4);
        break;
      case "publicipv6":
        publicIPv6 = value === null ? undefined : ipMember("PublicIPv6", value, 6);
        break;
      case "backendtype":
        if (value !== null && typeof value !== "string") {
          throw new LeaseValueError(`has a non-string BackendType: ${JSON.stringify(value)}`);
        }
        backendType = value || undefined;
        break;
      case "backenddata":
        backendData = value;
        break;
      case "backendv6data":
        backendV6Data = value;
        break;
    }
  }
  return {
    publicIP,
    ...(publicIPv6 && { publicIPv6 }),
    ...(backendType && { backendType }),
    ...(backendData !== undefined && { backendData }),
    ...(backendV6Data !== undefined && { backendV6Data }),
  };
}

/** Whether two attribute sets publish the same thing (BackendData compared as JSON text). */
export function attrsEqual(a: LeaseAttrs, b: LeaseAttrs): boolean {
  const sameAddr = (x?: IPAddr, y?: IPAddr) =>
    x === undefined ? y === undefined : !!y && addrEqual(x, y);
  const sameJson = (x?: JsonValue, y?: JsonValue) => JSON.stringify(x) === JSON.stringify(y);
  return sameAddr(a.publicIP, b.publicIP) && sameAddr(a.publicIPv6, b.publicIPv6) &&
    a.backendType === b.backendType && sameJson(a.backendData, b.backendData) &&
    sameJson(a.backendV6Data, b.backendV6Data);
}
