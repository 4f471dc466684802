/**
 * Footprint benchmark: what a Tartan node costs its machine, in one run.
 *
 * - bare Deno: the resident memory of `deno run` on a script that only waits;
 * - each runtime dependency: the RSS of a bare process after importing only that module, minus
 *   bare Deno (every npm package and `node:` module the daemon's code imports, from
 *   `deno info main.ts`);
 * - the daemon idle in etcd mode with 100 peers, in kube mode (fake API server) with 100 peers,
 *   and in etcd mode with 10 000 peers: RSS 30 s after start (or 10 s after the last peer is
 *   programmed, if later), started as the lab starts it (with the daemon's V8 flags and the
 *   admin API on), then its context switches per second and CPU over 20 s at rest;
 * - CNI ADD: `tartan cni` against the `bridge` plugin alone given the config Tartan delegates.
 *
 * Memory is in MB (10^6 bytes), as the goals are written (issue 19).
 *
 * Run: `deno task bench footprint` (root: namespaces, etcd). Prints a table, writes
 * bench/results/footprint.json. `deno run -A bench/footprint.ts --parts kube,etcd` runs only
 * those parts (of imports, etcd, kube, peers10k) and writes nothing.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { commandRunner } from "../exec.ts";
import { LAB_ETCD_PREFIX } from "../lab/cluster.ts";
import { startEtcd } from "../lab/etcd.ts";
import { type FakeKubeApi, fakeNode, startFakeKubeApi } from "../lab/kube_api.ts";
import { type NodeDaemon, type NodeStoreOptions, startNodeDaemon } from "../lab/node.ts";
import { CNI_BIN_DIR, cniConfig, cniDataDir, execCniPlugin, invokeCni } from "../lab/pods.ts";
import { addNetns, createNode, createUnderlay, deleteLabNetns, labNames } from "../lab/topology.ts";
import { findPid, type RestActivity, restActivity, statusField } from "./proc.ts";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";
import { saveResult } from "./results.ts";
import { median, round } from "./stats.ts";

/** The goals of issue 19, MB. */
export const GOALS = { kubeMB: 64, etcd100MB: 80, peers10kMB: 150 } as const;

/** One daemon measured at rest. */
export interface DaemonFootprint {
  readonly mode: "etcd" | "kube";
  readonly peers: number;
  /** Extra `tartan run` flags of this row (none: the daemon as shipped). */
  readonly flags?: readonly string[];
  /**
   * RSS at rest: the median of samples taken every 2 s over the 20 s rest window that starts
   * 30 s after start (or 10 s after the last peer is programmed, if later).
   */
  readonly rssMB: number;
  /** The highest of those samples (a full resync allocates, then the GC gives back). */
  readonly rssMaxMB: number;
  /** Peak RSS so far (VmHWM). */
  readonly peakRssMB: number;
  /**
   * Where the RSS is (smaps_rollup, medians of the same samples): anonymous memory (V8 heaps,
   * native allocations) and file-backed pages (the Deno executable's code and data).
   */
  readonly anonMB: number;
  readonly fileMB: number;
  /** V8 heap after the rest window (`tartan_nodejs_heap_size_*_bytes` from /metrics). */
  readonly heapUsedMB: number;
  readonly heapTotalMB: number;
  /** Seconds from spawn to every peer's route in the kernel. */
  readonly programmedSeconds: number;
  readonly measuredAtSeconds: number;
  readonly goalMB?: number;
  readonly rest: RestActivity;
}

/** What {@link main} measures. */
export interface FootprintResult {
  readonly date: string;
  readonly deno: string;
  readonly v8Flags: string;
  readonly bareDenoMB: number;
  /**
   * RSS added by importing only that module into a bare process, MB (least of 5 runs each), and
   * whether `tartan run` may load it (others serve the CLI, the CNI plugin or `tartan status`).
   */
  readonly dependencies: Record<string, { readonly addsMB: number; readonly daemon: boolean }>;
  /** {@link REPLACED}: what each would add (MB, same method) and what took its place. */
  readonly replaced: Record<string, { readonly addsMB: number; readonly replacedBy: string }>;
  readonly daemons: DaemonFootprint[];
  /** Measured with the etcd-mode daemon. */
  readonly cniAdd?: {
    readonly runs: number;
    /** `tartan cni` ADD, median ms. */
    readonly tartanMs: number;
    /** The bridge plugin alone with the config Tartan delegates, median ms. */
    readonly bridgeMs: number;
    readonly ratio: number;
  };
}

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CONFIG = `${ROOT}deno.json`;
const SETTLE_SECONDS = 30;
const REST_SECONDS = 20;
const SAMPLE_EVERY_MS = 2000;
const PROGRAM_TIMEOUT_MS = 120_000;
const IMPORT_RUNS = 5;
const CNI_RUNS = 10;
const MB = 1e6;

