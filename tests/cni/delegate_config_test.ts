import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeCanonical } from "../../cni/canonical_json.ts";
import { buildDelegateConfig, encodeDelegateConfig } from "../../cni/delegate_config.ts";
import { ConfigError } from "../../cni/errors.ts";
import type { JsonObject } from "../../json.ts";
import { parseNetConf } from "../../cni/netconf.ts";
import { parseSubnetEnv } from "../../cni/subnet_env.ts";

const ENV_V4 = parseSubnetEnv(
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  "subnet.env",
);
const ENV_DUAL = parseSubnetEnv(
  "FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\n" +
    "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64\n" +
    "FLANNEL_MTU=1400\nFLANNEL_IPMASQ=false\n",
  "subnet.env",
);
const ENV_V6 = parseSubnetEnv(
  "FLANNEL_IPV6_NETWORK=2001:db8::/32\nFLANNEL_IPV6_SUBNET=2001:db8:0:7::1/64\n" +
    "FLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
  "subnet.env",
);

/** The exact delegate config of spec §9.3 / conformance item 33. */
const CONFORMANCE_33 =
  '{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":' +
  '"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
  '"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}';

function conf(extra: JsonObject = {}) {
  return parseNetConf({ name: "cbr0", type: "flannel", cniVersion: "0.3.1", ...extra });
}

