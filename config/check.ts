/**
 * `tartan config check FILE [--mode etcd|kube]`: validate a net-conf file and show the
 * effective config (every default filled in) or the reason it is rejected.
 *
 * @module
 */
import { FlagError } from "./flags.ts";
import { ConfigError, netConfigToJSON, type NetConfMode, parseNetConfig } from "./netconf.ts";
import { errorText } from "../log.ts";

/** Outcome of a check: `output` is the effective config as JSON, or the error. */
export interface ConfigCheckResult {
  readonly ok: boolean;
  /** Pretty JSON of the effective config when ok, else `FILE: reason`. */
  readonly output: string;
  /** Warnings about the file (e.g. no Backend), meant for stderr. */
  readonly warnings: string[];
}

const MODES: readonly NetConfMode[] = ["etcd", "kube"];

/** Usage text of `tartan config check`. */
export const CONFIG_CHECK_USAGE = "Usage: tartan config check FILE [--mode etcd|kube]\n" +
  "  Validates a flannel net-conf file and prints the effective config (defaults filled in).\n" +
  "  --mode etcd (default) applies every flannel validation rule; kube only what kube mode needs.\n";

/**
 * Validate the net-conf file at `path` as the daemon would in `mode`.
 *
 * @example
 * ```ts
 * const { ok, output } = await configCheck("/etc/kube-flannel/net-conf.json", "kube");
 * ```
 */
export async function configCheck(
  path: string,
  mode: NetConfMode = "etcd",
): Promise<ConfigCheckResult> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    const reason = errorText(err);
    return { ok: false, output: `${path}: cannot read: ${reason}`, warnings: [] };
  }
  try {
    const { config, warnings } = parseNetConfig(text, mode);
    return { ok: true, output: JSON.stringify(netConfigToJSON(config), null, 2), warnings };
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { ok: false, output: `${path}: ${err.message}`, warnings: [] };
  }
}

/**
 * `tartan config check` with its arguments (after `check`): `FILE`, optionally `--mode etcd|kube`
 * (also `-mode`, `--mode=kube`).
 *
 * @throws {FlagError} for a missing or extra FILE, an unknown flag or a bad mode; the CLI prints
 * the message and {@link CONFIG_CHECK_USAGE} and exits 2.
 */
export async function configCheckCommand(args: readonly string[]): Promise<ConfigCheckResult> {
  const files: string[] = [];
  let mode: NetConfMode = "etcd";
  for (let i = 0; i < args.length; i++) {
    const match = /^--?mode(?:=(.*))?$/.exec(args[i]);
    if (!match) {
      if (args[i].startsWith("-") && args[i] !== "-") {
        throw new FlagError(args[i], `flag provided but not defined: ${args[i]}`);
      }
      files.push(args[i]);
      continue;
    }
    const value = match[1] ?? args[++i];
    const found = MODES.find((m) => m === value);
    if (!found) {
      throw new FlagError("mode", `--mode must be etcd or kube, got ${value ?? "nothing"}`);
    }
    mode = found;
  }
  if (files.length !== 1) {
    throw new FlagError("FILE", `expected exactly one FILE, got ${files.length}`);
  }
  return await configCheck(files[0], mode);
}

/** `tartan config check FILE [--mode etcd|kube]`: print the effective config or the error. */
export async function configCommand(args: string[]): Promise<number> {
  if (args[0] !== "check") {
    console.error(CONFIG_CHECK_USAGE);
    return 2;
  }
  try {
    const result = await configCheckCommand(args.slice(1));
    for (const warning of result.warnings) console.error(`warning: ${warning}`);
    (result.ok ? console.log : console.error)(result.output);
    return result.ok ? 0 : 1;
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    console.error(`${err.message}\n${CONFIG_CHECK_USAGE}`);
    return 2;
  }
}