/** A `Field:  N kB` line of a /proc file, in bytes. */
function kbFieldOf(text: string, field: string): number {
  return statusField(text, field) * 1024;
}

async function kbField(path: string, field: string): Promise<number> {
  return kbFieldOf(await Deno.readTextFile(path), field);
}

/** RSS and its anonymous part, every 2 s for `seconds` (reading /proc does not wake it). */
async function sampleRss(pid: number, seconds: number) {
  const rss: number[] = [];
  const anon: number[] = [];
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const rollup = await Deno.readTextFile(`/proc/${pid}/smaps_rollup`);
    rss.push(kbFieldOf(rollup, "Rss"));
    anon.push(kbFieldOf(rollup, "Anonymous"));
    await new Promise((r) => setTimeout(r, SAMPLE_EVERY_MS));
  }
  return { rss, anon };
}

/** One sample of the daemon's own /metrics, bytes. */
async function metricBytes(node: NodeDaemon, name: string): Promise<number> {
  const text = await (await fetch(`${node.adminUrl}/metrics`)).text();
  return Number(text.match(new RegExp(`^${name} (\\S+)$`, "m"))?.[1]);
}

/** RSS of a bare `deno run` that imports `specifier` (nothing when empty) and waits, bytes. */
async function importRss(specifier: string, dir: string, config = true): Promise<number> {
  const probe = `${dir}/probe.ts`;
  await Deno.writeTextFile(
    probe,
    `${specifier ? `await import(${JSON.stringify(specifier)});\n` : ""}` +
      `await new Promise((r) => setTimeout(r, 2000));\n` +
      `console.log(Deno.readTextFileSync("/proc/self/status").match(/VmRSS:\\s+(\\d+)/)[1]);\n`,
  );
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    // Packages outside deno.json are run without it, so the project's lock file is not touched.
    args: ["run", "-A", ...(config ? ["--config", CONFIG] : ["--no-config"]), probe],
    cwd: ROOT,
  }).output();
  if (code !== 0) throw new Error(`import ${specifier}: ${new TextDecoder().decode(stderr)}`);
  return Number(new TextDecoder().decode(stdout).trim()) * 1024;
}

interface ModuleInfo {
  readonly specifier: string;
  readonly dependencies?: ReadonlyArray<{ specifier: string; code?: { specifier: string } }>;
}

/**
 * The npm and `node:` modules the program's code imports for their code (not types only), each
 * with whether `tartan run` itself can load it (from daemon.ts, dynamic imports included).
 */
async function runtimeDependencies(): Promise<Map<string, boolean>> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", "--config", CONFIG, `${ROOT}main.ts`],
  }).output();
  const modules = new Map<string, ModuleInfo>();
  for (const module of JSON.parse(new TextDecoder().decode(stdout)).modules as ModuleInfo[]) {
    modules.set(module.specifier, module);
  }
  const daemonModules = new Set<string>();
  const pending = [`file://${ROOT}daemon.ts`];
  while (pending.length) {
    const specifier = pending.pop()!;
    if (daemonModules.has(specifier)) continue;
    daemonModules.add(specifier);
    for (const dep of modules.get(specifier)?.dependencies ?? []) {
      if (dep.code) pending.push(dep.code.specifier);
    }
  }
  const found = new Map<string, boolean>();
  for (const module of modules.values()) {
    if (!module.specifier.startsWith(`file://${ROOT}`)) continue;
    if (/\/(tests|bench|lab)\//.test(module.specifier)) continue;
    for (const dep of module.dependencies ?? []) {
      if (!dep.code || /^(\.|\/|file:)/.test(dep.specifier)) continue;
      const daemon = found.get(dep.specifier) || daemonModules.has(module.specifier);
      found.set(dep.specifier, daemon);
    }
  }
  return new Map([...found].sort(([a], [b]) => a.localeCompare(b)));
}

/** The least RSS over a few runs: the noise (allocator and GC timing) only ever adds. */
async function leastRss(specifier: string, dir: string, config = true): Promise<number> {
  const runs: number[] = [];
  for (let i = 0; i < IMPORT_RUNS; i++) runs.push(await importRss(specifier, dir, config));
  return Math.min(...runs);
}

/** Routes on flannel.1 in `ns` (one per programmed vxlan peer). */
async function peerRoutes(ns: string): Promise<number> {
  const out = await commandRunner()(["ip", "-n", ns, "-4", "route", "show", "dev", "flannel.1"])
    .catch(() => "");
  return out.split("\n").filter((line) => / via /.test(line)).length;
}

