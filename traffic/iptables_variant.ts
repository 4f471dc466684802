/**
 * Which iptables the host uses: legacy (the old kernel API) or nft (iptables rules stored in
 * nftables). The two keep separate rule sets, so Tartan's chains must be written with the variant
 * kube-proxy and the kubelet use, or they are evaluated apart from theirs in an order nobody
 * chose. The decision follows kube's iptables-wrappers:
 *
 * 1. kubelet's marker chains (`KUBE-IPTABLES-HINT`, `KUBE-KUBELET-CANARY`) in nft's mangle table
 *    ⇒ nft;
 * 2. the same chains in a full legacy dump (not `-t mangle`, which would create the legacy table)
 *    ⇒ legacy;
 * 3. otherwise (no kubelet, e.g. etcd mode on plain hosts) the variant holding more rules, as the
 *    wrappers' earlier releases decided; a tie, nothing at all included, means nft.
 *
 * When the host has only one variant, or only plain `iptables*` commands, there is nothing to
 * choose.
 *
 * @module
 */
import type { Family } from "../ip/mod.ts";
import { CommandNotFoundError, type CommandRunner } from "../exec.ts";

/** The two iptables back ends. */
export type IptablesVariant = "legacy" | "nft";

/** The commands of one variant (or of the host's plain `iptables*` when `variant` is absent). */
export interface IptablesTools {
  readonly variant?: IptablesVariant;
  /** `iptables` itself, for `--version`. */
  readonly iptables: string;
  readonly save: Readonly<Record<Family, string>>;
  readonly restore: Readonly<Record<Family, string>>;
}

/** The command names of `variant`; undefined means the plain names (`iptables-save`, …). */
export function iptablesTools(variant?: IptablesVariant): IptablesTools {
  const suffix = variant ? `-${variant}` : "";
  return {
    ...(variant && { variant }),
    iptables: `iptables${suffix}`,
    save: { 4: `iptables${suffix}-save`, 6: `ip6tables${suffix}-save` },
    restore: { 4: `iptables${suffix}-restore`, 6: `ip6tables${suffix}-restore` },
  };
}

/** The variant chosen and why, for the start-up log. */
export interface VariantChoice {
  /** Undefined when the host has neither `iptables-legacy` nor `iptables-nft`. */
  readonly variant?: IptablesVariant;
  readonly reason: string;
}

const KUBELET_CHAINS = /^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)\b/m;

/** The output of a save command, or "" when it is missing or fails (best effort, as the wrappers). */
async function dump(run: CommandRunner, argv: string[]): Promise<string> {
  try {
    return await run(argv);
  } catch {
    return "";
  }
}

async function installed(run: CommandRunner, command: string): Promise<boolean> {
  try {
    await run([command, "--version"]);
    return true;
  } catch (error) {
    if (error instanceof CommandNotFoundError) return false;
    return true; // present, but unhappy with --version: still the one to use
  }
}

/** Both families' dumps of one variant, concatenated. */
async function dumps(run: CommandRunner, variant: IptablesVariant, args: string[] = []) {
  const tools = iptablesTools(variant);
  const texts = await Promise.all([4, 6].map((f) => dump(run, [tools.save[f as Family], ...args])));
  return texts.join("\n");
}

function ruleCount(text: string): number {
  return text.split("\n").filter((line) => line.startsWith("-")).length;
}

/** Decide the variant the host's other agents use; see the module comment. */
export async function detectIptablesVariant(run: CommandRunner): Promise<VariantChoice> {
  const [hasLegacy, hasNft] = await Promise.all([
    installed(run, iptablesTools("legacy").iptables),
    installed(run, iptablesTools("nft").iptables),
  ]);
  if (!hasLegacy && !hasNft) {
    return { reason: "no iptables-legacy or iptables-nft: plain iptables" };
  }
  if (!hasLegacy || !hasNft) {
    const variant = hasNft ? "nft" : "legacy";
    return { variant, reason: `only iptables-${variant} is installed` };
  }
  if (KUBELET_CHAINS.test(await dumps(run, "nft", ["-t", "mangle"]))) {
    return { variant: "nft", reason: "kubelet's chains are in iptables-nft" };
  }
  const legacy = await dumps(run, "legacy");
  if (KUBELET_CHAINS.test(legacy)) {
    return { variant: "legacy", reason: "kubelet's chains are in iptables-legacy" };
  }
  const [legacyRules, nftRules] = [ruleCount(legacy), ruleCount(await dumps(run, "nft"))];
  const variant = legacyRules > nftRules ? "legacy" : "nft";
  return {
    variant,
    reason: `no kubelet chains; ${legacyRules} legacy rules, ${nftRules} nft rules`,
  };
}
