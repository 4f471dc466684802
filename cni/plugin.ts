/**
 * The flannel CNI plugin: ADD, DEL, CHECK, STATUS and VERSION (spec §9).
 *
 * ADD reads subnet.env, builds the delegate config, saves it under `<dataDir>/<containerID>`
 * and runs the delegate (normally `bridge` with `host-local`), printing its result verbatim.
 * Everything after ADD works from the saved bytes, never from subnet.env.
 *
 * Choices where upstream or the spec leave room:
 * - CHECK succeeds when the container has a readable saved config (the record of a successful
 *   ADD) and does not run the delegate (see `check` for why); unknown containers get code 3.
 * - A repeated ADD for a container that already has a saved config re-runs the delegate's ADD
 *   with the saved bytes, never new ones: the record of the first attachment is what DEL needs,
 *   so it is never overwritten (no leak when subnet.env changed in between), and a failure
 *   then is not rolled back, since the attachment belongs to the first ADD.
 * - A failed first ADD runs the delegate's DEL (CNI spec, delegation) and drops the saved file
 *   only if that succeeded; DEL likewise keeps the file unless the delegate DEL succeeded.
 *
 * @module
 */
import { errorText, logger } from "../log.ts";
import { VERSION } from "../version.ts";
import { buildDelegateConfig, encodeDelegateConfig } from "./delegate_config.ts";
import { findPlugin, invokeDelegate, type PluginEnv } from "./delegate_exec.ts";
import { CniError, ErrorCode } from "./errors.ts";
import { decodeConfig, isJsonObject, type NetConf, parseNetConf } from "./netconf.ts";
import {
  type CniRequest,
  type Command,
  formatError,
  formatVersionResult,
  IMPLIED_VERSION,
  outputVersion,
  parseRequest,
  versionAtLeast,
} from "./protocol.ts";
import {
  decodeSavedConfig,
  readSavedConfig,
  removeSavedConfig,
  saveConfig,
} from "./saved_config.ts";
import { readSubnetEnv, type SubnetEnv, SubnetEnvError } from "./subnet_env.ts";

const log = logger("cni");

/** What the plugin prints and its exit status. */
export interface CniOutcome {
  readonly code: number;
  readonly stdout: string;
}

type Handler = (request: CniRequest, conf: NetConf, env: PluginEnv) => Promise<string>;

async function loadSubnetEnv(file: string, code: number): Promise<SubnetEnv> {
  try {
    return await readSubnetEnv(file);
  } catch (err) {
    if (err instanceof SubnetEnvError) throw new CniError(code, err.message);
    throw err;
  }
}

function requireVersion(conf: NetConf, minimum: string, command: Command): void {
  const version = conf.cniVersion ?? IMPLIED_VERSION;
  if (!versionAtLeast(version, minimum)) {
    throw new CniError(
      ErrorCode.incompatibleVersion,
      `config version does not allow ${command}`,
      `${command} needs cniVersion ${minimum} or later, config is ${version}`,
    );
  }
}

// Undo a failed first ADD; whatever remains stays recorded for the runtime's DEL.
async function rollBack(
  type: string,
  config: Uint8Array,
  request: CniRequest,
  conf: NetConf,
  env: PluginEnv,
): Promise<void> {
  try {
    await invokeDelegate(type, "DEL", env, config);
    await removeSavedConfig(conf.dataDir, request.containerId);
  } catch (err) {
    log.warn("cleanup after failed ADD incomplete; saved config kept for DEL", {
      container: request.containerId,
      error: errorText(err),
    });
  }
}

const add: Handler = async (request, conf, env) => {
  const subnetEnv = await loadSubnetEnv(conf.subnetFile, ErrorCode.tryAgainLater);
  const delegate = buildDelegateConfig(conf, subnetEnv);
  const saved = await readSavedConfig(conf.dataDir, request.containerId);
  const previous = saved && decodeSavedConfig(saved);
  if (saved && previous) {
    log.warn("repeated ADD: re-running the delegate with the saved config", {
      container: request.containerId,
    });
    return await invokeDelegate(previous.type, "ADD", env, saved);
  }
  const type = delegate.type as string;
  await findPlugin(type, request.path); // fail before anything is recorded
  const config = encodeDelegateConfig(delegate);
  await saveConfig(conf.dataDir, request.containerId, config);
  try {
    return await invokeDelegate(type, "ADD", env, config);
  } catch (err) {
    await rollBack(type, config, request, conf, env);
    throw err;
  }
};

const del: Handler = async (request, conf, env) => {
  const saved = await readSavedConfig(conf.dataDir, request.containerId);
  if (!saved) return ""; // never added, or already deleted
  const decoded = decodeSavedConfig(saved);
  if (!decoded) {
    log.warn("saved delegate config is unreadable; keeping it", { container: request.containerId });
    return "";
  }
  await invokeDelegate(decoded.type, "DEL", env, saved);
  try {
    await removeSavedConfig(conf.dataDir, request.containerId);
  } catch (err) {
    // The delegate has released everything; a stale record only costs an idempotent re-DEL.
    log.warn("could not remove saved delegate config", { error: errorText(err) });
  }
  return "";
};

// Not delegated: bridge's CHECK (v1.1.1, what Debian ships) expects each ipam route without a
// gateway to be installed without one, but installs flannel's cluster route via the gateway,
// so a delegated CHECK fails on every healthy pod. Upstream flannel's CHECK is a no-op; ours
// at least requires the record of a successful ADD.
const check: Handler = async (request, conf) => {
  requireVersion(conf, "0.4.0", "CHECK");
  const saved = await readSavedConfig(conf.dataDir, request.containerId);
  if (!saved) {
    throw new CniError(
      ErrorCode.containerUnknown,
      `no saved delegate config for container ${request.containerId}`,
    );
  }
  if (!decodeSavedConfig(saved)) {
    throw new CniError(
      ErrorCode.internal,
      `saved delegate config for container ${request.containerId} is unreadable`,
    );
  }
  return "";
};

const status: Handler = async (_request, conf) => {
  requireVersion(conf, "1.1.0", "STATUS");
  await loadSubnetEnv(conf.subnetFile, ErrorCode.pluginNotAvailable);
  return "";
};

const HANDLERS: Record<Exclude<Command, "VERSION">, Handler> = {
  ADD: add,
  DEL: del,
  CHECK: check,
  STATUS: status,
};

// The caller's cniVersion, if any, so that even early errors are stamped with it.
function peekVersion(stdin: Uint8Array): unknown {
  try {
    const value: unknown = JSON.parse(new TextDecoder().decode(stdin));
    return isJsonObject(value) ? value.cniVersion : undefined;
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
    const conf = parseNetConf(decodeConfig(stdin));
    return { code: 0, stdout: await HANDLERS[request.command](request, conf, env) };
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
