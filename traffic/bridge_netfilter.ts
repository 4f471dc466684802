/**
 * flanneld's start-up check in iptables mode (spec §7): the bridge netfilter sysctls must exist,
 * i.e. `br_netfilter` is loaded. Without it, pod traffic that stays on the node's bridge never
 * meets the FORWARD and masquerade rules, which fails in ways that are hard to trace later.
 * nftables mode does not need it, as in flannel.
 *
 * @module
 */
/** br_netfilter is missing for a family the network uses. */
export class BridgeNetfilterError extends Error {
  constructor(readonly missing: string) {
    super(
      `br_netfilter is not loaded (${missing} does not exist): run "modprobe br_netfilter" ` +
        `(and list it in /etc/modules-load.d/), or use "EnableNFTables": true`,
    );
    this.name = "BridgeNetfilterError";
  }
}

/** Which rule engine and address families the network uses. */
export interface TrafficSetup {
  readonly nftables: boolean;
  readonly ipv4: boolean;
  readonly ipv6: boolean;
}

/** Throw {@link BridgeNetfilterError} when iptables mode lacks a sysctl it relies on. */
export async function requireBridgeNetfilter(
  setup: TrafficSetup,
  sysctlDir = "/proc/sys/net/bridge",
): Promise<void> {
  if (setup.nftables) return;
  const needed = [
    ...(setup.ipv4 ? ["bridge-nf-call-iptables"] : []),
    ...(setup.ipv6 ? ["bridge-nf-call-ip6tables"] : []),
  ];
  for (const name of needed) {
    const path = `${sysctlDir}/${name}`;
    try {
      await Deno.stat(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw new BridgeNetfilterError(path);
      throw err;
    }
  }
}
