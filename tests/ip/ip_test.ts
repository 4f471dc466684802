import assert from "node:assert/strict";
import fc from "fast-check";
import {
  addrFromBytes,
  addrToBytes,
  countSubnets,
  enumerateSubnets,
  formatAddr,
  formatNet,
  IPParseError,
  makeNet,
  netContains,
  netContainsNet,
  netOverlaps,
  nextSubnet,
  nthSubnet,
  parseAddr,
  parseNet,
} from "../../ip/mod.ts";

// Reference model: addresses as arrays of bits, written independently of the bigint code.
const v4Octets = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255));
const v6Groups = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 });

function bitsFromBytes(bytes: number[]): number[] {
  return bytes.flatMap((b) => [...Array(8)].map((_, i) => (b >> (7 - i)) & 1));
}

function groupsToBytes(groups: number[]): number[] {
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

Deno.test("IPv4 text round-trips and matches the dotted-quad model", () => {
  fc.assert(fc.property(v4Octets, (octets) => {
    const text = octets.join(".");
    const addr = parseAddr(text);
    assert.equal(addr.family, 4);
    assert.equal(formatAddr(addr), text);
    assert.deepEqual([...addrToBytes(addr)], octets);
  }));
});

Deno.test("IPv6 uncompressed text parses to the same bytes, formatting round-trips", () => {
  fc.assert(fc.property(v6Groups, (groups) => {
    const addr = parseAddr(groups.map((g) => g.toString(16)).join(":"));
    assert.deepEqual([...addrToBytes(addr)], groupsToBytes(groups));
    assert.deepEqual(parseAddr(formatAddr(addr)), addr);
    assert.deepEqual(addrFromBytes(addrToBytes(addr)), addr);
  }));
});

Deno.test("IPv6 formatting follows RFC 5952 on the spec's examples", () => {
  const cases: Array<[string, string]> = [
    ["fc00:0000:0000:0022:0000:0000:0000:0000", "fc00:0:0:22::"],
    ["2001:CAFE:42:0:0:0:0:1", "2001:cafe:42::1"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:1:0:0:0:1", "1:0:0:1::1"], // the longest zero run wins
    ["1:0:0:1:0:0:1:1", "1::1:0:0:1:1"], // on a tie, the first run
    ["1:0:1:1:1:1:1:1", "1:0:1:1:1:1:1:1"], // a single zero group is not compressed
    ["::ffff:1.2.3.4", "::ffff:102:304"],
  ];
  for (const [input, expected] of cases) assert.equal(formatAddr(parseAddr(input)), expected);
});

Deno.test("malformed addresses and CIDRs raise IPParseError", () => {
  const bad = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.-1",
    "a.b.c.d",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "12345::",
    "::g",
    "1:2:3:4:5:6:7::8:9",
    " 1.2.3.4",
  ];
  for (const text of bad) assert.throws(() => parseAddr(text), IPParseError, text);
  for (const text of ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/", "::/129", "x/8"]) {
    assert.throws(() => parseNet(text), IPParseError, text);
  }
});

Deno.test("arbitrary strings either parse to a canonical address or raise IPParseError", () => {
  fc.assert(fc.property(fc.string(), (text) => {
    try {
      parseAddr(text);
    } catch (e) {
      assert.ok(e instanceof IPParseError);
    }
    try {
      parseNet(text);
    } catch (e) {
      assert.ok(e instanceof IPParseError);
    }
  }));
});

Deno.test("parseNet clears host bits like flannel", () => {
  assert.equal(formatNet(parseNet("10.5.3.7/16")), "10.5.0.0/16");
  assert.equal(formatNet(parseNet("fc00::22:1/64")), "fc00::/64");
  assert.equal(formatNet(parseNet("0.0.0.0/0")), "0.0.0.0/0");
});

Deno.test("containment and overlap agree with a bitwise model", () => {
  fc.assert(fc.property(v4Octets, fc.nat(32), v4Octets, fc.nat(32), (a, pa, b, pb) => {
    const na = makeNet(parseAddr(a.join(".")), pa);
    const nb = makeNet(parseAddr(b.join(".")), pb);
    const bitsA = bitsFromBytes(a);
    const bitsB = bitsFromBytes(b);
    const shorter = Math.min(pa, pb);
    const overlapModel = bitsA.slice(0, shorter).join("") === bitsB.slice(0, shorter).join("");
    assert.equal(netOverlaps(na, nb), overlapModel);
    const containsModel = bitsA.slice(0, pa).join("") === bitsB.slice(0, pa).join("");
    assert.equal(netContains(na, parseAddr(b.join("."))), containsModel);
    assert.equal(netContainsNet(na, nb), containsModel && pb >= pa);
  }));
});

Deno.test("nthSubnet, nextSubnet and enumerateSubnets agree", () => {
  fc.assert(fc.property(v4Octets, fc.integer({ min: 8, max: 28 }), fc.nat(4), (o, p, extra) => {
    const net = makeNet(parseAddr(o.join(".")), p);
    const len = Math.min(32, p + 1 + extra);
    const count = 1n << BigInt(len - p);
    const first = nthSubnet(net, len, 0n);
    const last = nthSubnet(net, len, count - 1n);
    const listed = [...enumerateSubnets({ family: 4, value: first.base }, {
      family: 4,
      value: last.base,
    }, len)];
    assert.equal(BigInt(listed.length), count); // at most 2^5 subnets here
    listed.forEach((s, i) => assert.deepEqual(s, nthSubnet(net, len, BigInt(i))));
    for (let i = 1; i < listed.length; i++) assert.deepEqual(nextSubnet(listed[i - 1]), listed[i]);
    assert.equal(
      countSubnets({ family: 4, value: first.base }, { family: 4, value: last.base }, len),
      count,
    );
    assert.throws(() => nthSubnet(net, len, count), RangeError);
  }));
});

Deno.test("enumeration stops at the end of the address space instead of wrapping", () => {
  const min = parseAddr("255.255.255.0");
  const max = parseAddr("255.255.255.255");
  assert.deepEqual([...enumerateSubnets(min, max, 24)].map(formatNet), ["255.255.255.0/24"]);
  assert.equal(nextSubnet(parseNet("255.255.255.0/24")), undefined);
  const v6 = [...enumerateSubnets(parseAddr("fc00::"), parseAddr("fc00:0:0:3::"), 64)];
  assert.deepEqual(v6.map(formatNet), [
    "fc00::/64",
    "fc00:0:0:1::/64",
    "fc00:0:0:2::/64",
    "fc00:0:0:3::/64",
  ]);
  assert.equal(countSubnets(parseAddr("10.5.1.0"), parseAddr("10.5.255.0"), 24), 255n);
  assert.equal(countSubnets(parseAddr("10.5.9.0"), parseAddr("10.5.1.0"), 24), 0n);
});
