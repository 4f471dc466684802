/**
 * The per-container record of the delegate config: `<dataDir>/<containerID>`.
 *
 * ADD writes it before the delegate runs, DEL replays exactly these bytes, so a container can
 * be torn down after subnet.env changed or vanished. The file is the record that something is
 * attached: it is only removed once the delegate's DEL succeeded (quirk 32).
 *
 * @module
 */
import { join } from "node:path";
import { isPluginName } from "./delegate_config.ts";
import { CniError, ErrorCode } from "./errors.ts";
import { isRecord, type JsonObject } from "../json.ts";
import { syncPath } from "../fsync.ts";
import { errorText } from "../log.ts";

// The longest file name Linux file systems take, in bytes (NAME_MAX). The spec sets no limit on
// container IDs; its character set is ASCII, so an ID's length is its size in bytes.
const NAME_MAX = 255;

/** Whether a container's record can exist at all: its ID must fit in a file name. */
function canBeFileName(containerId: string): boolean {
  return containerId.length <= NAME_MAX;
}

/** Path of a container's saved config (the container ID was validated by parseRequest). */
function savedConfigPath(dataDir: string, containerId: string): string {
  return join(dataDir, containerId);
}

function ioError(what: string, err: unknown): CniError {
  return new CniError(ErrorCode.ioFailure, what, errorText(err));
}

/**
 * The saved bytes, or undefined when nothing is saved for the container.
 *
 * @throws {CniError} code 5 when the file exists but cannot be read.
 */
export async function readSavedConfig(
  dataDir: string,
  containerId: string,
): Promise<Uint8Array | undefined> {
  if (!canBeFileName(containerId)) return undefined; // so never saved: DEL has nothing to undo
  const path = savedConfigPath(dataDir, containerId);
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw ioError(`failed to read ${path}`, err);
  }
}

/**
 * Save the config durably: directory 0700, file 0600, written to a temporary name, fsynced,
 * renamed into place and the directory fsynced, so a crash leaves the old file or the new
 * one, never a torn one.
 *
 * @throws {CniError} code 4 when the container ID is too long to name a file; code 5 on any
 *   file-system failure.
 */
export async function saveConfig(
  dataDir: string,
  containerId: string,
  bytes: Uint8Array,
): Promise<void> {
  if (!canBeFileName(containerId)) {
    throw new CniError(
      ErrorCode.invalidEnvironment,
      `CNI_CONTAINERID is too long to name a file (${containerId.length} bytes, at most ${NAME_MAX})`,
    );
  }
  const path = savedConfigPath(dataDir, containerId);
  // Fixed length, whatever the ID's; a leading dot cannot start a container ID, so temporaries
  // never look like records.
  const temp = join(dataDir, `.${crypto.randomUUID()}.tmp`);
  try {
    await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
    await Deno.writeFile(temp, bytes, { mode: 0o600, createNew: true });
    await Deno.chmod(temp, 0o600); // independent of the umask
    await syncPath(temp);
    await Deno.rename(temp, path);
    await syncPath(dataDir);
  } catch (err) {
    await Deno.remove(temp).catch(() => {});
    throw ioError(`failed to save ${path}`, err);
  }
}

/**
 * Remove the saved config; a missing file is not an error.
 *
 * @throws {CniError} code 5 when the file exists and cannot be removed.
 */
export async function removeSavedConfig(dataDir: string, containerId: string): Promise<void> {
  const path = savedConfigPath(dataDir, containerId);
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw ioError(`failed to remove ${path}`, err);
  }
}

/** A saved config decoded: the whole object and the delegate plugin it names. */
export interface SavedConfig {
  readonly type: string;
  readonly config: JsonObject;
}

/** Decode saved bytes; undefined when they are not a JSON object naming a plugin `type`. */
export function decodeSavedConfig(bytes: Uint8Array): SavedConfig | undefined {
  let config: unknown;
  try {
    config = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return undefined;
  }
  if (!isRecord(config) || typeof config.type !== "string" || !isPluginName(config.type)) {
    return undefined;
  }
  return { type: config.type, config };
}
