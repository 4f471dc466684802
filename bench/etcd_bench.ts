/**
 * Control-plane benchmark of the etcd subnet manager against a throw-away etcd: time to acquire
 * a lease among 1 000 and 10 000 existing ones, time to the first watch snapshot, and watch
 * throughput in events per second.
 *
 * Run: `deno run -A bench/etcd_bench.ts` (prints a table, writes bench/results/etcd.json).
 *
 * @module
 */
import type { EtcdClient } from "../etcd/client.ts";
import type { TxnOp } from "../etcd/codec.ts";
import { setLogLevel } from "../log.ts";
import { EtcdSubnetManager } from "../subnet/etcd.ts";
import { parseAddr } from "../ip/mod.ts";
import { startEtcd } from "../lab/etcd.ts";
import { saveResult } from "./results.ts";

/** One acquisition measurement. */
export interface AcquireResult {
  readonly existingLeases: number;
  /** Median and best of the runs, milliseconds. */
  readonly medianMs: number;
  readonly minMs: number;
  /** Time from opening the watch to its first snapshot, milliseconds. */
  readonly snapshotMs: number;
}

/** What {@link runEtcdBench} measures. */
export interface EtcdBenchResult {
  readonly etcdVersion: string;
  readonly acquire: AcquireResult[];
  readonly watch: {
    readonly events: number;
    readonly seconds: number;
    readonly eventsPerSecond: number;
  };
}

const MAX_TXN_OPS = 128; // etcd's default --max-txn-ops

function vxlanValue(i: number): string {
  const mac = `02:00:${
    [i >> 16, (i >> 8) & 0xff, i & 0xff, 1].map((b) => b.toString(16).padStart(2, "0")).join(":")
  }`;
  return `{"PublicIP":"198.18.${(i >> 8) & 0xff}.${
    i & 0xff
  }","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
}

/** Lease key for the i-th /24 of 10.0.0.0/8 (skipping 10.0.0.0/24, never allocated). */
function leaseName(i: number): string {
  const n = i + 1;
  return `10.${(n >> 8) & 0xff}.${n & 0xff}.0-24`;
}

/** Write leases [from, to) in flannel's format, many per transaction, on one 24 h lease. */
async function seed(client: EtcdClient, prefix: string, from: number, to: number): Promise<void> {
  const { id } = await client.leaseGrant(86_400);
  const batches: Promise<unknown>[] = [];
  for (let start = from; start < to; start += MAX_TXN_OPS) {
    const ops: TxnOp[] = [];
    for (let i = start; i < Math.min(to, start + MAX_TXN_OPS); i++) {
      ops.push({
        put: { key: `${prefix}/subnets/${leaseName(i)}`, value: vxlanValue(i), lease: id },
      });
    }
    batches.push(client.txn({ compare: [], success: ops }));
    if (batches.length >= 8) await Promise.all(batches.splice(0));
  }
  await Promise.all(batches);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Acquire `runs` new leases (fresh public IPs: no reuse) among `existing` ones. */
async function measureAcquire(
  endpoint: string,
  prefix: string,
  existing: number,
  runs: number,
): Promise<AcquireResult> {
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const manager = new EtcdSubnetManager({
      endpoints: [endpoint],
      prefix,
      subnetFile: "/nonexistent/subnet.env",
    });
    try {
      await manager.getNetworkConfig(AbortSignal.timeout(10_000)); // connect outside the timing
      const start = performance.now();
      await manager.acquireLease(
        {
          publicIP: parseAddr(`198.19.${existing % 256}.${run + 1}`),
          backendType: "vxlan",
          backendData: { VNI: 1 },
        },
        AbortSignal.timeout(30_000),
      );
      times.push(performance.now() - start);
    } finally {
      await manager.close();
    }
  }
  const watcher = new EtcdSubnetManager({ endpoints: [endpoint], prefix });
  const abort = new AbortController();
  try {
    const start = performance.now();
    for await (const update of watcher.watchLeases(abort.signal)) {
      if (update.type === "snapshot" && update.leases.length >= existing) break;
    }
    return {
      existingLeases: existing,
      medianMs: median(times),
      minMs: Math.min(...times),
      snapshotMs: performance.now() - start,
    };
  } finally {
    abort.abort();
    await watcher.close();
  }
}

async function measureWatch(endpoint: string, client: EtcdClient, events: number) {
  const prefix = "/bench-watch/network";
  const watcher = new EtcdSubnetManager({ endpoints: [endpoint], prefix });
  const abort = new AbortController();
  try {
    let received = 0;
    let snapshotSeen: () => void = () => {};
    const ready = new Promise<void>((resolve) => snapshotSeen = resolve);
    let allSeen: () => void = () => {};
    const done = new Promise<void>((resolve) => allSeen = resolve);
    const consuming = (async () => {
      for await (const update of watcher.watchLeases(abort.signal)) {
        if (update.type === "snapshot") snapshotSeen();
        else received += update.events.length;
        if (received >= events) allSeen();
      }
    })();
    await ready;
    const start = performance.now();
    await seed(client, prefix, 0, events);
    await done;
    const seconds = (performance.now() - start) / 1000;
    abort.abort();
    await consuming;
    return { events, seconds, eventsPerSecond: Math.round(events / seconds) };
  } finally {
    abort.abort();
    await watcher.close();
  }
}

/** Start an etcd, run every measurement, stop it. */
export async function runEtcdBench(
  sizes: readonly number[] = [1000, 10_000],
  watchEvents = 10_000,
): Promise<EtcdBenchResult> {
  await using etcd = await startEtcd();
  const client = etcd.client();
  await client.put({
    key: "/bench/network/config",
    value: '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}',
  });
  const acquire: AcquireResult[] = [];
  let seeded = 0;
  for (const size of sizes) {
    await seed(client, "/bench/network", seeded, size);
    seeded = size;
    acquire.push(await measureAcquire(etcd.endpoint, "/bench/network", size, 5));
  }
  const watch = await measureWatch(etcd.endpoint, client, watchEvents);
  const version = await new Deno.Command("etcd", { args: ["--version"], stdout: "piped" }).output();
  const etcdVersion = new TextDecoder().decode(version.stdout).split("\n")[0].replace(
    /^etcd Version: /,
    "",
  );
  return { etcdVersion, acquire, watch };
}

if (import.meta.main) {
  setLogLevel("warn");
  const result = await runEtcdBench();
  console.log(`etcd subnet manager (etcd ${result.etcdVersion})`);
  console.table(result.acquire.map((a) => ({
    "existing leases": a.existingLeases,
    "acquire p50 (ms)": a.medianMs.toFixed(1),
    "acquire min (ms)": a.minMs.toFixed(1),
    "first snapshot (ms)": a.snapshotMs.toFixed(1),
  })));
  console.table([{
    "watch events": result.watch.events,
    "seconds": result.watch.seconds.toFixed(2),
    "events/s": result.watch.eventsPerSecond,
  }]);
  const out = await saveResult("etcd", { date: new Date().toISOString(), ...result });
  console.log(`wrote ${out}`);
}