async function waitProgrammed(ns: string, peers: number, since: number): Promise<number> {
  const deadline = performance.now() + PROGRAM_TIMEOUT_MS;
  while (await peerRoutes(ns) < peers) {
    if (performance.now() > deadline) throw new Error(`${ns}: ${peers} peers not programmed`);
    await new Promise((r) => setTimeout(r, 500));
  }
  return (performance.now() - since) / 1000;
}

/**
 * Start a node daemon, wait until its peers are programmed and it has settled, measure; then
 * run `after` on it, if given, before stopping it.
 */
async function measureDaemon(
  mode: "etcd" | "kube",
  peers: number,
  node: () => Promise<NodeDaemon>,
  goalMB?: number,
  after?: (daemon: NodeDaemon) => Promise<void>,
  flags?: readonly string[],
): Promise<DaemonFootprint> {
  const spawned = performance.now();
  const daemon = await node();
  try {
    const programmedSeconds = await waitProgrammed(daemon.ns, peers, spawned);
    const measureAt = Math.max(SETTLE_SECONDS, programmedSeconds + 10);
    const wait = measureAt * 1000 - (performance.now() - spawned);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const pid = await findPid(`--subnet-file=${daemon.subnetFile}`);
    const mb = (bytes: number) => round(bytes / MB, 1);
    const [rest, samples] = await Promise.all([
      restActivity(pid, REST_SECONDS),
      sampleRss(pid, REST_SECONDS),
    ]);
    const rssMB = mb(median(samples.rss));
    const anonMB = mb(median(samples.anon));
    const peakRssMB = mb(await kbField(`/proc/${pid}/status`, "VmHWM"));
    const heapUsedMB = mb(await metricBytes(daemon, "tartan_nodejs_heap_size_used_bytes"));
    const heapTotalMB = mb(await metricBytes(daemon, "tartan_nodejs_heap_size_total_bytes"));
    const label = `${mode} mode, ${peers} peers${flags?.length ? ` ${flags.join(" ")}` : ""}`;
    console.error(`measured ${label}: ${rssMB} MB`);
    await after?.(daemon);
    return {
      mode,
      peers,
      ...(flags?.length && { flags }),
      rssMB,
      rssMaxMB: mb(Math.max(...samples.rss)),
      peakRssMB,
      anonMB,
      fileMB: round(rssMB - anonMB, 1),
      heapUsedMB,
      heapTotalMB,
      programmedSeconds: round(programmedSeconds, 1),
      measuredAtSeconds: round(measureAt, 1),
      ...(goalMB !== undefined && { goalMB }),
      rest,
    };
  } finally {
    await daemon.close();
  }
}

/** Synthetic vxlan peer `i` (0-based) in 10.0.0.0/8 (10.0.0.0/24 is never allocated). */
function peer(i: number) {
  const n = i + 1;
  const hex = (b: number) => b.toString(16).padStart(2, "0");
  return {
    subnet: `10.${n >> 8}.${n & 255}.0`,
    mac: `0e:00:00:${hex((n >> 16) & 255)}:${hex((n >> 8) & 255)}:${hex(n & 255)}`,
    publicIP: `198.19.${n >> 8}.${n & 255}`,
  };
}

const b64 = (text: string) => btoa(text);

