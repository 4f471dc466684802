/**
 * The host-side checks of `tartan doctor`, as pure functions of {@link HostFacts}: forwarding
 * sysctls, bridge netfilter, rp_filter on the devices that carry pod traffic, the FORWARD path,
 * `cni0`'s address against subnet.env, and host routes overlapping the pod network.
 *
 * @module
 */
import { isBackendDevice } from "../backends/registry.ts";
import { RTN_BLACKHOLE, RTN_UNICAST } from "../ffi/netlink/constants.ts";
import {
  addrAdd,
  formatAddr,
  formatNet,
  type IPNet,
  makeNet,
  netAddr,
  netContains,
  netContainsNet,
  netOverlaps,
  tryParseNet,
} from "../ip/mod.ts";
import type { CheckResult, Finding } from "./finding.ts";
import type { HostFacts } from "./host_facts.ts";
import { NFT_TABLES } from "../traffic/nftables.ts";

/** The bridge the flannel CNI config names by default (flannel's `cni0`). */
export const POD_BRIDGE = "cni0";
/** A device that carries overlay traffic: a backend's, or the ipip module's fallback `tunl0`. */
function isTunnelDevice(name: string): boolean {
  return isBackendDevice(name) || name === "tunl0";
}
/** Tartan's nftables tables (spec §7.2). */
const OUR_NFT_TABLES = new Set(Object.values(NFT_TABLES).map((t) => t.name));
/** At most this many peer subnets are looked up for the reverse-path check. */
const REVERSE_PATH_SAMPLES = 20;

/** What the host checks need besides the facts. */
export interface HostCheckContext {
  readonly facts: HostFacts;
  /** The rule engine, when the daemon told us (`iptables` otherwise, flannel's default). */
  readonly engine?: "iptables" | "nftables";
  /** Peer subnets (from the daemon's leases), for the reverse-path check. */
  readonly peerSubnets?: readonly IPNet[];
}

/** subnet.env's values that the checks use. */
export interface SubnetEnvValues {
  readonly network?: IPNet;
  /** FLANNEL_SUBNET as written: the bridge's gateway address with the subnet's prefix. */
  readonly gateway?: { readonly text: string; readonly net: IPNet };
  readonly mtu?: number;
}

/** Read FLANNEL_NETWORK, FLANNEL_SUBNET and FLANNEL_MTU from the facts. */
export function subnetEnvValues(facts: HostFacts): SubnetEnvValues {
  const vars = facts.subnetEnv.vars;
  if (!vars) return {};
  const subnetText = vars.get("FLANNEL_SUBNET");
  const subnet = subnetText ? tryParseNet(subnetText) : undefined;
  const mtu = Number(vars.get("FLANNEL_MTU"));
  return {
    network: tryParseNet(vars.get("FLANNEL_NETWORK") ?? ""),
    gateway: subnet && subnetText ? { text: subnetText, net: subnet } : undefined,
    mtu: Number.isInteger(mtu) && mtu > 0 ? mtu : undefined,
  };
}

function linkName(facts: HostFacts, index: number | undefined): string {
  return facts.links.find((link) => link.index === index)?.name ?? `#${index}`;
}

/** subnet.env exists and parses. */
function subnetEnvCheck(facts: HostFacts): CheckResult {
  const { path, error } = facts.subnetEnv;
  const values = subnetEnvValues(facts);
  const findings: Finding[] = [];
  if (error || !values.network || !values.gateway) {
    findings.push({
      check: "subnet-env",
      title: `${path} is ${error ? "unreadable" : "incomplete"}`,
      detail: "The CNI plugin takes each pod's subnet and MTU from this file; without it " +
        "no pod on this node gets an address.",
      evidence: { file: path, ...(error ? { error } : {}) },
      fix: "Start tartan (it writes the file once it holds a lease), or point --subnet-file " +
        "of tartan doctor at the file the daemon writes.",
    });
  }
  return { check: "subnet.env", findings };
}

