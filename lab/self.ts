/**
 * How the lab starts Tartan itself in a node namespace: the compiled binary directly, or
 * `deno run -A main.ts` when running from source.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";

/** The argv that runs `tartan <args>`. */
export function tartanArgv(args: readonly string[]): string[] {
  if (Deno.build.standalone) return [Deno.execPath(), ...args];
  const main = fileURLToPath(new URL("../main.ts", import.meta.url));
  return [Deno.execPath(), "run", "-A", `--v8-flags=${DAEMON_V8_FLAGS}`, main, ...args];
}
