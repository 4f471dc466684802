import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BACKEND_TYPES,
  ConfigError,
  netConfigToJSON,
  type NetConfMode,
  parseNetConfig,
} from "../../config/netconf.ts";
import type { FamilyConfig } from "../../config/network_config.ts";
import {
  countSubnets,
  enumerateSubnets,
  formatAddr,
  formatNet,
  netContains,
  netContainsNet,
  parseNet,
  prefixMask,
} from "../../ip/mod.ts";

function parse(doc: unknown, mode: NetConfMode = "etcd") {
  return parseNetConfig(typeof doc === "string" ? doc : JSON.stringify(doc), mode);
}

/** The family as text, for readable assertions. */
function shown(family: FamilyConfig | undefined) {
  assert.ok(family, "family missing");
  return {
    network: formatNet(family.network),
    subnetLen: family.subnetLen,
    subnetMin: formatAddr(family.subnetMin),
    subnetMax: formatAddr(family.subnetMax),
  };
}

function rejection(doc: unknown, mode: NetConfMode = "etcd"): ConfigError {
  try {
    parse(doc, mode);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail(`accepted ${JSON.stringify(doc)}`);
}

function rejects(doc: unknown, field: string, message: string, mode: NetConfMode = "etcd") {
  const err = rejection(doc, mode);
  assert.equal(err.field, field, JSON.stringify(doc));
  assert.equal(err.message, message, JSON.stringify(doc));
}

const VXLAN = { Type: "vxlan" };

Deno.test("netconf: the typical config", () => {
  const { config, warnings } = parse({ Network: "10.5.0.0/16", Backend: VXLAN });
  assert.deepEqual(shown(config.ipv4), {
    network: "10.5.0.0/16",
    subnetLen: 24,
    subnetMin: "10.5.1.0",
    subnetMax: "10.5.255.0",
  });
  assert.equal(config.ipv6, undefined);
  assert.equal(config.enableNFTables, false);
  assert.deepEqual(config.backend, { type: "vxlan", options: {} });
  assert.deepEqual(warnings, []);
});

Deno.test("netconf: conformance 8, /16 gives /24s from 10.5.1.0 to 10.5.255.0", () => {
  const v4 = parse({ Network: "10.5.0.0/16" }).config.ipv4!;
  const subnets = [...enumerateSubnets(v4.subnetMin, v4.subnetMax, v4.subnetLen)];
  assert.equal(subnets.length, 255);
  assert.equal(formatNet(subnets[0]), "10.5.1.0/24");
  assert.equal(formatNet(subnets.at(-1)!), "10.5.255.0/24");
  assert.ok(subnets.every((s) => s.prefix === 24 && netContainsNet(v4.network, s)));
  assert.ok(!subnets.some((s) => formatNet(s) === "10.5.0.0/24"));
});

Deno.test("netconf: conformance 9, /25 gives /27; /29 without SubnetLen is rejected", () => {
  assert.equal(parse({ Network: "10.5.0.0/25" }).config.ipv4!.subnetLen, 27);
  rejects(
    { Network: "10.5.0.0/29" },
    "Network",
    "Network: network is too small. Minimum useful network prefix is /28",
  );
});

Deno.test("netconf: derived IPv4 SubnetLen, SubnetMin and SubnetMax (§2.3)", () => {
  const cases: [string, number, string, string][] = [
    ["10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"],
    ["10.4.0.0/22", 24, "10.4.1.0", "10.4.3.0"],
    ["10.4.0.0/23", 25, "10.4.0.128", "10.4.1.128"],
    ["10.4.0.0/26", 28, "10.4.0.16", "10.4.0.48"],
    ["10.4.0.16/28", 30, "10.4.0.20", "10.4.0.28"],
    ["255.0.0.0/8", 24, "255.0.1.0", "255.255.255.0"],
  ];
  for (const [network, subnetLen, subnetMin, subnetMax] of cases) {
    assert.deepEqual(shown(parse({ Network: network }).config.ipv4), {
      network,
      subnetLen,
      subnetMin,
      subnetMax,
    });
  }
});

Deno.test("netconf: host bits of Network and IPv6Network are masked", () => {
  const { config } = parse({
    Network: "10.5.3.7/16",
    EnableIPv6: true,
    IPv6Network: "fc00::1:2:3/48",
  });
  assert.equal(formatNet(config.ipv4!.network), "10.5.0.0/16");
  assert.equal(formatNet(config.ipv6!.network), "fc00::/48");
});

Deno.test("netconf: explicit SubnetLen, SubnetMin and SubnetMax are kept", () => {
  const { config } = parse({
    Network: "10.5.0.0/16",
    SubnetLen: 26,
    SubnetMin: "10.5.8.0",
    SubnetMax: "10.5.9.192",
  });
  assert.deepEqual(shown(config.ipv4), {
    network: "10.5.0.0/16",
    subnetLen: 26,
    subnetMin: "10.5.8.0",
    subnetMax: "10.5.9.192",
  });
});

Deno.test("netconf: a zero SubnetMin/SubnetMax counts as absent", () => {
  const zero = parse({ Network: "10.5.0.0/16", SubnetMin: "0.0.0.0", SubnetMax: "0.0.0.0" });
  assert.equal(formatAddr(zero.config.ipv4!.subnetMin), "10.5.1.0");
  assert.equal(formatAddr(zero.config.ipv4!.subnetMax), "10.5.255.0");
  const v6zero = parse({
    EnableIPv4: false,
    EnableIPv6: true,
    IPv6Network: "fc00::/48",
    IPv6SubnetMin: "::",
    IPv6SubnetMax: "::",
  });
  assert.equal(formatAddr(v6zero.config.ipv6!.subnetMin), "fc00:0:0:1::");
});

Deno.test("netconf: SubnetMin above SubnetMax is an error in etcd mode (flannel allocates none)", () => {
  const inverted = { Network: "10.5.0.0/16", SubnetMin: "10.5.9.0", SubnetMax: "10.5.3.0" };
  rejects(
    inverted,
    "SubnetMin",
    "SubnetMin: SubnetMin 10.5.9.0 is above SubnetMax 10.5.3.0: no subnet could ever be allocated",
  );
  // Only one given: the other is derived, and must still not be passed.
  rejects(
    { Network: "10.5.0.0/16", SubnetMax: "10.5.0.0" },
    "SubnetMin",
    "SubnetMin: SubnetMin 10.5.1.0 is above SubnetMax 10.5.0.0: no subnet could ever be allocated",
  );
  rejects(
    {
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: "fc00::/48",
      IPv6SubnetMin: "fc00:0:0:9::",
      IPv6SubnetMax: "fc00:0:0:3::",
    },
    "IPv6SubnetMin",
    "IPv6SubnetMin: IPv6SubnetMin fc00:0:0:9:: is above IPv6SubnetMax fc00:0:0:3::: " +
      "no subnet could ever be allocated",
  );
  // Equal bounds leave exactly one subnet; kube mode does not use them at all.
  const single = parse({ Network: "10.5.0.0/16", SubnetMin: "10.5.3.0", SubnetMax: "10.5.3.0" });
  const v4 = single.config.ipv4!;
  assert.equal(countSubnets(v4.subnetMin, v4.subnetMax, v4.subnetLen), 1n);
  assert.equal(parse(inverted, "kube").config.ipv4!.subnetLen, 24);
});

Deno.test("netconf: IPv4 validation rules with flannel's texts (§2.4)", () => {
  rejects(
    {},
    "Network",
    "Network: please define a correct Network parameter in the flannel config",
  );
  rejects(
    { Network: "0.0.0.0/0" },
    "Network",
    "Network: please define a correct Network parameter in the flannel config",
  );
  rejects(
    { Network: "" },
    "Network",
    "Network: please define a correct Network parameter in the flannel config",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetLen: 31 },
    "SubnetLen",
    "SubnetLen: SubnetLen must be less than /31",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetLen: 17 },
    "SubnetLen",
    "SubnetLen: network must be able to accommodate at least four subnets",
  );
  assert.equal(parse({ Network: "10.5.0.0/16", SubnetLen: 18 }).config.ipv4!.subnetLen, 18);
  assert.equal(parse({ Network: "10.5.0.0/28", SubnetLen: 30 }).config.ipv4!.subnetLen, 30);
  rejects(
    { Network: "10.5.0.0/29", SubnetLen: 30 },
    "SubnetLen",
    "SubnetLen: network must be able to accommodate at least four subnets",
  );
  rejects(
    { Network: "10.5.0.0/29", SubnetLen: 31 },
    "SubnetLen",
    "SubnetLen: SubnetLen must be less than /31",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetMin: "10.6.1.0" },
    "SubnetMin",
    "SubnetMin: SubnetMin is not in the range of the Network",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetMax: "10.4.255.0" },
    "SubnetMax",
    "SubnetMax: SubnetMax is not in the range of the Network",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetMin: "10.5.1.1" },
    "SubnetMin",
    "SubnetMin: SubnetMin is not on a SubnetLen boundary: 10.5.1.1",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetLen: 25, SubnetMax: "10.5.3.64" },
    "SubnetMax",
    "SubnetMax: SubnetMax is not on a SubnetLen boundary: 10.5.3.64",
  );
  // flannel's order: both range checks come before the boundary checks.
  rejects(
    { Network: "10.5.0.0/16", SubnetMin: "10.5.1.1", SubnetMax: "10.9.0.0" },
    "SubnetMax",
    "SubnetMax: SubnetMax is not in the range of the Network",
  );
});

