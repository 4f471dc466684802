import assert from "node:assert/strict";
import { BACKEND_TYPES, netConfigToJSON, parseNetConfig } from "../../config/netconf.ts";
import { formatAddr, formatNet } from "../../ip/mod.ts";
import { parse, rejection, rejects, shown, VXLAN } from "../helpers/netconf.ts";

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
