/**
 * The release files (`deno task bench dist`): builds dist/tartan and the image as `deno task
 * dist --no-compile` does (timed), then measures what a node pays for the self-extracting file:
 *
 * - its size and the image archive's (compressed) size;
 * - the first run of `tartan version` with an empty runtime directory (check, unpack, first code
 *   cache), each round in a fresh directory;
 * - warm runs of `tartan version` and of a CNI `VERSION` call (the file named `flannel`), the
 *   latter against its target of 100 ms;
 * - baselines in the same run: the same two commands from the source checkout (`deno run
 *   main.ts`, as the lab and `deno task tartan` run it) and the runtime's own floor (the unpacked
 *   deno running an empty module).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { buildImage } from "../packaging/image.ts";
import { debianRootfs } from "../packaging/rootfs.ts";
import { buildSelfExtracting } from "../packaging/self_extracting.ts";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";
import { saveResult } from "./results.ts";
import { median, percentile, round } from "./stats.ts";

const FIRST_RUNS = 5;
const WARM_ROUNDS = 20;
const CNI_VERSION_TARGET_MS = 100;
const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

/** Median and 90th percentile of one command's wall time, in ms. */
interface Timing {
  readonly medianMs: number;
  readonly p90Ms: number;
  readonly runs: number;
}

/** What the benchmark records. */
export interface DistResult {
  readonly date: string;
  readonly build: { readonly rootfsS: number; readonly binaryS: number; readonly imageS: number };
  readonly sizes: { readonly tartanMB: number; readonly imageArchiveMB: number };
  readonly firstRun: Timing;
  readonly warm: {
    readonly version: Timing;
    readonly cniVersion: Timing & { readonly targetMs: number; readonly met: boolean };
  };
  readonly baselines: {
    readonly sourceVersion: Timing;
    readonly sourceCniVersion: Timing;
    readonly runtimeFloor: Timing;
  };
  readonly ratios: {
    /** Warm CNI VERSION from dist/tartan over the same call from source. */
    readonly cniVersionToSource: number;
    readonly versionToSource: number;
  };
}

/** Wall time of one run in ms; throws if it fails. */
async function timeOnce(argv: string[], env: Record<string, string>): Promise<number> {
  const started = performance.now();
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  const ms = performance.now() - started;
  if (!out.success) {
    throw new Error(`${argv.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return ms;
}

async function timing(
  rounds: number,
  run: (i: number) => Promise<number>,
): Promise<Timing> {
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) samples.push(await run(i));
  return {
    medianMs: round(median(samples), 1),
    p90Ms: round(percentile(samples, 90), 1),
    runs: rounds,
  };
}

async function seconds<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await fn();
  return [value, round((performance.now() - started) / 1000, 1)];
}

const megabytes = async (path: string) => round((await Deno.stat(path)).size / 1e6, 1);

const work = await Deno.makeTempDir({ prefix: "tartan-bench-dist-" });
try {
  const tartan = `${work}/tartan`;
  const flannel = `${work}/flannel`;
  const image = `${work}/tartan-image.tar`;
  const [, rootfsS] = await seconds(debianRootfs);
  const [, binaryS] = await seconds(() => buildSelfExtracting(tartan));
  const [, imageS] = await seconds(() => buildImage(tartan, image));
  await Deno.symlink("tartan", flannel);

  const runtimeDir = (i: number) => `${work}/runtime-${i}`;
  const firstRun = await timing(
    FIRST_RUNS,
    (i) => timeOnce([tartan, "version"], { TARTAN_RUNTIME_DIR: runtimeDir(i) }),
  );
  const warmEnv = { TARTAN_RUNTIME_DIR: runtimeDir(0) };
  const cniEnv = { ...warmEnv, CNI_COMMAND: "VERSION" };
  await timeOnce([flannel], cniEnv); // the CNI chunks' first code cache
  const version = await timing(WARM_ROUNDS, () => timeOnce([tartan, "version"], warmEnv));
  const cniVersion = await timing(WARM_ROUNDS, () => timeOnce([flannel], cniEnv));

  const fromSource = (args: string[]) => [
    Deno.execPath(),
    "run",
    "-A",
    `--v8-flags=${DAEMON_V8_FLAGS}`,
    MAIN,
    ...args,
  ];
  await timeOnce(fromSource(["cni"]), { CNI_COMMAND: "VERSION" });
  const sourceVersion = await timing(WARM_ROUNDS, () => timeOnce(fromSource(["version"]), {}));
  const sourceCniVersion = await timing(
    WARM_ROUNDS,
    () => timeOnce(fromSource(["cni"]), { CNI_COMMAND: "VERSION" }),
  );
  const [release] = [...Deno.readDirSync(runtimeDir(0))].filter((e) => e.isSymlink);
  const unpacked = `${runtimeDir(0)}/${release.name}`;
  await Deno.writeTextFile(`${work}/empty.js`, "");
  const floorArgv = [`${unpacked}/deno`, "run", "-q", "-A", "--no-config", `${work}/empty.js`];
  const runtimeFloor = await timing(
    WARM_ROUNDS,
    () => timeOnce(floorArgv, { DENO_DIR: `${unpacked}/cache` }),
  );

  const result: DistResult = {
    date: new Date().toISOString(),
    build: { rootfsS, binaryS, imageS },
    sizes: { tartanMB: await megabytes(tartan), imageArchiveMB: await megabytes(image) },
    firstRun,
    warm: {
      version,
      cniVersion: {
        ...cniVersion,
        targetMs: CNI_VERSION_TARGET_MS,
        met: cniVersion.medianMs <= CNI_VERSION_TARGET_MS,
      },
    },
    baselines: { sourceVersion, sourceCniVersion, runtimeFloor },
    ratios: {
      cniVersionToSource: round(cniVersion.medianMs / sourceCniVersion.medianMs, 2),
      versionToSource: round(version.medianMs / sourceVersion.medianMs, 2),
    },
  };
  const file = await saveResult("dist", result);
  const row = (name: string, t: Timing) =>
    `${name.padEnd(34)} ${String(t.medianMs).padStart(7)} ms  p90 ${t.p90Ms} ms`;
  console.log(
    [
      `dist/tartan ${result.sizes.tartanMB} MB, image archive ${result.sizes.imageArchiveMB} MB`,
      `build: rootfs ${rootfsS} s (cached when ~0), tartan ${binaryS} s, image ${imageS} s`,
      row("first run, tartan version", firstRun),
      row("warm, tartan version", version),
      row(`warm, CNI VERSION (target ${CNI_VERSION_TARGET_MS} ms)`, cniVersion),
      row("source, tartan version", sourceVersion),
      row("source, CNI VERSION", sourceCniVersion),
      row("runtime floor (empty module)", runtimeFloor),
      `CNI VERSION: dist/source ×${result.ratios.cniVersionToSource}; target ${
        result.warm.cniVersion.met ? "met" : "missed"
      }`,
      `→ ${file}`,
    ].join("\n"),
  );
} finally {
  await Deno.remove(work, { recursive: true });
}
