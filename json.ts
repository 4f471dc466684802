/**
 * Reading parsed JSON whose shape is not trusted: small type guards, so the daemon checks what
 * it reads without loading a schema library (zod alone cost ~10 MB of RSS on every node).
 *
 * @module
 */

/** A JSON object as `JSON.parse` returns it. */
export type JsonObject = Record<string, unknown>;

/** A JSON object: not null, not an array. */
export function isRecord(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The member `key` of `value` when `value` is an object. */
export function member(value: unknown, key: string): unknown {
  return isRecord(value) ? value[key] : undefined;
}

/** `value` when it is a string. */
export function stringOr(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** `JSON.parse(text)`, or undefined for text that is not JSON. */
export function parseJsonOrUndefined(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** What a JSON value is, for messages: `string`, `number`, `object`, `array`, `null`, … */
export function jsonKind(value: unknown): string {
  return value === null ? "null" : Array.isArray(value) ? "array" : typeof value;
}
