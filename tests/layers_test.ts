/**
 * Keeps the layers of ARCHITECTURE.md true: every module may import only from its own layer or
 * the ones below, the areas never import each other in a cycle, and nothing outside tests/
 * imports tests/. A new top-level file or directory must be given a layer here (and in
 * ARCHITECTURE.md) before the test passes.
 */
import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), ".."));

/** Layers from the bottom; an area may import its own layer and those listed before it. */
const LAYERS: readonly (readonly string[])[] = [
  // Foundations: addresses, syscalls, the etcd client and the small helpers everything uses.
  [
    "ip",
    "ffi",
    "etcd",
    "log.ts",
    "sleep.ts",
    "backoff.ts",
    "exec.ts",
    "fsync.ts",
    "json.ts",
    "version.ts",
    "v8_flags.ts",
    "systemd_notify.ts",
  ],
  ["config"],
  ["subnet"],
  ["backends", "traffic", "probe"],
  // The daemon's state only aggregates what the components below report.
  ["state.ts"],
  ["api"],
  // The programs: the daemon, the CNI plugin, the uninstaller, the doctor.
  ["daemon.ts", "cni", "cleanup.ts", "doctor"],
  ["lab"],
  // The binary's entry dispatches to every program (the lab included); benchmarks, scripts, packaging.
  ["main.ts", "bench", "scripts", "packaging"],
];

/** Not part of the layering: the tests may import anything (and nothing imports them). */
const UNLAYERED = new Set(["tests"]);

const LAYER_OF = new Map(LAYERS.flatMap((areas, layer) => areas.map((a) => [a, layer] as const)));

/** The area of a repo-relative path: its top-level directory, or the file itself at the top. */
function areaOf(path: string): string {
  return path.split("/")[0];
}

async function* sourceFiles(dir: string): AsyncGenerator<string> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name.startsWith(".") || entry.name === "node_modules") continue;
    const path = join(dir, entry.name);
    if (entry.isDirectory) yield* sourceFiles(path);
    else if (entry.isFile && entry.name.endsWith(".ts")) yield path;
  }
}

/** Static imports and re-exports (type-only ones included) and dynamic `import("…")`. */
const IMPORT =
  /(?:^|[\s;])(?:import|export)\b[^;'"]*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']\s*\)/g;

interface Import {
  readonly from: string;
  readonly to: string;
}

async function relativeImports(): Promise<Import[]> {
  const found: Import[] = [];
  for await (const file of sourceFiles(ROOT)) {
    const from = relative(ROOT, file);
    const text = await Deno.readTextFile(file);
    for (const match of text.matchAll(IMPORT)) {
      const specifier = match[1] ?? match[2];
      if (!specifier.startsWith(".")) continue;
      found.push({ from, to: relative(ROOT, join(dirname(file), specifier)) });
    }
  }
  return found;
}

const imports = await relativeImports();

Deno.test("layers: every top-level area has a layer", async () => {
  const areas = new Set<string>();
  for await (const file of sourceFiles(ROOT)) areas.add(areaOf(relative(ROOT, file)));
  const unplaced = [...areas].filter((a) => !LAYER_OF.has(a) && !UNLAYERED.has(a)).sort();
  assert.deepEqual(unplaced, [], "give these a layer in tests/layers_test.ts and ARCHITECTURE.md");
});

Deno.test("layers: no module imports from a layer above its own", () => {
  assert.ok(imports.length > 500, `only ${imports.length} imports found: the scan is broken`);
  const upward = imports.filter(({ from, to }) => {
    const [a, b] = [areaOf(from), areaOf(to)];
    if (UNLAYERED.has(a) || a === b) return false;
    return (LAYER_OF.get(b) ?? Infinity) > (LAYER_OF.get(a) ?? -1);
  }).map(({ from, to }) => `${from} → ${to}`);
  assert.deepEqual(upward, []);
});

Deno.test("layers: areas in one layer do not import each other in a cycle", () => {
  const edges = new Map<string, Set<string>>();
  for (const { from, to } of imports) {
    const [a, b] = [areaOf(from), areaOf(to)];
    if (a === b || UNLAYERED.has(a)) continue;
    edges.set(a, (edges.get(a) ?? new Set()).add(b));
  }
  const reaches = (start: string, goal: string, seen = new Set<string>()): boolean => {
    for (const next of edges.get(start) ?? []) {
      if (next === goal) return true;
      if (!seen.has(next) && (seen.add(next), reaches(next, goal, seen))) return true;
    }
    return false;
  };
  const cyclic = [...edges.keys()].filter((area) => reaches(area, area));
  assert.deepEqual(cyclic, []);
});

Deno.test("layers: nothing outside tests/ imports tests/", () => {
  const intoTests = imports.filter(({ from, to }) =>
    areaOf(from) !== "tests" && areaOf(to) === "tests"
  ).map(({ from, to }) => `${from} → ${to}`);
  assert.deepEqual(intoTests, []);
});
