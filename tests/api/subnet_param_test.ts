import assert from "node:assert/strict";
import fc from "fast-check";
import {
  leaseHasSubnets,
  leaseWithin,
  parseSubnetParam,
  SubnetParamError,
} from "../../api/subnet_param.ts";
import { formatNet, ipv4, makeNet, parseNet } from "../../ip/mod.ts";
import { vxlanLease } from "./fixture.ts";

Deno.test("parseSubnetParam reads keys and CIDRs of both families", () => {
  const text = (input: string) => parseSubnetParam(input).map(formatNet);
  assert.deepEqual(text("10.244.3.0-24"), ["10.244.3.0/24"]);
  assert.deepEqual(text("10.244.3.0/24"), ["10.244.3.0/24"]);
  assert.deepEqual(text("fc00:0:0:22::-64"), ["fc00:0:0:22::/64"]);
  assert.deepEqual(text("10.5.34.0-24&fc00:0:0:22::-64"), ["10.5.34.0/24", "fc00:0:0:22::/64"]);
  assert.deepEqual(text("0.0.0.0-0"), ["0.0.0.0/0"]);
});

Deno.test("parseSubnetParam rejects garbage with a SubnetParamError", () => {
  for (
    const input of [
      "",
      "10.244.3.0",
      "10.244.3.0-33",
      "10.244.3.0-24&10.244.4.0-24",
      "a&b&c",
      "10.244.3.0/24-1",
      "-24",
      "x".repeat(101),
    ]
  ) {
    assert.throws(() => parseSubnetParam(input), SubnetParamError, input);
  }
});

Deno.test("any string either parses or raises SubnetParamError", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 60 }), (input) => {
      try {
        parseSubnetParam(input);
      } catch (err) {
        assert.ok(err instanceof SubnetParamError, String(err));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("key form and CIDR form of the same IPv4 network parse alike", () => {
  fc.assert(
    fc.property(fc.nat(0xffffffff), fc.integer({ min: 0, max: 32 }), (value, prefix) => {
      const cidr = formatNet(makeNet(ipv4(value), prefix));
      const key = cidr.replace("/", "-");
      assert.deepEqual(parseSubnetParam(key), parseSubnetParam(cidr));
      assert.equal(formatNet(parseSubnetParam(key)[0]), cidr);
    }),
  );
});

Deno.test("lease matching: exact for lookup, containment for filters", () => {
  const lease = { ...vxlanLease("10.244.4.0/24", "198.18.0.4"), ipv6Subnet: parseNet("fc00::/64") };
  assert.ok(leaseHasSubnets(lease, [parseNet("10.244.4.0/24")]));
  assert.ok(leaseHasSubnets(lease, [parseNet("10.244.4.0/24"), parseNet("fc00::/64")]));
  assert.ok(!leaseHasSubnets(lease, [parseNet("10.244.4.0/25")]));
  assert.ok(leaseWithin(lease, [parseNet("10.244.0.0/16")]));
  assert.ok(leaseWithin(lease, [parseNet("fc00::/8")]));
  assert.ok(!leaseWithin(lease, [parseNet("10.244.4.0/25")]));
  const v4only = vxlanLease("10.244.5.0/24", "198.18.0.5");
  assert.ok(!leaseWithin(v4only, [parseNet("::/0")]));
});
