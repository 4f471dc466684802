/**
 * The flannel CNI plugin's commands that read a network config: ADD, DEL, CHECK and STATUS
 * (spec §9). cni/plugin.ts loads this module only for them, so a VERSION call (a runtime's
 * probe) does not load the config schema (zod) or the delegate machinery.
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
import { buildDelegateConfig, encodeDelegateConfig } from "./delegate_config.ts";
import { findPlugin, invokeDelegate, type PluginEnv } from "./delegate_exec.ts";
import { CniError, ErrorCode } from "./errors.ts";
import { decodeConfig, type NetConf, parseNetConf } from "./netconf.ts";
import { type CniRequest, type Command, IMPLIED_VERSION, versionAtLeast } from "./protocol.ts";
import {
  decodeSavedConfig,
  readSavedConfig,
  removeSavedConfig,
  saveConfig,
} from "./saved_config.ts";
import { readSubnetEnv, type SubnetEnv, SubnetEnvError } from "./subnet_env.ts";

const log = logger("cni");

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

/** Run one command other than VERSION on the config in `stdin`; resolves to its stdout. */
export async function runConfigCommand(
  request: CniRequest & { readonly command: Exclude<Command, "VERSION"> },
  stdin: Uint8Array,
  env: PluginEnv,
): Promise<string> {
  const conf = parseNetConf(decodeConfig(stdin));
  return await HANDLERS[request.command](request, conf, env);
}