/** etcd's JSON gateway (what the etcd tool itself speaks over HTTP). */
async function etcdCall(endpoint: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(`${endpoint}/v3/${path}`, { method: "POST", body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`etcd ${path}: ${res.status} ${await res.text()}`);
  return await res.json();
}

/** Write peers [from, to) as flannel vxlan leases, 128 per transaction. */
async function putPeers(endpoint: string, from: number, to: number): Promise<void> {
  const { ID: lease } = await etcdCall(endpoint, "lease/grant", { TTL: 86_400 }) as { ID: string };
  const batches: Promise<unknown>[] = [];
  for (let start = from; start < to; start += 128) {
    const success = [];
    for (let i = start; i < Math.min(to, start + 128); i++) {
      const p = peer(i);
      const value = `{"PublicIP":"${p.publicIP}","PublicIPv6":null,"BackendType":"vxlan",` +
        `"BackendData":{"VNI":1,"VtepMAC":"${p.mac}"}}`;
      const key = `${LAB_ETCD_PREFIX}/subnets/${p.subnet}-24`;
      success.push({ requestPut: { key: b64(key), value: b64(value), lease } });
    }
    batches.push(etcdCall(endpoint, "kv/txn", { success }));
  }
  await Promise.all(batches);
}

/** Peer Nodes as a flannel kube-mode node annotates itself. */
function seedKubePeers(api: FakeKubeApi, count: number): void {
  const prefix = "flannel.alpha.coreos.com/";
  for (let i = 0; i < count; i++) {
    const p = peer(i);
    api.setNode(fakeNode(`peer-${i}`, {
      podCIDR: `${p.subnet}/24`,
      annotations: {
        [`${prefix}backend-type`]: "vxlan",
        [`${prefix}backend-data`]: `{"VNI":1,"VtepMAC":"${p.mac}"}`,
        [`${prefix}kube-subnet-manager`]: "true",
        [`${prefix}public-ip`]: p.publicIP,
      },
    }));
  }
}

/** CNI ADD through Tartan against the bridge plugin alone (the config Tartan delegates). */
async function cniComparison(node: NodeDaemon, names: ReturnType<typeof labNames>) {
  const run = commandRunner();
  const tartan: number[] = [];
  const bridge: number[] = [];
  let delegated: string | undefined;
  for (let j = 1; j <= CNI_RUNS; j++) {
    const ours = names.pod(1, 2 * j);
    const theirs = names.pod(1, 2 * j + 1);
    await addNetns(run, ours);
    await addNetns(run, theirs);
    let started = performance.now();
    await invokeCni("ADD", node.ns, ours, cniConfig(node.subnetFile, node.dir));
    tartan.push(performance.now() - started);
    delegated ??= await Deno.readTextFile(`${cniDataDir(node.dir)}/${ours}`);
    started = performance.now();
    await execCniPlugin([`${CNI_BIN_DIR}/bridge`], "ADD", node.ns, theirs, delegated);
    bridge.push(performance.now() - started);
  }
  const tartanMs = round(median(tartan), 1);
  const bridgeMs = round(median(bridge), 1);
  return { runs: CNI_RUNS, tartanMs, bridgeMs, ratio: round(tartanMs / bridgeMs, 2) };
}

/**
 * Packages the daemon used to load and what replaced them, measured the same way for
 * comparison (they are no longer in deno.json).
 */
const REPLACED: Readonly<Record<string, string>> = {
  "npm:@kubernetes/client-node@2.0.1": "subnet/kube_client.ts, kube_config.ts (fetch)",
  "npm:etcd3@1.1.2": "etcd/ (the JSON gateway over fetch)",
  "npm:prom-client@15.1.3": "api/exposition.ts",
};

/** The parts of the run. */
export const PARTS = ["imports", "etcd", "kube", "peers10k"] as const;
export type Part = typeof PARTS[number];

/** Run the measurements (all parts by default); everything created is removed even on failure. */
export async function main(parts: ReadonlySet<Part> = new Set(PARTS)): Promise<FootprintResult> {
  const run = commandRunner();
  const prefix = `tb-${crypto.randomUUID().slice(0, 6)}f-`;
  const names = labNames(prefix);
  const workDir = await Deno.makeTempDir({ prefix: "tartan-footprint-" });
  const etcd = await startEtcd();
  const api = startFakeKubeApi();
  try {
    const bare = await leastRss("", workDir);
    const dependencies: FootprintResult["dependencies"] = {};
    const imports = parts.has("imports") ? await runtimeDependencies() : new Map();
    for (const [specifier, daemon] of imports) {
      const addsMB = round((await leastRss(specifier, workDir) - bare) / MB, 1);
      dependencies[specifier] = { addsMB, daemon };
      console.error(`import ${specifier}: +${addsMB} MB${daemon ? " (daemon)" : ""}`);
    }
    const replaced: FootprintResult["replaced"] = {};
    if (parts.has("imports")) {
      const bareNoConfig = await leastRss("", workDir, false);
      for (const [specifier, replacedBy] of Object.entries(REPLACED)) {
        const addsMB = round((await leastRss(specifier, workDir, false) - bareNoConfig) / MB, 1);
        replaced[specifier] = { addsMB, replacedBy };
        console.error(`import ${specifier} (replaced): +${addsMB} MB`);
      }
    }

    await etcdCall(etcd.endpoint, "kv/put", {
      key: b64(`${LAB_ETCD_PREFIX}/config`),
      value: b64(JSON.stringify({
        Network: "10.0.0.0/8",
        SubnetMin: "10.200.0.0",
        Backend: { Type: "vxlan" },
      })),
    });
    await putPeers(etcd.endpoint, 0, 100);
    await createUnderlay(run, names.underlay);
    await createNode(run, names.underlay, names.node(1), 1);
    await createNode(run, names.underlay, names.node(2), 2);
    const etcdStore: NodeStoreOptions = { etcdPort: Number(new URL(etcd.endpoint).port) };
    const etcdNode = (dir: string, flags?: readonly string[]) => () =>
      startNodeDaemon({ ns: names.node(1), dir: `${workDir}/${dir}`, ...etcdStore, flags });

    const daemons: DaemonFootprint[] = [];
    let cniAdd: FootprintResult["cniAdd"] | undefined;
    if (parts.has("etcd")) {
      daemons.push(
        await measureDaemon("etcd", 100, etcdNode("etcd100"), GOALS.etcd100MB, async (node) => {
          cniAdd = await cniComparison(node, names);
        }),
      );
    }

    const netConfigPath = `${workDir}/net-conf.json`;
    await Deno.writeTextFile(
      netConfigPath,
      JSON.stringify({ Network: "10.0.0.0/8", Backend: { Type: "vxlan" } }),
    );
    seedKubePeers(api, 100);
    api.setNode(fakeNode(names.node(2), { podCIDR: "10.200.0.0/24" }));
    if (parts.has("kube")) {
      daemons.push(
        await measureDaemon("kube", 100, () =>
          startNodeDaemon({
            ns: names.node(2),
            dir: `${workDir}/kube`,
            kube: { apiPort: api.port, nodeName: names.node(2), netConfigPath },
          }), GOALS.kubeMB),
      );
    }

    if (parts.has("peers10k")) {
      await putPeers(etcd.endpoint, 100, 10_000);
      daemons.push(await measureDaemon("etcd", 10_000, etcdNode("etcd10k"), GOALS.peers10kMB));
      // The same without peer probing, whose per-peer state and paced probes are part of it.
      const noProbes = ["--peer-probe-interval=0"];
      daemons.push(
        await measureDaemon(
          "etcd",
          10_000,
          etcdNode("etcd10k-noprobe", noProbes),
          undefined,
          undefined,
          noProbes,
        ),
      );
    }

    return {
      date: new Date().toISOString(),
      deno: Deno.version.deno,
      v8Flags: DAEMON_V8_FLAGS,
      bareDenoMB: round(bare / MB, 1),
      dependencies,
      replaced,
      daemons,
      cniAdd,
    };
  } finally {
    await api.close();
    await deleteLabNetns(run, prefix);
    await etcd.stop();
    await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }
}

function printTable(r: FootprintResult): void {
  console.log(`bare deno run: ${r.bareDenoMB} MB (Deno ${r.deno}, daemon V8 flags ${r.v8Flags})`);
  console.log("import cost (MB over bare Deno):");
  for (const [name, { addsMB, daemon }] of Object.entries(r.dependencies)) {
    console.log(`  ${name.padEnd(28)} +${addsMB}${daemon ? "  (tartan run)" : ""}`);
  }
  for (const [name, { addsMB, replacedBy }] of Object.entries(r.replaced)) {
    console.log(`  ${name.padEnd(28)} +${addsMB}  (replaced by ${replacedBy})`);
  }
  console.log("daemon at rest:");
  for (const d of r.daemons) {
    const verdict = d.goalMB === undefined
      ? ""
      : `; goal ≤ ${d.goalMB} ${d.rssMB <= d.goalMB ? "meets" : "MISSES"}`;
    console.log(
      `  ${d.mode} ${String(d.peers).padStart(6)} peers${
        d.flags ? ` ${d.flags.join(" ")}` : ""
      }: ` +
        `${d.rssMB} MB (max ${d.rssMaxMB}, peak ${d.peakRssMB}; ` +
        `anon ${d.anonMB}, file ${d.fileMB}, V8 heap ${d.heapUsedMB}/${d.heapTotalMB}` +
        `${verdict}), ${d.rest.wakeupsPerSecond} wake-ups/s ` +
        `(main thread ${d.rest.mainThreadWakeupsPerSecond}), CPU ${d.rest.cpuPercent} %, ` +
        `${d.rest.threads} threads`,
    );
  }
  const c = r.cniAdd;
  if (c) {
    console.log(`CNI ADD: tartan ${c.tartanMs} ms, bridge alone ${c.bridgeMs} ms (×${c.ratio})`);
  }
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { parts: { type: "string" } } });
  const parts = new Set((values.parts?.split(",") ?? PARTS) as Part[]);
  const unknown = [...parts].filter((part) => !PARTS.includes(part));
  if (unknown.length) throw new Error(`unknown parts ${unknown.join(",")}; choose from ${PARTS}`);
  const result = await main(parts);
  printTable(result);
  if (parts.size === PARTS.length) await saveResult("footprint", result);
}
