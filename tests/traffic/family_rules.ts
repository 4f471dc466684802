/**
 * One family's masquerade and forward rules from text CIDRs, for the engine tests, and the
 * spec's rule texts for them, written out.
 *
 * @module
 */
import { parseNet } from "../../ip/mod.ts";
import { type FamilyRules, forwardRules, masqueradeRules } from "../../traffic/rules.ts";

/** The rules for cluster network `cluster` and own subnet `own`. */
export function rulesFor(cluster: string, own: string, fullyRandom: boolean): FamilyRules {
  const c = parseNet(cluster);
  return {
    family: c.family,
    masquerade: masqueradeRules(c, parseNet(own), fullyRandom),
    forward: forwardRules(c),
  };
}

/** Spec §7.1 with C = 10.244.0.0/16, S = 10.244.1.0/24, written out (conformance 25). */
export const SPEC_MASQ_V4 = [
  `-m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN`,
  `-s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN`,
  `-s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN`,
  `! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN`,
  `-s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
  `! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`,
];
/** Spec §7.1's forward rules for C = 10.244.0.0/16. */
export const SPEC_FWD_V4 = [
  `-s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
  `-d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`,
];
/** The last IPv6 masquerade rule for C = fd00:10:244::/56. */
export const SPEC_MASQ_V6_TAIL =
  `-s fd00:10:244::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`;

/** Spec §7.2 with the quirk-24 fix (exact text `nft list` prints). */
export const SPEC_NFT_POSTRTG_V4 = [
  "meta mark & 0x00004000 == 0x00004000 return",
  "ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return",
  "ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
  "ip saddr != 10.244.0.0/16 ip daddr 10.244.1.0/24 return",
  "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
  "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
];
