import assert from "node:assert/strict";
import fc from "fast-check";
import { parseNetConfig } from "../../config/netconf.ts";
import { formatNet, parseNet } from "../../ip/mod.ts";
import {
  formatSubnetEnv,
  parseSubnetEnv,
  readPreviousSubnets,
  SubnetEnvError,
  subnetEnvFor,
  writeSubnetEnv,
} from "../../subnet/subnet_env.ts";

const v4 = { network: parseNet("10.5.0.0/16"), subnet: parseNet("10.5.34.0/24") };
const v6 = { network: parseNet("fc00::/48"), subnet: parseNet("fc00:0:0:22::/64") };

Deno.test("subnet.env bytes match flannel (conformance 13, 14)", () => {
  assert.equal(
    formatSubnetEnv({ ipv4: v4, mtu: 1450, ipMasq: true }),
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
  assert.equal(
    formatSubnetEnv({ ipv4: v4, ipv6: v6, mtu: 1450, ipMasq: false }),
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\n" +
      "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64\n" +
      "FLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
  );
  assert.equal(
    formatSubnetEnv({ ipv6: v6, mtu: 1500, ipMasq: false }),
    "FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:22::1/64\n" +
      "FLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
  );
});

Deno.test("subnetEnvFor writes the enabled families of the config", () => {
  const config = parseNetConfig(
    '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":64}',
    "etcd",
  ).config;
  const lease = { subnet: v4.subnet, ipv6Subnet: v6.subnet };
  assert.deepEqual(subnetEnvFor(config, lease, 1450, true), {
    ipv4: v4,
    ipv6: v6,
    mtu: 1450,
    ipMasq: true,
  });
  const v4only = parseNetConfig('{"Network":"10.5.0.0/16"}', "etcd").config;
  assert.deepEqual(subnetEnvFor(v4only, lease, 1500, false), {
    ipv4: v4,
    mtu: 1500,
    ipMasq: false,
  });
});

Deno.test("subnet.env is written atomically with mode 0644 in a 0755 directory", async () => {
  const root = await Deno.makeTempDir({ prefix: "tt-subnetenv-" });
  const oldUmask = Deno.umask(0o077);
  try {
    const path = `${root}/run/flannel/subnet.env`;
    await writeSubnetEnv(path, { ipv4: v4, mtu: 1450, ipMasq: true });
    assert.equal(
      await Deno.readTextFile(path),
      "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.34.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o644);
    Deno.umask(0o022);
    await writeSubnetEnv(`${root}/other/subnet.env`, { ipv4: v4, mtu: 1, ipMasq: false });
    assert.equal((await Deno.stat(`${root}/other`)).mode! & 0o777, 0o755);
    // Rewriting replaces the file and leaves no temporary files behind.
    await writeSubnetEnv(path, { ipv6: v6, mtu: 1500, ipMasq: false });
    assert.match(await Deno.readTextFile(path), /^FLANNEL_IPV6_NETWORK=fc00::\/48\n/);
    const names = [];
    for await (const entry of Deno.readDir(`${root}/run/flannel`)) names.push(entry.name);
    assert.deepEqual(names, ["subnet.env"]);
  } finally {
    Deno.umask(oldUmask);
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("subnet.env reads back dotenv-style", () => {
  const vars = parseSubnetEnv(
    "# comment\n\nexport FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET = '10.5.34.1/24'\r\n" +
      'FLANNEL_MTU="1450" # trailing\nFLANNEL_IPMASQ=true # note\nEMPTY=\nFLANNEL_MTU=1400\n',
  );
  assert.deepEqual(Object.fromEntries(vars), {
    FLANNEL_NETWORK: "10.5.0.0/16",
    FLANNEL_SUBNET: "10.5.34.1/24",
    FLANNEL_MTU: "1400",
    FLANNEL_IPMASQ: "true",
    EMPTY: "",
  });
  for (const bad of ["just words\n", "A='open\n", "=x\n", 'A="x" y\n']) {
    assert.throws(() => parseSubnetEnv(bad), SubnetEnvError, bad);
  }
});

Deno.test("the written file parses back to its values (property)", () => {
  const octet = fc.nat(255);
  fc.assert(
    fc.property(
      octet,
      octet,
      fc.integer({ min: 68, max: 9000 }),
      fc.boolean(),
      (a, b, mtu, masq) => {
        const env = {
          ipv4: { network: parseNet(`10.${a}.0.0/16`), subnet: parseNet(`10.${a}.${b}.0/24`) },
          mtu,
          ipMasq: masq,
        };
        const vars = parseSubnetEnv(formatSubnetEnv(env));
        assert.equal(vars.get("FLANNEL_SUBNET"), `10.${a}.${b}.1/24`);
        assert.equal(vars.get("FLANNEL_MTU"), String(mtu));
        assert.equal(vars.get("FLANNEL_IPMASQ"), String(masq));
      },
    ),
  );
});

Deno.test("the previous subnet comes back as a network address (spec §3.4 step 3)", async () => {
  const root = await Deno.makeTempDir({ prefix: "tt-subnetenv-" });
  try {
    const path = `${root}/subnet.env`;
    assert.deepEqual(await readPreviousSubnets(path), {}); // missing file
    await writeSubnetEnv(path, { ipv4: v4, ipv6: v6, mtu: 1450, ipMasq: true });
    const both = await readPreviousSubnets(path);
    assert.equal(formatNet(both.subnet!), "10.5.34.0/24");
    assert.equal(formatNet(both.ipv6Subnet!), "fc00:0:0:22::/64");
    const cases: Array<[string, string[]]> = [
      ["FLANNEL_SUBNET=10.5.72.1/24\n", ["10.5.72.0/24"]],
      ["FLANNEL_SUBNET=10.5.72.1/24,10.6.1.1/24\n", []], // lists are not a previous subnet
      ["FLANNEL_SUBNET=garbage\nFLANNEL_IPV6_SUBNET=fc00::1/64\n", ["fc00::/64"]],
      ["FLANNEL_SUBNET=fc00::1/64\n", []], // wrong family
      ["FLANNEL_SUBNET=10.5.72.1/24\nthis is not dotenv\n", []], // parse failure
    ];
    for (const [text, expected] of cases) {
      await Deno.writeTextFile(path, text);
      const prev = await readPreviousSubnets(path);
      const got = [prev.subnet, prev.ipv6Subnet].filter((n) => n).map((n) => formatNet(n!));
      assert.deepEqual(got, expected, text);
    }
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("garbage subnet.env text only ever raises SubnetEnvError", () => {
  fc.assert(
    fc.property(fc.string({ unit: "binary", maxLength: 200 }), (text) => {
      try {
        parseSubnetEnv(text);
      } catch (error) {
        assert.ok(error instanceof SubnetEnvError, String(error));
      }
    }),
    { numRuns: 500 },
  );
});
