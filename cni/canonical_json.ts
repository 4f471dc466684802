/**
 * Compact JSON with object keys sorted at every level, escaped the way Go's encoding/json
 * escapes, so the saved delegate config is byte-identical to what upstream flannel writes for
 * the same input (spec §9.3).
 *
 * @module
 */

// Go orders map keys by their UTF-8 bytes, which is code point order; JS's default sort
// compares UTF-16 units and disagrees above U+FFFF.
function compareCodePoints(a: string, b: string): number {
  const [x, y] = [Array.from(a), Array.from(b)];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const diff = x[i].codePointAt(0)! - y[i].codePointAt(0)!;
    if (diff !== 0) return diff;
  }
  return x.length - y.length;
}

// Go escapes these even inside strings so JSON can be embedded in HTML/JS.
const GO_ESCAPES: Record<string, string> = {
  "<": "\\u003c",
  ">": "\\u003e",
  "&": "\\u0026",
  "\u2028": "\\u2028",
  "\u2029": "\\u2029",
};

function encodeString(text: string): string {
  return JSON.stringify(text).replace(/[<>&\u2028\u2029]/g, (ch) => GO_ESCAPES[ch]);
}

/**
 * Encode a JSON value (as `JSON.parse` produces) compactly with sorted keys.
 *
 * @example
 * ```ts
 * encodeCanonical({ b: 1, a: { d: [true, null], c: "<" } }); // '{"a":{"c":"\u003c","d":[true,null]},"b":1}'
 * ```
 */
export function encodeCanonical(value: unknown): string {
  if (value === null || typeof value === "boolean" || typeof value === "number") {
    return JSON.stringify(value);
  }
  if (typeof value === "string") return encodeString(value);
  if (Array.isArray(value)) return `[${value.map(encodeCanonical).join(",")}]`;
  if (typeof value === "object") {
    const obj = value as Record<string, unknown>;
    const members = Object.keys(obj).sort(compareCodePoints)
      .filter((key) => obj[key] !== undefined)
      .map((key) => `${encodeString(key)}:${encodeCanonical(obj[key])}`);
    return `{${members.join(",")}}`;
  }
  throw new TypeError(`cannot encode a ${typeof value} as JSON`);
}
