/**
 * The host checks as pure functions of made-up facts: each fault produces one finding naming the
 * device, sysctl or route and the fix; a healthy host produces none.
 */
import assert from "node:assert/strict";
import type { Addr } from "../../ffi/netlink/addr.ts";
import type { Link } from "../../ffi/netlink/link.ts";
import type { Route } from "../../ffi/netlink/route.ts";
import { RTN_BLACKHOLE, RTN_UNICAST } from "../../ffi/netlink/constants.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import { hostChecks } from "../../doctor/host_checks.ts";
import {
  type HostFacts,
  parseIptablesForward,
  parseNftForwardChains,
} from "../../doctor/host_facts.ts";

const LINKS: Link[] = [
  { index: 1, name: "lo", mtu: 65536, flags: 0, up: true, operState: "UNKNOWN" },
  { index: 2, name: "eth0", mtu: 1500, flags: 0, up: true, operState: "UP" },
  { index: 3, name: "flannel.1", mtu: 1450, flags: 0, up: true, operState: "UNKNOWN" },
  { index: 4, name: "cni0", mtu: 1450, flags: 0, up: true, operState: "UP" },
];

function addr(index: number, cidr: string): Addr {
  const [address, prefix] = cidr.split("/");
  return {
    index,
    family: 4,
    address: parseAddr(address),
    prefix: Number(prefix),
    scope: 0,
    flags: 0,
  };
}

function route(dst: string, oif: number, extra: Partial<Route> = {}): Route {
  return {
    family: 4,
    dst: parseNet(dst),
    oif,
    table: 254,
    protocol: 4,
    scope: 0,
    type: RTN_UNICAST,
    onlink: false,
    flags: 0,
    ...extra,
  };
}

/** A healthy vxlan node: 10.244.1.0/24 of 10.244.0.0/16, one peer 10.244.2.0/24. */
function healthyFacts(overrides: Partial<HostFacts> = {}, sysctls: Record<string, string> = {}) {
  const values: Record<string, string> = {
    "net/ipv4/ip_forward": "1",
    "net/bridge/bridge-nf-call-iptables": "1",
    "net/ipv4/conf/all/rp_filter": "2",
    ...sysctls,
  };
  const routes = [
    route("0.0.0.0/0", 2, { gateway: parseAddr("192.0.2.1") }),
    route("192.0.2.0/24", 2),
    route("10.244.1.0/24", 4),
    route("10.244.2.0/24", 3, { gateway: parseAddr("10.244.2.0"), onlink: true }),
  ];
  const facts: HostFacts = {
    sysctl: (path) => values[path.join("/")],
    subnetEnv: {
      path: "/run/flannel/subnet.env",
      vars: new Map([
        ["FLANNEL_NETWORK", "10.244.0.0/16"],
        ["FLANNEL_SUBNET", "10.244.1.1/24"],
        ["FLANNEL_MTU", "1450"],
      ]),
    },
    links: LINKS,
    addrs: [addr(2, "192.0.2.10/24"), addr(3, "10.244.1.0/32"), addr(4, "10.244.1.1/24")],
    routes,
    routeTo: (to) =>
      routes.filter((r) =>
        r.dst.base === (to.value & (~0n << BigInt(32 - r.dst.prefix)) & 0xffffffffn)
      )
        .sort((a, b) => b.dst.prefix - a.dst.prefix)[0],
    iptablesForward: { policy: "ACCEPT", jumpsToOurs: true, dropsBefore: [] },
    nftForwardChains: [],
    ...overrides,
  };
  return facts;
}

function findingsOf(facts: HostFacts, peers = ["10.244.2.0/24"]) {
  return hostChecks({ facts, peerSubnets: peers.map(parseNet) }).flatMap((r) => r.findings);
}

Deno.test("host checks: a healthy node has no findings", () => {
  assert.deepEqual(findingsOf(healthyFacts()), []);
});

Deno.test("host checks: forwarding off, br_netfilter missing, strict rp_filter on a bad path", () => {
  const [forward] = findingsOf(healthyFacts({}, { "net/ipv4/ip_forward": "0" }));
  assert.equal(forward.check, "ip-forward");
  assert.equal(forward.evidence.sysctl, "net.ipv4.ip_forward=0");

  const noBridge = healthyFacts({
    sysctl: (p) => p.join("/") === "net/ipv4/ip_forward" ? "1" : undefined,
  });
  assert.deepEqual(findingsOf(noBridge).map((f) => f.check), ["br-netfilter"]);
  assert.deepEqual(
    hostChecks({ facts: noBridge, engine: "nftables" }).flatMap((r) => r.findings),
    [],
    "nftables mode does not need br_netfilter",
  );

  // Strict rp_filter alone is harmless: routes back go where packets come from.
  assert.deepEqual(findingsOf(healthyFacts({}, { "net/ipv4/conf/all/rp_filter": "1" })), []);
  // A more specific host route steals the way back to part of the peer's subnet.
  const stolen = healthyFacts({}, { "net/ipv4/conf/all/rp_filter": "1" });
  const routes = [...stolen.routes, route("10.244.2.0/28", 2)];
  const routeTo = (to: Parameters<HostFacts["routeTo"]>[0]) =>
    (to.value >> 8n) === (parseAddr("10.244.2.0").value >> 8n) ? routes.at(-1) : stolen.routeTo(to);
  const rp = findingsOf({ ...stolen, routes, routeTo })
    .filter((f) => f.check === "rp-filter");
  assert.equal(rp.length, 1);
  assert.equal(rp[0].evidence.device, "flannel.1");
  assert.equal(rp[0].evidence.routeBack, "eth0");
});

