/**
 * Throw-away network namespaces for tests.
 *
 * Every namespace is named `RUN_PREFIX + tag` where `RUN_PREFIX` is `tt-<6 random>-`, unique to
 * this test process, so parallel runs never collide and cleanup only ever touches our own.
 *
 * ```ts
 * rootTest("veth shows up", () =>
 *   withNetns(async (ns) => {
 *     await run(["ip", "-n", ns, "link", "add", "a", "type", "veth", "peer", "name", "b"]);
 *     const links = await ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
 *   }));
 * ```
 *
 * API: {@link RUN_PREFIX}, {@link rootTest}, {@link testNeeding}, {@link isRoot}, {@link createNetns},
 * {@link deleteNetns}, {@link withNetns}, {@link withNetnsSet}, {@link run}, {@link nsExec},
 * {@link ipJson}, {@link bridgeJson}, {@link removeLeftovers}.
 *
 * @module
 */

function randomTag(): string {
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  return Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => alphabet[b % 36]).join("");
}

/** `tt-<6 random>-`: the prefix of every namespace this process creates. */
export const RUN_PREFIX = `tt-${randomTag()}-`;

/** Whether we run as root (namespaces, links and routes need it). */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/**
 * Register a test that needs something CI provides (root, a tool, a header): `missing` names what
 * is absent, or is undefined when all is there. When something is missing the test fails under
 * `CI=true` (CI installs everything, so a skip there would hide a broken set-up) and is otherwise
 * ignored with the reason in its name.
 */
export function testNeeding(
  name: string,
  missing: string | undefined,
  fn: () => Promise<void> | void,
): void {
  if (missing === undefined) {
    Deno.test(name, fn);
  } else if (Deno.env.get("CI") === "true") {
    Deno.test(name, () => {
      throw new Error(`this test needs ${missing} (CI=true, so it fails instead of being skipped)`);
    });
  } else {
    Deno.test({ name: `${name} [ignored: needs ${missing}]`, ignore: true, fn });
  }
}

/** Register a test that needs root (namespaces, links, routes); see {@link testNeeding}. */
export function rootTest(name: string, fn: () => Promise<void> | void): void {
  testNeeding(name, isRoot() ? undefined : "root", fn);
}

/** Whether this kernel can create links of `kind` (tried in a throw-away namespace; root only). */
export async function kernelHasLinkKind(kind: string): Promise<boolean> {
  return await withNetns(async (ns) => {
    const made = await run(["ip", "-n", ns, "link", "add", "probe0", "type", kind], {
      allowFail: true,
    });
    return made.code === 0;
  }, "kind");
}

/**
 * Register a root test of a kernel feature's presence or absence: `runsWhen` says which case the
 * test is about. The other case is not tested here and is ignored with the reason in the name, so
 * a kernel without the module never "passes" the test of what it would do with it.
 */
export async function linkKindTest(
  kind: string,
  runsWhen: "present" | "missing",
  name: string,
  fn: () => Promise<void>,
): Promise<void> {
  if (!isRoot()) return rootTest(name, fn);
  const present = await kernelHasLinkKind(kind);
  const runs = present === (runsWhen === "present");
  const reason = present
    ? `this kernel has ${kind}, so its absence cannot be shown`
    : `UNVERIFIED: this kernel has no ${kind} module`;
  Deno.test({ name: runs ? name : `${name} [ignored: ${reason}]`, ignore: !runs, fn });
}

/** Whether `command` is on PATH. */
export async function hasCommand(command: string): Promise<boolean> {
  const { code } = await new Deno.Command("sh", { args: ["-c", `command -v ${command}`] })
    .output();
  return code === 0;
}

/** A command that exited non-zero. */
export class CommandError extends Error {
  constructor(readonly argv: string[], readonly code: number, readonly stderr: string) {
    super(`${argv.join(" ")} exited ${code}: ${stderr.trim()}`);
    this.name = "CommandError";
  }
}

/** The outcome of {@link run}. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run a command to completion. Throws {@link CommandError} on a non-zero exit unless
 * `allowFail` is set. Killed after `timeoutMs` (default 30 s).
 */
export async function run(
  argv: string[],
  opts: { allowFail?: boolean; stdin?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: opts.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(opts.stdin));
    await writer.close();
  }
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 30_000);
  try {
    const out = await child.output();
    const result = {
      code: out.code,
      stdout: new TextDecoder().decode(out.stdout),
      stderr: new TextDecoder().decode(out.stderr),
    };
    if (result.code !== 0 && !opts.allowFail) {
      throw new CommandError(argv, result.code, result.stderr);
    }
    return result;
  } finally {
    clearTimeout(timer);
  }
}

/** Run a command inside a namespace (`ip netns exec`). */
export function nsExec(
  ns: string,
  argv: string[],
  opts: { allowFail?: boolean; stdin?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return run(["ip", "netns", "exec", ns, ...argv], opts);
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
  return parseJsonOutput<T>(argv, (await run(argv)).stdout);
}

/** `bridge -n <ns> -j <args>` parsed, e.g. `bridgeJson(ns, ["fdb", "show", "dev", "vx0"])`. */
export async function bridgeJson<T = unknown>(ns: string, args: string[]): Promise<T> {
  const argv = ["bridge", "-n", ns, "-j", ...args];
  return parseJsonOutput<T>(argv, (await run(argv)).stdout);
}

let counter = 0;

/** Create `RUN_PREFIX + tag + n` (a counter keeps names unique) and return its name. */
export async function createNetns(tag = "ns"): Promise<string> {
  const name = `${RUN_PREFIX}${tag}${counter++}`;
  await run(["ip", "netns", "add", name]);
  return name;
}

/** Delete a namespace (missing ones are fine). */
export async function deleteNetns(name: string): Promise<void> {
  await run(["ip", "netns", "del", name], { allowFail: true });
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

async function listNetns(): Promise<string[]> {
  const { stdout } = await run(["ip", "netns", "list"]);
  return stdout.split("\n").map((line) => line.split(" ")[0]).filter((n) => n !== "");
}

/**
 * Delete every namespace whose name starts with `prefix` (default: this run's). Refuses
 * prefixes that are not of the `tt-...-` form, so it can never touch someone else's.
 * Returns the names it deleted.
 */
export async function removeLeftovers(prefix = RUN_PREFIX): Promise<string[]> {
  if (!/^tt-[a-z0-9]+-/.test(prefix)) throw new RangeError(`refusing to clean prefix ${prefix}`);
  const mine = (await listNetns()).filter((n) => n.startsWith(prefix));
  for (const name of mine) await deleteNetns(name);
  return mine;
}
