/**
 * The flannel CNI plugin as a process (spec §9): the CNI_* environment, the config on stdin, the
 * result on stdout. VERSION is answered here; the other commands live in cni/commands.ts, loaded
 * only when one of them runs, so that a runtime's VERSION probe stays cheap.
 *
 * @module
 */
import { errorText, logger } from "../log.ts";
import { VERSION } from "../version.ts";
import type { PluginEnv } from "./delegate_exec.ts";
import { CniError, ErrorCode } from "./errors.ts";
import { isRecord } from "../json.ts";
import { formatError, formatVersionResult, outputVersion, parseRequest } from "./protocol.ts";

const log = logger("cni");

/** What the plugin prints and its exit status. */
export interface CniOutcome {
  readonly code: number;
  readonly stdout: string;
}

// The caller's cniVersion, if any, so that even early errors are stamped with it.
function peekVersion(stdin: Uint8Array): unknown {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(stdin));
    return isRecord(value) ? value.cniVersion : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Run the plugin for one invocation: `env` holds the `CNI_*` variables (and is passed on to the
 * delegate), `stdin` the network config. Never throws: every failure becomes a CNI error
 * result with a non-zero code.
 *
 * @example
 * ```ts
 * const { code, stdout } = await cniMain({ CNI_COMMAND: "VERSION" }, new Uint8Array());
 * // code 0, stdout '{"cniVersion":"1.1.0","supportedVersions":["0.1.0",…,"1.1.0"]}\n'
 * ```
 */
export async function cniMain(env: PluginEnv, stdin: Uint8Array): Promise<CniOutcome> {
  const requested = peekVersion(stdin);
  try {
    const request = parseRequest(env);
    if (request.command === "VERSION") return { code: 0, stdout: formatVersionResult(requested) };
    const { runConfigCommand } = await import("./commands.ts");
    return {
      code: 0,
      stdout: await runConfigCommand({ ...request, command: request.command }, stdin, env),
    };
  } catch (err) {
    const failure = err instanceof CniError
      ? err
      : new CniError(ErrorCode.internal, "internal error", errorText(err));
    log.error(failure.message, { code: failure.code, details: failure.details || undefined });
    return { code: 1, stdout: formatError(failure, outputVersion(requested)) };
  }
}

async function readAll(
  file: { isTerminal(): boolean; readable: ReadableStream<Uint8Array> },
): Promise<Uint8Array> {
  if (file.isTerminal()) return new Uint8Array();
  return await new Response(file.readable).bytes();
}

async function writeAll(
  file: { write(bytes: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let written = 0;
  while (written < bytes.length) written += await file.write(bytes.subarray(written));
}

/**
 * The plugin as a process: real environment, stdin and stdout; resolves to the exit status.
 * This is what `tartan cni` and a binary invoked as `flannel` run.
 */
export async function runCniPlugin(): Promise<number> {
  const env = Deno.env.toObject();
  if (!env.CNI_COMMAND) console.error(`CNI plugin flannel (tartan ${VERSION})`);
  const { code, stdout } = await cniMain(env, await readAll(Deno.stdin));
  await writeAll(Deno.stdout, new TextEncoder().encode(stdout));
  return code;
}