Deno.test("netconf: IPv6 defaults and validation rules (§2.3, §2.4)", () => {
  const v6 = (extra: Record<string, unknown>) => ({
    EnableIPv6: true,
    EnableIPv4: false,
    ...extra,
  });
  const cases: [string, number, string, string][] = [
    ["fc00::/48", 64, "fc00:0:0:1::", "fc00:0:0:ffff::"],
    ["fc00::/62", 64, "fc00:0:0:1::", "fc00:0:0:3::"],
    ["fc00::/63", 65, "fc00::8000:0:0:0", "fc00:0:0:1:8000::"],
    ["fc00::/124", 126, "fc00::4", "fc00::c"],
  ];
  for (const [network, subnetLen, subnetMin, subnetMax] of cases) {
    assert.deepEqual(shown(parse(v6({ IPv6Network: network })).config.ipv6), {
      network,
      subnetLen,
      subnetMin,
      subnetMax,
    });
  }
  rejects(
    v6({}),
    "IPv6Network",
    "IPv6Network: please define a correct IPv6Network parameter in the flannel config",
  );
  rejects(
    v6({ IPv6Network: "::/0" }),
    "IPv6Network",
    "IPv6Network: please define a correct IPv6Network parameter in the flannel config",
  );
  rejects(
    v6({ IPv6Network: "fc00::/48", IPv6SubnetLen: 127 }),
    "IPv6SubnetLen",
    "IPv6SubnetLen: SubnetLen must be less than /127",
  );
  assert.equal(
    parse(v6({ IPv6Network: "fc00::/120", IPv6SubnetLen: 126 })).config.ipv6!.subnetLen,
    126,
  );
  rejects(
    v6({ IPv6Network: "fc00::/48", IPv6SubnetLen: 49 }),
    "IPv6SubnetLen",
    "IPv6SubnetLen: network must be able to accommodate at least four subnets",
  );
  rejects(
    v6({ IPv6Network: "fc00::/125" }),
    "IPv6Network",
    "IPv6Network: IPv6Network is too small. Minimum useful network prefix is /124",
  );
  rejects(
    v6({ IPv6Network: "fc00::/48", IPv6SubnetMin: "fc01::" }),
    "IPv6SubnetMin",
    "IPv6SubnetMin: IPv6SubnetMin is not in the range of the IPv6Network",
  );
  rejects(
    v6({ IPv6Network: "fc00::/48", IPv6SubnetMax: "fd00::" }),
    "IPv6SubnetMax",
    "IPv6SubnetMax: IPv6SubnetMax is not in the range of the IPv6Network",
  );
  rejects(
    v6({ IPv6Network: "fc00::/48", IPv6SubnetMin: "fc00:0:0:1::1" }),
    "IPv6SubnetMin",
    "IPv6SubnetMin: IPv6SubnetMin is not on a SubnetLen boundary: fc00:0:0:1::1",
  );
  rejects(
    v6({ IPv6Network: "fc00::/48", IPv6SubnetMax: "fc00:0:0:2:1::" }),
    "IPv6SubnetMax",
    "IPv6SubnetMax: IPv6SubnetMax is not on a SubnetLen boundary: fc00:0:0:2:1::",
  );
});

