import assert from "node:assert/strict";
import fc from "fast-check";
import { formatAddr, formatNet, type IPNet, parseAddr, parseNet } from "../../ip/mod.ts";
import {
  attrsEqual,
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  formatLeaseKey,
  type JsonValue,
  type LeaseAttrs,
  LeaseKeyError,
  type LeaseSubnets,
  LeaseValueError,
  parseLeaseKey,
  rangesInKeyName,
} from "../../subnet/lease.ts";

// --- key codec -------------------------------------------------------------------------------

Deno.test("lease keys are flannel's (conformance 2, 3)", () => {
  assert.equal(formatLeaseKey({ subnet: parseNet("10.5.34.0/24") }), "10.5.34.0-24");
  assert.equal(
    formatLeaseKey({ subnet: parseNet("10.5.34.0/24"), ipv6Subnet: parseNet("fc00:0:0:22::/64") }),
    "10.5.34.0-24&fc00:0:0:22::-64",
  );
  assert.equal(
    formatLeaseKey({ ipv6Subnet: parseNet("fc00:0:0:22::/64") }),
    "0.0.0.0-0&fc00:0:0:22::-64",
  );
  const dual = parseLeaseKey("10.5.34.0-24&fc00:0:0:22::-64");
  assert.equal(formatNet(dual.subnet!), "10.5.34.0/24");
  assert.equal(formatNet(dual.ipv6Subnet!), "fc00:0:0:22::/64");
  const v6only = parseLeaseKey("0.0.0.0-0&fc00:0:0:22::-64");
  assert.equal(v6only.subnet, undefined);
  assert.equal(formatNet(v6only.ipv6Subnet!), "fc00:0:0:22::/64");
  assert.deepEqual(Object.keys(parseLeaseKey("10.5.34.0-24")), ["subnet"]);
});

Deno.test("lease key parsing is strict", () => {
  for (
    const bad of [
      "",
      "10.5.34.0-32", // flannel's pattern stops at /31
      "10.5.34.0-24&fc00::-128",
      "10.5.34.7-24", // host bits set
      "10.5.34.0-024",
      "010.5.34.0-24",
      "10.5.34.0/24",
      "10.5.34.0-24 ",
      "x10.5.34.0-24",
      "10.5.34.0-24.bak",
      "10.5.256.0-24",
      "10a5.34.0-24",
      "10.5.34.0-24&FC00::-64", // flannel's pattern is lower-case only
      "10.5.34.0-24&fc00:0000::-64", // not canonical
      "10.5.34.0-24&fc00::1-64",
      "10.5.34.0-24&1.2.3.4-24",
      "0.0.0.0-0",
      "10.5.34.0-24&",
    ]
  ) {
    assert.throws(() => parseLeaseKey(bad), LeaseKeyError, bad);
  }
  assert.throws(() => formatLeaseKey({}), LeaseKeyError);
  assert.throws(() => formatLeaseKey({ subnet: parseNet("10.0.0.0/32") }), LeaseKeyError);
  assert.throws(() => formatLeaseKey({ subnet: parseNet("0.0.0.0/0") }), LeaseKeyError);
  assert.throws(() => formatLeaseKey({ subnet: parseNet("fc00::/64") }), LeaseKeyError);
});

const v4Subnet: fc.Arbitrary<IPNet> = fc.tuple(fc.nat(0xffffffff), fc.integer({ min: 1, max: 31 }))
  .map(([value, prefix]) =>
    parseNet(`${formatAddr({ family: 4, value: BigInt(value) })}/${prefix}`)
  );
const v6Subnet: fc.Arbitrary<IPNet> = fc.tuple(
  fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }),
  fc.nat(127),
)
  .map(([value, prefix]) => parseNet(`${formatAddr({ family: 6, value })}/${prefix}`));

