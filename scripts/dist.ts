/**
 * `deno task dist [--out DIR] [--no-compile] [--binary-only]`: the release files.
 *
 * - `DIR/tartan` (default `dist/`): one executable for linux/amd64 that needs nothing outside
 *   itself. `deno compile`'s binary when Deno can get its denort runtime; otherwise (or with
 *   `--no-compile`) a self-extracting file holding the Deno runtime and the bundled program.
 * - `DIR/tartan-image.tar`: the OCI image `tartan:<version>` built from Debian packages
 *   (skipped with `--binary-only`).
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { compileBinary, compileFailureHint } from "../packaging/compile.ts";
import { buildImage, IMAGE_REFERENCE } from "../packaging/image.ts";
import { buildSelfExtracting } from "../packaging/self_extracting.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    out: { type: "string", default: "dist" },
    "no-compile": { type: "boolean", default: false },
    "binary-only": { type: "boolean", default: false },
  },
});
const out = resolve(values.out);
await Deno.mkdir(out, { recursive: true });
const binary = `${out}/tartan`;

const t0 = performance.now();
if (!values["no-compile"] && await compileBinary(binary)) {
  console.error(`dist: ${binary} is deno compile's binary`);
} else {
  if (!values["no-compile"]) {
    console.error(`dist: ${compileFailureHint()}; building a self-extracting file instead`);
  }
  await buildSelfExtracting(binary);
  console.error(`dist: ${binary} is a self-extracting file (Deno runtime + bundled program)`);
}
console.error(`dist: tartan in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

if (!values["binary-only"]) {
  const t1 = performance.now();
  const image = `${out}/tartan-image.tar`;
  await buildImage(binary, image);
  const mb = ((await Deno.stat(image)).size / 1e6).toFixed(1);
  console.error(
    `dist: ${image} (${IMAGE_REFERENCE}, ${mb} MB) in ${
      ((performance.now() - t1) / 1000).toFixed(1)
    } s`,
  );
}
