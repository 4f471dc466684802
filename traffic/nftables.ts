/**
 * The nftables engine: tables `ip flannel-ipv4` and `ip6 flannel-ipv6` with chains `postrtg`
 * and `forward` (spec §7.2), but with the iptables semantics (quirk 24 fixed).
 *
 * Every write replaces both tables in a single `nft -f -` transaction (flannel flushes and
 * refills the chains; replacing the owned tables is the same thing and cannot leave a stale
 * chain behind). The state is verified with `nft -j list table`, which also drives a periodic
 * resync that flannel's nftables mode does not have.
 *
 * There are no jump rules to place (quirk 26 is iptables-only): the chains are base chains of
 * our own tables, and an `accept` in a base chain ends only that chain, so the chains of other
 * agents (Calico, kube-proxy, iptables-nft's tables) on the same hook still see every packet.
 *
 * @module
 */
import { isRecord, member, stringOr } from "../json.ts";
import { type Family, formatNet, type IPNet, parseNet } from "../ip/mod.ts";
import type { RuleEngine } from "./engine.ts";
import { CommandFailedError, CommandNotFoundError, type CommandRunner } from "../exec.ts";
import {
  type AddressMatch,
  families,
  type FamilyRules,
  type RuleSet,
  type TrafficRule,
} from "./rules.ts";

/** nft address family and table name per IP family. */
export const NFT_TABLES: Readonly<Record<Family, { family: "ip" | "ip6"; name: string }>> = {
  4: { family: "ip", name: "flannel-ipv4" },
  6: { family: "ip6", name: "flannel-ipv6" },
};

/** One base chain of a Tartan table. */
export interface NftChain {
  readonly name: "postrtg" | "forward";
  readonly kind: "masquerade" | "forward";
  readonly type: "nat" | "filter";
  readonly hook: "postrouting" | "forward";
  /** Priority keyword as written, and its numeric value as `nft -j` reports it. */
  readonly priority: "srcnat" | "filter";
  readonly prio: number;
  readonly comment: string;
}

/** The chains of spec §7.2, in the order they are written. */
export const NFT_CHAINS: readonly NftChain[] = [
  {
    name: "forward",
    kind: "forward",
    type: "filter",
    hook: "forward",
    priority: "filter",
    prio: 0,
    comment: "chain to accept flannel traffic",
  },
  {
    name: "postrtg",
    kind: "masquerade",
    type: "nat",
    hook: "postrouting",
    priority: "srcnat",
    prio: 100,
    comment: "chain to manage traffic masquerading by flannel",
  },
];

/** The nft output cannot be understood (not the JSON `nft -j` writes). */
export class NftDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NftDecodeError";
  }
}

function addressMatch(proto: "ip" | "ip6", field: "saddr" | "daddr", match: AddressMatch): string {
  return `${proto} ${field} ${match.negated ? "!= " : ""}${formatNet(match.net)}`;
}

/**
 * One rule as nft text (what goes inside `chain … { }` and what `nft list` prints).
 *
 * @example
 * ```ts
 * renderNftRule(4, { markBits: 0x4000, verdict: "return" });
 * // "meta mark & 0x00004000 == 0x00004000 return"
 * ```
 */
export function renderNftRule(family: Family, rule: TrafficRule): string {
  const proto = NFT_TABLES[family].family;
  const parts: string[] = [];
  if (rule.markBits !== undefined) {
    const bits = `0x${rule.markBits.toString(16).padStart(8, "0")}`;
    parts.push(`meta mark & ${bits} == ${bits}`);
  }
  if (rule.source) parts.push(addressMatch(proto, "saddr", rule.source));
  if (rule.destination) parts.push(addressMatch(proto, "daddr", rule.destination));
  const fullyRandom = rule.verdict === "masquerade" && rule.fullyRandom ? " fully-random" : "";
  parts.push(`${rule.verdict}${fullyRandom}`);
  return parts.join(" ");
}

/** `add` then `delete`: removes the table whether or not it exists (nft 1.0.6 has no `destroy`). */
function dropTable(family: Family): string {
  const { family: nftFamily, name } = NFT_TABLES[family];
  return `add table ${nftFamily} ${name}\ndelete table ${nftFamily} ${name}\n`;
}

function renderTable(rules: FamilyRules): string {
  const { family, name } = NFT_TABLES[rules.family];
  const chains = NFT_CHAINS.flatMap((chain) => {
    const list = rules[chain.kind];
    if (list === undefined) return [];
    return [
      `\tchain ${chain.name} {`,
      `\t\tcomment "${chain.comment}"`,
      `\t\ttype ${chain.type} hook ${chain.hook} priority ${chain.priority}; policy accept;`,
      ...list.map((rule) => `\t\t${renderNftRule(rules.family, rule)}`),
      "\t}",
    ];
  });
  return [`table ${family} ${name} {`, `\tcomment "rules for ${name}"`, ...chains, "}", ""]
    .join("\n");
}

