/**
 * Throw-away network namespaces for tests, and tests that need root, a tool or a kernel feature.
 *
 * ```ts
 * rootTest("veth shows up", () =>
 *   withNetns(async (ns) => {
 *     await run(["ip", "-n", ns, "link", "add", "a", "type", "veth", "peer", "name", "b"]);
 *     const links = await ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
 *   }));
 * ```
 *
 * Test registration (root, tools, kernel features) is here; the namespaces themselves and `run`
 * come from lab/netns.ts, re-exported so a test imports one module.
 *
 * @module
 */
import { run, withNetns } from "../../lab/netns.ts";

export * from "../../lab/netns.ts";

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
