/**
 * The program as plain JavaScript for the Deno runtime: `deno bundle --code-splitting`, so the
 * subcommands stay lazily loaded chunks (a CNI call does not parse the daemon or the Kubernetes
 * client), with the npm dependencies inlined.
 *
 * @module
 */
import { dirname, relative } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
/** The bundle's entry module, relative to the output directory. */
export const BUNDLE_ENTRY = "packaging/entry.js";
/** The udp data path's Worker: a second entry, since it is loaded by URL at run time. */
const WORKER_ENTRY = "backends/udp/worker.ts";
/** How backends/udp/data_path.ts names its Worker (relative to the module that says so). */
const WORKER_REFERENCE = 'new URL("./worker.ts", import.meta.url)';

/** Bundle main.ts (through packaging/entry.ts) and the Worker into `outDir`. */
export async function bundleProgram(outDir: string): Promise<void> {
  const { success } = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "-q",
      "--platform=deno",
      "--code-splitting",
      "--outdir",
      outDir,
      "packaging/entry.ts",
      WORKER_ENTRY,
    ],
    cwd: ROOT,
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (!success) throw new Error("deno bundle failed");
  await linkWorker(outDir);
}

/** The one top-level chunk whose code contains `text`. */
async function chunkContaining(outDir: string, text: string): Promise<string> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(outDir)) {
    if (!entry.isFile || !entry.name.endsWith(".js")) continue;
    if ((await Deno.readTextFile(`${outDir}/${entry.name}`)).includes(text)) {
      found.push(`${outDir}/${entry.name}`);
    }
  }
  if (found.length !== 1) throw new Error(`expected one chunk with ${text}, found ${found.length}`);
  return found[0];
}

/**
 * The chunk holding data_path.ts still looks for `./worker.ts` beside itself, while the bundled
 * Worker is `backends/udp/worker.js`: put a one-line `worker.ts` that imports it there.
 */
async function linkWorker(outDir: string): Promise<void> {
  const chunk = await chunkContaining(outDir, WORKER_REFERENCE);
  const worker = `${outDir}/${WORKER_ENTRY.replace(/\.ts$/, ".js")}`;
  await Deno.writeTextFile(
    `${dirname(chunk)}/worker.ts`,
    `import "./${relative(dirname(chunk), worker)}";\n`,
  );
}
