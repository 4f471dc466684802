/**
 * The iptables engine: chains `FLANNEL-POSTRTG` (nat) and `FLANNEL-FWD` (filter), hooked from
 * POSTROUTING and FORWARD (spec §7.1), for IPv4 (iptables) and IPv6 (ip6tables).
 *
 * State is read with `iptables-save`, compared with the rendered rules, and repaired with one
 * `iptables-restore --noflush` batch per family, so a repair is atomic and foreign rules stay.
 * As flannel, a missing jump rule is appended; unlike flannel, a jump that exists is left where
 * it is (flannel deletes and re-appends it on every repair) and duplicates are removed.
 *
 * @module
 */
import { formatNet } from "../ip/mod.ts";
import type { RuleEngine } from "./engine.ts";
import {
  detectIptablesVariant,
  type IptablesTools,
  iptablesTools,
  type VariantChoice,
} from "./iptables_variant.ts";
import { CommandNotFoundError, type CommandRunner } from "../exec.ts";
import {
  type AddressMatch,
  EMPTY_RULE_SET,
  families,
  type FamilyRules,
  type RuleSet,
  type TrafficRule,
} from "./rules.ts";

/** A Tartan chain and the built-in chain that jumps to it. */
export interface HookedChain {
  readonly table: "nat" | "filter";
  readonly chain: string;
  readonly parent: string;
  readonly comment: string;
  readonly kind: "masquerade" | "forward";
}

/** The masquerade chain (spec §7.1). */
export const MASQ_CHAIN: HookedChain = {
  table: "nat",
  chain: "FLANNEL-POSTRTG",
  parent: "POSTROUTING",
  comment: "flanneld masq",
  kind: "masquerade",
};

/** The forward-accept chain (spec §7.1; quirk 25: it lives in `filter`, not `nat`). */
export const FORWARD_CHAIN: HookedChain = {
  table: "filter",
  chain: "FLANNEL-FWD",
  parent: "FORWARD",
  comment: "flanneld forward",
  kind: "forward",
};

const HOOKED_CHAINS = [MASQ_CHAIN, FORWARD_CHAIN] as const;

const TARGETS = { return: "RETURN", accept: "ACCEPT", masquerade: "MASQUERADE" } as const;

function addressMatch(flag: "-s" | "-d", match: AddressMatch): string {
  return `${match.negated ? "! " : ""}${flag} ${formatNet(match.net)}`;
}

/**
 * A rule in `iptables-save` canonical form, without the leading `-A <chain>`, so that rendered
 * rules compare byte for byte with what the kernel reports.
 *
 * @example
 * ```ts
 * renderIptablesRule(forwardRules(parseNet("10.244.0.0/16"))[0], "flanneld forward");
 * // '-s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT'
 * ```
 */
export function renderIptablesRule(rule: TrafficRule, comment: string): string {
  const parts: string[] = [];
  if (rule.source) parts.push(addressMatch("-s", rule.source));
  if (rule.destination) parts.push(addressMatch("-d", rule.destination));
  if (rule.markBits !== undefined) {
    const bits = `0x${rule.markBits.toString(16)}`;
    parts.push(`-m mark --mark ${bits}/${bits}`);
  }
  parts.push(`-m comment --comment "${comment}"`);
  const randomFully = rule.verdict === "masquerade" && rule.fullyRandom ? " --random-fully" : "";
  parts.push(`-j ${TARGETS[rule.verdict]}${randomFully}`);
  return parts.join(" ");
}

/** The jump from the built-in chain into a Tartan chain. */
export function jumpRule(hooked: HookedChain): string {
  return `-m comment --comment "${hooked.comment}" -j ${hooked.chain}`;
}

/** The rendered rules a family wants in `hooked.chain`; undefined when the chain must not exist. */
export function desiredChainRules(rules: FamilyRules, hooked: HookedChain): string[] | undefined {
  return rules[hooked.kind]?.map((rule) => renderIptablesRule(rule, hooked.comment));
}

/** One table of an `iptables-save` dump: declared chains and each chain's rules in order. */
export interface SavedTable {
  readonly chains: Set<string>;
  /** Rule specs per chain, without the leading `-A <chain> `. */
  readonly rules: Map<string, string[]>;
}

/** Parse `iptables-save` output (any tables); comments and unknown lines are skipped. */
export function parseIptablesSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let current: SavedTable | undefined;
  for (const line of text.split("\n")) {
    if (line.startsWith("*")) {
      current = { chains: new Set(), rules: new Map() };
      tables.set(line.slice(1).trim(), current);
    } else if (!current) {
      continue;
    } else if (line.startsWith(":")) {
      current.chains.add(line.slice(1).split(" ")[0]);
    } else if (line.startsWith("-A ")) {
      const [chain, ...spec] = line.slice(3).split(" ");
      const list = current.rules.get(chain) ?? [];
      list.push(spec.join(" "));
      current.rules.set(chain, list);
    }
  }
  return tables;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((line, i) => line === b[i]);
}

/**
 * Restore commands for one hooked chain: declarations and rule commands, empty when in sync.
 *
 * The jump is left where it is found and appended only when missing, as flanneld appends it:
 * network-policy agents (Calico, kube-router) and Docker put their own jumps first on purpose,
 * and our ACCEPT above their policy chain would let pod traffic bypass it (spec quirk 26).
 * Duplicates of our own jump are deleted by their exact text (`-D` removes the first match), so
 * the last copy stays and no rule of another agent is ever touched or moved.
 */