Deno.test("netconf: dual stack, family switches and EnableNFTables", () => {
  const dual = parse({
    Network: "10.244.0.0/16",
    EnableIPv6: true,
    IPv6Network: "fd00:10:244::/56",
    EnableNFTables: true,
    Backend: VXLAN,
  }).config;
  assert.equal(formatNet(dual.ipv4!.network), "10.244.0.0/16");
  assert.deepEqual(shown(dual.ipv6), {
    network: "fd00:10:244::/56",
    subnetLen: 64,
    subnetMin: "fd00:10:244:1::",
    subnetMax: "fd00:10:244:ff::",
  });
  assert.equal(dual.enableNFTables, true);
  // A disabled family is neither required nor validated, but its members must still parse.
  const v6only = parse({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fc00::/48" }).config;
  assert.equal(v6only.ipv4, undefined);
  assert.equal(
    parse({ Network: "10.0.0.0/16", IPv6Network: "fc00::/125" }).config.ipv6,
    undefined,
  );
  rejects(
    { EnableIPv6: true, EnableIPv4: false, Network: "10.0.0.0/33", IPv6Network: "fc00::/48" },
    "Network",
    "Network: 10.0.0.0/33 is not a valid CIDR",
  );
  rejects(
    { EnableIPv4: false },
    "EnableIPv4",
    "EnableIPv4: neither IPv4 nor IPv6 is enabled",
  );
  rejects(
    { Network: "10.0.0.0/16", EnableIPv6: true },
    "IPv6Network",
    "IPv6Network: please define a correct IPv6Network parameter in the flannel config",
  );
});

Deno.test("netconf: member names are case-insensitive and the last spelling wins", () => {
  const { config, warnings } = parse(
    '{"network":"10.1.0.0/16","SUBNETLEN":26,"NetWork":"10.2.0.0/16","enableipv6":true,' +
      '"ipv6NETWORK":"fc00::/48","enablenftables":true,"backend":{"TYPE":"VXLAN","Vni":4,' +
      '"vni":5,"DirectRouting":true}}',
  );
  assert.equal(formatNet(config.ipv4!.network), "10.2.0.0/16");
  assert.equal(config.ipv4!.subnetLen, 26);
  assert.equal(formatNet(config.ipv6!.network), "fc00::/48");
  assert.equal(config.enableNFTables, true);
  assert.deepEqual(config.backend, { type: "vxlan", options: { vni: 5, directrouting: true } });
  assert.deepEqual(warnings, [
    `"network" is overridden by "NetWork"`,
    `Backend."Vni" is overridden by "vni"`,
  ]);
});

Deno.test("netconf: unknown members are ignored with a warning, null means absent", () => {
  const { config, warnings } = parse({
    Network: "10.5.0.0/16",
    Networks: ["10.6.0.0/16"],
    Comment: "hi",
    SubnetLen: null,
    SubnetMin: null,
    EnableIPv6: null,
    Backend: VXLAN,
  });
  assert.equal(config.ipv4!.subnetLen, 24);
  assert.equal(config.ipv6, undefined);
  assert.deepEqual(warnings, [
    `ignoring unknown member "Networks"`,
    `ignoring unknown member "Comment"`,
  ]); // A later null spelling removes an earlier value.
  rejects(
    '{"Network":"10.1.0.0/16","NETWORK":null}',
    "Network",
    "Network: please define a correct Network parameter in the flannel config",
  );
});

Deno.test("netconf: missing Backend means udp with a warning (quirk 17)", () => {
  for (const doc of [{ Network: "10.5.0.0/16" }, { Network: "10.5.0.0/16", Backend: null }]) {
    const { config, warnings } = parse(doc);
    assert.deepEqual(config.backend, { type: "udp", options: {} });
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /udp/);
  }
});

Deno.test("netconf: Backend type: every known type, upper case, unknown, missing, wrong type", () => {
  for (const type of BACKEND_TYPES) {
    const { config } = parse({ Network: "10.5.0.0/16", Backend: { Type: type.toUpperCase() } });
    assert.equal(config.backend.type, type);
  }
  assert.equal(BACKEND_TYPES.length, 9);
  for (const backend of [{}, { Type: "" }, { Type: "gre" }, { VNI: 1 }]) {
    const err = rejection({ Network: "10.5.0.0/16", Backend: backend });
    assert.equal(err.field, "Backend.Type");
    assert.match(err.message, /^Backend\.Type: unknown backend type/);
  }
  rejects(
    { Network: "10.5.0.0/16", Backend: { Type: 3 } },
    "Backend.Type",
    "Backend.Type: must be a string",
  );
  for (const backend of ["vxlan", 1, [], true]) {
    rejects(
      { Network: "10.5.0.0/16", Backend: backend },
      "Backend",
      "Backend: must be an object",
    );
  }
});

Deno.test("netconf: odd backend member names stay plain data", () => {
  const text = '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","__proto__":{"type":"x"},' +
    '"constructor":1}}';
  const { config } = parseNetConfig(text, "etcd");
  assert.equal(config.backend.type, "vxlan");
  assert.deepEqual(Object.keys(config.backend.options).sort(), ["__proto__", "constructor"]);
  assert.deepEqual(Object.getPrototypeOf({}).type, undefined);
  const again = parseNetConfig(JSON.stringify(netConfigToJSON(config)), "etcd").config;
  assert.deepEqual(again.backend, config.backend);
});

Deno.test("netconf: member types are checked strictly", () => {
  const cases: [Record<string, unknown>, string, string][] = [
    [{ SubnetLen: 24.5 }, "SubnetLen", "SubnetLen: must be a non-negative integer, got 24.5"],
    [{ SubnetLen: "24" }, "SubnetLen", `SubnetLen: must be a non-negative integer, got "24"`],
    [{ SubnetLen: -1 }, "SubnetLen", "SubnetLen: must be a non-negative integer, got -1"],
    [{ SubnetLen: 1e300 }, "SubnetLen", "SubnetLen: must be a non-negative integer, got 1e+300"],
    [{ Network: 10 }, "Network", "Network: must be a string"],
    [{ Network: "10.0.0.0/33" }, "Network", "Network: 10.0.0.0/33 is not a valid CIDR"],
    [{ Network: "10.0.0.0" }, "Network", "Network: 10.0.0.0 is not a valid CIDR"],
    [{ Network: "fc00::/48" }, "Network", "Network: fc00::/48 is not an IPv4 CIDR"],
    [{ SubnetMin: "10.0.0.256" }, "SubnetMin", "SubnetMin: 10.0.0.256 is not a valid IPv4 address"],
    [{ SubnetMax: "fc00::" }, "SubnetMax", "SubnetMax: fc00:: is not an IPv4 address"],
    [{ EnableIPv4: "true" }, "EnableIPv4", "EnableIPv4: must be true or false"],
    [{ EnableNFTables: 1 }, "EnableNFTables", "EnableNFTables: must be true or false"],
    [
      { IPv6Network: "10.0.0.0/8" },
      "IPv6Network",
      "IPv6Network: 10.0.0.0/8 is not an IPv6 CIDR",
    ],
    [
      { IPv6SubnetMin: "10.0.0.1" },
      "IPv6SubnetMin",
      "IPv6SubnetMin: 10.0.0.1 is not an IPv6 address",
    ],
    [
      { IPv6SubnetLen: true },
      "IPv6SubnetLen",
      "IPv6SubnetLen: must be a non-negative integer, got true",
    ],
  ];
  for (const [members, field, message] of cases) {
    rejects({ Network: "10.5.0.0/16", ...members }, field, message);
    rejects({ Network: "10.5.0.0/16", ...members }, field, message, "kube");
  }
});

Deno.test("netconf: invalid JSON and non-objects", () => {
  for (const text of ["", "{", "{'Network': 1}", '{"Network":"10.0.0.0/8",}', "nul"]) {
    const err = rejection(text);
    assert.equal(err.field, "");
    assert.match(err.message, /^invalid JSON: \S/);
  }
  for (const text of ["[]", "null", "3", '"x"', "true"]) {
    rejects(text, "", "the network config must be a JSON object");
  }
});

Deno.test("netconf: kube mode needs only the networks and keeps tiny ones", () => {
  assert.deepEqual(shown(parse({ Network: "10.5.0.0/29" }, "kube").config.ipv4), {
    network: "10.5.0.0/29",
    subnetLen: 31,
    subnetMin: "10.5.0.2",
    subnetMax: "10.5.0.6",
  });
  assert.deepEqual(shown(parse({ Network: "255.255.255.255/32" }, "kube").config.ipv4), {
    network: "255.255.255.255/32",
    subnetLen: 32,
    subnetMin: "255.255.255.255",
    subnetMax: "255.255.255.255",
  });
  // Rules of §2.4 are not applied...
  const lenient = parse({
    Network: "10.5.0.0/16",
    SubnetLen: 32,
    SubnetMin: "10.9.0.1",
    SubnetMax: "10.5.0.3",
  }, "kube").config.ipv4!;
  assert.equal(lenient.subnetLen, 32);
  assert.equal(formatAddr(lenient.subnetMin), "10.9.0.1");
  // ...but defaults are computed as in etcd mode.
  assert.deepEqual(
    parse({ Network: "10.244.0.0/16", Backend: VXLAN }, "kube").config,
    parse({ Network: "10.244.0.0/16", Backend: VXLAN }, "etcd").config,
  );
  assert.equal(
    parse({ EnableIPv6: true, Network: "10.0.0.0/8", IPv6Network: "fc00::/127" }, "kube").config
      .ipv6!.subnetLen,
    128,
  );
  rejects(
    { Backend: VXLAN },
    "Network",
    "Network: please define a correct Network parameter in the flannel config",
    "kube",
  );
  rejects(
    { EnableIPv4: false, EnableIPv6: true },
    "IPv6Network",
    "IPv6Network: please define a correct IPv6Network parameter in the flannel config",
    "kube",
  );
  rejects(
    { Network: "10.5.0.0/16", SubnetLen: 33 },
    "SubnetLen",
    "SubnetLen: /33 is longer than an IPv4 address",
    "kube",
  );
  assert.equal(rejection({ Network: "10.5.0.0/16", Backend: {} }, "kube").field, "Backend.Type");
});

/** A valid etcd-mode IPv4 network: prefix 1..28. */
const v4Network = fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 1, max: 28 }))
  .map(([value, prefix]) => {
    const text = `${[24, 16, 8, 0].map((s) => (value >>> s) & 255).join(".")}/${prefix}`;
    return formatNet(parseNet(text));
  });