Deno.test("lease keys round-trip (property)", () => {
  const subnets: fc.Arbitrary<LeaseSubnets> = fc.oneof(
    v4Subnet.map((subnet) => ({ subnet })),
    v6Subnet.map((ipv6Subnet) => ({ ipv6Subnet })),
    fc.tuple(v4Subnet, v6Subnet).map(([subnet, ipv6Subnet]) => ({ subnet, ipv6Subnet })),
  );
  fc.assert(fc.property(subnets, (s) => {
    const key = formatLeaseKey(s);
    assert.deepEqual(parseLeaseKey(key), s);
    // What allocation reads out of a key name is exactly its subnets (a /0 blocks nothing).
    const expected = [s.subnet, s.ipv6Subnet].filter((n) => n && n.prefix > 0);
    assert.deepEqual(rangesInKeyName(key), expected);
  }));
});

Deno.test("garbage key names only ever raise LeaseKeyError", () => {
  const alphabet = fc.constantFrom(..."0123456789.-&:abcdefABCDEF/ x\u00e9".split(""));
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.string({ unit: alphabet })), (name) => {
      try {
        const parsed = parseLeaseKey(name);
        assert.equal(formatLeaseKey(parsed), name); // whatever parses is canonical
      } catch (error) {
        assert.ok(error instanceof LeaseKeyError, String(error));
      }
      rangesInKeyName(name); // never throws
    }),
    { numRuns: 2000 },
  );
});

Deno.test("ranges are read out of malformed key names (quirk 2)", () => {
  const texts = (name: string) => rangesInKeyName(name).map(formatNet);
  assert.deepEqual(texts("10.5.34.0-24.bak"), ["10.5.34.0/24"]);
  assert.deepEqual(texts("old-10.5.34.7-24"), ["10.5.34.0/24"]);
  assert.deepEqual(texts("10.5.34.0-32"), ["10.5.34.0/32"]);
  assert.deepEqual(texts("10.5.34.0-24&FC00::-64"), ["10.5.34.0/24", "fc00::/64"]);
  assert.deepEqual(texts("0.0.0.0-0&fc00:0:0:22::-64"), ["fc00:0:0:22::/64"]);
  assert.deepEqual(texts("nothing-here"), []);
});

// --- value codec -----------------------------------------------------------------------------

Deno.test("lease values are byte-exact with flannel (conformance 4, 5, spec §3.3)", () => {
  assert.equal(
    encodeLeaseAttrs({
      publicIP: parseAddr("192.168.64.3"),
      backendType: "vxlan",
      backendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
    }),
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  );
  assert.equal(
    encodeLeaseAttrs({ publicIP: parseAddr("1.2.3.4") }),
    '{"PublicIP":"1.2.3.4","PublicIPv6":null}',
  );
  assert.equal(
    encodeLeaseAttrs({ publicIP: parseAddr("1.2.3.4"), backendType: "host-gw" }),
    '{"PublicIP":"1.2.3.4","PublicIPv6":null,"BackendType":"host-gw"}',
  );
  assert.equal(
    encodeLeaseAttrs({
      publicIP: parseAddr("10.0.0.5"),
      publicIPv6: parseAddr("fd00::5"),
      backendType: "host-gw",
    }),
    '{"PublicIP":"10.0.0.5","PublicIPv6":"fd00::5","BackendType":"host-gw"}',
  );
  assert.equal(
    encodeLeaseAttrs({
      publicIP: parseAddr("0.0.0.0"),
      publicIPv6: parseAddr("2001:cafe:42::1"),
      backendType: "wireguard",
      backendData: { PublicKey: "a+b/c=", Port: 51820 },
      backendV6Data: { PublicKey: "d<e>&", Port: 51821 },
    }),
    '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:cafe:42::1","BackendType":"wireguard",' +
      '"BackendData":{"PublicKey":"a+b/c=","Port":51820},' +
      // Go's encoder escapes <, > and & inside strings.
      '"BackendV6Data":{"PublicKey":"d\\u003ce\\u003e\\u0026","Port":51821}}',
  );
  // An empty BackendType is omitted, like Go's omitempty.
  assert.equal(
    encodeLeaseAttrs({ publicIP: parseAddr("1.2.3.4"), backendType: "" }),
    '{"PublicIP":"1.2.3.4","PublicIPv6":null}',
  );
  assert.throws(() => encodeLeaseAttrs({ publicIP: parseAddr("fd00::1") }), LeaseValueError);
});

