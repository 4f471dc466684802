/**
 * The net-conf JSON parser (spec §2): flannel's member names matched case-insensitively, shape
 * and types checked member by member, then flannel's defaults and (etcd mode) its validation rules with
 * its exact message texts, each prefixed by the member it concerns.
 *
 * Differences from flannel, chosen on purpose: `null` counts as an absent member (also for
 * `Backend`); an empty string in `Network`/`IPv6Network`/`*SubnetMin`/`*SubnetMax` counts as
 * absent; IPv6 members must hold IPv6 text; unknown and case-duplicated members are reported as
 * warnings; a missing `Backend` still means `udp` (quirk 17) but with a warning; in etcd mode
 * SubnetMin above SubnetMax is an error (flannel just never allocates); backend options are
 * checked here (`backend_options.ts`), not first by netlink when the device is made.
 *
 * @module
 */
import { isRecord } from "../json.ts";
import {
  bitsOf,
  type Family,
  formatAddr,
  formatNet,
  type IPAddr,
  type IPNet,
  netContains,
  netLast,
  netSize,
  prefixMask,
  tryParseAddr,
  tryParseNet,
} from "../ip/mod.ts";
import { checkBackendOptions } from "./backend_options.ts";
import { ConfigError } from "./config_error.ts";
import type { BackendConfig, FamilyConfig, NetworkConfig } from "./network_config.ts";

export { ConfigError };

/** etcd mode validates and defaults everything; kube mode only what it needs (spec §2.1). */
export type NetConfMode = "etcd" | "kube";

/** Backend types flannel knows (`Backend.Type`, lower-cased). */
export const BACKEND_TYPES = [
  "vxlan",
  "host-gw",
  "udp",
  "ipip",
  "wireguard",
  "alloc",
  "extension",
  "ipsec",
  "tencent-vpc",
] as const;

/** A `Backend.Type` flannel knows (backends/registry.ts says what each does here). */
export type BackendType = typeof BACKEND_TYPES[number];

/** The backend flannel picks when `Backend` is absent (its documentation says vxlan). */
export const DEFAULT_BACKEND_TYPE = "udp";

/** The result of {@link parseNetConfig}. */
export interface ParsedNetConfig {
  readonly config: NetworkConfig;
  /** Things worth a log line that do not stop the daemon (missing Backend, unknown members). */
  readonly warnings: string[];
}

/** A member's value is not what the member holds; the message says what it should be. */
class MemberError extends Error {}

/** Reads one member's value (never null or absent), or throws a {@link MemberError}. */
type MemberCheck<T> = (value: unknown) => T;

function text(value: unknown): string {
  if (typeof value !== "string") throw new MemberError("must be a string");
  return value;
}

/** A CIDR of `family`; "" counts as absent. */
function cidr(family: Family): MemberCheck<IPNet | undefined> {
  return (value) => {
    const given = text(value);
    if (given === "") return undefined;
    const net = tryParseNet(given);
    if (net?.family === family) return net;
    throw new MemberError(
      net ? `${given} is not an IPv${family} CIDR` : `${given} is not a valid CIDR`,
    );
  };
}

/** An address of `family`; "" counts as absent. */
function address(family: Family): MemberCheck<IPAddr | undefined> {
  return (value) => {
    const given = text(value);
    if (given === "") return undefined;
    const addr = tryParseAddr(given);
    if (addr?.family === family) return addr;
    throw new MemberError(`${given} is not ${addr ? "an" : "a valid"} IPv${family} address`);
  };
}

function subnetLength(value: unknown): number {
  if (typeof value === "number" && Number.isSafeInteger(value) && value >= 0) return value;
  throw new MemberError(`must be a non-negative integer, got ${JSON.stringify(value)}`);
}

function flag(value: unknown): boolean {
  if (typeof value !== "boolean") throw new MemberError("must be true or false");
  return value;
}

/** The top-level members, under flannel's spelling (which error paths use), in check order. */
const TOP_LEVEL = {
  Network: cidr(4),
  SubnetLen: subnetLength,
  SubnetMin: address(4),
  SubnetMax: address(4),
  EnableIPv4: flag,
  EnableIPv6: flag,
  IPv6Network: cidr(6),
  IPv6SubnetLen: subnetLength,
  IPv6SubnetMin: address(6),
  IPv6SubnetMax: address(6),
  EnableNFTables: flag,
  // Kept as the parsed object (no copy) so that odd member names stay plain data.
  Backend: (value: unknown): Record<string, unknown> => {
    if (!isRecord(value)) throw new MemberError("must be an object");
    return value;
  },
};

type TopLevel = { -readonly [K in keyof typeof TOP_LEVEL]?: ReturnType<typeof TOP_LEVEL[K]> };

/** Per-family member names, limits and flannel's message texts (spec §2.3–2.4). */
interface FamilyRules {
  readonly family: Family;
  readonly network: "Network" | "IPv6Network";
  readonly subnetLen: "SubnetLen" | "IPv6SubnetLen";
  readonly subnetMin: "SubnetMin" | "IPv6SubnetMin";
  readonly subnetMax: "SubnetMax" | "IPv6SubnetMax";
  /** Longest SubnetLen allowed. */
  readonly maxSubnetLen: number;
  /** SubnetLen given to networks of this prefix or shorter. */
  readonly defaultSubnetLen: number;
  readonly tooSmall: string;
}

