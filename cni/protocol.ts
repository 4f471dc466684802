/**
 * The CNI execution protocol: commands, the `CNI_*` environment, spec versions and the text a
 * plugin prints for errors and for VERSION.
 *
 * @module
 */
import { CniError, DelegateError, ErrorCode } from "./errors.ts";

/** The commands this plugin implements. */
const COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "VERSION"] as const;
export type Command = typeof COMMANDS[number];

/**
 * Spec versions this plugin speaks, oldest first (what VERSION reports): libcni's full list, as
 * flannel's plugin accepts. The delegate gets the caller's version and prints its result in that
 * version's format (0.1.0 and 0.2.0: `ip4`/`ip6` objects), which is passed on unchanged.
 */
export const SUPPORTED_VERSIONS = [
  "0.1.0",
  "0.2.0",
  "0.3.0",
  "0.3.1",
  "0.4.0",
  "1.0.0",
  "1.1.0",
] as const;

/** The version a config without `cniVersion` speaks (the spec's libraries read it so). */
export const IMPLIED_VERSION = "0.1.0";

/** The newest supported version: used for output when the input names none we know. */
export const LATEST_VERSION = "1.1.0";

/** The invocation parameters a runtime passes in the environment. */
export interface CniRequest {
  readonly command: Command;
  readonly containerId: string;
  readonly netns: string;
  readonly ifName: string;
  readonly args: string;
  readonly path: string;
}

// Which variables each command needs (CNI spec section 2, as libcni's skel enforces them;
// CNI_PATH is needed wherever a delegate may run).
const REQUIRED: Record<Command, readonly string[]> = {
  ADD: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  DEL: ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
  CHECK: ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
  STATUS: [],
  VERSION: [],
};

const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const IFNAME_FORBIDDEN = /[/:\s]/;
const IFNAME_MAX_BYTES = 15;

function isCommand(value: string): value is Command {
  return (COMMANDS as readonly string[]).includes(value);
}

/**
 * Read and validate the `CNI_*` variables for one invocation.
 *
 * The container ID names the file the delegate config is saved in, so it is held to the
 * spec's character set (no `/`, no leading `.`) before it gets near the file system.
 *
 * @throws {CniError} code 4 for a missing/unknown command or a missing or invalid variable.
 */
export function parseRequest(env: Record<string, string | undefined>): CniRequest {
  const get = (name: string) => env[name] ?? "";
  const command = get("CNI_COMMAND");
  if (command === "") {
    throw new CniError(
      ErrorCode.invalidEnvironment,
      "required env variables [CNI_COMMAND] missing",
    );
  }
  if (!isCommand(command)) {
    throw new CniError(ErrorCode.invalidEnvironment, `unknown CNI_COMMAND: ${command}`);
  }
  const missing = REQUIRED[command].filter((name) => get(name) === "");
  if (missing.length > 0) {
    throw new CniError(
      ErrorCode.invalidEnvironment,
      `required env variables [${missing.join(",")}] missing`,
    );
  }
  const request: CniRequest = {
    command,
    containerId: get("CNI_CONTAINERID"),
    netns: get("CNI_NETNS"),
    ifName: get("CNI_IFNAME"),
    args: get("CNI_ARGS"),
    path: get("CNI_PATH"),
  };
  if (REQUIRED[command].includes("CNI_CONTAINERID")) {
    if (!CONTAINER_ID.test(request.containerId)) {
      throw new CniError(
        ErrorCode.invalidEnvironment,
        "invalid characters in CNI_CONTAINERID",
        request.containerId,
      );
    }
    checkIfName(request.ifName);
  }
  return request;
}

function checkIfName(name: string): void {
  let problem = "";
  if (name === "." || name === "..") problem = "must not be . or ..";
  else if (new TextEncoder().encode(name).length > IFNAME_MAX_BYTES) problem = "is too long";
  else if (IFNAME_FORBIDDEN.test(name)) problem = "must not contain /, : or whitespace";
  if (problem) {
    throw new CniError(ErrorCode.invalidEnvironment, `CNI_IFNAME ${problem}`, name);
  }
}

/** Whether the plugin speaks `version`. */
function isSupportedVersion(version: string): boolean {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(version);
}

function versionKey(version: string): number[] {
  return version.split(".").map(Number);
}

/** Whether spec version `a` is at least `b` (both `x.y.z`). */
export function versionAtLeast(a: string, b: string): boolean {
  const [x, y] = [versionKey(a), versionKey(b)];
  for (let i = 0; i < 3; i++) {
    if (x[i] !== y[i]) return x[i] > y[i];
  }
  return true;
}

/**
 * Check the config's `cniVersion` against what we speak; an absent or empty version means
 * {@link IMPLIED_VERSION}.
 *
 * @throws {CniError} code 1 when unsupported.
 */
export function checkVersion(cniVersion: string): void {
  const version = cniVersion || IMPLIED_VERSION;
  if (!isSupportedVersion(version)) {
    throw new CniError(
      ErrorCode.incompatibleVersion,
      "incompatible CNI versions",
      `config is ${JSON.stringify(version)}, plugin supports ${JSON.stringify(SUPPORTED_VERSIONS)}`,
    );
  }
}

const SEMVER = /^[0-9]+\.[0-9]+\.[0-9]+$/;

/** The version to stamp on output: the caller's if it looks like one, else the newest. */
export function outputVersion(cniVersion: unknown): string {
  return typeof cniVersion === "string" && SEMVER.test(cniVersion) ? cniVersion : LATEST_VERSION;
}

/**
 * The error result text for `err` (a delegate's own error result passes through unchanged).
 *
 * @example
 * ```ts
 * formatError(new CniError(7, "bad"), "1.0.0"); // '{"cniVersion":"1.0.0","code":7,"msg":"bad"}\n'
 * ```
 */
export function formatError(err: CniError, cniVersion: string): string {
  if (err instanceof DelegateError) return err.output;
  const result: Record<string, string | number> = { cniVersion, code: err.code, msg: err.message };
  if (err.details) result.details = err.details;
  return JSON.stringify(result) + "\n";
}

/** The VERSION result: echoes the requested version when it is one we speak. */
export function formatVersionResult(requested: unknown): string {
  const cniVersion = typeof requested === "string" && isSupportedVersion(requested)
    ? requested
    : LATEST_VERSION;
  return JSON.stringify({ cniVersion, supportedVersions: SUPPORTED_VERSIONS }) + "\n";
}