function ipForwardCheck(facts: HostFacts): CheckResult {
  const findings: Finding[] = [];
  const checks: Array<[string[], string]> = [[
    ["net", "ipv4", "ip_forward"],
    "net.ipv4.ip_forward",
  ]];
  if (facts.subnetEnv.vars?.has("FLANNEL_IPV6_NETWORK")) {
    checks.push([["net", "ipv6", "conf", "all", "forwarding"], "net.ipv6.conf.all.forwarding"]);
  }
  for (const [path, name] of checks) {
    const value = facts.sysctl(path);
    if (value === "1") continue;
    findings.push({
      check: "ip-forward",
      title: `${name} is ${value ?? "missing"}: this node does not forward packets`,
      detail: "Pod traffic entering from the overlay or leaving the pods' bridge is routed " +
        "through this host; with forwarding off it is dropped, so pods on other nodes cannot " +
        "reach pods here (and pods here reach nothing off the node).",
      evidence: { sysctl: `${name}=${value ?? "(absent)"}`, file: `/proc/sys/${path.join("/")}` },
      fix: `sysctl -w ${name}=1, and persist it in /etc/sysctl.d/ (e.g. 99-tartan.conf).`,
    });
  }
  return { check: "ip_forward", findings };
}

function bridgeNetfilterCheck(facts: HostFacts, engine: string): CheckResult {
  const name = "net.bridge.bridge-nf-call-iptables";
  const value = facts.sysctl(["net", "bridge", "bridge-nf-call-iptables"]);
  if (value === "1") return { check: "br_netfilter", findings: [] };
  if (value === undefined && engine === "nftables") {
    return {
      check: "br_netfilter",
      findings: [],
      notes: ["br_netfilter is not loaded; nftables mode does not need it"],
    };
  }
  const missing = value === undefined;
  return {
    check: "br_netfilter",
    findings: [{
      check: "br-netfilter",
      title: missing
        ? "br_netfilter is not loaded: bridged pod traffic bypasses iptables"
        : `${name} is ${value}: bridged pod traffic bypasses iptables`,
      detail: "Traffic between pods on this node's bridge never meets the FORWARD and NAT " +
        "rules (kube-proxy services between pods on one node break, masquerading is skipped).",
      evidence: { sysctl: `${name}=${value ?? "(absent: module not loaded)"}` },
      fix: missing
        ? `modprobe br_netfilter, list it in /etc/modules-load.d/, then sysctl -w ${name}=1.`
        : `sysctl -w ${name}=1, and persist it in /etc/sysctl.d/.`,
    }],
  };
}

/**
 * Strict rp_filter (1) drops a packet when the route back to its source leaves by another
 * device than the one it came in on. Our pods' packets come in on the bridge; peers' packets on
 * the tunnel device (or, with DirectRouting and host-gw, on the underlay device their route
 * goes through, which is symmetric by construction). A finding names the first source whose
 * route back leaves elsewhere.
 */
function rpFilterCheck(facts: HostFacts, peerSubnets: readonly IPNet[]): CheckResult {
  const all = Number(facts.sysctl(["net", "ipv4", "conf", "all", "rp_filter"]) ?? 0);
  const own = subnetEnvValues(facts).gateway?.net;
  const findings: Finding[] = [];
  const carriers = facts.links.filter((l) => l.name === POD_BRIDGE || isTunnelDevice(l.name));
  for (const link of carriers) {
    const value = Number(facts.sysctl(["net", "ipv4", "conf", link.name, "rp_filter"]) ?? 0);
    if (Math.max(all, value) !== 1) continue;
    const bridge = link.name === POD_BRIDGE;
    const sources = bridge ? (own ? [own] : []) : peerSubnets.slice(0, REVERSE_PATH_SAMPLES);
    for (const source of sources) {
      const from = addrAdd(netAddr(source), 2n);
      const back = facts.routeTo(from);
      // A route with a gateway on the underlay (DirectRouting) is where that peer's packets come.
      if (back?.oif === link.index || (!bridge && back?.gateway !== undefined)) continue;
      const backDevice = back?.oif === undefined ? "no route" : linkName(facts, back.oif);
      findings.push({
        check: "rp-filter",
        title: `strict rp_filter on ${link.name} drops packets from ${formatNet(source)}`,
        detail: `Packets from ${formatNet(source)} arrive on ${link.name}, but the route ` +
          `back to ${formatAddr(from)} leaves by ${backDevice}, so reverse-path filtering ` +
          "in strict mode discards them.",
        evidence: {
          sysctl: `net.ipv4.conf.${link.name}.rp_filter=${value} (all=${all})`,
          device: link.name,
          source: formatNet(source),
          routeBack: backDevice,
        },
        fix: `sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.${link.name}.rp_filter=2 ` +
          "(loose mode) and persist it in /etc/sysctl.d/, or fix the route back.",
      });
      break;
    }
  }
  return { check: "rp_filter", findings };
}

