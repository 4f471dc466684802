/**
 * Where every benchmark records its figures: `bench/results/<name>.json`, kept in git so that
 * runs can be compared over time.
 *
 * @module
 */

/** Write `result` as pretty JSON to `bench/results/<name>.json`; returns the file's path. */
export async function saveResult(name: string, result: unknown): Promise<string> {
  const dir = new URL("./results/", import.meta.url);
  await Deno.mkdir(dir, { recursive: true });
  const file = new URL(`${name}.json`, dir);
  await Deno.writeTextFile(file, JSON.stringify(result, null, 2) + "\n");
  return file.pathname;
}
