/**
 * The release files for tests, built as `deno task dist --no-compile` builds them, once per
 * content of their inputs: they are cached in the build cache under a hash of every source
 * file outside tests/ and bench/, so a test run rebuilds only what changed since the last one.
 * Sets of other sources unused for an hour are removed.
 *
 * @module
 */
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { sha256Hex } from "../../packaging/digest.ts";
import { buildImage } from "../../packaging/image.ts";
import { buildCacheDir } from "../../packaging/rootfs.ts";
import { buildSelfExtracting } from "../../packaging/self_extracting.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const NOT_INPUTS = new Set(["tests", "bench", "node_modules", "dist", ".git", ".ci"]);

async function inputFiles(dir: string, out: string[] = []): Promise<string[]> {
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory && !NOT_INPUTS.has(relative(ROOT, path))) await inputFiles(path, out);
    else if (entry.isFile && !entry.name.endsWith(".md")) out.push(path);
  }
  return out;
}

async function inputsHash(): Promise<string> {
  const files = (await inputFiles(ROOT.replace(/\/$/, ""))).sort();
  const parts = await Promise.all(files.map(async (f) => {
    return `${relative(ROOT, f)}\0${sha256Hex(await Deno.readFile(f))}\n`;
  }));
  return sha256Hex(parts.join("")).slice(0, 16);
}

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

let cacheDir: Promise<string> | undefined;

/** Release files of other sources are dropped when unused this long (each set is ~110 MB). */
const KEEP_UNUSED_MS = 60 * 60 * 1000;

/** Remove other sources' release files unused for {@link KEEP_UNUSED_MS}. */
async function pruneOthers(keep: string): Promise<void> {
  for await (const entry of Deno.readDir(buildCacheDir())) {
    const path = `${buildCacheDir()}/${entry.name}`;
    if (!entry.name.startsWith("dist-") || path === keep) continue;
    const { mtime } = await Deno.stat(path);
    if (mtime && Date.now() - mtime.getTime() > KEEP_UNUSED_MS) {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    }
  }
}

/** The directory holding this checkout's release files (marked used now). */
function distCacheDir(): Promise<string> {
  return cacheDir ??= inputsHash().then(async (hash) => {
    const dir = `${buildCacheDir()}/dist-${hash}`;
    await Deno.mkdir(dir, { recursive: true });
    const now = new Date();
    await Deno.utime(dir, now, now);
    await pruneOthers(dir);
    return dir;
  });
}

/** Build `file` with `build` into a temporary name and rename it, unless it is there. */
async function cached(file: string, build: (tmp: string) => Promise<void>): Promise<string> {
  if (await exists(file)) return file;
  const tmp = `${file}.${Deno.pid}.tmp`;
  try {
    await build(tmp);
    await Deno.rename(tmp, file);
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
  return file;
}

/** The self-extracting `tartan` of this checkout. */
export async function distBinary(): Promise<string> {
  return cached(`${await distCacheDir()}/tartan`, buildSelfExtracting);
}

/** The image archive `tartan:<version>` of this checkout. */
export async function distImage(): Promise<string> {
  const binary = await distBinary();
  return cached(`${await distCacheDir()}/tartan-image.tar`, (tmp) => buildImage(binary, tmp));
}
