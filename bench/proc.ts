/**
 * What the benchmarks read about a running process from `/proc`: its memory, and how often it
 * wakes up and how much CPU it takes while nothing happens.
 *
 * @module
 */
import { round } from "./stats.ts";

/** Resident memory of a process, MiB. */
export interface MemorySample {
  /** VmRSS now. */
  readonly rssMiB: number;
  /** VmHWM: the peak so far. */
  readonly peakRssMiB: number;
}

/** A process's activity over an interval in which nothing was asked of it. */
export interface RestActivity {
  readonly seconds: number;
  /**
   * Context switches per second, all threads (each is a thread going to sleep and being woken:
   * timers, polls, worker threads).
   */
  readonly wakeupsPerSecond: number;
  /** The same for the main (JavaScript) thread alone. */
  readonly mainThreadWakeupsPerSecond: number;
  /** User + system CPU time over the interval, as a percentage of one core. */
  readonly cpuPercent: number;
  readonly threads: number;
}

/** Linux's USER_HZ: the unit of CPU times in `/proc/<pid>/stat`. */
const CLOCK_TICKS_PER_SECOND = 100;

/** A `Field:  N …` line of a /proc file (status, smaps_rollup): its number (kB for sizes). */
export function statusField(status: string, field: string): number {
  return Number(status.match(new RegExp(`^${field}:\\s+(\\d+)`, "m"))?.[1] ?? NaN);
}

/** The pid of the process whose command line holds `needle` as one argument. */
export async function findPid(needle: string, alsoContains = ""): Promise<number> {
  for await (const entry of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    const cmdline = await Deno.readTextFile(`/proc/${entry.name}/cmdline`).catch(() => "");
    if (cmdline.split("\0").includes(needle) && cmdline.includes(alsoContains)) {
      return Number(entry.name);
    }
  }
  throw new Error(`no process with argument ${needle}`);
}

/** VmRSS and VmHWM of `pid`. */
export async function memory(pid: number): Promise<MemorySample> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  return {
    rssMiB: round(statusField(status, "VmRSS") / 1024, 1),
    peakRssMiB: round(statusField(status, "VmHWM") / 1024, 1),
  };
}

async function switches(statusPath: string): Promise<number> {
  const status = await Deno.readTextFile(statusPath).catch(() => "");
  return statusField(status, "voluntary_ctxt_switches") +
    statusField(status, "nonvoluntary_ctxt_switches");
}

async function counters(pid: number) {
  let all = 0;
  let threads = 0;
  for await (const task of Deno.readDir(`/proc/${pid}/task`)) {
    const n = await switches(`/proc/${pid}/task/${task.name}/status`);
    if (Number.isFinite(n)) {
      all += n;
      threads++;
    }
  }
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpu = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS_PER_SECOND;
  return { all, main: await switches(`/proc/${pid}/task/${pid}/status`), cpu, threads };
}

/** Watch `pid` for `seconds` without touching it. */
export async function restActivity(pid: number, seconds: number): Promise<RestActivity> {
  const before = await counters(pid);
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  const after = await counters(pid);
  const elapsed = (performance.now() - started) / 1000;
  return {
    seconds: round(elapsed, 1),
    wakeupsPerSecond: round((after.all - before.all) / elapsed, 1),
    mainThreadWakeupsPerSecond: round((after.main - before.main) / elapsed, 1),
    cpuPercent: round(((after.cpu - before.cpu) / elapsed) * 100, 2),
    threads: after.threads,
  };
}
