import assert from "node:assert/strict";
import {
  countSubnets,
  enumerateSubnets,
  formatAddr,
  formatNet,
  netContainsNet,
} from "../../ip/mod.ts";
import { parse, rejects, shown, VXLAN } from "../helpers/netconf.ts";

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
  assert.equal(parse({ Network: "10.5.0.0/16", SubnetLen: 18 }).config.ipv4!.subnetLen, 18);
  assert.equal(parse({ Network: "10.5.0.0/28", SubnetLen: 30 }).config.ipv4!.subnetLen, 30);
  const rejected: [unknown, string, string][] = [
    [{}, "Network", "please define a correct Network parameter in the flannel config"],
    [
      { Network: "0.0.0.0/0" },
      "Network",
      "please define a correct Network parameter in the flannel config",
    ],
    [{ Network: "" }, "Network", "please define a correct Network parameter in the flannel config"],
    [{ Network: "10.5.0.0/16", SubnetLen: 31 }, "SubnetLen", "SubnetLen must be less than /31"],
    [
      { Network: "10.5.0.0/16", SubnetLen: 17 },
      "SubnetLen",
      "network must be able to accommodate at least four subnets",
    ],
    [
      { Network: "10.5.0.0/29", SubnetLen: 30 },
      "SubnetLen",
      "network must be able to accommodate at least four subnets",
    ],
    [{ Network: "10.5.0.0/29", SubnetLen: 31 }, "SubnetLen", "SubnetLen must be less than /31"],
    [
      { Network: "10.5.0.0/16", SubnetMin: "10.6.1.0" },
      "SubnetMin",
      "SubnetMin is not in the range of the Network",
    ],
    [
      { Network: "10.5.0.0/16", SubnetMax: "10.4.255.0" },
      "SubnetMax",
      "SubnetMax is not in the range of the Network",
    ],
    [
      { Network: "10.5.0.0/16", SubnetMin: "10.5.1.1" },
      "SubnetMin",
      "SubnetMin is not on a SubnetLen boundary: 10.5.1.1",
    ],
    [
      { Network: "10.5.0.0/16", SubnetLen: 25, SubnetMax: "10.5.3.64" },
      "SubnetMax",
      "SubnetMax is not on a SubnetLen boundary: 10.5.3.64",
    ],
    // flannel's order: both range checks come before the boundary checks.
    [
      { Network: "10.5.0.0/16", SubnetMin: "10.5.1.1", SubnetMax: "10.9.0.0" },
      "SubnetMax",
      "SubnetMax is not in the range of the Network",
    ],
  ];
  for (const [doc, field, reason] of rejected) rejects(doc, field, `${field}: ${reason}`);
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
  assert.equal(
    parse(v6({ IPv6Network: "fc00::/120", IPv6SubnetLen: 126 })).config.ipv6!.subnetLen,
    126,
  );
  const rejected: [unknown, string, string][] = [
    [v6({}), "IPv6Network", "please define a correct IPv6Network parameter in the flannel config"],
    [
      v6({ IPv6Network: "::/0" }),
      "IPv6Network",
      "please define a correct IPv6Network parameter in the flannel config",
    ],
    [
      v6({ IPv6Network: "fc00::/48", IPv6SubnetLen: 127 }),
      "IPv6SubnetLen",
      "SubnetLen must be less than /127",
    ],
    [
      v6({ IPv6Network: "fc00::/48", IPv6SubnetLen: 49 }),
      "IPv6SubnetLen",
      "network must be able to accommodate at least four subnets",
    ],
    [
      v6({ IPv6Network: "fc00::/125" }),
      "IPv6Network",
      "IPv6Network is too small. Minimum useful network prefix is /124",
    ],
    [
      v6({ IPv6Network: "fc00::/48", IPv6SubnetMin: "fc01::" }),
      "IPv6SubnetMin",
      "IPv6SubnetMin is not in the range of the IPv6Network",
    ],
    [
      v6({ IPv6Network: "fc00::/48", IPv6SubnetMax: "fd00::" }),
      "IPv6SubnetMax",
      "IPv6SubnetMax is not in the range of the IPv6Network",
    ],
    [
      v6({ IPv6Network: "fc00::/48", IPv6SubnetMin: "fc00:0:0:1::1" }),
      "IPv6SubnetMin",
      "IPv6SubnetMin is not on a SubnetLen boundary: fc00:0:0:1::1",
    ],
    [
      v6({ IPv6Network: "fc00::/48", IPv6SubnetMax: "fc00:0:0:2:1::" }),
      "IPv6SubnetMax",
      "IPv6SubnetMax is not on a SubnetLen boundary: fc00:0:0:2:1::",
    ],
  ];
  for (const [doc, field, reason] of rejected) rejects(doc, field, `${field}: ${reason}`);
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
  const rejected: [unknown, string, string][] = [
    [
      { EnableIPv6: true, EnableIPv4: false, Network: "10.0.0.0/33", IPv6Network: "fc00::/48" },
      "Network",
      "10.0.0.0/33 is not a valid CIDR",
    ],
    [{ EnableIPv4: false }, "EnableIPv4", "neither IPv4 nor IPv6 is enabled"],
    [
      { Network: "10.0.0.0/16", EnableIPv6: true },
      "IPv6Network",
      "please define a correct IPv6Network parameter in the flannel config",
    ],
  ];
  for (const [doc, field, reason] of rejected) rejects(doc, field, `${field}: ${reason}`);
});
