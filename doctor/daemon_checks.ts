/**
 * The checks of `tartan doctor` that read the daemon's admin API: readiness, our lease against
 * subnet.env, public IPs shared by several leases, and the peer probes (a blocked overlay, an
 * unreachable peer, a path-MTU black hole). Pure functions of what was fetched.
 *
 * @module
 */
import type {
  LeaseBody,
  LeaseListBody,
  PeerProbeBody,
  PeersBody,
  StatusBody,
} from "../api/schemas.ts";
import { formatNet } from "../ip/mod.ts";
import { encapsulationOf } from "./encapsulation.ts";
import type { CheckResult, Finding } from "./finding.ts";
import type { SubnetEnvValues } from "./host_checks.ts";

/** A lease this close to expiry, with renewals failing, is a problem. */
const EXPIRY_WARNING_SECONDS = 3600;

/** What the admin API said. */
export interface DaemonView {
  readonly url: string;
  readonly status: StatusBody;
  readonly leases: LeaseListBody;
  /** Null from a daemon without `/v1/peers`. */
  readonly peers: PeersBody | null;
}

/** What the daemon checks need. */
export interface DaemonCheckContext {
  readonly view: DaemonView;
  readonly subnetEnv: SubnetEnvValues & { readonly path: string };
  /** The measured underlay path MTU by peer public IP (undefined: no echo came back at all). */
  readonly pathMtu: ReadonlyMap<string, number | undefined>;
}

function readinessCheck({ status }: DaemonView): CheckResult {
  const findings = status.readiness.filter((check) => !check.ok).map((check): Finding => ({
    check: "daemon-ready",
    title: `the daemon is not ready: ${check.reason ?? check.name}`,
    detail: "Until it is, this node may lack its lease, its devices, subnet.env or the " +
      "other nodes' leases, and pods here cannot reach other nodes.",
    evidence: { readiness: check.name, reason: check.reason ?? "-" },
    fix: check.name === "lease" || check.name === "watch"
      ? "Check that the datastore (etcd, or the Kubernetes API) is reachable from this node; " +
        "the daemon's log says what it is waiting for."
      : "Read the daemon's log (journalctl -u tartan, or the pod's log) for the error.",
  }));
  return { check: "daemon", findings };
}

function leaseCheck(context: DaemonCheckContext): CheckResult {
  const { status } = context.view;
  const lease = status.lease;
  const findings: Finding[] = [];
  if (!lease) return { check: "lease", findings };
  const left = lease.expiresInSeconds;
  const failing = status.counters.renewFailures > 0;
  if (left !== null && (left < 0 || (failing && left < EXPIRY_WARNING_SECONDS))) {
    findings.push({
      check: "lease-expiry",
      title: left < 0
        ? `our lease ${lease.subnet} expired ${-left} s ago`
        : `our lease ${lease.subnet} expires in ${left} s and renewals are failing`,
      detail: "Once the lease is gone another node may be given this subnet, and the other " +
        "nodes drop their routes to this one.",
      evidence: {
        subnet: lease.subnet ?? "-",
        expiresInSeconds: String(left),
        renewFailures: String(status.counters.renewFailures),
      },
      fix: "Make the datastore reachable from this node (the daemon renews on its own and " +
        "re-acquires the subnet when it can).",
    });
  }
  const env = context.subnetEnv.gateway;
  if (env && lease.subnet && formatNet(env.net) !== lease.subnet) {
    findings.push({
      check: "subnet-env",
      title: `subnet.env says ${env.text}, but the daemon holds ${lease.subnet}`,
      detail: "New pods get addresses from a subnet this node does not own; other nodes route " +
        "that subnet elsewhere.",
      evidence: { file: context.subnetEnv.path, FLANNEL_SUBNET: env.text, lease: lease.subnet },
      fix: "Point the CNI config's subnetFile at the file this daemon writes (--subnet-file), " +
        "or restart the daemon so it rewrites it.",
    });
  }
  return { check: "lease", findings };
}

/** Leases that share a public IPv4 or IPv6 address, by address. */
export function duplicatePublicIPs(leases: LeaseListBody): Map<string, string[]> {
  const byIP = new Map<string, string[]>();
  for (const lease of leases.leases) {
    const subnet = lease.subnet ?? lease.ipv6Subnet;
    if (!subnet) continue;
    for (const ip of [lease.publicIP, lease.publicIPv6]) {
      if (ip && ip !== "0.0.0.0") byIP.set(ip, [...byIP.get(ip) ?? [], subnet]);
    }
  }
  return new Map([...byIP].filter(([, subnets]) => subnets.length > 1));
}