Deno.test("netconf: property: derived IPv4 values satisfy flannel's invariants", () => {
  fc.assert(
    fc.property(v4Network, (network) => {
      const v4 = parse({ Network: network, Backend: VXLAN }).config.ipv4!;
      const prefix = v4.network.prefix;
      assert.equal(v4.subnetLen, prefix <= 22 ? 24 : prefix + 2);
      const size = 1n << BigInt(32 - v4.subnetLen);
      assert.equal(v4.subnetMin.value, v4.network.base + size);
      assert.equal(v4.subnetMax.value, v4.network.base + (1n << BigInt(32 - prefix)) - size);
      for (const bound of [v4.subnetMin, v4.subnetMax]) {
        assert.ok(netContains(v4.network, bound));
        assert.equal(bound.value & prefixMask(4, v4.subnetLen), bound.value);
      }
      assert.equal(
        countSubnets(v4.subnetMin, v4.subnetMax, v4.subnetLen),
        (1n << BigInt(v4.subnetLen - prefix)) - 1n,
      );
    }),
  );
});

const MEMBER_NAMES = [
  "Network",
  "SubnetLen",
  "SubnetMin",
  "SubnetMax",
  "EnableIPv4",
  "EnableIPv6",
  "IPv6Network",
  "IPv6SubnetLen",
  "IPv6SubnetMin",
  "IPv6SubnetMax",
  "EnableNFTables",
  "Backend",
];

