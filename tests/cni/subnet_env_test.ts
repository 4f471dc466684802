import assert from "node:assert/strict";
import fc from "fast-check";
import {
  parseSubnetEnv,
  readSubnetEnv,
  type SubnetEnv,
  SubnetEnvError,
} from "../../cni/subnet_env.ts";
import { formatNet, type IPNet, parseNet } from "../../ip/mod.ts";

const FILE = "/run/flannel/subnet.env";

/** The parsed values as plain text, for readable comparisons. */
function view(env: SubnetEnv) {
  return {
    networks: env.networks.map(formatNet),
    subnet: env.subnet && formatNet(env.subnet),
    ipv6Networks: env.ipv6Networks.map(formatNet),
    ipv6Subnet: env.ipv6Subnet && formatNet(env.ipv6Subnet),
    mtu: env.mtu,
    ipMasq: env.ipMasq,
  };
}

function parseView(text: string) {
  return view(parseSubnetEnv(text, FILE));
}

function parseError(text: string): SubnetEnvError {
  try {
    parseSubnetEnv(text, FILE);
  } catch (err) {
    assert.ok(err instanceof SubnetEnvError, `expected SubnetEnvError, got ${err}`);
    assert.equal(err.unreadable, false);
    return err;
  }
  assert.fail(`expected ${JSON.stringify(text)} to be rejected`);
}

const BASE = "FLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n";

Deno.test("subnet.env: the spec's example, FLANNEL_SUBNET converted to its network", () => {
  assert.deepEqual(parseView(`FLANNEL_NETWORK=10.5.0.0/16\n${BASE}`), {
    networks: ["10.5.0.0/16"],
    subnet: "10.5.72.0/24",
    ipv6Networks: [],
    ipv6Subnet: undefined,
    mtu: 1450,
    ipMasq: false,
  });
});

Deno.test("subnet.env: network lists are comma-separated and de-duplicated after masking", () => {
  const env = parseView(`FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16,10.244.9.9/16\n${BASE}`);
  assert.deepEqual(env.networks, ["10.244.0.0/16", "10.245.0.0/16"]);
  const v6 = parseView(
    "FLANNEL_IPV6_NETWORK=fc00::/48,FC00:0:0::/48,fd00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64\n" +
      "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  assert.deepEqual(v6.ipv6Networks, ["fc00::/48", "fd00::/48"]);
  assert.equal(v6.ipv6Subnet, "fc00:0:0:22::/64");
  assert.deepEqual(v6.networks, []);
  assert.equal(v6.subnet, undefined);
});

Deno.test("subnet.env: dual stack keeps both families", () => {
  const env = parseView(
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\n" +
      "FLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  assert.deepEqual(env, {
    networks: ["10.5.0.0/16"],
    subnet: "10.5.34.0/24",
    ipv6Networks: ["fc00::/48"],
    ipv6Subnet: "fc00:0:0:22::/64",
    mtu: 1450,
    ipMasq: true,
  });
});

Deno.test("subnet.env: split at the first '=', nothing trimmed or unquoted", () => {
  assert.match(
    parseError(`FLANNEL_NETWORK=10.5.0.0/16=x\n${BASE}`).message,
    /line 1: FLANNEL_NETWORK/,
  );
  assert.match(parseError(`FLANNEL_NETWORK= 10.5.0.0/16\n${BASE}`).message, /line 1/);
  assert.match(parseError(`FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_MTU=1450 \n`).message, /line 2/);
  // "KEY =" is a different (unknown) key, so the real one is missing.
  assert.equal(
    parseError("FLANNEL_NETWORK =10.5.0.0/16\n" + BASE).message,
    `${FILE} is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK`,
  );
  // IPMASQ is true only for exactly "true".
  for (const value of ['"true"', "True", "TRUE", "true ", " true", "1", "yes", ""]) {
    const env = parseView(`FLANNEL_NETWORK=10.5.0.0/16\n${BASE}FLANNEL_IPMASQ=${value}\n`);
    assert.equal(env.ipMasq, false, value);
  }
});