/** The `nft -f` transaction that replaces both Tartan tables with `rules` (both always exist). */
export function renderNftTransaction(rules: RuleSet): string {
  return families(rules).map((f) => dropTable(f.family) + renderTable(f)).join("");
}

/** The `nft -f` transaction that removes both Tartan tables. */
export function renderNftRemoval(): string {
  return dropTable(4) + dropTable(6);
}

/** A chain as read back from the kernel; rules nft printed in a shape we do not write are undefined. */
export interface NftChainState {
  readonly type?: string;
  readonly hook?: string;
  readonly prio?: number;
  readonly policy?: string;
  /** Reported by newer nft only. */
  readonly comment?: string;
  readonly rules: (TrafficRule | undefined)[];
}

/** The members of a chain or rule object in `nft -j` output, when they have the right types. */
function chainOf(item: unknown) {
  if (!isRecord(item)) return undefined;
  const { family, table, name, type, hook, prio, policy, comment } = item;
  const optional = (value: unknown, kind: string) => value === undefined || typeof value === kind;
  if (typeof family !== "string" || typeof table !== "string" || typeof name !== "string") {
    return undefined;
  }
  if (
    !optional(type, "string") || !optional(hook, "string") || !optional(prio, "number") ||
    !optional(policy, "string") || !optional(comment, "string")
  ) return undefined;
  return {
    family,
    table,
    name,
    type: type as string | undefined,
    hook: hook as string | undefined,
    prio: prio as number | undefined,
    policy: policy as string | undefined,
    comment: comment as string | undefined,
  };
}

function ruleOf(item: unknown) {
  if (!isRecord(item)) return undefined;
  const { family, table, chain, expr } = item;
  if (typeof family !== "string" || typeof table !== "string" || typeof chain !== "string") {
    return undefined;
  }
  return Array.isArray(expr) ? { family, table, chain, expr: expr as unknown[] } : undefined;
}