function forwardCheck(facts: HostFacts, network: IPNet | undefined): CheckResult {
  const findings: Finding[] = [];
  const notes: string[] = [];
  const net = network ? formatNet(network) : "<pod network>";
  const ipt = facts.iptablesForward;
  if (!ipt && !facts.nftForwardChains) {
    notes.push("FORWARD not checked: neither iptables-save nor nft could be read (needs root)");
  }
  if (ipt) {
    if (ipt.policy === "DROP" && !ipt.jumpsToOurs) {
      findings.push({
        check: "forward-policy",
        title: "FORWARD policy is DROP and no rule accepts pod traffic",
        detail: "Packets between pods on different nodes are forwarded by this host; the " +
          "iptables FORWARD chain drops them by default and FLANNEL-FWD is not hooked.",
        evidence: { chain: "filter FORWARD", policy: ipt.policy, "FLANNEL-FWD": "not hooked" },
        fix: "Run tartan with --iptables-forward-rules=true (the default), or accept the pod " +
          `network yourself: iptables -I FORWARD -s ${net} -j ACCEPT; ` +
          `iptables -I FORWARD -d ${net} -j ACCEPT.`,
      });
    } else if (ipt.policy === "DROP") {
      notes.push("iptables FORWARD policy is DROP; FLANNEL-FWD accepts the pod network");
    }
    if (ipt.dropsBefore.length > 0) {
      findings.push({
        check: "forward-policy",
        title: `FORWARD drops packets before ${ipt.jumpsToOurs ? "FLANNEL-FWD" : "any accept"}`,
        detail: "A DROP or REJECT rule ahead of the pod network's accept rules can discard " +
          "pod traffic between nodes.",
        evidence: { chain: "filter FORWARD", rules: ipt.dropsBefore.join(" | ") },
        fix: `Move the rule after the jump to FLANNEL-FWD, or exempt ${net} from it.`,
      });
    }
  }
  for (const chain of facts.nftForwardChains ?? []) {
    if (chain.policy !== "drop" || OUR_NFT_TABLES.has(chain.table)) continue;
    // iptables-nft's own FORWARD chain is judged above, from iptables-save (unless that was
    // iptables-legacy's).
    const judged = ipt && facts.iptablesVariant !== "legacy";
    if (judged && chain.table === "filter" && chain.name === "FORWARD") continue;
    findings.push({
      check: "forward-policy",
      title: `nftables chain ${chain.family} ${chain.table} ${chain.name} drops forwarded ` +
        "packets by default",
      detail: "Every nftables base chain on the forward hook must accept a packet; an accept " +
        "in flannel's table does not override a drop policy in another table.",
      evidence: { chain: `${chain.family} ${chain.table} ${chain.name}`, policy: chain.policy },
      fix: `Accept the pod network in that chain: nft insert rule ${chain.family} ` +
        `${chain.table} ${chain.name} ip saddr ${net} accept; and the same for ip daddr.`,
    });
  }
  return { check: "FORWARD", findings, notes };
}

