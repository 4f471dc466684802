/**
 * Memory of the etcd client: the resident set size of a process that reads 100 leases and
 * watches them, idle afterwards, with our fetch-based client (etcd/client.ts), with the `etcd3`
 * npm package it replaced (grpc-js), and with no client at all (the baseline), each started
 * `RUNS` times in the same run with the daemon's V8 flags.
 *
 * Run: `deno task bench etcd_client` (prints a table, writes bench/results/etcd_client.json).
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { EtcdClient } from "../etcd/client.ts";
import { startEtcd } from "../lab/etcd.ts";
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";
import { saveResult } from "./results.ts";
import { median } from "./stats.ts";

const MODES = ["none", "fetch", "etcd3"] as const;
const RUNS = 5;
const PEERS = 100;
const IDLE_MS = 5000;
const PREFIX = "/bench-client/network";

/** Figures of one mode, kB. */
export interface ClientFootprint {
  readonly mode: (typeof MODES)[number];
  readonly medianRssKb: number;
  readonly minRssKb: number;
  readonly maxRssKb: number;
  /** Median RSS above the no-client baseline. */
  readonly overBaselineKb: number;
}

async function measure(mode: string, endpoint: string): Promise<number> {
  const child = fileURLToPath(new URL("./etcd_client_child.ts", import.meta.url));
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--no-lock",
      `--v8-flags=${DAEMON_V8_FLAGS}`,
      child,
      mode,
      endpoint,
      PREFIX,
      String(IDLE_MS),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  if (!out.success) {
    throw new Error(`${mode} child failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  const result = JSON.parse(text) as { keys: number; rssKb: number };
  if (mode !== "none" && result.keys !== PEERS) {
    throw new Error(`${mode} child read ${result.keys} leases, not ${PEERS}`);
  }
  return result.rssKb;
}

/** Start an etcd with {@link PEERS} leases and measure every mode, interleaved. */
export async function runClientFootprint(): Promise<ClientFootprint[]> {
  await using etcd = await startEtcd();
  const client = new EtcdClient({ endpoints: [etcd.endpoint] });
  try {
    const { id } = await client.leaseGrant(86_400);
    for (let i = 0; i < PEERS; i++) {
      await client.put({
        key: `${PREFIX}/subnets/10.5.${i}.0-24`,
        value: `{"PublicIP":"198.18.0.${i + 1}","PublicIPv6":null,"BackendType":"vxlan",` +
          `"BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:00:${i.toString(16).padStart(2, "0")}"}}`,
        lease: id,
      });
    }
  } finally {
    client.close();
  }
  const samples = new Map<string, number[]>(MODES.map((m) => [m, []]));
  for (let run = 0; run < RUNS; run++) {
    for (const mode of MODES) samples.get(mode)!.push(await measure(mode, etcd.endpoint));
  }
  const baseline = median(samples.get("none")!);
  return MODES.map((mode) => {
    const kb = samples.get(mode)!;
    return {
      mode,
      medianRssKb: median(kb),
      minRssKb: Math.min(...kb),
      maxRssKb: Math.max(...kb),
      overBaselineKb: median(kb) - baseline,
    };
  });
}

if (import.meta.main) {
  const rows = await runClientFootprint();
  const mb = (kb: number) => (kb * 1024 / 1e6).toFixed(1); // MB = 10^6 bytes, as issue 19
  console.log(
    `etcd client footprint: RSS after reading and watching ${PEERS} leases, ${RUNS} runs`,
  );
  console.table(rows.map((r) => ({
    client: r.mode,
    "RSS p50 (MB)": mb(r.medianRssKb),
    "min–max (MB)": `${mb(r.minRssKb)}–${mb(r.maxRssKb)}`,
    "over no client (MB)": mb(r.overBaselineKb),
  })));
  const file = await saveResult("etcd_client", {
    peers: PEERS,
    idleMs: IDLE_MS,
    runs: RUNS,
    v8Flags: DAEMON_V8_FLAGS,
    clients: rows,
  });
  console.log(`wrote ${file}`);
}