Deno.test("subnet.env: later lines override, garbage and unknown keys are ignored", () => {
  const text = [
    "# written by hand",
    "",
    "garbage without an equals sign",
    "FLANNEL_NETWORK",
    "export FLANNEL_MTU=9000",
    "FLANNEL_UNKNOWN=whatever",
    "=no key",
    "FLANNEL_NETWORK=10.1.0.0/16",
    "FLANNEL_NETWORK=10.5.0.0/16",
    "FLANNEL_SUBNET=10.5.1.1/24",
    "FLANNEL_MTU=1500",
    "FLANNEL_MTU=1450",
    "FLANNEL_IPMASQ=true",
    "FLANNEL_IPMASQ=false",
  ].join("\n"); // no final newline: the last line still counts
  assert.deepEqual(parseView(text), {
    networks: ["10.5.0.0/16"],
    subnet: "10.5.1.0/24",
    ipv6Networks: [],
    ipv6Subnet: undefined,
    mtu: 1450,
    ipMasq: false,
  });
});

Deno.test("subnet.env: CRLF line ends are line ends", () => {
  const env = parseView(`FLANNEL_NETWORK=10.5.0.0/16\r\n${BASE.replaceAll("\n", "\r\n")}`);
  assert.equal(env.mtu, 1450);
  assert.equal(env.subnet, "10.5.72.0/24");
});

Deno.test("subnet.env: missing keys are named, comma-separated, in flannel's order", () => {
  assert.equal(
    parseError("").message,
    `${FILE} is missing FLANNEL_NETWORK, FLANNEL_IPV6_NETWORK, FLANNEL_SUBNET, ` +
      "FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ",
  );
  assert.equal(
    parseError("FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\n").message,
    `${FILE} is missing FLANNEL_MTU, FLANNEL_IPMASQ`,
  );
  assert.equal(
    parseError("FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_MTU=1\nFLANNEL_IPMASQ=true\n").message,
    `${FILE} is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET`,
  );
});

Deno.test("subnet.env: FLANNEL_MTU is an unsigned 32-bit decimal", () => {
  const mtu = (value: string) =>
    parseView(`FLANNEL_NETWORK=10.5.0.0/16\n${BASE}FLANNEL_MTU=${value}`);
  assert.equal(mtu("0").mtu, 0);
  assert.equal(mtu("01450").mtu, 1450);
  assert.equal(mtu("4294967295").mtu, 4294967295);
  for (const bad of ["4294967296", "-1", "+1450", "1e3", "0x10", "14.5", "", " 1450", "1_450"]) {
    assert.match(
      parseError(`FLANNEL_NETWORK=10.5.0.0/16\n${BASE}FLANNEL_MTU=${bad}\n`).message,
      /line 5: FLANNEL_MTU/,
      bad,
    );
  }
});

Deno.test("subnet.env: unparsable or wrong-family CIDRs fail", () => {
  const cases: Array<[string, RegExp]> = [
    ["FLANNEL_NETWORK=", /FLANNEL_NETWORK/],
    ["FLANNEL_NETWORK=10.5.0.0/16,", /FLANNEL_NETWORK/],
    ["FLANNEL_NETWORK=10.5.0.0", /FLANNEL_NETWORK/],
    ["FLANNEL_NETWORK=10.5.0.0/33", /FLANNEL_NETWORK/],
    ["FLANNEL_NETWORK=fc00::/48", /FLANNEL_NETWORK: "fc00::\/48" is not an IPv4 CIDR/],
    ["FLANNEL_SUBNET=fc00::1/64", /FLANNEL_SUBNET/],
    ["FLANNEL_IPV6_NETWORK=10.0.0.0/8", /FLANNEL_IPV6_NETWORK/],
    ["FLANNEL_IPV6_SUBNET=10.0.0.1/24", /FLANNEL_IPV6_SUBNET/],
    ["FLANNEL_SUBNET=10.5.1.1/24,10.5.2.1/24", /FLANNEL_SUBNET/],
  ];
  for (const [line, pattern] of cases) {
    const err = parseError(`FLANNEL_NETWORK=10.5.0.0/16\n${BASE}${line}\n`);
    assert.match(err.message, pattern, line);
    assert.match(err.message, /^\/run\/flannel\/subnet\.env: line 5: /, line);
  }
});