function bridgeAddressCheck(facts: HostFacts): CheckResult {
  const bridge = facts.links.find((link) => link.name === POD_BRIDGE);
  const gateway = subnetEnvValues(facts).gateway;
  if (!bridge || !gateway) return { check: "cni0", findings: [] };
  const wrong = facts.addrs.filter((addr) =>
    addr.index === bridge.index && addr.family === gateway.net.family &&
    !netContains(gateway.net, addr.address)
  );
  if (wrong.length === 0) return { check: "cni0", findings: [] };
  const held = wrong.map((addr) => `${formatAddr(addr.address)}/${addr.prefix}`).join(",");
  return {
    check: "cni0",
    findings: [{
      check: "cni0-address",
      title: `${POD_BRIDGE} holds ${held}, but this node's subnet is ${gateway.text}`,
      detail: "The bridge kept the address of an earlier subnet (the node re-joined with a new " +
        `lease). New pods fail with "${POD_BRIDGE} already has an IP address different from ` +
        `${gateway.text}", and pods still on the old subnet are unreachable.`,
      evidence: {
        device: POD_BRIDGE,
        address: held,
        file: facts.subnetEnv.path,
        FLANNEL_SUBNET: gateway.text,
      },
      fix: `ip link delete ${POD_BRIDGE} (the bridge plugin recreates it with ${gateway.text} ` +
        "for the next pod), then recreate the pods that still have old addresses.",
    }],
  };
}

/** Host routes and addresses that claim part of the pod network for something else. */
function routeOverlapCheck(facts: HostFacts, network: IPNet | undefined): CheckResult {
  if (!network) return { check: "routes", findings: [] };
  const subnetLen = subnetEnvValues(facts).gateway?.net.prefix ?? network.prefix;
  const ours = (index: number | undefined) => {
    const name = linkName(facts, index);
    return name === POD_BRIDGE || isTunnelDevice(name);
  };
  const findings: Finding[] = [];
  for (const route of facts.routes) {
    if (route.family !== network.family || !netOverlaps(route.dst, network)) continue;
    if (ours(route.oif) || route.type === RTN_BLACKHOLE || route.type !== RTN_UNICAST) continue;
    // Less specific than the network (a default route, a /8 around it) is not a conflict.
    if (route.dst.prefix <= network.prefix && netContainsNet(route.dst, network)) continue;
    // host-gw and DirectRouting: one route per peer subnet, via the peer's address.
    if (route.dst.prefix === subnetLen && route.gateway && netContainsNet(network, route.dst)) {
      continue;
    }
    const device = linkName(facts, route.oif);
    const via = route.gateway ? ` via ${formatAddr(route.gateway)}` : "";
    findings.push({
      check: "route-overlap",
      title: `host route ${formatNet(route.dst)}${via} dev ${device} overlaps the pod network ` +
        formatNet(network),
      detail: "Pod addresses in that range are sent to the host network instead of the " +
        "overlay, and the host's own hosts there become unreachable from pods.",
      evidence: {
        route: `${formatNet(route.dst)}${via} dev ${device}`,
        network: formatNet(network),
      },
      fix: "Choose a pod network (the net-conf's Network) that overlaps no host network, or " +
        "move the host network out of it.",
    });
  }
  for (const addr of facts.addrs) {
    if (addr.family !== network.family || ours(addr.index)) continue;
    const net = makeNet(addr.address, addr.prefix);
    if (!netOverlaps(net, network) || (net.prefix <= network.prefix && addr.prefix === 0)) {
      continue;
    }
    const device = linkName(facts, addr.index);
    findings.push({
      check: "route-overlap",
      title: `${device}'s address ${formatAddr(addr.address)}/${addr.prefix} lies in the pod ` +
        `network ${formatNet(network)}`,
      detail: "The host network and the pod network overlap: pods cannot tell the hosts there " +
        "from pods, and one of the two becomes unreachable.",
      evidence: { device, address: `${formatAddr(addr.address)}/${addr.prefix}` },
      fix: "Choose a pod network (the net-conf's Network) that overlaps no host network.",
    });
  }
  return { check: "routes", findings };
}

/** Every host check, in the order they are reported. */
export function hostChecks(context: HostCheckContext): CheckResult[] {
  const { facts } = context;
  const network = subnetEnvValues(facts).network;
  const peers = context.peerSubnets ?? [];
  return [
    subnetEnvCheck(facts),
    ipForwardCheck(facts),
    bridgeNetfilterCheck(facts, context.engine ?? "iptables"),
    rpFilterCheck(facts, peers),
    forwardCheck(facts, network),
    bridgeAddressCheck(facts),
    routeOverlapCheck(facts, network),
  ];
}
