/**
 * `deno compile` of the whole program into one executable. It needs the denort runtime of this
 * Deno release, which Deno downloads; DENORT_BIN, when set, names a local copy instead.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));

/**
 * Compile to `output`; resolves to whether it worked. Deno's own messages (a failed download,
 * for one) go to stderr unless `quiet`.
 */
export async function compileBinary(output: string, quiet = false): Promise<boolean> {
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: [
      "compile",
      "-A",
      `--v8-flags=${DAEMON_V8_FLAGS}`,
      // The udp data path runs in a Worker loaded by URL: it must be named to be embedded.
      "--include",
      "backends/udp/worker.ts",
      "--output",
      output,
      "main.ts",
    ],
    cwd: ROOT,
    stdout: quiet ? "null" : "inherit",
    stderr: quiet ? "null" : "inherit",
  }).output();
  return success;
}

/** What to tell the user when compiling failed. */
export function compileFailureHint(): string {
  return Deno.env.get("DENORT_BIN")
    ? "deno compile failed with DENORT_BIN set: check that it is denort for Deno 2.9.6"
    : "deno compile failed; if it could not download denort, set DENORT_BIN to a local denort " +
      "for Deno 2.9.6";
}
