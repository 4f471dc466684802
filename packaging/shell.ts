/**
 * The build's shell tools: running a command with its error text, and GNU tar with everything
 * that varies between builds (order, owners, times) fixed, so the same files give the same bytes.
 *
 * @module
 */
import { runCommand } from "../exec.ts";

/** GNU tar's flags for a reproducible archive. */
export const REPRODUCIBLE_TAR_FLAGS = [
  "--sort=name",
  "--owner=0",
  "--group=0",
  "--numeric-owner",
  "--mtime=@0",
] as const;

/** A build step (a large tar or gzip on a loaded machine) may take minutes, not exec.ts's 30 s. */
const STEP_TIMEOUT_MS = 10 * 60_000;

/** Run a command (exec.ts's runner); throws with its stderr when it fails. */
export async function run(argv: readonly string[]): Promise<void> {
  await runCommand(argv, { timeoutMs: STEP_TIMEOUT_MS });
}

/** Archive `entries` of `dir` (all of it when omitted) into `output`, reproducibly. */
export async function reproducibleTar(
  dir: string,
  output: string,
  entries?: readonly string[],
): Promise<void> {
  const names = entries ?? [...Deno.readDirSync(dir)].map((e) => e.name);
  await run(["tar", ...REPRODUCIBLE_TAR_FLAGS, "-C", dir, "-cf", output, ...names]);
}
