/**
 * `deno task compile`: build the single `tartan` binary with `deno compile`.
 *
 * `deno compile` needs the `denort` runtime. It is normally downloaded, which this build
 * environment cannot do, so the path of a local denort must be given in DENORT_BIN. Without
 * it we stop with a clear message rather than produce anything that is not the real binary.
 */
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";

const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.error(
    "compile: set DENORT_BIN to the path of a denort binary for Deno 2.9.6 " +
      "(deno compile cannot download it here). Nothing was built.",
  );
  Deno.exit(1);
}
const output = Deno.args[0] ?? "tartan";
const { code } = await new Deno.Command(Deno.execPath(), {
  // The udp data path runs in a Worker loaded by URL: it must be named to be embedded.
  args: [
    "compile",
    "-A",
    `--v8-flags=${DAEMON_V8_FLAGS}`,
    "--include",
    "backends/udp/worker.ts",
    "--output",
    output,
    "main.ts",
  ],
  env: { DENORT_BIN: denort },
  stdout: "inherit",
  stderr: "inherit",
}).output();
if (code === 0) console.error(`compile: wrote ${output}; link or copy it as flanneld/flannel too`);
Deno.exit(code);