Deno.test("lease values are read tolerantly", () => {
  const read = decodeLeaseAttrs(
    '{"publicip":"1.2.3.4","PUBLICIPV6":"FD00::0005","backendtype":"vxlan",' +
      '"backendData":{"VNI":1},"Extra":[1,2],"BackendV6Data":null}',
  );
  assert.equal(formatAddr(read.publicIP), "1.2.3.4");
  assert.equal(formatAddr(read.publicIPv6!), "fd00::5");
  assert.equal(read.backendType, "vxlan");
  assert.deepEqual(read.backendData, { VNI: 1 });
  assert.equal(read.backendV6Data, null);
  // Last spelling wins; absent PublicIP reads as 0.0.0.0; null PublicIPv6 is none.
  const last = decodeLeaseAttrs('{"PublicIP":"1.1.1.1","publicIP":"2.2.2.2"}');
  assert.equal(formatAddr(last.publicIP), "2.2.2.2");
  const bare = decodeLeaseAttrs('{"PublicIPv6":null,"BackendType":null}');
  assert.deepEqual(bare, { publicIP: parseAddr("0.0.0.0") });
  // What flannel writes decodes and re-encodes to the same bytes.
  const flannel =
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
  assert.equal(encodeLeaseAttrs(decodeLeaseAttrs(flannel)), flannel);
});

Deno.test("bad lease values raise LeaseValueError", () => {
  for (
    const bad of [
      "",
      "not json",
      "null",
      "[]",
      '"1.2.3.4"',
      '{"PublicIP":null}',
      '{"PublicIP":"fd00::1"}',
      '{"PublicIP":"1.2.3"}',
      '{"PublicIP":"01.2.3.4"}',
      '{"PublicIP":1234}',
      '{"PublicIP":"1.2.3.4","PublicIPv6":"1.2.3.4"}',
      '{"PublicIP":"1.2.3.4","PublicIPv6":7}',
      '{"PublicIP":"1.2.3.4","BackendType":5}',
    ]
  ) {
    assert.throws(() => decodeLeaseAttrs(bad), LeaseValueError, bad);
  }
});

/** JSON as it comes back from a parse (fast-check's type allows undefined members). */
const json: fc.Arbitrary<JsonValue> = fc.jsonValue().map((v) => JSON.parse(JSON.stringify(v)));

const attrsArb: fc.Arbitrary<LeaseAttrs> = fc.record({
  publicIP: fc.nat(0xffffffff).map((v) => ({ family: 4 as const, value: BigInt(v) })),
  publicIPv6: fc.option(
    fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }).map((value) => ({ family: 6 as const, value })),
    { nil: undefined },
  ),
  backendType: fc.option(fc.string({ minLength: 1 }), { nil: undefined }),
  backendData: fc.option(json, { nil: undefined }),
  backendV6Data: fc.option(json, { nil: undefined }),
}, { requiredKeys: ["publicIP"] });

Deno.test("lease values round-trip (property)", () => {
  fc.assert(fc.property(attrsArb, (attrs) => {
    const text = encodeLeaseAttrs(attrs);
    const back = decodeLeaseAttrs(text);
    assert.ok(attrsEqual(back, attrs), text);
    assert.equal(encodeLeaseAttrs(back), text);
    assert.ok(!text.includes("\n") && !/[<>&]/.test(text));
  }));
});

Deno.test("garbage lease values only ever raise LeaseValueError", () => {
  const member = fc.constantFrom("PublicIP", "publicipv6", "BackendType", "BackendData", "x");
  const fuzzObject = fc.dictionary(member, fc.jsonValue()).map((o) => JSON.stringify(o));
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fuzzObject), (text) => {
      try {
        const attrs = decodeLeaseAttrs(text);
        assert.equal(attrs.publicIP.family, 4);
        encodeLeaseAttrs(attrs);
      } catch (error) {
        assert.ok(error instanceof LeaseValueError, String(error));
      }
    }),
    { numRuns: 3000 },
  );
});