const IPV4_RULES: FamilyRules = {
  family: 4,
  network: "Network",
  subnetLen: "SubnetLen",
  subnetMin: "SubnetMin",
  subnetMax: "SubnetMax",
  maxSubnetLen: 30,
  defaultSubnetLen: 24,
  tooSmall: "network is too small. Minimum useful network prefix is /28",
};

const IPV6_RULES: FamilyRules = {
  family: 6,
  network: "IPv6Network",
  subnetLen: "IPv6SubnetLen",
  subnetMin: "IPv6SubnetMin",
  subnetMax: "IPv6SubnetMax",
  maxSubnetLen: 126,
  defaultSubnetLen: 64,
  tooSmall: "IPv6Network is too small. Minimum useful network prefix is /124",
};

/**
 * Parse a net-conf document into the effective {@link NetworkConfig}.
 *
 * @throws {ConfigError} for invalid JSON, a wrong member type or a violated rule.
 * @example
 * ```ts
 * const { config } = parseNetConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}', "etcd");
 * formatAddr(config.ipv4!.subnetMin); // "10.5.1.0"
 * ```
 */
export function parseNetConfig(text: string, mode: NetConfMode): ParsedNetConfig {
  const warnings: string[] = [];
  const document = parseJson(text);
  const canonical = new Map(Object.keys(TOP_LEVEL).map((name) => [name.toLowerCase(), name]));
  const members = normaliseMembers(document, (name) => canonical.get(name), warnings, "");
  const top = checkTopLevel(members);
  const enableIPv4 = top.EnableIPv4 ?? true;
  const enableIPv6 = top.EnableIPv6 ?? false;
  if (!enableIPv4 && !enableIPv6) {
    throw new ConfigError("EnableIPv4", "neither IPv4 nor IPv6 is enabled");
  }
  const strict = mode === "etcd";
  const config: NetworkConfig = {
    ipv4: enableIPv4 ? familyConfig(IPV4_RULES, top, strict) : undefined,
    ipv6: enableIPv6 ? familyConfig(IPV6_RULES, top, strict) : undefined,
    enableNFTables: top.EnableNFTables ?? false,
    backend: backendConfig(top.Backend, warnings),
  };
  return { config, warnings };
}

function parseJson(text: string): Record<string, unknown> {
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (err) {
    throw new ConfigError("", `invalid JSON: ${err instanceof Error ? err.message : err}`);
  }
  if (!isRecord(document)) throw new ConfigError("", "the network config must be a JSON object");
  return document;
}

/**
 * Rename members to the name `rename` gives their lower-cased name (case-insensitive match; the
 * last of several spellings wins) and drop `null` members. Members `rename` does not know are
 * dropped with a warning; `where` prefixes member names in warnings.
 */
function normaliseMembers(
  object: Record<string, unknown>,
  rename: (lowerCased: string) => string | undefined,
  warnings: string[],
  where: string,
): Record<string, unknown> {
  const out = new Map<string, unknown>();
  const spelling = new Map<string, string>();
  for (const [name, value] of Object.entries(object)) {
    const target = rename(name.toLowerCase());
    if (target === undefined) {
      warnings.push(`ignoring unknown member ${where}${JSON.stringify(name)}`);
      continue;
    }
    const earlier = spelling.get(target);
    if (earlier !== undefined) {
      warnings.push(`${where}${JSON.stringify(earlier)} is overridden by ${JSON.stringify(name)}`);
    }
    spelling.set(target, name);
    if (value === null) out.delete(target);
    else out.set(target, value);
  }
  // fromEntries defines own members, so even "__proto__" stays an ordinary member.
  return Object.fromEntries(out);
}

/** Read a member with `check`; its MemberError becomes a ConfigError on `field`. */
function checkMember<T>(check: MemberCheck<T>, value: unknown, field: string): T {
  try {
    return check(value);
  } catch (error) {
    if (error instanceof MemberError) throw new ConfigError(field, error.message);
    throw error;
  }
}

/** Every top-level member present, read in {@link TOP_LEVEL}'s order. */
function checkTopLevel(members: Record<string, unknown>): TopLevel {
  const top: Record<string, unknown> = {};
  const checks: [string, MemberCheck<unknown>][] = Object.entries(TOP_LEVEL);
  for (const [name, check] of checks) {
    if (members[name] !== undefined) top[name] = checkMember(check, members[name], name);
  }
  return top as TopLevel;
}

