/**
 * Runs the firewall tools (`iptables-save`, `iptables-restore`, `nft`, …) for the traffic
 * managers.
 *
 * The daemon runs inside its node's network namespace, so by default a command runs where the
 * calling process runs. Tests (and `tartan lab`) pass `netns` instead: the command is then
 * prefixed with `ip netns exec <netns>`, which keeps the rule code unaware of namespaces.
 * Binaries are resolved on PATH first, so "tool not installed" is one typed error whether or
 * not a namespace prefix is used.
 *
 * @module
 */

/** Runs one command with optional stdin and returns its stdout; throws on failure. */
export type CommandRunner = (argv: readonly string[], stdin?: string) => Promise<string>;

/** The named program is not installed (not found on the search path). */
export class CommandNotFoundError extends Error {
  constructor(readonly command: string) {
    super(`${command}: command not found`);
    this.name = "CommandNotFoundError";
  }
}

/** The program ran and exited non-zero (or was killed after the timeout). */
export class CommandFailedError extends Error {
  constructor(readonly argv: readonly string[], readonly code: number, readonly stderr: string) {
    super(`${argv.join(" ")} exited with ${code}: ${stderr.trim()}`);
    this.name = "CommandFailedError";
  }
}

/** Options for {@link commandRunner} and {@link runCommand}. */
export interface RunnerOptions {
  /** Run every command inside this named network namespace (`ip netns exec`). */
  readonly netns?: string;
  /** Directories searched for binaries, colon-separated; defaults to `$PATH`. */
  readonly searchPath?: string;
  /** Kill a command that runs longer than this (default 30 s; iptables may wait for its lock). */
  readonly timeoutMs?: number;
}

function isExecutable(path: string): boolean {
  try {
    const info = Deno.statSync(path);
    return info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** {@link resolveCommand}, synchronously. */
function findCommand(name: string, searchPath: string): string {
  if (name.includes("/")) {
    if (isExecutable(name)) return name;
    throw new CommandNotFoundError(name);
  }
  for (const dir of searchPath.split(":")) {
    if (dir && isExecutable(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  throw new CommandNotFoundError(name);
}

/** Find `name` on a colon-separated search path, or throw {@link CommandNotFoundError}. */
export function resolveCommand(name: string, searchPath: string): Promise<string> {
  try {
    return Promise.resolve(findCommand(name, searchPath));
  } catch (error) {
    return Promise.reject(error);
  }
}

/** The outcome of {@link runCommand}. */
export interface CommandResult {
  readonly code: number;
  /** The signal that killed it (the timeout's SIGTERM, say), if one did. */
  readonly signal?: Deno.Signal;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options for {@link runCommand}. */
export interface RunCommandOptions extends RunnerOptions {
  /** Text written to the command's stdin (closed right after). */
  readonly stdin?: string;
  /** Variables added to the environment the command inherits. */
  readonly env?: Readonly<Record<string, string>>;
  /** Return a non-zero exit instead of throwing {@link CommandFailedError}. */
  readonly allowFail?: boolean;
}

/**
 * Run one command to completion (inside `netns` when given) and return its exit code and output.
 * Throws {@link CommandNotFoundError} when the program is not installed, and
 * {@link CommandFailedError} on a non-zero exit (or a kill after the timeout) unless `allowFail`.
 *
 * @example
 * ```ts
 * const { stdout } = await runCommand(["ip", "-j", "link", "show"], { netns: "tt-abc123-n1" });
 * ```
 */
export function runCommand(
  argv: readonly string[],
  options: RunCommandOptions = {},
): Promise<CommandResult> {
  // Resolved and spawned before returning: a caller that blocks the event loop right after the
  // call (a synchronous poll) still has its command running.
  let child: Deno.ChildProcess;
  try {
    child = spawn(argv, options);
  } catch (error) {
    return Promise.reject(error);
  }
  return finish(argv, child, options);
}

function spawn(argv: readonly string[], options: RunCommandOptions): Deno.ChildProcess {
  const searchPath = options.searchPath ?? Deno.env.get("PATH") ??
    "/usr/sbin:/usr/bin:/sbin:/bin";
  const program = findCommand(argv[0], searchPath);
  const full = options.netns
    ? [findCommand("ip", searchPath), "netns", "exec", options.netns, program]
    : [program];
  return new Deno.Command(full[0], {
    args: [...full.slice(1), ...argv.slice(1)],
    ...(options.env && { env: { ...options.env } }),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(options.timeoutMs ?? 30_000),
  }).spawn();
}

async function finish(
  argv: readonly string[],
  child: Deno.ChildProcess,
  options: RunCommandOptions,
): Promise<CommandResult> {
  if (options.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    // A program that exits without reading all input reports the problem in its exit status.
    await writer.write(new TextEncoder().encode(options.stdin)).catch(() => {});
    await writer.close().catch(() => {});
  }
  const out = await child.output();
  const decoder = new TextDecoder();
  const result = {
    code: out.code,
    ...(out.signal && { signal: out.signal }),
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (result.code !== 0 && !options.allowFail) {
    throw new CommandFailedError(argv, result.code, result.stderr);
  }
  return result;
}

/**
 * Build a {@link CommandRunner}.
 *
 * @example
 * ```ts
 * const run = commandRunner({ netns: "tt-abc123-node" });
 * const rules = await run(["iptables-save", "-t", "nat"]);
 * ```
 */
export function commandRunner(options: RunnerOptions = {}): CommandRunner {
  return async (argv, stdin) => (await runCommand(argv, { ...options, stdin })).stdout;
}
