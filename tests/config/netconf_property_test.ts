import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BACKEND_TYPES,
  ConfigError,
  netConfigToJSON,
  type NetConfMode,
  parseNetConfig,
} from "../../config/netconf.ts";
import { countSubnets, formatNet, netContains, parseNet, prefixMask } from "../../ip/mod.ts";
import { parse, VXLAN } from "../helpers/netconf.ts";

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
