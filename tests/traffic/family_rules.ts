/**
 * One family's masquerade and forward rules from text CIDRs, for the engine tests.
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
