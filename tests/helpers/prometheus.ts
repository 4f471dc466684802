/**
 * A strict reader of the Prometheus text exposition format, for the API and e2e tests.
 *
 * @module
 */
import assert from "node:assert/strict";

/** One metric family: its type and samples. */
export interface Family {
  type: string;
  samples: Array<{ name: string; labels: Record<string, string>; value: number }>;
}

const NAME = "[a-zA-Z_:][a-zA-Z0-9_:]*";
const SAMPLE = new RegExp(`^(${NAME})(?:\\{(.*)\\})? (\\S+)$`);
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** A strict reader of the Prometheus text format (0.0.4): every line must be understood. */
export function parseExposition(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  let current: Family | undefined;
  let currentName = "";
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const meta = new RegExp(`^# (HELP|TYPE) (${NAME}) (.*)$`).exec(line);
    if (meta) {
      if (meta[1] === "TYPE") {
        assert.match(meta[3], /^(counter|gauge|histogram|summary|untyped)$/, line);
        assert.ok(!families.has(meta[2]), `duplicate family ${meta[2]}`);
        currentName = meta[2];
        current = { type: meta[3], samples: [] };
        families.set(currentName, current);
      }
      continue;
    }
    const sample = SAMPLE.exec(line);
    assert.ok(sample, `not a sample line: ${line}`);
    assert.ok(current && sample[1].startsWith(currentName), `sample outside its family: ${line}`);
    const labels: Record<string, string> = {};
    for (const [, key, value] of (sample[2] ?? "").matchAll(LABEL)) labels[key] = value;
    // Go's ParseFloat (what Prometheus uses) reads NaN in any case.
    const isNaNText = /^nan$/i.test(sample[3]);
    const value = Number(sample[3].replace(/^\+?Inf$/, "Infinity").replace("-Inf", "-Infinity"));
    assert.ok(!Number.isNaN(value) || isNaNText, `bad value: ${line}`);
    current.samples.push({ name: sample[1], labels, value });
  }
  return families;
}

/** The value of one sample (histogram samples `_bucket`/`_sum`/`_count` included). */
export function sampleValue(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
) {
  const samples = [...families.values()].flatMap((family) => family.samples);
  const found = samples.find((s) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
  );
  assert.ok(found, `no sample ${name}${JSON.stringify(labels)}`);
  return found.value;
}
