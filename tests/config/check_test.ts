import assert from "node:assert/strict";
import { configCheck, configCheckCommand } from "../../config/check.ts";
import { FlagError } from "../../config/flags.ts";

/** Run `fn` with a temp dir holding `files`, removed afterwards. */
async function withFiles(
  files: Record<string, string>,
  fn: (dir: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tt-config-check-" });
  try {
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text);
    }
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("config check: prints the effective config with defaults filled in", async () => {
  await withFiles({
    "net-conf.json":
      '{"network":"10.244.3.7/16","EnableIPv6":true,"IPv6Network":"FD00:10:244::/56",' +
      '"Backend":{"Type":"VXLAN","VNI":4096,"DirectRouting":true}}',
  }, async (dir) => {
    const result = await configCheck(`${dir}/net-conf.json`);
    assert.equal(result.ok, true);
    assert.deepEqual(result.warnings, []);
    assert.deepEqual(JSON.parse(result.output), {
      EnableIPv4: true,
      EnableIPv6: true,
      Network: "10.244.0.0/16",
      SubnetLen: 24,
      SubnetMin: "10.244.1.0",
      SubnetMax: "10.244.255.0",
      IPv6Network: "fd00:10:244::/56",
      IPv6SubnetLen: 64,
      IPv6SubnetMin: "fd00:10:244:1::",
      IPv6SubnetMax: "fd00:10:244:ff::",
      EnableNFTables: false,
      Backend: { Type: "vxlan", vni: 4096, directrouting: true },
    });
    assert.match(result.output, /^\{\n {2}"EnableIPv4": true,\n/, "pretty-printed");
  });
});

Deno.test("config check: a missing Backend is accepted with a warning", async () => {
  await withFiles({ "c.json": '{"Network":"10.5.0.0/16"}' }, async (dir) => {
    const result = await configCheck(`${dir}/c.json`, "etcd");
    assert.equal(result.ok, true);
    assert.equal(JSON.parse(result.output).Backend.Type, "udp");
    assert.equal(result.warnings.length, 1);
  });
});

Deno.test("config check: errors name the file and the field; the mode matters", async () => {
  await withFiles({
    "small.json": '{"Network":"10.5.0.0/29","Backend":{"Type":"host-gw"}}',
    "garbage.json": "Network: 10.5.0.0/16",
  }, async (dir) => {
    const small = await configCheck(`${dir}/small.json`);
    assert.deepEqual(small, {
      ok: false,
      output:
        `${dir}/small.json: Network: network is too small. Minimum useful network prefix is /28`,
      warnings: [],
    });
    const kube = await configCheck(`${dir}/small.json`, "kube");
    assert.equal(kube.ok, true);
    assert.equal(JSON.parse(kube.output).SubnetLen, 31);

    const garbage = await configCheck(`${dir}/garbage.json`);
    assert.equal(garbage.ok, false);
    assert.match(garbage.output, /garbage\.json: invalid JSON: /);

    const missing = await configCheck(`${dir}/nope.json`);
    assert.equal(missing.ok, false);
    assert.match(missing.output, /nope\.json: cannot read: /);
  });
});

Deno.test("config check: command arguments FILE [--mode etcd|kube]", async () => {
  await withFiles(
    { "small.json": '{"Network":"10.5.0.0/29","Backend":{"Type":"udp"}}' },
    async (dir) => {
      const file = `${dir}/small.json`;
      assert.equal((await configCheckCommand([file])).ok, false);
      for (
        const args of [[file, "--mode", "kube"], ["--mode=kube", file], ["-mode", "kube", file]]
      ) {
        assert.equal((await configCheckCommand(args)).ok, true, args.join(" "));
      }
      assert.equal((await configCheckCommand([file, "--mode=etcd"])).ok, false);
    },
  );
  const usageErrors: [string[], string][] = [
    [[], "FILE"],
    [["a.json", "b.json"], "FILE"],
    [["a.json", "--mode=k8s"], "mode"],
    [["a.json", "--mode"], "mode"],
    [["a.json", "--strict"], "--strict"],
  ];
  for (const [args, flag] of usageErrors) {
    await assert.rejects(
      async () => await configCheckCommand(args),
      (err) => err instanceof FlagError && err.flag === flag,
      args.join(" "),
    );
  }
});

Deno.test("config check: backend options are checked, in kube mode too", async () => {
  await withFiles({
    "mtu.json": '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","MTU":-100}}',
    "typo.json": '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","DirectRoute":true}}',
  }, async (dir) => {
    for (const mode of ["etcd", "kube"] as const) {
      const result = await configCheck(`${dir}/mtu.json`, mode);
      assert.equal(result.ok, false);
      assert.equal(
        result.output,
        `${dir}/mtu.json: Backend.MTU: must be between 138 and 65535 ` +
          "(0 or absent: the external interface's MTU), got -100",
      );
    }
    const typo = await configCheck(`${dir}/typo.json`);
    assert.equal(typo.ok, true);
    assert.deepEqual(typo.warnings, [
      `ignoring member Backend."directroute": the vxlan backend has no such option`,
    ]);
  });
});
