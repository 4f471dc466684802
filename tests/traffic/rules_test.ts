import assert from "node:assert/strict";
import fc from "fast-check";
import type { NetworkConfig } from "../../config/network_config.ts";
import {
  type Family,
  type IPAddr,
  type IPNet,
  makeNet,
  netContains,
  parseAddr,
  parseNet,
} from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { renderIptablesRule } from "../../traffic/iptables.ts";
import { renderNftRule } from "../../traffic/nftables.ts";
import {
  buildRuleSet,
  forwardRules,
  masqueradeRules,
  MULTICAST,
  RuleSetError,
  type TrafficRule,
} from "../../traffic/rules.ts";

function familyConfig(network: string) {
  const net = parseNet(network);
  return {
    network: net,
    subnetLen: 24,
    subnetMin: parseAddr("0.0.0.0"),
    subnetMax: parseAddr("0.0.0.0"),
  };
}

const dualConfig: NetworkConfig = {
  ipv4: familyConfig("10.244.0.0/16"),
  ipv6: familyConfig("fd00:10:244::/56"),
  enableNFTables: false,
  backend: { type: "vxlan", options: {} },
};

const dualLease: Lease = {
  subnet: parseNet("10.244.1.0/24"),
  ipv6Subnet: parseNet("fd00:10:244:1::/64"),
  attrs: { publicIP: parseAddr("198.18.0.1") },
};

const allOn = { ipMasq: true, forwardRules: true, fullyRandom: true };

Deno.test("buildRuleSet: dual stack gives both families, IPv6 excludes ff00::/8", () => {
  const rules = buildRuleSet(dualConfig, dualLease, allOn);
  assert.equal(rules.ipv4.masquerade?.length, 6);
  assert.equal(rules.ipv4.forward?.length, 2);
  assert.equal(rules.ipv6.masquerade?.length, 6);
  assert.deepEqual(rules.ipv6.masquerade?.[4].destination, { net: MULTICAST[6], negated: true });
  assert.deepEqual(rules.ipv4.masquerade?.[4].destination, { net: MULTICAST[4], negated: true });
});

Deno.test("buildRuleSet: flags switch chains off, disabled family has none", () => {
  const v4only = { ...dualConfig, ipv6: undefined };
  const rules = buildRuleSet(v4only, dualLease, {
    ipMasq: false,
    forwardRules: true,
    fullyRandom: false,
  });
  assert.equal(rules.ipv4.masquerade, undefined);
  assert.equal(rules.ipv4.forward?.length, 2);
  assert.deepEqual(rules.ipv6, { family: 6 });
  const none = buildRuleSet(v4only, dualLease, {
    ipMasq: false,
    forwardRules: false,
    fullyRandom: false,
  });
  assert.deepEqual(none.ipv4, { family: 4, masquerade: undefined, forward: undefined });
});

Deno.test("buildRuleSet: enabled family without lease subnet or with the wrong family is a RuleSetError", () => {
  assert.throws(
    () => buildRuleSet(dualConfig, { ...dualLease, ipv6Subnet: undefined }, allOn),
    RuleSetError,
  );
  assert.throws(
    () => buildRuleSet(dualConfig, { ...dualLease, subnet: parseNet("fd00::/64") }, allOn),
    RuleSetError,
  );
});

// ---- semantics: both engines' renderings decide every packet the same way -------------------

interface Packet {
  readonly src: IPAddr;
  readonly dst: IPAddr;
  readonly mark: number;
}

type Decision = "return" | "accept" | "masquerade" | "none";

function inside(text: string, addr: IPAddr): boolean {
  return netContains(parseNet(text), addr);
}

/** First-match evaluation of `iptables-save` rule specs, written independently of the renderer. */
function evalIptables(lines: readonly string[], packet: Packet): Decision {
  for (const line of lines) {
    const tokens = line.match(/"[^"]*"|\S+/g) ?? [];
    let matches = true;
    let target: Decision = "none";
    for (let i = 0; i < tokens.length; i++) {
      const negated = tokens[i] === "!";
      if (negated) i++;
      const token = tokens[i];
      if (token === "-s" || token === "-d") {
        const hit = inside(tokens[++i], token === "-s" ? packet.src : packet.dst);
        if (hit === negated) matches = false;
      } else if (token === "--mark") {
        const [value, mask] = tokens[++i].split("/").map(Number);
        if ((packet.mark & mask) !== value) matches = false;
      } else if (token === "-j") {
        target = tokens[++i].toLowerCase() as Decision;
      }
    }
    if (matches) return target;
  }
  return "none";
}

/** First-match evaluation of nft rule text, written independently of the renderer. */
function evalNft(lines: readonly string[], packet: Packet): Decision {
  for (const line of lines) {
    const tokens = line.split(" ");
    let matches = true;
    let verdict: Decision = "none";
    for (let i = 0; i < tokens.length; i++) {
      const token = tokens[i];
      if (token === "saddr" || token === "daddr") {
        const negated = tokens[i + 1] === "!=";
        if (negated) i++;
        const hit = inside(tokens[++i], token === "saddr" ? packet.src : packet.dst);
        if (hit === negated) matches = false;
      } else if (token === "mark") {
        // meta mark & M == V
        const mask = Number(tokens[i + 2]);
        const value = Number(tokens[i + 4]);
        if ((packet.mark & mask) !== value) matches = false;
        i += 4;
      } else if (token === "return" || token === "accept" || token === "masquerade") {
        verdict = token;
      }
    }
    if (matches) return verdict;
  }
  return "none";
}

