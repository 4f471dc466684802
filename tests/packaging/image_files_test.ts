/**
 * The image's shell tools (packaging/image/): mk-docker-opts.sh writes flannel's Docker options
 * from subnet.env (same options, lines and quirks as flannel's script), and install-conf copies
 * atomically with flannel's usage error.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";

const BIN = fileURLToPath(new URL("../../packaging/image/opt/bin/", import.meta.url));

interface Ran {
  code: number;
  stderr: string;
  /** The Docker env file the script wrote ("" when none). */
  written: string;
}

/**
 * Run mk-docker-opts.sh on `subnetEnv` with a stand-in `ip` that prints `routes` for
 * `ip route show`, so the routing check sees a known table.
 */
async function mkDockerOpts(
  subnetEnv: string,
  args: string[] = [],
  routes = "",
  env: Record<string, string> = {},
): Promise<Ran> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/subnet.env`, subnetEnv);
    await Deno.writeTextFile(`${dir}/routes`, routes);
    await Deno.writeTextFile(`${dir}/ip`, `#!/bin/sh\ncat '${dir}/routes'\n`, { mode: 0o755 });
    const out = await new Deno.Command("sh", {
      args: [`${BIN}mk-docker-opts.sh`, "-f", `${dir}/subnet.env`, "-d", `${dir}/out`, ...args],
      env: { PATH: `${dir}:/usr/bin:/bin`, ...env },
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      code: out.code,
      stderr: new TextDecoder().decode(out.stderr),
      written: await Deno.readTextFile(`${dir}/out`).catch(() => ""),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SUBNET_ENV = [
  "FLANNEL_NETWORK=10.244.0.0/16",
  "FLANNEL_SUBNET=10.244.5.1/24",
  "FLANNEL_MTU=1450",
  "FLANNEL_IPMASQ=true",
  "",
].join("\n");

Deno.test("mk-docker-opts.sh: each option on its line, then DOCKER_OPTS, as flannel's", async () => {
  const ran = await mkDockerOpts(SUBNET_ENV);
  assert.equal(ran.code, 0, ran.stderr);
  assert.equal(
    ran.written,
    [
      'DOCKER_OPT_BIP="--bip=10.244.5.1/24"',
      'DOCKER_OPT_IPMASQ="--ip-masq=false"',
      'DOCKER_OPT_MTU="--mtu=1450"',
      'DOCKER_OPTS=" --bip=10.244.5.1/24 --ip-masq=false --mtu=1450"',
      "",
    ].join("\n"),
  );
});

Deno.test("mk-docker-opts.sh: -c -k, -m, an existing key value and FLANNEL_IPMASQ=false", async () => {
  const combined = await mkDockerOpts(SUBNET_ENV, ["-c", "-k", "FOO", "-m"], "", { FOO: "-D" });
  assert.equal(combined.written, 'FOO="-D  --bip=10.244.5.1/24 --mtu=1450"\n');
  const noMasq = await mkDockerOpts(SUBNET_ENV.replace("IPMASQ=true", "IPMASQ=false"), ["-i"]);
  assert.match(noMasq.written, /^DOCKER_OPT_IPMASQ="--ip-masq=true"$/m);
  assert.doesNotMatch(noMasq.written, /DOCKER_OPTS=/);
});

Deno.test("mk-docker-opts.sh: a bad FLANNEL_IPMASQ and a routed subnet are errors", async () => {
  const bad = await mkDockerOpts(SUBNET_ENV.replace("IPMASQ=true", "IPMASQ=maybe"));
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /Invalid value of FLANNEL_IPMASQ: maybe/);
  const routed = await mkDockerOpts(SUBNET_ENV, [], "10.244.5.0/24 via 192.0.2.1 dev eth0\n");
  assert.equal(routed.code, 1);
  assert.match(routed.stderr, /already contains the subnet: 10\.244\.5\.0\/24 via 192\.0\.2\.1/);
  const direct = await mkDockerOpts(SUBNET_ENV, [], "10.244.5.0/24 dev cni0 scope link\n");
  assert.equal(direct.code, 0, "a route without a gateway is the bridge's own");
});

Deno.test("install-conf copies atomically, keeps the mode, and needs two arguments", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/src`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.writeTextFile(`${dir}/dst`, "old");
    const ok = await new Deno.Command(`${BIN}install-conf`, { args: [`${dir}/src`, `${dir}/dst`] })
      .output();
    assert.equal(ok.code, 0);
    assert.equal(await Deno.readTextFile(`${dir}/dst`), "#!/bin/sh\n");
    assert.equal((await Deno.stat(`${dir}/dst`)).mode! & 0o777, 0o755);
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name).sort(), ["dst", "src"]);
    const usage = await new Deno.Command(`${BIN}install-conf`, { args: [`${dir}/src`] }).output();
    assert.equal(usage.code, 1);
    assert.match(new TextDecoder().decode(usage.stderr), /^usage: .*install-conf <src> <dest>/);
    const missing = await new Deno.Command(`${BIN}install-conf`, {
      args: [`${dir}/nothing`, `${dir}/dst`],
      stderr: "piped",
    }).output();
    assert.equal(missing.code, 1);
    assert.equal(await Deno.readTextFile(`${dir}/dst`), "#!/bin/sh\n", "DST untouched");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