Deno.test("subnet.env: an unreadable file says so and hints at the daemon", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tt-cni-" });
  try {
    const file = `${dir}/absent.env`;
    await assert.rejects(readSubnetEnv(file), (err) => {
      assert.ok(err instanceof SubnetEnvError);
      assert.equal(err.unreadable, true);
      assert.match(err.message, /absent\.env.*is flanneld\/tartan running\?/);
      return true;
    });
    await Deno.writeTextFile(file, `FLANNEL_NETWORK=10.5.0.0/16\n${BASE}`);
    assert.equal((await readSubnetEnv(file)).mtu, 1450);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Property tests: render a random valid environment, interleave noise, parse it back.
const v4Net = fc.tuple(fc.nat(0xffffffff), fc.integer({ min: 0, max: 32 })).map(([v, p]) =>
  parseNet(`${[24, 16, 8, 0].map((s) => (v >>> s) & 255).join(".")}/${p}`)
);
const v6Net = fc.tuple(
  fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }),
  fc.integer({ min: 0, max: 128 }),
).map(([groups, p]) => parseNet(`${groups.map((g) => g.toString(16)).join(":")}/${p}`));
const noise = fc.oneof(
  fc.constantFrom("", "#", "junk", "FLANNEL_OTHER=1", "flannel_mtu=abc", "X=FLANNEL_MTU=1"),
  fc.string().filter((s) => !s.includes("\n") && !s.startsWith("FLANNEL_")),
);

Deno.test("subnet.env property: valid content with noise parses to what was written", () => {
  const arbitrary = fc.record({
    networks: fc.array(v4Net, { maxLength: 3 }),
    subnet: fc.option(v4Net, { nil: undefined }),
    ipv6Networks: fc.array(v6Net, { maxLength: 3 }),
    ipv6Subnet: fc.option(v6Net, { nil: undefined }),
    mtu: fc.nat(0xffffffff),
    ipMasq: fc.boolean(),
    noise: fc.array(noise, { maxLength: 6 }),
  }).filter((e) =>
    (e.networks.length > 0 || e.ipv6Networks.length > 0) && (!!e.subnet || !!e.ipv6Subnet)
  );
  fc.assert(fc.property(arbitrary, (e) => {
    const list = (nets: IPNet[]) => nets.map(formatNet).join(",");
    const lines = [
      e.networks.length ? `FLANNEL_NETWORK=${list(e.networks)}` : "",
      e.subnet ? `FLANNEL_SUBNET=${formatNet(e.subnet)}` : "",
      e.ipv6Networks.length ? `FLANNEL_IPV6_NETWORK=${list(e.ipv6Networks)}` : "",
      e.ipv6Subnet ? `FLANNEL_IPV6_SUBNET=${formatNet(e.ipv6Subnet)}` : "",
      `FLANNEL_MTU=${e.mtu}`,
      `FLANNEL_IPMASQ=${e.ipMasq}`,
    ].filter(Boolean);
    e.noise.forEach((line, i) => lines.splice(i % (lines.length + 1), 0, line));
    const dedupe = (nets: IPNet[]) => [...new Set(nets.map(formatNet))];
    assert.deepEqual(parseView(lines.join("\n") + "\n"), {
      networks: dedupe(e.networks),
      subnet: e.subnet && formatNet(e.subnet),
      ipv6Networks: dedupe(e.ipv6Networks),
      ipv6Subnet: e.ipv6Subnet && formatNet(e.ipv6Subnet),
      mtu: e.mtu,
      ipMasq: e.ipMasq,
    });
  }));
});

Deno.test("subnet.env property: arbitrary text yields a value or a SubnetEnvError, nothing else", () => {
  const keys = fc.constantFrom(
    "FLANNEL_NETWORK=",
    "FLANNEL_SUBNET=",
    "FLANNEL_IPV6_NETWORK=",
    "FLANNEL_IPV6_SUBNET=",
    "FLANNEL_MTU=",
    "FLANNEL_IPMASQ=",
    "",
  );
  const text = fc.array(fc.tuple(keys, fc.string()).map(([k, v]) => k + v), { maxLength: 10 })
    .map((lines) => lines.join("\n"));
  fc.assert(fc.property(fc.oneof(text, fc.string()), (input) => {
    try {
      const env = parseSubnetEnv(input, FILE);
      assert.ok(env.networks.length + env.ipv6Networks.length > 0);
      assert.ok(Number.isInteger(env.mtu) && env.mtu >= 0);
    } catch (err) {
      assert.ok(err instanceof SubnetEnvError, String(err));
    }
  }));
});
