/**
 * The iptables variant follows the host (kube's iptables-wrappers logic), in network namespaces
 * where both iptables-legacy and iptables-nft exist: kubelet's marker chains decide first (nft's
 * before legacy's), then the variant with more rules, and nft when nothing tells. Tartan's chains
 * then appear in the chosen variant only.
 */
import assert from "node:assert/strict";
import { type CommandRunner, commandRunner } from "../../exec.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import { withNetns } from "../../lab/netns.ts";
import { createTrafficManager } from "../../traffic/manager.ts";
import { detectIptablesVariant, type IptablesVariant } from "../../traffic/iptables_variant.ts";
import { removeLeftovers, rootTest } from "../helpers/netns.ts";
import { networkConfig } from "../helpers/network_config.ts";

const CONFIG = networkConfig("vxlan");

/** Which variants hold Tartan's chains in the namespace. */
async function holders(run: CommandRunner): Promise<IptablesVariant[]> {
  const found: IptablesVariant[] = [];
  for (const variant of ["legacy", "nft"] as const) {
    const dump = await run([`iptables-${variant}-save`]);
    if (dump.includes(":FLANNEL-FWD") || dump.includes(":FLANNEL-POSTRTG")) found.push(variant);
  }
  return found;
}

/** Set the host up with `setup` (shell), then detect and install in a fresh namespace. */
function variantTest(name: string, setup: string, expected: IptablesVariant, why: RegExp) {
  rootTest(`iptables variant: ${name}`, async () => {
    await removeLeftovers();
    await withNetns(async (ns) => {
      const run = commandRunner({ netns: ns });
      if (setup) await run(["sh", "-c", setup]);
      const choice = await detectIptablesVariant(run);
      assert.equal(choice.variant, expected, choice.reason);
      assert.match(choice.reason, why);
      const traffic = await createTrafficManager(CONFIG, {
        subnet: parseNet("10.244.1.0/24"),
        attrs: { publicIP: parseAddr("198.18.0.1") },
      }, { ipMasq: true, forwardRules: true, fullyRandomDisabled: false, resyncSeconds: 5, run });
      assert.equal(traffic.iptablesVariant?.variant, expected);
      await traffic.apply();
      assert.deepEqual(await holders(run), [expected]);
      // cleanup removes ours from both variants, and only ours.
      await traffic.cleanup();
      assert.deepEqual(await holders(run), []);
    }, "variant");
  });
}

variantTest(
  "kubelet's chain in iptables-nft's mangle table means nft, even with more legacy rules",
  "iptables-nft -t mangle -N KUBE-IPTABLES-HINT && " +
    "for i in 1 2 3; do iptables-legacy -A FORWARD -s 192.0.2.$i -j ACCEPT; done",
  "nft",
  /kubelet's chains are in iptables-nft/,
);

variantTest(
  "kubelet's chain in iptables-legacy means legacy",
  "iptables-legacy -t mangle -N KUBE-KUBELET-CANARY",
  "legacy",
  /kubelet's chains are in iptables-legacy/,
);

variantTest(
  "without kubelet, the variant with more rules (legacy here)",
  "for i in 1 2 3; do iptables-legacy -A FORWARD -s 192.0.2.$i -j ACCEPT; done && " +
    "ip6tables-nft -A FORWARD -s 2001:db8::1 -j ACCEPT",
  "legacy",
  /3 legacy rules, 1 nft rules/,
);

variantTest(
  "without kubelet, the variant with more rules (nft here)",
  "iptables-legacy -A FORWARD -s 192.0.2.1 -j ACCEPT && " +
    "iptables-nft -A FORWARD -s 192.0.2.1 -j ACCEPT && iptables-nft -A INPUT -s 192.0.2.2 -j ACCEPT",
  "nft",
  /1 legacy rules, 2 nft rules/,
);

variantTest("an empty host means nft", "", "nft", /0 legacy rules, 0 nft rules/);
