/**
 * The build's shell tools: running a command with its error text, and GNU tar with everything
 * that varies between builds (order, owners, times) fixed, so the same files give the same bytes.
 *
 * @module
 */

/** GNU tar's flags for a reproducible archive. */
export const REPRODUCIBLE_TAR_FLAGS = [
  "--sort=name",
  "--owner=0",
  "--group=0",
  "--numeric-owner",
  "--mtime=@0",
] as const;

/** Run a command; throws with its stderr when it fails. */
export async function run(argv: readonly string[]): Promise<void> {
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), stderr: "piped" }).output();
  if (!out.success) {
    throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
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