function build(extra: JsonObject, env = ENV_V4): JsonObject {
  return buildDelegateConfig(conf(extra), env);
}

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${err}`);
    assert.equal(err.code, 7);
    return err;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("delegate config: conformance 33, byte for byte", () => {
  const input = {
    name: "cbr0",
    type: "flannel",
    cniVersion: "0.3.1",
    delegate: { hairpinMode: true, isDefaultGateway: true },
  };
  const bytes = encodeDelegateConfig(buildDelegateConfig(parseNetConf(input), ENV_V4));
  assert.equal(new TextDecoder().decode(bytes), CONFORMANCE_33);
});

Deno.test("delegate config: the shipped 10-flannel.conflist yields the conformance 33 bytes", async () => {
  const list = JSON.parse(
    await Deno.readTextFile(new URL("../../cni/10-flannel.conflist", import.meta.url)),
  );
  assert.deepEqual(list.plugins.map((p: { type: string }) => p.type), ["flannel", "portmap"]);
  assert.deepEqual(list.plugins[1].capabilities, { portMappings: true });
  // What a runtime passes the first plugin: the list's name and cniVersion added.
  const input = { ...list.plugins[0], name: list.name, cniVersion: list.cniVersion };
  const bytes = encodeDelegateConfig(buildDelegateConfig(parseNetConf(input), ENV_V4));
  assert.equal(new TextDecoder().decode(bytes), CONFORMANCE_33);
});

Deno.test("delegate config: dual stack gets one range set per family, IPv4 first", () => {
  const config = build({}, ENV_DUAL);
  assert.deepEqual(config.ipam, {
    type: "host-local",
    ranges: [[{ subnet: "10.244.1.0/24" }], [{ subnet: "fc00:0:0:22::/64" }]],
    routes: [{ dst: "10.244.0.0/16" }, { dst: "10.245.0.0/16" }, { dst: "fc00::/48" }],
  });
  assert.equal(config.ipMasq, true); // flanneld does not masquerade, so the bridge must
  assert.equal(config.mtu, 1400);
});

Deno.test("delegate config: IPv6-only gets only IPv6 ranges and routes", () => {
  assert.deepEqual(build({}, ENV_V6).ipam, {
    type: "host-local",
    ranges: [[{ subnet: "2001:db8:0:7::/64" }]],
    routes: [{ dst: "2001:db8::/32" }],
  });
});

Deno.test("delegate config: 'name' and 'ipam' in delegate are refused with flannel's words", () => {
  assert.equal(
    configError(() => build({ delegate: { name: "x" } })).message,
    "delegate.name: 'delegate' dictionary must not have 'name' field, it'll be set by flannel",
  );
  assert.equal(
    configError(() => build({ delegate: { ipam: {} } })).message,
    "delegate.ipam: 'delegate' dictionary must not have 'ipam' field, it'll be set by flannel",
  );
  assert.equal(
    configError(() => build({ delegate: { type: 5 } })).message,
    "delegate.type: 'delegate' dictionary, if present, must have (string) 'type' field",
  );
  for (const type of ["../bridge", "/usr/lib/cni/bridge", "", ".."]) {
    assert.equal(configError(() => build({ delegate: { type } })).path, "delegate.type", type);
  }
});

Deno.test("delegate config: input ipam members are kept, ranges replaced, type defaulted", () => {
  const ipam = {
    dataDir: "/tmp/ipam",
    custom: { nested: [1, 2] },
    ranges: [[{ subnet: "192.168.0.0/24" }]],
  };
  const config = build({ ipam });
  assert.deepEqual(config.ipam, {
    dataDir: "/tmp/ipam",
    custom: { nested: [1, 2] },
    type: "host-local",
    ranges: [[{ subnet: "10.244.1.0/24" }]],
    routes: [{ dst: "10.244.0.0/16" }],
  });
  assert.equal((build({ ipam: { type: "whereabouts" } }).ipam as JsonObject).type, "whereabouts");
  // The caller's objects are not modified.
  assert.deepEqual(ipam.ranges, [[{ subnet: "192.168.0.0/24" }]]);
});

Deno.test("delegate config: input routes are re-encoded and come before the cluster routes", () => {
  const routes = [
    { dst: "0.0.0.0/0", gw: "10.244.1.1", note: "dropped" },
    { dst: "10.96.5.5/12", mtu: 0, advmss: 1400, priority: 0, table: 0, scope: 253 },
    { dst: "2001:DB8:0:0::/64", gw: "2001:DB8::0001", gw6: "x" },
    { dst: "192.168.0.0/16", gw: "", mtu: 1300, table: null, scope: null },
  ];
  assert.deepEqual((build({ ipam: { routes } }).ipam as JsonObject).routes, [
    { dst: "0.0.0.0/0", gw: "10.244.1.1" },
    { dst: "10.96.5.5/12", advmss: 1400, table: 0, scope: 253 }, // host bits stay, as upstream
    { dst: "2001:db8::/64", gw: "2001:db8::1" },
    { dst: "192.168.0.0/16", mtu: 1300 },
    { dst: "10.244.0.0/16" },
  ]);
  assert.deepEqual((build({ ipam: { routes: null } }).ipam as JsonObject).routes, [
    { dst: "10.244.0.0/16" },
  ]);
});

Deno.test("delegate config: bad ipam routes are config errors naming the entry", () => {
  const cases: Array<[unknown, string]> = [
    [{ dst: "0.0.0.0/0" }, "ipam.routes"], // not an array
    [[{ gw: "10.0.0.1" }], "ipam.routes.0.dst"],
    [[{ dst: "10.0.0.0" }], "ipam.routes.0"],
    [[{ dst: "0.0.0.0/0" }, { dst: "10.0.0.0/8", gw: "nope" }], "ipam.routes.1"],
    [[{ dst: "10.0.0.0/8", mtu: 1.5 }], "ipam.routes.0.mtu"],
    [[{ dst: "10.0.0.0/8", table: "main" }], "ipam.routes.0.table"],
    [["10.0.0.0/8"], "ipam.routes.0"],
  ];
  for (const [routes, path] of cases) {
    assert.equal(configError(() => build({ ipam: { routes } })).path, path, JSON.stringify(routes));
  }
});

Deno.test("delegate config: the user's delegate members win over flannel's defaults", () => {
  const config = build({
    cniVersion: "1.0.0",
    delegate: { type: "bridge", ipMasq: null, mtu: 9000, isGateway: false, bridge: "br-x" },
  });
  assert.equal(config.ipMasq, null);
  assert.equal(config.mtu, 9000);
  assert.equal(config.isGateway, false);
  assert.equal(config.bridge, "br-x");
  assert.equal(config.cniVersion, "1.0.0");
  // isGateway is a bridge option only.
  assert.equal(Object.hasOwn(build({ delegate: { type: "ipvlan" } }), "isGateway"), false);
});

Deno.test("delegate config: cniVersion and runtimeConfig come from the input when it has them", () => {
  const delegate = { cniVersion: "0.4.0", runtimeConfig: { old: true } };
  const withBoth = build({
    cniVersion: "1.0.0",
    delegate,
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
  });
  assert.equal(withBoth.cniVersion, "1.0.0");
  assert.deepEqual(withBoth.runtimeConfig, {
    portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }],
  });
  const kept = build({ delegate, runtimeConfig: null });
  assert.equal(kept.cniVersion, "0.3.1");
  assert.deepEqual(kept.runtimeConfig, { old: true });
  assert.deepEqual(delegate, { cniVersion: "0.4.0", runtimeConfig: { old: true } });
  // A version-less input leaves the delegate's own (or none at all), as flannel does.
  assert.equal(build({ cniVersion: undefined, delegate }).cniVersion, "0.4.0");
  assert.ok(!("cniVersion" in build({ cniVersion: undefined })));
});

Deno.test("canonical JSON: sorted keys at every level, Go's escapes, code point order", () => {
  assert.equal(
    encodeCanonical({ b: [{ z: 1, a: null }], a: { y: "<&>\u2028", x: false } }),
    '{"a":{"x":false,"y":"\\u003c\\u0026\\u003e\\u2028"},"b":[{"a":null,"z":1}]}',
  );
  // U+FFFF sorts before U+10000 by code point (UTF-8 bytes), unlike UTF-16 unit order.
  assert.equal(encodeCanonical({ "\u{10000}": 1, "\uffff": 2 }), '{"\uffff":2,"\u{10000}":1}');
});

// JS objects list integer-like keys first whatever the text order, so the order check uses
// other keys; the shuffle property below covers all keys.
const plainKey = fc.string().filter((k) => !/^(0|[1-9][0-9]*)$/.test(k));
const { json } = fc.letrec((tie) => ({
  json: fc.oneof(
    { depthSize: "small" },
    fc.oneof(
      fc.boolean(),
      fc.constant(null),
      fc.string(),
      fc.integer(),
      fc.double({ noNaN: true, noDefaultInfinity: true }),
    ),
    fc.array(tie("json")),
    fc.dictionary(plainKey, tie("json")),
  ),
}));

function keysSortedByCodePoint(value: unknown): boolean {
  if (Array.isArray(value)) return value.every(keysSortedByCodePoint);
  if (typeof value !== "object" || value === null) return true;
  const keys = Object.keys(value).map((k) => [...k].map((c) => c.codePointAt(0)!));
  const less = (x: number[], y: number[]) => {
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] < y[i];
    return x.length < y.length;
  };
  return keys.every((k, i) => i === 0 || less(keys[i - 1], k)) &&
    Object.values(value).every(keysSortedByCodePoint);
}

/** The same value with every object's keys rotated by `shift` and reversed. */
function reordered(value: unknown, shift: number): unknown {
  if (Array.isArray(value)) return value.map((v) => reordered(v, shift));
  if (typeof value !== "object" || value === null) return value;
  const entries = Object.entries(value);
  const cut = entries.length ? shift % entries.length : 0;
  const rotated = [...entries.slice(cut), ...entries.slice(0, cut)].reverse();
  return Object.fromEntries(rotated.map(([k, v]) => [k, reordered(v, shift)]));
}

Deno.test("canonical JSON property: same value back, keys in code point order", () => {
  fc.assert(fc.property(json, (value) => {
    const text = encodeCanonical(value);
    const decoded = JSON.parse(text);
    assert.deepEqual(decoded, JSON.parse(JSON.stringify(value)));
    assert.ok(keysSortedByCodePoint(decoded), text);
    assert.ok(!/[<>&\u2028\u2029]/.test(text), text);
  }));
});

Deno.test("canonical JSON property: the text does not depend on key order", () => {
  fc.assert(fc.property(fc.jsonValue(), fc.nat(100), (value, seed) => {
    assert.equal(encodeCanonical(reordered(value, seed)), encodeCanonical(value));
  }));
});
