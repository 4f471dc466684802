/**
 * The daemon checks over admin API answers rendered from a hand-built state: each probe verdict
 * becomes the finding an operator needs (with the port to open, or the path MTU), one lost probe
 * is not yet a finding, a shared public IP explains its peers' probes, and the report exits 1
 * exactly when something was found.
 */
import assert from "node:assert/strict";
import { createApp } from "../../api/app.ts";
import { createMetrics } from "../../api/metrics.ts";
import { LeaseListSchema, PeersSchema, StatusSchema } from "../../api/schemas.ts";
import { daemonChecks, type DaemonView } from "../../doctor/daemon_checks.ts";
import { assembleReport, renderReport } from "../../doctor/finding.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import {
  newPeerProbeState,
  type PeerProbeState,
  recordAnswer,
  recordFailure,
} from "../../probe/peer_state.ts";
import { probeTargets } from "../../probe/targets.ts";
import { probingOffReport } from "../../probe/prober.ts";
import type { DaemonState } from "../../state.ts";
import { probeReport, readyState, vxlanLease } from "../api/fixture.ts";

/** Probe histories for the fixture's peers in `families`, each shaped by `shape`. */
function probed(
  state: DaemonState,
  shape: (peer: PeerProbeState) => void,
  families: readonly (4 | 6)[] = [4],
): void {
  const targets = families.flatMap((family) =>
    probeTargets(state.leases.values(), state.ownLease, "vxlan", family)
  );
  const peers = targets.map((target) => {
    const peer = newPeerProbeState(target);
    const at = new Date();
    recordAnswer(peer.underlay, 0.2, at);
    recordAnswer(peer.overlay!, 0.3, at);
    recordAnswer(peer.fullSize, 0.3, at);
    shape(peer);
    return peer;
  });
  const zero = { answered: 0, lost: 0, unsent: 0 };
  state.peerProbes = () => probeReport(peers, { underlay: zero, overlay: zero, fullSize: zero });
}

async function viewOf(state: DaemonState): Promise<DaemonView> {
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }));
  const get = async (path: string) => await (await app.request(path)).json();
  return {
    url: "http://test",
    status: StatusSchema.parse(await get("/v1/status")),
    leases: LeaseListSchema.parse(await get("/v1/leases")),
    peers: PeersSchema.parse(await get("/v1/peers")),
  };
}

const ENV = {
  path: "/run/flannel/subnet.env",
  gateway: { text: "10.244.1.1/24", net: parseNet("10.244.1.0/24") },
  mtu: 1450,
};

async function findings(state: DaemonState, pathMtu = new Map<string, number | undefined>()) {
  const results = daemonChecks({ view: await viewOf(state), subnetEnv: ENV, pathMtu });
  return { results, findings: results.flatMap((r) => r.findings) };
}

const fail = (path: { failureStreak: number } & object, times: number) => {
  for (let i = 0; i < times; i++) {
    recordFailure(path as never, "no reply within 1000 ms", new Date());
  }
};

Deno.test("daemon checks: all peers answer: healthy, exit 0", async () => {
  const state = readyState();
  probed(state, () => {});
  const { results, findings: found } = await findings(state);
  assert.deepEqual(found, []);
  const report = assembleReport("node-a", results);
  assert.equal(report.healthy, true);
  assert.match(renderReport(report), /^tartan doctor: healthy on node-a/);
});

Deno.test("daemon checks: the firewall signature names the peer and the port to open", async () => {
  const state = readyState();
  probed(state, (peer) => {
    if (peer.target.key === "10.244.2.0-24") fail(peer.overlay!, 1);
  });
  assert.deepEqual((await findings(state)).findings, [], "one lost probe is noise");
  probed(state, (peer) => {
    if (peer.target.key === "10.244.2.0-24") fail(peer.overlay!, 3);
  });
  const [finding, ...rest] = (await findings(state)).findings;
  assert.deepEqual(rest, []);
  assert.equal(finding.check, "peer-overlay");
  assert.equal(finding.evidence.publicIP, "198.18.0.2");
  assert.equal(finding.evidence.port, "udp/8472");
  assert.equal(finding.evidence.failures, "3");
  assert.match(
    finding.fix,
    /Allow UDP port 8472 \(vxlan\) between 198\.18\.0\.1 and 198\.18\.0\.2/,
  );
  state.leases.delete("10.244.2.0-24");
  assert.deepEqual((await findings(state)).findings, [], "its lease is gone: not a problem now");
  const text = renderReport(assembleReport("node-a", [{ check: "x", findings: [finding] }]));
  assert.match(text, /^✗ peer 10\.244\.2\.0\/24 \(198\.18\.0\.2\) answers on the underlay/m);
  assert.match(text, /^ {2}evidence: peer=10\.244\.2\.0\/24 publicIP=198\.18\.0\.2 /m);
  assert.match(text, /^ {2}fix: {6}Allow UDP port 8472/m);
});