function duplicateCheck(view: DaemonView): CheckResult {
  const findings = [...duplicatePublicIPs(view.leases)].map(([ip, subnets]): Finding => ({
    check: "duplicate-public-ip",
    title: `${subnets.length} leases advertise the same public IP ${ip}`,
    detail: `Subnets ${subnets.join(" and ")} all say they are reached at ${ip}, so every ` +
      "node sends their pods' traffic to one machine, and at most one of them works. Usually " +
      "the nodes picked a NAT address (VirtualBox's 10.0.2.15) or were cloned.",
    evidence: { publicIP: ip, subnets: subnets.join(",") },
    fix: "On each of those nodes, make the daemon advertise its own address: " +
      "--iface=<the inter-node interface> or --public-ip=<its address> (in kube mode the " +
      "node's public-ip annotation); then delete the stale lease (etcdctl del " +
      "<prefix>/subnets/<subnet key>) or let it expire.",
  }));
  return { check: "public IPs", findings };
}

function peerFinding(peer: PeerProbeBody, context: DaemonCheckContext): Finding | undefined {
  const { status } = context.view;
  const backend = status.network?.backend;
  // Peers are probed in each family both ends have (see probe/targets.ts).
  const family = peer.publicIP.includes(":") ? 6 : 4;
  const encap = encapsulationOf(backend?.type ?? "unknown", backend?.options ?? {}, family);
  const ourIP = (family === 4 ? status.publicIP : status.publicIPv6) ?? "this node";
  const name = `peer ${peer.subnet} (${peer.publicIP})`;
  const base = { peer: peer.subnet, publicIP: peer.publicIP };
  if (peer.verdict === "overlay-blocked") {
    return {
      check: "peer-overlay",
      title: `${name} answers on the underlay but not through the ${backend?.type} overlay`,
      detail: `ICMP to ${peer.publicIP} comes back; ICMP to its tunnel address ` +
        `${peer.overlay?.target} through the overlay does not. Something between the nodes ` +
        `drops the encapsulated traffic (${encap.port}): pods here cannot reach pods there ` +
        "although the nodes ping each other.",
      evidence: {
        ...base,
        overlay: peer.overlay?.target ?? "-",
        port: encap.port,
        failures: String(peer.overlay?.failureStreak),
        lastSuccess: peer.overlay?.lastSuccess ?? "never",
      },
      fix: `Allow ${encap.allow} between ${ourIP} and ${peer.publicIP} in both directions: ` +
        "on both nodes' firewalls (iptables, nftables, firewalld) and in any cloud security " +
        "group or network ACL between them.",
    };
  }
  if (peer.verdict === "unreachable") {
    return {
      check: "peer-unreachable",
      title: `${name} is unreachable`,
      detail: `Neither ${peer.publicIP} nor its tunnel address answers ICMP echo: the node is ` +
        "down, its network is cut, or it advertises an address this node cannot reach (a " +
        "NAT address such as VirtualBox's 10.0.2.15).",
      evidence: {
        ...base,
        failures: String(peer.underlay.failureStreak),
        lastSuccess: peer.underlay.lastSuccess ?? "never",
        error: peer.underlay.lastError ?? "-",
      },
      fix: "Check that the node is up. On it, make tartan advertise the address other nodes " +
        "reach it by (--iface=<inter-node interface> or --public-ip=<address>), and allow " +
        `ICMP and ${encap.allow} between the nodes.`,
    };
  }
  if (peer.verdict === "mtu-black-hole") {
    const { fullSizeBytes } = peer;
    const measured = context.pathMtu.get(peer.publicIP);
    const podMtu = measured !== undefined ? measured - encap.overhead : undefined;
    return {
      check: "path-mtu",
      title: `${fullSizeBytes}-byte packets to ${name} vanish: a path-MTU black hole`,
      detail: `Small probes through the pods' path pass, but DF probes of ${fullSizeBytes} ` +
        "bytes (the pods' MTU on that path) get no answer and no 'fragmentation needed' " +
        "comes back: a link between the nodes carries smaller packets and says nothing. " +
        "Pods' large packets (bulk TCP, TLS handshakes) hang." +
        (measured !== undefined
          ? ` The underlay to ${peer.publicIP} carries at most ${measured} bytes.`
          : ""),
      evidence: {
        ...base,
        probeBytes: String(fullSizeBytes),
        FLANNEL_MTU: String(context.subnetEnv.mtu ?? fullSizeBytes),
        underlayPathMtu: measured === undefined ? "unmeasured" : String(measured),
        encapsulationOverhead: String(encap.overhead),
      },
      fix: `Make every link between the nodes carry ${fullSizeBytes + encap.overhead}-byte ` +
        "packets (or let ICMP 'fragmentation needed' through)" +
        (podMtu !== undefined
          ? `, or lower the pods' MTU to ${podMtu}: set the external interface's MTU to ` +
            `${measured} on every node (vxlan and wireguard also take "MTU": ${measured} in ` +
            "the net-conf's Backend), restart tartan and recreate the pods."
          : "."),
    };
  }
  return undefined;
}