function decodeAddress(right: unknown): IPNet | undefined {
  const prefix = member(right, "prefix");
  const addr = stringOr(member(prefix, "addr"));
  const len = member(prefix, "len");
  const text = typeof right === "string"
    ? right
    : addr !== undefined && typeof len === "number"
    ? `${addr}/${len}`
    : undefined;
  if (text === undefined) return undefined;
  try {
    return parseNet(text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`);
  } catch {
    return undefined;
  }
}

type RuleDraft = { -readonly [K in keyof TrafficRule]?: TrafficRule[K] };

/** Fold one JSON statement into the draft; false when it is not something we write. */
function decodeStatement(family: Family, draft: RuleDraft, statement: unknown): boolean {
  if (typeof statement !== "object" || statement === null) return false;
  const [key, value] = Object.entries(statement)[0] ?? [];
  if (draft.verdict !== undefined) return false; // nothing follows the verdict in our rules
  if (key === "return" || key === "accept") {
    draft.verdict = key;
    return true;
  }
  if (key === "masquerade") {
    // `null`, or `{"flags": "fully-random"}` / `{"flags": ["fully-random"]}`.
    const given = value === null ? [] : [member(value, "flags")].flat();
    if (value !== null && !isRecord(value)) return false;
    if (!given.every((flag) => typeof flag === "string")) return false;
    const flags = given as string[];
    if (flags.some((flag) => flag !== "fully-random")) return false;
    draft.verdict = "masquerade";
    draft.fullyRandom = flags.length > 0;
    return true;
  }
  const op = member(value, "op");
  if (key !== "match" || (op !== "==" && op !== "!=")) return false;
  const left = member(value, "left");
  const right = member(value, "right");
  // `{"&": [{"meta": {"key": "mark"}}, BITS]}`
  const and = member(left, "&");
  if (Array.isArray(and) && and.length === 2) {
    const [meta, bits] = and;
    if (member(member(meta, "meta"), "key") !== "mark" || typeof bits !== "number") return false;
    if (op !== "==" || right !== bits || draft.markBits !== undefined) return false;
    draft.markBits = bits;
    return true;
  }
  // `{"payload": {"protocol": "ip", "field": "saddr"}}`
  const payload = member(left, "payload");
  const protocol = member(payload, "protocol");
  const field = member(payload, "field");
  const net = decodeAddress(right);
  if ((field !== "saddr" && field !== "daddr") || typeof protocol !== "string") return false;
  if (!net || net.family !== family) return false;
  if (protocol !== NFT_TABLES[family].family) return false;
  const side = field === "saddr" ? "source" : "destination";
  if (draft[side] !== undefined) return false;
  draft[side] = { net, negated: op === "!=" };
  return true;
}

/** Decode a rule's `expr` list into the data model, or undefined when it is not one of ours. */
export function decodeNftRule(family: Family, expr: readonly unknown[]): TrafficRule | undefined {
  const draft: RuleDraft = {};
  for (const statement of expr) {
    if (!decodeStatement(family, draft, statement)) return undefined;
  }
  const { verdict, ...matches } = draft;
  if (verdict === undefined) return undefined;
  return { ...matches, verdict };
}

/**
 * The chains of Tartan's table for `family` from `nft -j list table` (or `list ruleset`) output.
 *
 * @throws {NftDecodeError} when the text is not an nft JSON listing.
 */
export function decodeNftTable(json: string, family: Family): Map<string, NftChainState> {
  let items: unknown;
  try {
    items = member(JSON.parse(json), "nftables");
  } catch (error) {
    throw new NftDecodeError(`unexpected nft -j output: ${(error as Error).message}`);
  }
  if (!Array.isArray(items) || !items.every(isRecord)) {
    throw new NftDecodeError("unexpected nft -j output: no list of objects under nftables");
  }
  const table = NFT_TABLES[family];
  const ours = (item: { family: string; table: string }) =>
    item.family === table.family && item.table === table.name;
  const chains = new Map<string, NftChainState>();
  for (const item of items as Record<string, unknown>[]) {
    const chain = chainOf(item.chain);
    if (chain && ours(chain)) {
      const { name, type, hook, prio, policy, comment } = chain;
      chains.set(name, { type, hook, prio, policy, comment, rules: [] });
    }
    const rule = ruleOf(item.rule);
    if (rule && ours(rule)) chains.get(rule.chain)?.rules.push(decodeNftRule(family, rule.expr));
  }
  return chains;
}

function chainInSync(
  chain: NftChain,
  wanted: readonly TrafficRule[],
  actual: NftChainState,
  family: Family,
): boolean {
  const sameShape = actual.type === chain.type && actual.hook === chain.hook &&
    actual.prio === chain.prio && actual.policy === "accept" &&
    (actual.comment === undefined || actual.comment === chain.comment);
  const render = (rule: TrafficRule | undefined) => rule && renderNftRule(family, rule);
  return sameShape && actual.rules.length === wanted.length &&
    actual.rules.every((rule, i) => render(rule) === render(wanted[i]));
}

/** Whether a table read back (undefined: absent) holds exactly the chains and rules wanted. */
export function nftTableInSync(
  rules: FamilyRules,
  actual: Map<string, NftChainState> | undefined,
): boolean {
  if (actual === undefined) return false;
  const wanted = NFT_CHAINS.filter((chain) => rules[chain.kind] !== undefined);
  return actual.size === wanted.length && wanted.every((chain) => {
    const state = actual.get(chain.name);
    return state !== undefined && chainInSync(chain, rules[chain.kind] ?? [], state, rules.family);
  });
}

/** A check-only transaction: does the kernel accept `masquerade fully-random`? */
async function probeFullyRandom(run: CommandRunner): Promise<boolean> {
  const probe = "add table ip flannel-ipv4\n" +
    "add chain ip flannel-ipv4 probe { type nat hook postrouting priority srcnat; }\n" +
    "add rule ip flannel-ipv4 probe masquerade fully-random\n";
  try {
    await run(["nft", "-c", "-f", "-"], probe);
    return true;
  } catch (error) {
    if (error instanceof CommandFailedError || error instanceof CommandNotFoundError) return false;
    throw error;
  }
}

/** Create the nftables engine (probes fully-random support once with `nft -c`). */
export async function createNftEngine(run: CommandRunner): Promise<RuleEngine> {
  async function readTable(family: Family): Promise<Map<string, NftChainState> | undefined> {
    const { family: nftFamily, name } = NFT_TABLES[family];
    try {
      return decodeNftTable(await run(["nft", "-j", "list", "table", nftFamily, name]), family);
    } catch (error) {
      if (error instanceof CommandFailedError && /No such file or directory/.test(error.stderr)) {
        return undefined;
      }
      throw error;
    }
  }

  return {
    name: "nftables",
    fullyRandomSupported: await probeFullyRandom(run),
    async reconcile(rules) {
      const states = await Promise.all(families(rules).map((f) => readTable(f.family)));
      if (families(rules).every((f, i) => nftTableInSync(f, states[i]))) return false;
      await run(["nft", "-f", "-"], renderNftTransaction(rules));
      return true;
    },
    async removeAll() {
      try {
        await run(["nft", "-f", "-"], renderNftRemoval());
      } catch (error) {
        if (!(error instanceof CommandNotFoundError)) throw error;
      }
    },
  };
}
