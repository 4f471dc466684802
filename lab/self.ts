/**
 * How the lab starts Tartan itself in a node namespace: the compiled binary directly, the
 * self-extracting dist/tartan through its launcher (which names itself in TARTAN_EXECUTABLE), or
 * `deno run -A main.ts` when running from source.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";

/** Set by dist/tartan's launcher (packaging/stub.sh) to its own absolute path. */
export const LAUNCHER_ENV = "TARTAN_EXECUTABLE";

/** The argv that runs `tartan <args>`. */
export function tartanArgv(args: readonly string[]): string[] {
  if (Deno.build.standalone) return [Deno.execPath(), ...args];
  const launcher = Deno.env.get(LAUNCHER_ENV);
  if (launcher) return [launcher, ...args];
  const main = fileURLToPath(new URL("../main.ts", import.meta.url));
  return [Deno.execPath(), "run", "-A", `--v8-flags=${DAEMON_V8_FLAGS}`, main, ...args];
}
