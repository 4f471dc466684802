/**
 * JSON objects as `JSON.parse` returns them: the one shape check every CNI module shares.
 *
 * @module
 */

/** A JSON object as `JSON.parse` returns it. */
export type JsonObject = Record<string, unknown>;

/** Whether `value` is a JSON object (not an array, not null). */
export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