function peerProbeCheck(context: DaemonCheckContext): CheckResult {
  const peers = context.view.peers;
  if (!peers) {
    return { check: "peer probes", findings: [], notes: ["the daemon predates /v1/peers"] };
  }
  if (!peers.enabled) {
    const reason = peers.disabledReason ?? "unknown";
    if (peers.off !== "permission") {
      return { check: "peer probes", findings: [], notes: [`peer probes: ${reason}`] };
    }
    return {
      check: "peer probes",
      findings: [{
        check: "peer-probes",
        title: "the daemon cannot probe its peers",
        detail: "Without probes nobody notices a blocked overlay or an MTU black hole.",
        evidence: { reason },
        fix: "Run tartan as root or with CAP_NET_RAW (as flanneld runs), or allow its group " +
          "in net.ipv4.ping_group_range.",
      }],
    };
  }
  const duplicated = duplicatePublicIPs(context.view.leases);
  const current = new Set(context.view.leases.leases.map((lease) => lease.key));
  const findings: Finding[] = [];
  for (const peer of peers.peers) {
    // A shared public IP explains whatever the probes of those peers see; a peer whose lease
    // is gone (the prober notices at its next round) is no longer anyone's problem.
    if (duplicated.has(peer.publicIP) || !current.has(peer.key)) continue;
    const finding = peerFinding(peer, context);
    if (finding) findings.push(finding);
  }
  const pending = peers.verdicts.pending ?? 0;
  const notes = pending > 0 ? [`${pending} peer(s) not probed yet`] : [];
  // A node probes in the families it has a public address in; other peers are left out.
  const families = probedFamilies(context.view.status);
  const unprobed =
    context.view.leases.leases.filter((lease) =>
      !lease.own && !lease.skipped && !families.some((family) => hasPublicIP(lease, family))
    ).length;
  if (unprobed > 0) {
    const which = families.map((family) => `IPv${family}`).join(" or ");
    notes.push(`${unprobed} peer(s) without a public ${which} address not probed`);
  }
  const count = Object.values(peers.verdicts).reduce((sum, n) => sum + n, 0);
  return { check: `peer probes (${count} peer${count === 1 ? "" : "s"})`, findings, notes };
}

/** The families this node probes its peers in: those it has a public address in. */
function probedFamilies(status: StatusBody): (4 | 6)[] {
  const families: (4 | 6)[] = [];
  if (status.publicIP && status.publicIP !== "0.0.0.0") families.push(4);
  if (status.publicIPv6) families.push(6);
  return families;
}

function hasPublicIP(lease: LeaseBody, family: 4 | 6): boolean {
  return family === 4 ? lease.publicIP !== "0.0.0.0" : lease.publicIPv6 !== null;
}

/** Peers whose full-size probes vanish: worth measuring the path MTU to (at most `limit`). */
export function blackHolePeers(view: DaemonView, limit: number): string[] {
  return (view.peers?.peers ?? [])
    .filter((peer) => peer.verdict === "mtu-black-hole")
    .slice(0, limit)
    .map((peer) => peer.publicIP);
}

/** Every daemon check, in the order they are reported. */
export function daemonChecks(context: DaemonCheckContext): CheckResult[] {
  return [
    readinessCheck(context.view),
    leaseCheck(context),
    duplicateCheck(context.view),
    peerProbeCheck(context),
  ];
}
