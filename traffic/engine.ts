/**
 * The seam between the traffic manager and a firewall engine (iptables or nftables).
 *
 * @module
 */
import type { RuleSet } from "./rules.ts";

/** Engine names, as reported by health and logs. */
export type EngineName = "iptables" | "nftables";

/** One firewall backend: reads the kernel's rules, compares, and repairs atomically. */
export interface RuleEngine {
  readonly name: EngineName;
  /** Whether MASQUERADE with fully random ports is available (probed once). */
  readonly fullyRandomSupported: boolean;
  /**
   * Make the kernel match `rules` exactly (Tartan's chains/tables only; foreign rules are
   * kept). Reads the current state first and writes only when it differs, in one atomic
   * transaction per family (iptables) or overall (nftables).
   *
   * @returns whether anything had to be changed.
   */
  reconcile(rules: RuleSet): Promise<boolean>;
  /** Remove every chain, rule and table this engine may have created; a missing tool is a no-op. */
  removeAll(): Promise<void>;
}
