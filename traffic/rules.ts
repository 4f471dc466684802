/**
 * What the masquerade and forward rules are (spec §7), as plain data.
 *
 * Both engines (`iptables.ts`, `nftables.ts`) render this one model, so the two can never
 * disagree about which traffic is masqueraded (flannel's nftables rules did: quirk 24).
 *
 * @module
 */
import type { NetworkConfig } from "../config/network_config.ts";
import { type Family, formatNet, type IPNet, parseNet } from "../ip/mod.ts";
import type { Lease } from "../subnet/lease.ts";

/** The packet's source or destination is (or, when `negated`, is not) inside `net`. */
export interface AddressMatch {
  readonly net: IPNet;
  readonly negated: boolean;
}

/** What a matching rule does. `return` leaves the chain: the packet is not NATed. */
export type Verdict = "return" | "accept" | "masquerade";

/** One rule: every present match must hold; the first matching rule decides. */
export interface TrafficRule {
  /** Match packets whose mark has all these bits set. */
  readonly markBits?: number;
  readonly source?: AddressMatch;
  readonly destination?: AddressMatch;
  readonly verdict: Verdict;
  /** `masquerade` only: pick source ports fully at random (`--random-fully`). */
  readonly fullyRandom?: boolean;
}

/** The rules for one address family; an absent chain means "must not exist". */
export interface FamilyRules {
  readonly family: Family;
  /** The masquerade chain (nat, postrouting), present with `--ip-masq`. */
  readonly masquerade?: readonly TrafficRule[];
  /** The forward-accept chain (filter, forward), present with `--iptables-forward-rules`. */
  readonly forward?: readonly TrafficRule[];
}

/** Everything Tartan wants installed, for both families. */
export interface RuleSet {
  readonly ipv4: FamilyRules;
  readonly ipv6: FamilyRules;
}

/** Flags that shape the rule set (spec §1.2). */
export interface RuleOptions {
  /** `--ip-masq`. */
  readonly ipMasq: boolean;
  /** `--iptables-forward-rules`. */
  readonly forwardRules: boolean;
  /** Effective fully-random: supported by the engine and not disabled by flag. */
  readonly fullyRandom: boolean;
}

/** The lease and config do not fit together (e.g. an enabled family without a subnet). */
export class RuleSetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "RuleSetError";
  }
}

/** kube-proxy marks packets it wants masqueraded itself; those are never touched by us. */
export const KUBE_PROXY_MASQ_MARK = 0x4000;

/** Multicast destinations are never masqueraded. */
export const MULTICAST: Readonly<Record<Family, IPNet>> = {
  4: parseNet("224.0.0.0/4"),
  6: parseNet("ff00::/8"),
};

/** A set that installs nothing: what cleanup converges to. */
export const EMPTY_RULE_SET: RuleSet = { ipv4: { family: 4 }, ipv6: { family: 6 } };

const is = (net: IPNet): AddressMatch => ({ net, negated: false });
const isNot = (net: IPNet): AddressMatch => ({ net, negated: true });

/**
 * The masquerade chain for cluster network `cluster` (C) and own subnet `own` (S), in the
 * order of spec §7.1.
 *
 * @example
 * ```ts
 * masqueradeRules(parseNet("10.244.0.0/16"), parseNet("10.244.1.0/24"), true).length; // 6
 * ```
 */
export function masqueradeRules(cluster: IPNet, own: IPNet, fullyRandom: boolean): TrafficRule[] {
  return [
    { markBits: KUBE_PROXY_MASQ_MARK, verdict: "return" },
    // pod ↔ overlay traffic keeps pod addresses
    { source: is(own), destination: is(cluster), verdict: "return" },
    { source: is(cluster), destination: is(own), verdict: "return" },
    // traffic arriving for local pods keeps its source (quirk 24: nftables had `saddr != S`)
    { source: isNot(cluster), destination: is(own), verdict: "return" },
    // pod → outside (not multicast), and host/outside → remote pods
    {
      source: is(cluster),
      destination: isNot(MULTICAST[cluster.family]),
      verdict: "masquerade",
      fullyRandom,
    },
    { source: isNot(cluster), destination: is(cluster), verdict: "masquerade", fullyRandom },
  ];
}

/** The forward-accept chain for cluster network `cluster` (spec §7.1). */
export function forwardRules(cluster: IPNet): TrafficRule[] {
  return [
    { source: is(cluster), verdict: "accept" },
    { destination: is(cluster), verdict: "accept" },
  ];
}

function familyRules(
  family: Family,
  cluster: IPNet | undefined,
  own: IPNet | undefined,
  options: RuleOptions,
): FamilyRules {
  if (!cluster) return { family };
  if (!own) {
    throw new RuleSetError(`IPv${family} is enabled but the lease has no IPv${family} subnet`);
  }
  if (cluster.family !== family || own.family !== family) {
    throw new RuleSetError(
      `IPv${family} rules need IPv${family} networks, got ${formatNet(cluster)} and ${
        formatNet(own)
      }`,
    );
  }
  return {
    family,
    masquerade: options.ipMasq ? masqueradeRules(cluster, own, options.fullyRandom) : undefined,
    forward: options.forwardRules ? forwardRules(cluster) : undefined,
  };
}

/**
 * The rule set for a node: IPv4 from `config.ipv4` and `lease.subnet`, IPv6 from
 * `config.ipv6` and `lease.ipv6Subnet`. Disabled families get no chains.
 *
 * @throws {RuleSetError} when an enabled family has no subnet in the lease.
 */
export function buildRuleSet(config: NetworkConfig, lease: Lease, options: RuleOptions): RuleSet {
  return {
    ipv4: familyRules(4, config.ipv4?.network, lease.subnet, options),
    ipv6: familyRules(6, config.ipv6?.network, lease.ipv6Subnet, options),
  };
}

/** Both families of a rule set, IPv4 first. */
export function families(rules: RuleSet): readonly FamilyRules[] {
  return [rules.ipv4, rules.ipv6];
}