/** Member names in random case, values of plausible and implausible types. */
const messyConfig = fc.dictionary(
  fc.constantFrom(...MEMBER_NAMES).chain((name) =>
    fc.array(fc.boolean(), { minLength: name.length, maxLength: name.length }).map((upper) =>
      [...name].map((c, i) => upper[i] ? c.toUpperCase() : c.toLowerCase()).join("")
    )
  ),
  fc.oneof(
    v4Network,
    fc.constantFrom("fc00::/48", "fc00::/125", "::/0", "10.5.1.0", "fc00:0:0:1::", "0.0.0.0"),
    fc.ipV4(),
    fc.ipV6(),
    fc.integer({ min: -2, max: 130 }),
    fc.boolean(),
    fc.constant(null),
    fc.record({ Type: fc.constantFrom(...BACKEND_TYPES, "VXLAN", "gre", 7) }),
    fc.jsonValue(),
  ),
);

Deno.test("netconf: fuzz: arbitrary text only ever throws ConfigError", () => {
  const text = fc.oneof(
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.json(),
    messyConfig.map((o) => JSON.stringify(o)),
  );
  fc.assert(
    fc.property(text, fc.constantFrom<NetConfMode>("etcd", "kube"), (input, mode) => {
      try {
        parseNetConfig(input, mode);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
      }
    }),
    { numRuns: 3000 },
  );
});

