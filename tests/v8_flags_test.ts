/**
 * The daemon's V8 flags (v8_flags.ts) apply however it is started: `deno task tartan` (deno.json
 * cannot import them, so this test holds the task to them), the lab's `tartanArgv`, and the
 * compiled binary and dist/tartan (packaging/compile.ts and packaging/self_extracting.ts pass the
 * constant itself; tests/packaging checks the launcher).
 */
import assert from "node:assert/strict";
import { tartanArgv } from "../lab/self.ts";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";

const FLAG = `--v8-flags=${DAEMON_V8_FLAGS}`;

Deno.test("deno task tartan runs main.ts with the daemon's V8 flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)));
  const task: string = config.tasks.tartan;
  assert.deepEqual(task.split(" "), ["deno", "run", "-A", FLAG, "main.ts"]);
});

Deno.test("the lab starts tartan with the daemon's V8 flags", () => {
  const argv = tartanArgv(["run"]);
  assert.ok(argv.includes(FLAG), argv.join(" "));
  assert.ok(argv.indexOf(FLAG) < argv.findIndex((arg) => arg.endsWith("main.ts")));
});
