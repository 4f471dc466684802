/**
 * Running a delegate plugin the way the CNI spec's delegation protocol says: found in
 * `CNI_PATH`, given the same environment with `CNI_COMMAND` set, config on stdin, result on
 * stdout, its stderr going to ours.
 *
 * @module
 */
import { join } from "node:path";
import { CniError, DelegateError, ErrorCode } from "./errors.ts";
import { isRecord, parseJsonOrUndefined } from "../json.ts";
import type { Command } from "./protocol.ts";
import { errorText } from "../log.ts";

/** The environment a plugin runs with; `CNI_PATH` is where delegates are looked up. */
export type PluginEnv = Record<string, string | undefined>;

/**
 * The first regular file named `type` in the colon-separated `cniPath` directories.
 *
 * @throws {CniError} code 999 when no directory has it.
 */
export async function findPlugin(type: string, cniPath: string): Promise<string> {
  const dirs = cniPath.split(":").filter((dir) => dir !== "");
  for (const dir of dirs) {
    const candidate = join(dir, type);
    try {
      if ((await Deno.stat(candidate)).isFile) return candidate;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(
    ErrorCode.internal,
    `failed to find plugin ${JSON.stringify(type)} in path [${dirs.join(" ")}]`,
  );
}

function definedOnly(env: PluginEnv): Record<string, string> {
  return Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => entry[1] !== undefined),
  );
}

function isErrorResult(value: unknown): boolean {
  return isRecord(value) && typeof value.code === "number" && typeof value.msg === "string";
}

async function run(file: string, env: Record<string, string>, stdin: Uint8Array) {
  const child = new Deno.Command(file, {
    env,
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const feed = async () => {
    const writer = child.stdin.getWriter();
    try {
      await writer.write(stdin);
      await writer.close();
    } catch {
      // The plugin exited without reading its config; its status tells what happened.
    }
  };
  const [, output] = await Promise.all([feed(), child.output()]);
  return output;
}

/**
 * Run delegate `type` for `command` with `config` on stdin; returns its stdout on success.
 *
 * A successful ADD must print a result object; CHECK and DEL print nothing.
 *
 * @throws {DelegateError} when it fails with a CNI error result (passed on verbatim).
 * @throws {CniError} code 999 when it cannot be found or run, or fails without an error result.
 */
export async function invokeDelegate(
  type: string,
  command: Command,
  env: PluginEnv,
  config: Uint8Array,
): Promise<string> {
  const file = await findPlugin(type, env.CNI_PATH ?? "");
  let output: Deno.CommandOutput;
  try {
    output = await run(file, { ...definedOnly(env), CNI_COMMAND: command }, config);
  } catch (err) {
    const reason = errorText(err);
    throw new CniError(ErrorCode.internal, `failed to run delegate plugin ${file}`, reason);
  }
  const stdout = new TextDecoder().decode(output.stdout);
  const result = parseJsonOrUndefined(stdout);
  if (!output.success) {
    if (isErrorResult(result)) {
      const { code, msg } = result as { code: number; msg: string };
      throw new DelegateError(stdout, code, msg);
    }
    throw new CniError(
      ErrorCode.internal,
      `delegate plugin ${type} ${command} failed with exit status ${output.code}`,
      stdout.trim().slice(0, 1000),
    );
  }
  if (command === "ADD" && !isRecord(result)) {
    throw new CniError(
      ErrorCode.internal,
      `delegate plugin ${type} returned an invalid ADD result`,
      stdout.trim().slice(0, 1000),
    );
  }
  return stdout;
}
