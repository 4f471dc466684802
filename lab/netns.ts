/**
 * Throw-away network namespaces for tests and benchmarks.
 *
 * Every namespace is named `RUN_PREFIX + tag` where `RUN_PREFIX` is `tt-<6 random>-`, unique to
 * this process, so parallel runs never collide and cleanup only ever touches our own. Commands
 * run through exec.ts's {@link runCommand} (re-exported here as `run`).
 *
 * ```ts
 * await withNetns(async (ns) => {
 *   await run(["ip", "-n", ns, "link", "add", "a", "type", "veth", "peer", "name", "b"]);
 *   const links = await ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
 * });
 * ```
 *
 * @module
 */
import { type CommandResult, commandRunner, runCommand, type RunCommandOptions } from "../exec.ts";
import { deleteLabNetns } from "./topology.ts";

export { type CommandResult, runCommand as run } from "../exec.ts";

/** Six random lowercase letters and digits: what makes a run's namespace names its own. */
export function randomTag(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => alphabet[b % 36]).join("");
}

/** `tt-<6 random>-`: the prefix of every namespace this process creates. */
export const RUN_PREFIX = `tt-${randomTag()}-`;

/** Run a command inside a namespace (`ip netns exec`). */
export function nsExec(
  ns: string,
  argv: string[],
  opts: RunCommandOptions = {},
): Promise<CommandResult> {
  return runCommand(argv, { ...opts, netns: ns });
}

function parseJsonOutput<T>(argv: string[], text: string): T {
  // Some listings print nothing at all when empty.
  if (text.trim() === "") return [] as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`${argv.join(" ")} printed invalid JSON: ${text.slice(0, 200)}`);
  }
}

/** `ip -n <ns> -j <args>` parsed, e.g. `ipJson(ns, ["-d", "link", "show"])`. */
export async function ipJson<T = unknown>(ns: string, args: string[]): Promise<T> {
  const argv = ["ip", "-n", ns, "-j", ...args];
  return parseJsonOutput<T>(argv, (await runCommand(argv)).stdout);
}

/** `bridge -n <ns> -j <args>` parsed, e.g. `bridgeJson(ns, ["fdb", "show", "dev", "vx0"])`. */
export async function bridgeJson<T = unknown>(ns: string, args: string[]): Promise<T> {
  const argv = ["bridge", "-n", ns, "-j", ...args];
  return parseJsonOutput<T>(argv, (await runCommand(argv)).stdout);
}

let counter = 0;

/** Create `RUN_PREFIX + tag + n` (a counter keeps names unique) and return its name. */
export async function createNetns(tag = "ns"): Promise<string> {
  const name = `${RUN_PREFIX}${tag}${counter++}`;
  await runCommand(["ip", "netns", "add", name]);
  return name;
}

/** Delete a namespace (missing ones are fine). */
export async function deleteNetns(name: string): Promise<void> {
  await runCommand(["ip", "netns", "del", name], { allowFail: true });
}

/** Run `fn` with one fresh namespace, deleted afterwards even when `fn` throws. */
export function withNetns<T>(fn: (ns: string) => Promise<T> | T, tag = "ns"): Promise<T> {
  return withNetnsSet(1, (names) => fn(names[0]), tag);
}

/** Run `fn` with `count` fresh namespaces, all deleted afterwards. */
export async function withNetnsSet<T>(
  count: number,
  fn: (names: string[]) => Promise<T> | T,
  tag = "ns",
): Promise<T> {
  const names: string[] = [];
  try {
    for (let i = 0; i < count; i++) names.push(await createNetns(tag));
    return await fn(names);
  } finally {
    for (const name of names) await deleteNetns(name);
  }
}

/**
 * Delete every namespace whose name starts with `prefix` (default: this run's), as the lab
 * deletes its own. Refuses prefixes that are not of the `tt-...-` form, so it can never touch
 * someone else's. Returns the names it deleted.
 */
export function removeLeftovers(prefix = RUN_PREFIX): Promise<string[]> {
  return deleteLabNetns(commandRunner(), prefix);
}

/** A command left running in a namespace; disposing of it kills it and waits for its exit. */
export interface BackgroundCommand extends AsyncDisposable {
  readonly child: Deno.ChildProcess;
}

/**
 * Start `argv` inside `ns` without waiting for it (e.g. a server a test talks to), output
 * discarded, killed after `timeoutMs` at the latest.
 *
 * @example
 * ```ts
 * await using _server = spawnInNetns(ns, ["iperf3", "-s", "-1"], 15_000);
 * ```
 */
export function spawnInNetns(ns: string, argv: string[], timeoutMs: number): BackgroundCommand {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns, ...argv],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout(timeoutMs),
  }).spawn();
  return {
    child,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* exited */ }
      await child.status;
    },
  };
}