Deno.test("daemon checks: unreachable peer; MTU black hole with the measured path MTU", async () => {
  const state = readyState();
  probed(state, (peer) => {
    if (peer.target.key === "10.244.2.0-24") {
      fail(peer.underlay, 2);
      fail(peer.overlay!, 2);
    }
    if (peer.target.key === "10.244.3.0-24") fail(peer.fullSize, 2);
  });
  const found = (await findings(state, new Map([["198.18.0.3", 1400]]))).findings;
  assert.deepEqual(found.map((f) => f.check), ["peer-unreachable", "path-mtu"]);
  assert.equal(found[1].evidence.underlayPathMtu, "1400");
  assert.match(found[1].fix, /lower the pods' MTU to 1350/);
});

Deno.test("daemon checks: a dual-stack peer's IPv6 black hole names IPv6's size and overhead", async () => {
  const state = readyState();
  const v4 = vxlanLease("10.244.9.0/24", "198.18.0.9");
  state.leases.set("10.244.9.0-24&2001:db8:244:9::-64", {
    ...v4,
    ipv6Subnet: parseNet("2001:db8:244:9::/64"),
    attrs: {
      ...v4.attrs,
      publicIPv6: parseAddr("2001:db8::9"),
      backendV6Data: v4.attrs.backendData,
    },
  });
  probed(state, (peer) => {
    if (peer.target.publicIP.family === 6) fail(peer.fullSize, 2);
  }, [4, 6]);
  const found = (await findings(state, new Map([["2001:db8::9", 1400]]))).findings;
  assert.deepEqual(found.map((f) => f.check), ["path-mtu"], JSON.stringify(found));
  assert.equal(found[0].evidence.publicIP, "2001:db8::9");
  assert.equal(found[0].evidence.probeBytes, "1430", "flannel-v6.1's MTU, not FLANNEL_MTU");
  assert.equal(found[0].evidence.encapsulationOverhead, "70");
  assert.match(found[0].fix, /carry 1500-byte packets/);
  assert.match(found[0].fix, /lower the pods' MTU to 1330/);
});

Deno.test("daemon checks: a shared public IP is one finding and explains its peers' probes", async () => {
  const state = readyState();
  state.leases.set("10.244.9.0-24", vxlanLease("10.244.9.0/24", "198.18.0.2"));
  probed(state, (peer) => {
    if (peer.target.key === "10.244.9.0-24") fail(peer.overlay!, 4);
  });
  const found = (await findings(state)).findings;
  assert.deepEqual(found.map((f) => f.check), ["duplicate-public-ip"]);
  assert.equal(found[0].evidence.publicIP, "198.18.0.2");
  assert.equal(found[0].evidence.subnets, "10.244.2.0/24,10.244.9.0/24");
});

Deno.test("daemon checks: a shared public IPv6 address is found too (IPv6-only leases)", async () => {
  const state = readyState();
  for (const n of [8, 9]) {
    state.leases.set(`0.0.0.0-0&2001:db8:244:${n}::-64`, {
      ipv6Subnet: parseNet(`2001:db8:244:${n}::/64`),
      attrs: { publicIP: parseAddr("0.0.0.0"), publicIPv6: parseAddr("2001:db8::8") },
    });
  }
  const found = (await findings(state)).findings;
  assert.deepEqual(found.map((f) => f.check), ["duplicate-public-ip"]);
  assert.equal(found[0].evidence.publicIP, "2001:db8::8");
  assert.equal(found[0].evidence.subnets, "2001:db8:244:8::/64,2001:db8:244:9::/64");
});

Deno.test("daemon checks: lease expired, subnet.env stale, probing impossible", async () => {
  const state = readyState();
  state.ownLease = vxlanLease("10.244.1.0/24", "198.18.0.1", -5000);
  const { findings: found, results } = await findings(state);
  assert.ok(found.some((f) => f.check === "daemon-ready" && /expired/.test(f.title)));
  assert.ok(found.some((f) => f.check === "lease-expiry"));
  assert.ok(results.some((r) => r.notes?.some((n) => /has not started yet/.test(n))));

  const moved = readyState();
  const stale = daemonChecks({
    view: await viewOf(moved),
    subnetEnv: { ...ENV, gateway: { text: "10.244.7.1/24", net: parseNet("10.244.7.0/24") } },
    pathMtu: new Map(),
  }).flatMap((r) => r.findings);
  assert.deepEqual(stale.map((f) => f.check), ["subnet-env"]);

  const denied = readyState();
  probed(denied, () => {});
  const report = denied.peerProbes!();
  denied.peerProbes = () => ({
    ...report,
    enabled: false,
    off: "permission",
    disabledReason: "raw socket EPERM",
  });
  const [finding] = (await findings(denied)).findings;
  assert.equal(finding.check, "peer-probes");
  assert.match(finding.fix, /CAP_NET_RAW/);
});

Deno.test("daemon checks: probing off by flag is a note; so are peers outside the probed family", async () => {
  const off = readyState();
  off.peerProbes = () => probingOffReport("flag", "off: flag");
  const { findings: none, results: offResults } = await findings(off);
  assert.deepEqual(none, []);
  assert.ok(offResults.some((r) => r.notes?.includes("peer probes: off: flag")));

  const state = readyState();
  state.leases.set("10.244.8.0-24", vxlanLease("10.244.8.0/24", "0.0.0.0"));
  probed(state, () => {});
  const { results } = await findings(state);
  assert.ok(
    results.some((r) => r.notes?.includes("1 peer(s) without a public IPv4 address not probed")),
  );
});