/** The spec's prose meaning of the masquerade chain (§7.1), with quirk 24 fixed. */
function intendedMasq(cluster: IPNet, own: IPNet, packet: Packet): Decision {
  const srcC = netContains(cluster, packet.src);
  const dstC = netContains(cluster, packet.dst);
  const srcS = netContains(own, packet.src);
  const dstS = netContains(own, packet.dst);
  if ((packet.mark & 0x4000) === 0x4000) return "return"; // kube-proxy's job
  if ((srcS && dstC) || (srcC && dstS)) return "return"; // pod ↔ overlay
  if (!srcC && dstS) return "return"; // arriving for local pods
  if (srcC && !netContains(MULTICAST[cluster.family], packet.dst)) return "masquerade"; // pod → out
  if (!srcC && dstC) return "masquerade"; // host → remote pods
  return "none";
}

const bitsFor = (family: Family) => (family === 4 ? 32 : 128);

const clusterArb = fc.constantFrom<Family>(4, 6).chain((family) => {
  const bits = bitsFor(family);
  return fc.record({
    family: fc.constant(family),
    base: fc.bigInt({ min: 0n, max: (1n << BigInt(bits)) - 1n }),
    prefix: fc.integer({ min: 4, max: bits - 2 }),
  }).chain(({ base, prefix }) => {
    const cluster = makeNet({ family, value: base }, prefix);
    return fc.record({
      cluster: fc.constant(cluster),
      own: fc.record({
        offset: fc.bigInt({ min: 0n, max: (1n << BigInt(bits - prefix)) - 1n }),
        len: fc.integer({ min: prefix + 1, max: bits }),
      }).map(({ offset, len }) => makeNet({ family, value: cluster.base + offset }, len)),
    });
  });
});

function addrIn(net: IPNet) {
  const size = 1n << BigInt(bitsFor(net.family) - net.prefix);
  return fc.bigInt({ min: 0n, max: size - 1n }).map((o): IPAddr => ({
    family: net.family,
    value: net.base + o,
  }));
}

function packetArb(cluster: IPNet, own: IPNet) {
  const anywhere = makeNet({ family: cluster.family, value: 0n }, 0);
  const addr = fc.oneof(
    addrIn(own),
    addrIn(cluster),
    addrIn(MULTICAST[cluster.family]),
    addrIn(anywhere),
  );
  const mark = fc.oneof(
    fc.constant(0),
    fc.constant(0x4000),
    fc.integer({ min: 0, max: 0xffffffff }),
  );
  return fc.record({ src: addr, dst: addr, mark });
}

Deno.test("property: iptables and nftables renderings decide every packet like the spec says", () => {
  fc.assert(
    fc.property(
      clusterArb.chain(({ cluster, own }) =>
        fc.tuple(
          fc.constant(cluster),
          fc.constant(own),
          fc.array(packetArb(cluster, own), { minLength: 20, maxLength: 20 }),
          fc.boolean(),
        )
      ),
      ([cluster, own, packets, fullyRandom]) => {
        const chains: Array<[TrafficRule[], string]> = [
          [masqueradeRules(cluster, own, fullyRandom), "flanneld masq"],
          [forwardRules(cluster), "flanneld forward"],
        ];
        for (const [rules, comment] of chains) {
          const ipt = rules.map((r) => renderIptablesRule(r, comment));
          const nft = rules.map((r) => renderNftRule(cluster.family, r));
          for (const packet of packets) {
            assert.equal(evalNft(nft, packet), evalIptables(ipt, packet));
          }
        }
        const masq = masqueradeRules(cluster, own, fullyRandom).map((r) =>
          renderNftRule(cluster.family, r)
        );
        for (const packet of packets) {
          assert.equal(evalNft(masq, packet), intendedMasq(cluster, own, packet));
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("semantics: host → remote pod is masqueraded by both engines (quirk 24 fixed)", () => {
  const cluster = parseNet("10.244.0.0/16");
  const own = parseNet("10.244.1.0/24");
  const packet = { src: parseAddr("198.18.0.1"), dst: parseAddr("10.244.2.5"), mark: 0 };
  const rules = masqueradeRules(cluster, own, false);
  assert.equal(evalNft(rules.map((r) => renderNftRule(4, r)), packet), "masquerade");
  assert.equal(
    evalIptables(rules.map((r) => renderIptablesRule(r, "flanneld masq")), packet),
    "masquerade",
  );
  // flannel's own fourth nft rule, `ip saddr != S ip daddr C return`, would have returned here.
  assert.equal(
    evalNft(["ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return"], packet),
    "return",
  );
});
