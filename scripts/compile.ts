/**
 * `deno task compile [OUTPUT]`: the single `tartan` binary from `deno compile` (default
 * `./tartan`). Deno downloads its denort runtime as usual, or uses DENORT_BIN when set.
 * Where neither works, `deno task dist` still builds a self-contained `dist/tartan`.
 */
import { compileBinary, compileFailureHint } from "../packaging/compile.ts";

const output = Deno.args[0] ?? "tartan";
if (!await compileBinary(output)) {
  console.error(`compile: ${compileFailureHint()}, or use \`deno task dist\`. Nothing was built.`);
  Deno.exit(1);
}
console.error(`compile: wrote ${output}; link or copy it as flanneld/flannel too`);