const v6Network = fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 124 }))
  .map(([addr, prefix]) => formatNet(parseNet(`${addr}/${prefix}`)));

/** Configs that are often valid: right types, plausible lengths, random backend options. */
const plausibleConfig = fc.record({
  Network: v4Network,
  SubnetLen: fc.integer({ min: 0, max: 30 }),
  EnableIPv4: fc.boolean(),
  EnableIPv6: fc.boolean(),
  IPv6Network: v6Network,
  IPv6SubnetLen: fc.integer({ min: 0, max: 126 }),
  EnableNFTables: fc.boolean(),
  Backend: fc.record({
    Type: fc.constantFrom(...BACKEND_TYPES),
    VNI: fc.integer(),
    DirectRouting: fc.boolean(),
    Extra: fc.jsonValue(),
  }, { requiredKeys: ["Type"] }),
}, { requiredKeys: ["Network"] });

Deno.test("netconf: property: the effective config parses back to itself", () => {
  let accepted = 0;
  fc.assert(
    fc.property(
      fc.oneof(messyConfig, plausibleConfig),
      fc.constantFrom<NetConfMode>("etcd", "kube"),
      (doc, mode) => {
        let config;
        try {
          config = parse(doc, mode).config;
        } catch (err) {
          if (err instanceof ConfigError) return;
          throw err;
        }
        accepted++;
        const again = parse(netConfigToJSON(config), mode).config;
        assert.deepEqual(again, config);
      },
    ),
    { numRuns: 3000 },
  );
  assert.ok(accepted > 50, `only ${accepted} generated configs were valid`);
});