Deno.test("host checks: FORWARD DROP without our rules, and a foreign nftables drop chain", () => {
  const dropped = findingsOf(healthyFacts({
    iptablesForward: { policy: "DROP", jumpsToOurs: false, dropsBefore: [] },
  }));
  assert.deepEqual(dropped.map((f) => f.check), ["forward-policy"]);
  assert.match(dropped[0].fix, /--iptables-forward-rules=true/);
  assert.deepEqual(
    findingsOf(healthyFacts({
      iptablesForward: { policy: "DROP", jumpsToOurs: true, dropsBefore: [] },
    })),
    [],
    "DROP with FLANNEL-FWD hooked is fine",
  );
  const nft = findingsOf(healthyFacts({
    nftForwardChains: [
      { family: "inet", table: "filter", name: "forward", policy: "drop" },
      { family: "ip", table: "flannel-ipv4", name: "forward", policy: "drop" },
    ],
  }));
  assert.equal(nft.length, 1);
  assert.match(nft[0].title, /inet filter forward/);
});

Deno.test("host checks: iptables-nft's FORWARD chain is judged from nft when the daemon uses legacy", () => {
  const nftFilter = { family: "ip", table: "filter", name: "FORWARD", policy: "drop" };
  const iptablesForward = { policy: "ACCEPT", jumpsToOurs: true, dropsBefore: [] };
  const nft = healthyFacts({ iptablesForward, nftForwardChains: [nftFilter] });
  assert.deepEqual(findingsOf(nft), [], "the nft variant's chain is judged from iptables-save");
  const legacy = findingsOf({ ...nft, iptablesVariant: "legacy" });
  assert.deepEqual(legacy.map((f) => f.check), ["forward-policy"]);
  assert.match(legacy[0].title, /ip filter FORWARD/);
});

Deno.test("host checks: cni0 with an old subnet's address, host routes in the pod network", () => {
  const facts = healthyFacts();
  const stale = findingsOf({
    ...facts,
    addrs: [...facts.addrs.slice(0, 2), addr(4, "10.244.9.1/24")],
  });
  assert.deepEqual(stale.map((f) => f.check), ["cni0-address"]);
  assert.equal(stale[0].evidence.address, "10.244.9.1/24");
  assert.equal(stale[0].evidence.FLANNEL_SUBNET, "10.244.1.1/24");

  const overlap = findingsOf({
    ...facts,
    routes: [
      ...facts.routes,
      route("10.244.128.0/17", 2, { gateway: parseAddr("192.0.2.1") }),
      route("10.244.1.0/24", 0, { type: RTN_BLACKHOLE }),
    ],
    addrs: [...facts.addrs, addr(2, "10.244.200.5/24")],
  });
  assert.deepEqual(overlap.map((f) => f.check), ["route-overlap", "route-overlap"]);
  assert.match(overlap[0].title, /10\.244\.128\.0\/17 via 192\.0\.2\.1 dev eth0/);
  assert.match(overlap[1].title, /eth0's address 10\.244\.200\.5\/24/);

  const hostgw = findingsOf({
    ...facts,
    routes: [...facts.routes, route("10.244.3.0/24", 2, { gateway: parseAddr("192.0.2.11") })],
  });
  assert.deepEqual(hostgw, [], "a host-gw route to one peer subnet is ours");
});

Deno.test("host checks: an unreadable firewall is a note, not a finding", () => {
  const results = hostChecks({
    facts: healthyFacts({ iptablesForward: undefined, nftForwardChains: undefined }),
  });
  assert.deepEqual(results.flatMap((r) => r.findings), []);
  assert.ok(results.some((r) => r.notes?.some((note) => /FORWARD not checked/.test(note))));
});

Deno.test("host checks: a missing subnet.env is a finding", () => {
  const findings = findingsOf(healthyFacts({
    subnetEnv: { path: "/run/flannel/subnet.env", error: "No such file or directory" },
  }));
  assert.deepEqual(findings.map((f) => f.check), ["subnet-env"]);
});

Deno.test("iptables-save and nft -j parsing", () => {
  const save = [
    "*filter",
    ":INPUT ACCEPT [0:0]",
    ":FORWARD DROP [0:0]",
    '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
    "-A FORWARD -j DROP",
    "COMMIT",
  ].join("\n");
  assert.deepEqual(parseIptablesForward(save), {
    policy: "DROP",
    jumpsToOurs: true,
    dropsBefore: [],
  });
  assert.deepEqual(
    parseIptablesForward(":FORWARD ACCEPT [0:0]\n-A FORWARD -j REJECT\n")?.dropsBefore,
    [
      "-A FORWARD -j REJECT",
    ],
  );
  assert.equal(parseIptablesForward("garbage"), undefined);
  const nft = JSON.stringify({
    nftables: [
      { metainfo: {} },
      {
        chain: {
          family: "inet",
          table: "filter",
          name: "forward",
          hook: "forward",
          policy: "drop",
        },
      },
      { chain: { family: "inet", table: "filter", name: "input", hook: "input", policy: "drop" } },
      { chain: { family: "ip", table: "t", name: "plain" } },
    ],
  });
  assert.deepEqual(parseNftForwardChains(nft), [
    { family: "inet", table: "filter", name: "forward", policy: "drop" },
  ]);
});