function backendConfig(
  backend: Record<string, unknown> | undefined,
  warnings: string[],
): BackendConfig {
  if (backend === undefined) {
    warnings.push(
      `no Backend in the network config: using flannel's default "${DEFAULT_BACKEND_TYPE}" ` +
        `(not vxlan, whatever its documentation says); set "Backend": {"Type": "..."}`,
    );
    return { type: DEFAULT_BACKEND_TYPE, options: {} };
  }
  const options = normaliseMembers(backend, (name) => name, warnings, "Backend.");
  const type = options.type === undefined
    ? undefined
    : checkMember(text, options.type, "Backend.Type");
  const lowerType = type?.toLowerCase() ?? "";
  if (!(BACKEND_TYPES as readonly string[]).includes(lowerType)) {
    const why = type === undefined ? "Backend has no Type" : JSON.stringify(type);
    throw new ConfigError(
      "Backend.Type",
      `unknown backend type: ${why} (known: ${BACKEND_TYPES.join(", ")})`,
    );
  }
  delete options.type;
  warnings.push(...checkBackendOptions(lowerType, options));
  return { type: lowerType, options };
}

/** A zero address (`0.0.0.0`, `::`) in SubnetMin/Max counts as absent, as in flannel. */
function given(addr: IPAddr | undefined): IPAddr | undefined {
  return addr && addr.value !== 0n ? addr : undefined;
}

function bigMin(a: bigint, b: bigint): bigint {
  return a < b ? a : b;
}

function bigMax(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/**
 * One family's settings with defaults filled in; `strict` applies flannel's §2.4 rules (etcd
 * mode), in flannel's order. Kube mode only needs the network and keeps derived values in it.
 */
function familyConfig(rules: FamilyRules, top: TopLevel, strict: boolean): FamilyConfig {
  const net = top[rules.network];
  if (net === undefined || (net.base === 0n && net.prefix === 0)) {
    const reason = `please define a correct ${rules.network} parameter in the flannel config`;
    throw new ConfigError(rules.network, reason);
  }
  const bits = bitsOf(rules.family);
  let subnetLen = top[rules.subnetLen] || undefined;
  if (subnetLen !== undefined) {
    if (strict && subnetLen > rules.maxSubnetLen) {
      throw new ConfigError(
        rules.subnetLen,
        `SubnetLen must be less than /${rules.maxSubnetLen + 1}`,
      );
    }
    if (strict && subnetLen < net.prefix + 2) {
      const reason = "network must be able to accommodate at least four subnets";
      throw new ConfigError(rules.subnetLen, reason);
    }
    if (subnetLen > bits) {
      const reason = `/${subnetLen} is longer than an IPv${rules.family} address`;
      throw new ConfigError(rules.subnetLen, reason);
    }
  } else {
    if (strict && net.prefix > bits - 4) throw new ConfigError(rules.network, rules.tooSmall);
    subnetLen = net.prefix <= rules.defaultSubnetLen - 2
      ? rules.defaultSubnetLen
      : Math.min(net.prefix + 2, bits);
  }
  const size = 1n << BigInt(bits - subnetLen);
  // The clamps only matter in kube mode, where a tiny network is not rejected.
  const derivedMin = bigMin(net.base + size, netLast(net).value);
  const derivedMax = bigMax(net.base + netSize(net) - size, net.base);
  const bounds = [
    { field: rules.subnetMin, explicit: given(top[rules.subnetMin]), derived: derivedMin },
    { field: rules.subnetMax, explicit: given(top[rules.subnetMax]), derived: derivedMax },
  ].map((b) => ({ ...b, effective: b.explicit ?? { family: rules.family, value: b.derived } }));
  if (strict) {
    for (const { field, explicit } of bounds) {
      if (explicit && !netContains(net, explicit)) {
        throw new ConfigError(field, `${field} is not in the range of the ${rules.network}`);
      }
    }
    const mask = prefixMask(rules.family, subnetLen);
    for (const { field, effective } of bounds) {
      if ((effective.value & mask) !== effective.value) {
        const reason = `${field} is not on a SubnetLen boundary: ${formatAddr(effective)}`;
        throw new ConfigError(field, reason);
      }
    }
    const [min, max] = bounds.map((b) => b.effective);
    if (min.value > max.value) {
      const reason = `${rules.subnetMin} ${formatAddr(min)} is above ${rules.subnetMax} ` +
        `${formatAddr(max)}: no subnet could ever be allocated`;
      throw new ConfigError(rules.subnetMin, reason);
    }
  }
  return {
    network: net,
    subnetLen,
    subnetMin: bounds[0].effective,
    subnetMax: bounds[1].effective,
  };
}

/**
 * The effective config as net-conf JSON (flannel's member names, canonical IP text, backend
 * options under their lower-cased names). Parsing its text again yields the same config.
 */
export function netConfigToJSON(config: NetworkConfig): Record<string, unknown> {
  const family = (rules: FamilyRules, settings: FamilyConfig | undefined) =>
    settings
      ? {
        [rules.network]: formatNet(settings.network),
        [rules.subnetLen]: settings.subnetLen,
        [rules.subnetMin]: formatAddr(settings.subnetMin),
        [rules.subnetMax]: formatAddr(settings.subnetMax),
      }
      : {};
  return {
    EnableIPv4: config.ipv4 !== undefined,
    EnableIPv6: config.ipv6 !== undefined,
    ...family(IPV4_RULES, config.ipv4),
    ...family(IPV6_RULES, config.ipv6),
    EnableNFTables: config.enableNFTables,
    Backend: { Type: config.backend.type, ...config.backend.options },
  };
}
