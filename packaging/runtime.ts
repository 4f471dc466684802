/**
 * The Deno runtime that `dist/tartan` carries: the `deno` executable from the npm package
 * `@deno/linux-x64-glibc`, pinned by version and by the executable's SHA-256. Deno's own npm
 * client fetches it (registry integrity checked) into the usual Deno cache, so a second build
 * downloads nothing.
 *
 * @module
 */
import { dirname } from "node:path";
import { sha256File } from "./digest.ts";

/** The pinned runtime: the Deno release Tartan is developed and tested on. */
export const DENO_RUNTIME = {
  package: "@deno/linux-x64-glibc",
  version: "2.9.6",
  sha256: "bceb5b6a6239b0b010418406d8c77a508f67cf4337d94288f1c19fe71304aab0",
} as const;

/** Fetch (or find in the cache) the pinned runtime; returns the path of its `deno` file. */
export async function denoRuntime(): Promise<string> {
  const spec = `npm:${DENO_RUNTIME.package}@${DENO_RUNTIME.version}`;
  // The package has no JavaScript: importing its package.json makes Deno fetch it, and Node
  // resolution then names the cached file. --no-config keeps it out of the project's node_modules.
  const script = `import ${JSON.stringify(`${spec}/package.json`)} with { type: "json" };
import { createRequire } from "node:module";
console.log(createRequire(import.meta.url).resolve(${
    JSON.stringify(`${DENO_RUNTIME.package}/package.json`)
  }));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "-q", "--no-config", script],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`could not fetch ${spec} from the npm registry`);
  const file = `${dirname(new TextDecoder().decode(out.stdout).trim())}/deno`;
  const sum = await sha256File(file);
  if (sum !== DENO_RUNTIME.sha256) {
    throw new Error(`${file}: SHA-256 ${sum}, expected ${DENO_RUNTIME.sha256} (${spec})`);
  }
  return file;
}
