/**
 * subnet.env is written durably: the temporary file is fsynced before the rename and the
 * directory after it, so a crash never leaves the CNI plugin an empty subnet.env. Checked on
 * the real system calls, traced with strace (`-y` names the file behind each descriptor).
 */
import assert from "node:assert/strict";
import { testNeeding } from "../helpers/netns.ts";

const hasStrace = await new Deno.Command("sh", {
  args: ["-c", "command -v strace"],
  stdout: "null",
  stderr: "null",
}).output().then((o) => o.success, () => false);

const WRITER = new URL("../../subnet/subnet_env.ts", import.meta.url).href;

testNeeding(
  "subnet.env: fsync the file, rename, fsync the directory",
  hasStrace ? undefined : "strace",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "tt-subnet-env-fsync-" });
    try {
      const path = `${dir}/run/subnet.env`;
      const script = `
      import { writeSubnetEnv } from ${JSON.stringify(WRITER)};
      import { parseNet } from ${JSON.stringify(new URL("../../ip/mod.ts", import.meta.url).href)};
      await writeSubnetEnv(${JSON.stringify(path)}, {
        ipv4: { network: parseNet("10.244.0.0/16"), subnet: parseNet("10.244.1.0/24") },
        mtu: 1450,
        ipMasq: true,
      });`;
      const trace = `${dir}/trace`;
      const { code, stderr } = await new Deno.Command("strace", {
        args: [
          "-f",
          "-qq",
          "-y",
          "-e",
          "trace=fsync,fdatasync,rename,renameat,renameat2",
          "-o",
          trace,
          Deno.execPath(),
          "eval",
          script,
        ],
        stdout: "null",
        stderr: "piped",
      }).output();
      assert.equal(code, 0, new TextDecoder().decode(stderr));
      // Only the calls about our files, in the order they happened.
      const calls = (await Deno.readTextFile(trace)).split("\n")
        .filter((line) => line.includes(dir) && / = 0$/.test(line))
        .map((line) => line.replace(/^\d+\s+/, ""));
      const fileSync = calls.findIndex((c) =>
        /^f(data)?sync\(\d+<[^>]*\.subnet\.env\.tmp>\)/.test(c)
      );
      const rename = calls.findIndex((c) =>
        /^rename(at2?)?\(.*\.subnet\.env\.tmp.*subnet\.env"/.test(c)
      );
      const dirSync = calls.findIndex((c) =>
        new RegExp(`^f(data)?sync\\(\\d+<${dir}/run>\\)`).test(c)
      );
      assert.ok(fileSync >= 0, `no fsync of the temporary file in:\n${calls.join("\n")}`);
      assert.ok(rename > fileSync, `the rename must follow the file's fsync:\n${calls.join("\n")}`);
      assert.ok(
        dirSync > rename,
        `the directory's fsync must follow the rename:\n${calls.join("\n")}`,
      );
      assert.match(await Deno.readTextFile(path), /^FLANNEL_SUBNET=10\.244\.1\.1\/24$/m);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
