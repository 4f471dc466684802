/**
 * The self-extracting `dist/tartan` (packaging/self_extracting.ts): it runs as the CLI, the CNI
 * plugin (named `flannel`) and the daemon (named `flanneld`) with no Deno, no npm or Deno cache
 * and no checkout in sight; simultaneous first runs share one unpacked release; a damaged file
 * refuses to run.
 */
import assert from "node:assert/strict";
import { dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { launcher } from "../../packaging/self_extracting.ts";
import { DAEMON_V8_FLAGS } from "../../v8_flags.ts";
import { distBinary } from "../helpers/dist.ts";
import { rootTest, run } from "../helpers/netns.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)).replace(/\/$/, "");

Deno.test("the launcher's payload offset is the byte after its own text", () => {
  const text = launcher("#!/bin/sh\nstart=@PAYLOAD_START@ sum=@PAYLOAD_SHA256@ é\n", {
    bytes: 10,
    sha256: "ab".repeat(32),
  });
  const start = Number(/start=(\d+)/.exec(text)?.[1]);
  assert.equal(start, new TextEncoder().encode(text).length + 1);
  assert.match(text, new RegExp(`sum=${"ab".repeat(32)} `));
});

Deno.test("the launcher runs the bundle with the daemon's V8 flags and the program's name", async () => {
  const template = await Deno.readTextFile(new URL("../../packaging/stub.sh", import.meta.url));
  const text = launcher(template, { bytes: 1, sha256: "0".repeat(64) });
  assert.doesNotMatch(text, /@[A-Z_0-9]+@/, "every placeholder filled");
  const exec = text.slice(text.indexOf("exec "));
  assert.ok(exec.includes(`--v8-flags=${DAEMON_V8_FLAGS} `), exec);
  assert.ok(exec.includes('"${0##*/}" "$@"'), exec);
});

/** A copy of dist/tartan in a fresh directory, also linked as `flannel` and `flanneld`. */
async function installedCopy(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "tartan-dist-test-" });
  await Deno.copyFile(await distBinary(), `${dir}/tartan`);
  await Deno.chmod(`${dir}/tartan`, 0o755);
  for (const name of ["flannel", "flanneld"]) await Deno.symlink("tartan", `${dir}/${name}`);
  return dir;
}

/** Every place a Deno or npm installation, cache or this checkout could be found. */
function placesToHide(): string[] {
  const env = (name: string) => Deno.env.get(name);
  const home = env("HOME");
  const candidates = [
    ROOT,
    home,
    env("DENO_DIR"),
    env("XDG_CACHE_HOME"),
    env("DENO_INSTALL"),
    env("npm_config_cache"),
    dirname(Deno.realPathSync(Deno.execPath())),
    ...(env("PATH") ?? "").split(":").filter((dir) => {
      try {
        return Deno.statSync(`${dir}/deno`).isFile;
      } catch {
        return false;
      }
    }),
  ];
  return [...new Set(candidates.filter((p): p is string => !!p && p.startsWith("/")))];
}

rootTest(
  "dist/tartan runs with Deno, its caches and the checkout hidden (mount namespace)",
  async () => {
    const dir = await installedCopy();
    try {
      // Hide each place under an empty tmpfs, outermost first, except those holding our copy.
      const hide = placesToHide()
        .filter((p) => relative(p, dir).startsWith(".."))
        .sort((a, b) => a.length - b.length)
        .filter((p, i, all) => !all.slice(0, i).some((q) => !relative(q, p).startsWith("..")));
      const script = [
        "set -e",
        ...hide.map((p) => `mount -t tmpfs tartan-hidden '${p}'`),
        "if command -v deno; then exit 10; fi",
        `if [ -e '${ROOT}/main.ts' ]; then exit 11; fi`,
        `export TARTAN_RUNTIME_DIR='${dir}/runtime'`,
        `'${dir}/tartan' version`,
        `CNI_COMMAND=VERSION '${dir}/flannel' </dev/null`,
        `'${dir}/flanneld' --help | head -n 1`,
      ].join("\n");
      const out = await run(
        [
          "env",
          "-i",
          "PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
          "unshare",
          "-m",
          "--propagation",
          "private",
          "sh",
          "-c",
          script,
        ],
        { allowFail: true, timeoutMs: 120_000 },
      );
      assert.equal(
        out.code,
        0,
        `exit ${out.code} (10: deno found, 11: checkout visible)\n${out.stderr}`,
      );
      const [version, cni, daemonUsage] = out.stdout.trim().split("\n");
      assert.match(version, /^tartan \d+\.\d+\.\d+/);
      assert.ok(JSON.parse(cni).supportedVersions.includes("1.0.0"), cni);
      assert.match(daemonUsage, /tartan run|flanneld/);
      assert.ok(hide.includes(ROOT) || hide.some((p) => ROOT.startsWith(`${p}/`)));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

rootTest(
  "tartan lab demo runs from dist/tartan alone: its daemons and CNI plugin are that file",
  async () => {
    const dir = await installedCopy();
    try {
      // The lab starts its daemons and CNI calls through the launcher (TARTAN_EXECUTABLE): from
      // the bundle, the source path it would otherwise use does not exist.
      const runtime = `TARTAN_RUNTIME_DIR=${dir}/runtime`;
      const out = await run(["env", runtime, `${dir}/tartan`, "lab", "demo"], {
        allowFail: true,
        timeoutMs: 180_000,
      });
      assert.equal(out.code, 0, out.stderr);
      assert.match(out.stdout, /all pods reach each other/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("simultaneous first runs unpack one release and leave no temporary copy", async () => {
  const dir = await installedCopy();
  try {
    const env = { TARTAN_RUNTIME_DIR: `${dir}/runtime`, CNI_COMMAND: "VERSION" };
    const calls = await Promise.all(
      [1, 2, 3].map(() =>
        new Deno.Command(`${dir}/flannel`, { env, stdin: "null", stdout: "piped", stderr: "piped" })
          .output()
      ),
    );
    for (const call of calls) {
      assert.equal(call.code, 0, new TextDecoder().decode(call.stderr));
      assert.match(new TextDecoder().decode(call.stdout), /"supportedVersions"/);
    }
    const entries = [...Deno.readDirSync(`${dir}/runtime`)];
    const links = entries.filter((e) => e.isSymlink);
    const dirs = entries.filter((e) => e.isDirectory);
    assert.equal(links.length, 1, "one published release");
    assert.equal(dirs.length, 1, `one unpacked tree: ${entries.map((e) => e.name)}`);
    assert.equal(Deno.readLinkSync(`${dir}/runtime/${links[0].name}`), dirs[0].name);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a damaged file refuses to run and unpacks nothing", async () => {
  const dir = await installedCopy();
  try {
    const file = await Deno.open(`${dir}/tartan`, { read: true, write: true });
    const { size } = await file.stat();
    const last = new Uint8Array(1);
    await file.seek(size - 1, Deno.SeekMode.Start);
    await file.read(last);
    await file.seek(size - 1, Deno.SeekMode.Start);
    await file.write(Uint8Array.of(last[0] ^ 0xff));
    file.close();
    const out = await new Deno.Command(`${dir}/tartan`, {
      args: ["version"],
      env: { TARTAN_RUNTIME_DIR: `${dir}/runtime` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 1);
    assert.match(new TextDecoder().decode(out.stderr), /is damaged: its payload's SHA-256/);
    assert.deepEqual([...Deno.readDirSync(`${dir}/runtime`)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
