/**
 * The flannel plugin's own network configuration (spec §9.1), as the runtime passes it on
 * stdin, decoded and validated with zod.
 *
 * @module
 */
import { z } from "zod";
import { DEFAULTS } from "../config/flags.ts";
import { CniError, ConfigError, ErrorCode } from "./errors.ts";
import { checkVersion } from "./protocol.ts";
import { errorText } from "../log.ts";
import { isRecord, type JsonObject } from "../json.ts";

/** Where delegate configs are saved unless `dataDir` says otherwise. */
export const DEFAULT_DATA_DIR = "/var/lib/cni/flannel";

/** The validated input config; absent and `null` members are folded into their defaults. */
export interface NetConf {
  /**
   * One of the supported versions (checked before the schema); undefined when the config
   * names none, which means 0.1.0 and is passed on to the delegate as none.
   */
  readonly cniVersion?: string;
  readonly name: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  /** Members merged into the delegate config (`{}` when absent). */
  readonly delegate: JsonObject;
  /** Base of the delegate's `ipam` (`{}` when absent). */
  readonly ipam: JsonObject;
  readonly runtimeConfig?: JsonObject;
  /** The previous result, which runtimes pass on CHECK (and DEL). */
  readonly prevResult?: JsonObject;
}

// Objects are checked in place (z.custom) rather than rebuilt, so every member the user wrote,
// whatever its name, reaches the delegate unchanged.
const jsonObject = z.custom<JsonObject>(isRecord, "must be a JSON object");
const absolutePath = z.string().refine((p) => p.startsWith("/"), "must be an absolute path");

/** The zod schema of the input config (libcni's network-name rule included). */
export const NetConfSchema = z.object({
  cniVersion: z.string().nullish().transform((v) => v || undefined),
  name: z.string({
    error: (issue) => issue.input === undefined ? "missing network name" : "must be a string",
  })
    .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/, "invalid characters found in network name"),
  subnetFile: absolutePath.nullish().transform((v) => v ?? DEFAULTS.subnetFile),
  dataDir: absolutePath.nullish().transform((v) => v ?? DEFAULT_DATA_DIR),
  delegate: jsonObject.nullish().transform((v) => v ?? {}),
  ipam: jsonObject.nullish().transform((v) => v ?? {}),
  runtimeConfig: jsonObject.nullish().transform((v) => v ?? undefined),
  prevResult: jsonObject.nullish().transform((v) => v ?? undefined),
});

/**
 * Decode stdin into a JSON object, failing with the CNI decoding error (code 6).
 *
 * @throws {CniError} code 6 when the bytes are not UTF-8 JSON describing an object.
 */
export function decodeConfig(stdin: Uint8Array): JsonObject {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(stdin));
  } catch (err) {
    const reason = errorText(err);
    throw new CniError(ErrorCode.decodingFailure, "failed to decode network config", reason);
  }
  if (!isRecord(value)) {
    throw new CniError(
      ErrorCode.decodingFailure,
      "failed to decode network config",
      "not a JSON object",
    );
  }
  return value;
}

/**
 * Validate a decoded config: its `cniVersion` first (code 1, or 6 when not a string), then
 * the schema (code 7, naming the field).
 *
 * @throws {CniError} as above; {@link ConfigError} for schema violations.
 */
export function parseNetConf(raw: JsonObject): NetConf {
  const version = raw.cniVersion ?? "";
  if (typeof version !== "string") {
    throw new CniError(ErrorCode.decodingFailure, "failed to decode cniVersion", "not a string");
  }
  checkVersion(version);
  const result = NetConfSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new ConfigError(issue.path.join("."), issue.message);
  }
  return result.data;
}
