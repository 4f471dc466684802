/**
 * The rolling schedule and the verdicts, without sockets: rounds never probe a peer more often
 * than the interval nor all peers faster than the cap, and each combination of path outcomes
 * maps to the verdict an operator needs.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import { planRound } from "../../probe/pacing.ts";
import {
  newPeerProbeState,
  type PathState,
  pathUp,
  type PeerProbeState,
  peerVerdict,
  recordAnswer,
  recordFailure,
} from "../../probe/peer_state.ts";
import { overlayAddress, probeTargets } from "../../probe/targets.ts";
import type { Lease } from "../../subnet/lease.ts";

Deno.test("pacing: 10 000 peers at 50/s make a 200 s round; few peers spread over the interval", () => {
  assert.deepEqual(planRound(10_000, { intervalMs: 60_000, maxPerSecond: 50 }), {
    spacingMs: 20,
    durationMs: 200_000,
  });
  assert.deepEqual(planRound(10, { intervalMs: 60_000, maxPerSecond: 50 }), {
    spacingMs: 6000,
    durationMs: 60_000,
  });
  assert.equal(
    planRound(0, { intervalMs: 60_000, maxPerSecond: 50 }).durationMs,
    1000,
    "no peers yet: look again after a second",
  );
  assert.throws(() => planRound(1, { intervalMs: 0, maxPerSecond: 50 }), RangeError);
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 100_000 }),
    fc.integer({ min: 1, max: 3_600_000 }),
    fc.integer({ min: 1, max: 10_000 }),
    (peers, intervalMs, maxPerSecond) => {
      const plan = planRound(peers, { intervalMs, maxPerSecond });
      assert.ok(plan.durationMs >= intervalMs, "each peer at most once per interval");
      assert.ok(plan.spacingMs >= 1000 / maxPerSecond - 1e-9, "never above the rate cap");
      assert.ok(plan.spacingMs * peers <= plan.durationMs + 1e-6, "the round fits");
    },
  ));
});

function lease(subnet: string, publicIP: string, v6?: { subnet: string; publicIP: string }): Lease {
  return {
    subnet: parseNet(subnet),
    ipv6Subnet: v6 && parseNet(v6.subnet),
    attrs: { publicIP: parseAddr(publicIP), publicIPv6: v6 && parseAddr(v6.publicIP) },
  };
}

Deno.test("targets: our own lease and peers without a public IPv4 are left out", () => {
  const own = lease("10.244.1.0/24", "198.18.0.11");
  const leases = [own, lease("10.244.2.0/24", "198.18.0.12"), lease("10.244.3.0/24", "0.0.0.0")];
  const targets = probeTargets(leases, own, "vxlan", 4);
  assert.equal(targets.length, 1);
  assert.equal(targets[0].key, "10.244.2.0-24");
  assert.deepEqual(targets[0].overlay, parseAddr("10.244.2.0"));
  assert.equal(overlayAddress("host-gw", own, 4), undefined, "host-gw has no tunnel address");
});

Deno.test("targets in IPv6: PublicIPv6 and the IPv6 subnet; peers without them are left out", () => {
  const v6 = (n: number) => ({ subnet: `2001:db8:244:${n}::/64`, publicIP: `2001:db8::${n}` });
  const own = lease("10.244.1.0/24", "0.0.0.0", v6(1));
  const leases = [
    own,
    lease("10.244.2.0/24", "0.0.0.0", v6(2)),
    lease("10.244.3.0/24", "198.18.0.13"),
  ];
  const targets = probeTargets(leases, own, "vxlan", 6);
  assert.deepEqual(targets.map((t) => t.key), ["10.244.2.0-24&2001:db8:244:2::-64"]);
  assert.deepEqual(targets[0].publicIP, parseAddr("2001:db8::2"));
  assert.deepEqual(targets[0].subnet, parseNet("2001:db8:244:2::/64"));
  assert.deepEqual(targets[0].overlay, parseAddr("2001:db8:244:2::"));
  assert.deepEqual(overlayAddress("vxlan", own, 6), parseAddr("2001:db8:244:1::"));
  assert.deepEqual(probeTargets(leases, own, "vxlan", 4).map((t) => t.key), ["10.244.3.0-24"]);
});

function peer(overlay: boolean): PeerProbeState {
  const target = probeTargets([lease("10.244.2.0/24", "198.18.0.12")], undefined, "vxlan", 4)[0];
  return newPeerProbeState(overlay ? target : { ...target, overlay: undefined });
}

Deno.test("verdicts: two lost probes make a path down; the firewall signature, a black hole", () => {
  const at = new Date();
  const lose = (path: PathState, times = 2) => {
    for (let i = 0; i < times; i++) recordFailure(path, "no reply", at);
  };
  const p = peer(true);
  assert.equal(peerVerdict(p), "pending");
  recordAnswer(p.underlay, 0.2, at);
  lose(p.overlay!, 1);
  assert.equal(peerVerdict(p), "pending", "one lost probe of a path never answered: not yet");
  lose(p.overlay!, 1);
  lose(p.fullSize);
  assert.equal(peerVerdict(p), "overlay-blocked");
  recordAnswer(p.overlay!, 0.3, at);
  assert.equal(peerVerdict(p), "mtu-black-hole");
  recordAnswer(p.fullSize, 0.3, at);
  assert.equal(peerVerdict(p), "ok");
  lose(p.overlay!, 1);
  assert.equal(peerVerdict(p), "ok", "one lost probe after answers is noise");
  assert.equal(pathUp(p.overlay!), true);
  lose(p.underlay);
  recordAnswer(p.overlay!, 0.3, at);
  assert.equal(peerVerdict(p), "underlay-unanswered");
  lose(p.overlay!);
  assert.equal(peerVerdict(p), "unreachable");
  assert.equal(p.overlay!.failureStreak, 2);

  const hostgw = peer(false);
  recordAnswer(hostgw.underlay, 0.2, at);
  assert.equal(peerVerdict(hostgw), "ok", "host-gw: the underlay is the pods' path");
  lose(hostgw.fullSize);
  assert.equal(peerVerdict(hostgw), "mtu-black-hole");
});
