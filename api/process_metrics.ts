/**
 * Process and runtime metrics under the names Prometheus clients use (`process_*` as the Go and
 * Node clients, `nodejs_*` as prom-client's default collectors), read from `/proc/self` and V8
 * at scrape time.
 *
 * Left out because they would report nothing true under Deno: `nodejs_gc_duration_seconds`,
 * `nodejs_active_handles`/`_requests`/`_resources` and `nodejs_version_info`.
 *
 * @module
 */
import type { MetricFamily, Sample } from "./exposition.ts";

/** Linux's USER_HZ: the unit of the CPU times in `/proc/self/stat`. */
const CLOCK_TICKS_PER_SECOND = 100;

/** The event-loop delay monitor's resolution (ms): coarse enough to leave the CPU idle. */
const EVENT_LOOP_SAMPLE_MS = 1000;

type Gauge = (name: string, help: string, read: () => number | Promise<number>) => MetricFamily;

const single = (type: "counter" | "gauge"): Gauge => (name, help, read) => ({
  name,
  help,
  type,
  samples: async () => [{ value: await read() }],
});
const gauge = single("gauge");
const counter = single("counter");

/** User and system CPU seconds from `/proc/self/stat` (fields 14 and 15). */
function cpuSeconds(): { user: number; system: number } {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  // The command name (field 2) may hold spaces; the fields after it are space-separated.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return {
    user: Number(fields[11]) / CLOCK_TICKS_PER_SECOND,
    system: Number(fields[12]) / CLOCK_TICKS_PER_SECOND,
  };
}

/** A `/proc/self/status` size line (`VmRSS:  1234 kB`) in bytes. */
function statusBytes(field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m")
    .exec(Deno.readTextFileSync("/proc/self/status"));
  return match ? Number(match[1]) * 1024 : NaN;
}

function openFds(): number {
  let count = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) count++;
  return count;
}

function maxFds(): number {
  const line = Deno.readTextFileSync("/proc/self/limits").split("\n")
    .find((text) => text.startsWith("Max open files"));
  return line ? Number(line.split(/ {2,}/)[1]) : NaN;
}

/** Seconds until the event loop runs a macrotask queued now. */
function eventLoopLag(): Promise<number> {
  const start = performance.now();
  return new Promise((resolve) => setTimeout(() => resolve((performance.now() - start) / 1000)));
}

/** Event-loop delay statistics since the previous scrape (node:perf_hooks, loaded lazily). */
function eventLoopDelayFamilies(prefix: string): MetricFamily[] {
  const histogram = import("node:perf_hooks").then(({ monitorEventLoopDelay }) => {
    const monitor = monitorEventLoopDelay({ resolution: EVENT_LOOP_SAMPLE_MS });
    monitor.enable();
    return monitor;
  });
  // The first of these families read in a scrape takes the figures and resets the monitor.
  let taken: Promise<Record<string, number>> | undefined;
  const take = () =>
    taken ??= histogram.then((monitor) => {
      const figures: Record<string, number> = {
        min: monitor.min,
        max: monitor.max,
        mean: monitor.mean,
        stddev: monitor.stddev,
        p50: monitor.percentile(50),
        p90: monitor.percentile(90),
        p99: monitor.percentile(99),
      };
      monitor.reset();
      queueMicrotask(() => taken = undefined);
      return figures;
    });
  const stats: ReadonlyArray<[string, string]> = [
    ["min", "The minimum recorded event loop delay."],
    ["max", "The maximum recorded event loop delay."],
    ["mean", "The mean of the recorded event loop delays."],
    ["stddev", "The standard deviation of the recorded event loop delays."],
    ["p50", "The 50th percentile of the recorded event loop delays."],
    ["p90", "The 90th percentile of the recorded event loop delays."],
    ["p99", "The 99th percentile of the recorded event loop delays."],
  ];
  return stats.map(([stat, help]) =>
    gauge(`${prefix}nodejs_eventloop_lag_${stat}_seconds`, help, async () => {
      const figures = await take();
      return figures[stat] / 1e9;
    })
  );
}

/** V8's heap spaces (`new`, `old`, `code`, …) as prom-client labels them. */
function heapSpaceFamilies(prefix: string): MetricFamily[] {
  const kinds = [
    ["total", "space_size"],
    ["used", "space_used_size"],
    ["available", "space_available_size"],
  ] as const;
  return kinds.map(([kind, field]) => ({
    name: `${prefix}nodejs_heap_space_size_${kind}_bytes`,
    help: `Process heap space size ${kind} from Node.js in bytes.`,
    type: "gauge",
    samples: async (): Promise<Sample[]> => {
      const { getHeapSpaceStatistics } = await import("node:v8");
      return getHeapSpaceStatistics().map((space) => ({
        labels: { space: space.space_name.replace(/_space$/, "") },
        value: space[field],
      }));
    },
  }));
}

/** Every process and runtime family, each name starting with `prefix`. */
export function processFamilies(prefix: string): MetricFamily[] {
  const startTime = Math.round(performance.timeOrigin / 1000);
  return [
    counter(
      `${prefix}process_cpu_user_seconds_total`,
      "Total user CPU time spent in seconds.",
      () => cpuSeconds().user,
    ),
    counter(
      `${prefix}process_cpu_system_seconds_total`,
      "Total system CPU time spent in seconds.",
      () => cpuSeconds().system,
    ),
    counter(
      `${prefix}process_cpu_seconds_total`,
      "Total user and system CPU time spent in seconds.",
      () => {
        const { user, system } = cpuSeconds();
        return user + system;
      },
    ),
    gauge(
      `${prefix}process_start_time_seconds`,
      "Start time of the process since unix epoch in seconds.",
      () => startTime,
    ),
    gauge(
      `${prefix}process_resident_memory_bytes`,
      "Resident memory size in bytes.",
      () => statusBytes("VmRSS"),
    ),
    gauge(
      `${prefix}process_virtual_memory_bytes`,
      "Virtual memory size in bytes.",
      () => statusBytes("VmSize"),
    ),
    gauge(
      `${prefix}process_heap_bytes`,
      "Process heap size in bytes.",
      () => statusBytes("VmData"),
    ),
    gauge(`${prefix}process_open_fds`, "Number of open file descriptors.", openFds),
    gauge(`${prefix}process_max_fds`, "Maximum number of open file descriptors.", maxFds),
    gauge(`${prefix}nodejs_eventloop_lag_seconds`, "Lag of event loop in seconds.", eventLoopLag),
    ...eventLoopDelayFamilies(prefix),
    gauge(
      `${prefix}nodejs_heap_size_total_bytes`,
      "Process heap size from Node.js in bytes.",
      () => Deno.memoryUsage().heapTotal,
    ),
    gauge(
      `${prefix}nodejs_heap_size_used_bytes`,
      "Process heap size used from Node.js in bytes.",
      () => Deno.memoryUsage().heapUsed,
    ),
    gauge(
      `${prefix}nodejs_external_memory_bytes`,
      "Node.js external memory size in bytes.",
      () => Deno.memoryUsage().external,
    ),
    ...heapSpaceFamilies(prefix),
  ];
}