function planChain(
  hooked: HookedChain,
  wanted: readonly string[] | undefined,
  table: SavedTable | undefined,
): { declarations: string[]; commands: string[] } {
  const jump = jumpRule(hooked);
  const exists = table?.chains.has(hooked.chain) ?? false;
  const current = table?.rules.get(hooked.chain) ?? [];
  const jumps = (table?.rules.get(hooked.parent) ?? []).filter((rule) => rule === jump).length;
  const deleteJumps = (count: number) =>
    Array.from({ length: count }, () => `-D ${hooked.parent} ${jump}`);
  if (wanted === undefined) {
    if (!exists && jumps === 0) return { declarations: [], commands: [] };
    const drop = exists ? [`-F ${hooked.chain}`, `-X ${hooked.chain}`] : [];
    return { declarations: [], commands: [...deleteJumps(jumps), ...drop] };
  }
  const chainOk = exists && sameList(current, wanted);
  return {
    // Under --noflush, declaring an existing user chain flushes it (its jump stays).
    declarations: chainOk ? [] : [`:${hooked.chain} - [0:0]`],
    commands: [
      ...(chainOk ? [] : wanted.map((rule) => `-A ${hooked.chain} ${rule}`)),
      ...(jumps === 0 ? [`-A ${hooked.parent} ${jump}`] : deleteJumps(jumps - 1)),
    ],
  };
}

/**
 * The `iptables-restore --noflush` input that turns `saved` into `rules` for one family, or
 * undefined when nothing differs. Only Tartan's chains and jumps are touched.
 */
export function planIptablesRestore(
  rules: FamilyRules,
  saved: Map<string, SavedTable>,
): string | undefined {
  const blocks: string[] = [];
  for (const table of ["nat", "filter"] as const) {
    const planned = HOOKED_CHAINS.filter((hooked) => hooked.table === table)
      .map((hooked) => planChain(hooked, desiredChainRules(rules, hooked), saved.get(table)));
    const lines = [
      ...planned.flatMap((p) => p.declarations),
      ...planned.flatMap((p) => p.commands),
    ];
    if (lines.length > 0) blocks.push(`*${table}\n${lines.join("\n")}\nCOMMIT\n`);
  }
  return blocks.length > 0 ? blocks.join("") : undefined;
}

/** The iptables engine, with the variant it chose. */
export interface IptablesEngine extends RuleEngine {
  readonly variant: VariantChoice;
}

/** Whether iptables `version` (e.g. `iptables v1.8.9 (nf_tables)`) is at least 1.6.2. */
export function isModernIptables(version: string): boolean {
  const match = /v(\d+)\.(\d+)\.(\d+)/.exec(version);
  if (!match) return false;
  const [major, minor, patch] = match.slice(1).map(Number);
  return major !== 1 ? major > 1 : minor !== 6 ? minor > 6 : patch >= 2;
}

function wantsNothing(rules: FamilyRules): boolean {
  return rules.masquerade === undefined && rules.forward === undefined;
}

/**
 * Create the iptables engine, writing with the iptables variant the host already uses
 * ({@link detectIptablesVariant}). Probes `iptables --version` once: 1.6.2 or newer has both
 * `--random-fully` and `iptables-restore --wait` (the test flannel uses). A missing binary is
 * not an error here; it fails later only if rules are actually wanted (quirk 37).
 */
export async function createIptablesEngine(run: CommandRunner): Promise<IptablesEngine> {
  const choice = await detectIptablesVariant(run);
  const tools = iptablesTools(choice.variant);
  let modern = false;
  try {
    modern = isModernIptables(await run([tools.iptables, "--version"]));
  } catch (error) {
    if (!(error instanceof CommandNotFoundError)) throw error;
  }
  const restoreFlags = modern ? ["--noflush", "--wait"] : ["--noflush"];

  async function reconcileFamily(with_: IptablesTools, rules: FamilyRules): Promise<boolean> {
    let dump: string;
    try {
      dump = await run([with_.save[rules.family]]);
    } catch (error) {
      // No ip(6)tables installed means none of our chains can exist either.
      if (error instanceof CommandNotFoundError && wantsNothing(rules)) return false;
      throw error;
    }
    const batch = planIptablesRestore(rules, parseIptablesSave(dump));
    if (batch === undefined) return false;
    await run([with_.restore[rules.family], ...restoreFlags], batch);
    return true;
  }

  async function reconcileWith(with_: IptablesTools, rules: RuleSet): Promise<boolean> {
    // Both families are attempted even if the first fails; the first error is reported.
    const outcomes = await Promise.allSettled(
      families(rules).map((family) => reconcileFamily(with_, family)),
    );
    const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === "rejected");
    if (failed) throw failed.reason;
    return outcomes.some((o) => o.status === "fulfilled" && o.value);
  }

  return {
    name: "iptables",
    variant: choice,
    fullyRandomSupported: modern,
    reconcile: (rules) => reconcileWith(tools, rules),
    removeAll: async () => {
      // Both variants: chains left by an earlier run (or by flanneld) may be in either.
      const all = choice.variant ? [iptablesTools("legacy"), iptablesTools("nft")] : [tools];
      for (const each of all) await reconcileWith(each, EMPTY_RULE_SET);
    },
  };
}
