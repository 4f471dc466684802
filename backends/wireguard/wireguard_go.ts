/**
 * One supervised wireguard-go process per device: started in the foreground (`-f`) in the
 * node's network namespace, its output kept in our log, restarted with a growing delay when it
 * dies (a restart re-creates the device empty: the driver configures it again), stopped on
 * shutdown with its socket removed. Its failures are logged, never thrown into the daemon.
 *
 * The program is `wireguard-go`, or what `WG_QUICK_USERSPACE_IMPLEMENTATION` names (the variable
 * wg-quick reads for the same choice).
 *
 * @module
 */
import { netnsPath } from "../../ffi/netns.ts";
import { errorText, type Logger } from "../../log.ts";
import { Backoff } from "../../backoff.ts";
import { sleep } from "../../sleep.ts";
import { BackendError } from "../backend.ts";
import { uapiGet, uapiSocketPath } from "./uapi_client.ts";

/** How long a fresh process may take to answer on its socket. */
const READY_TIMEOUT_MS = 10_000;
const POLL_MS = 50;
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;
/** A process that lived this long resets the restart delay. */
const STABLE_MS = 60_000;

/** The userspace WireGuard program to run. */
export function wireguardGoProgram(): string {
  return Deno.env.get("WG_QUICK_USERSPACE_IMPLEMENTATION") || "wireguard-go";
}

/** Whether the device's UAPI socket answers now. */
export async function socketAnswers(device: string): Promise<boolean> {
  try {
    await uapiGet(device);
    return true;
  } catch {
    return false;
  }
}

/** A supervised process. */
export interface WireguardGo {
  readonly device: string;
  /** Starts counted (1 after start-up; each restart after a death adds one). */
  readonly generation: number;
  /** Stop the process (SIGTERM, SIGKILL after a grace period) and remove its socket. */
  stop(): Promise<void>;
}

/** Where and how to run it. */
export interface WireguardGoOptions {
  readonly device: string;
  /** The network namespace the device belongs in (the daemon's own when undefined). */
  readonly netns?: string;
  readonly log: Logger;
  /** Called after a restart, once the new process answers (its device needs configuring). */
  readonly onRestart?: () => void;
}

/**
 * Start wireguard-go for a device and wait until its socket answers; a program that is missing
 * or exits at once is a {@link BackendError} with its output.
 */
export async function startWireguardGo(options: WireguardGoOptions): Promise<WireguardGo> {
  const { device, log } = options;
  const program = wireguardGoProgram();
  const stopping = new AbortController();
  let child: Deno.ChildProcess | undefined;
  let generation = 0;
  const backoff = new Backoff(FIRST_BACKOFF_MS, MAX_BACKOFF_MS);

  /** Spawn one process and wait for its socket; its output is collected for errors. */
  async function spawnReady(): Promise<Deno.ChildProcess> {
    const argv = [program, "-f", device];
    const spawned = new Deno.Command(options.netns ? "nsenter" : argv[0], {
      args: options.netns ? [`--net=${netnsPath(options.netns)}`, ...argv] : argv.slice(1),
      // Foreground for good: WG_PROCESS_FOREGROUND=0 would make it re-fork itself forever.
      env: { WG_PROCESS_FOREGROUND: "1", LOG_LEVEL: "error" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const output: string[] = [];
    for (const stream of [spawned.stdout, spawned.stderr]) {
      forwardLines(stream, (line) => {
        if (output.length < 20) output.push(line);
        log.warn("wireguard-go", { device, line });
      });
    }
    let exited: Deno.CommandStatus | undefined;
    spawned.status.then((s) => exited = s);
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!await socketAnswers(device)) {
      if (exited || Date.now() > deadline) {
        if (!exited) spawned.kill("SIGKILL");
        await spawned.status;
        throw new BackendError(
          "wireguard",
          `${program} for ${device} ${exited ? `exited (${exited.code})` : "did not answer"}` +
            (output.length ? `: ${output.join(" | ")}` : ""),
        );
      }
      await sleep(POLL_MS, stopping.signal);
    }
    return spawned;
  }

  function watch(process: Deno.ChildProcess): void {
    const started = Date.now();
    process.status.then(async (status) => {
      if (stopping.signal.aborted) return;
      if (Date.now() - started > STABLE_MS) backoff.reset();
      const delay = backoff.next();
      log.warn("wireguard-go exited; restarting", {
        device,
        code: status.code,
        signal: status.signal,
        inMs: delay,
      });
      await restart(delay);
    }).catch((err) =>
      log.error("wireguard-go supervision failed", { device, error: errorText(err) })
    );
  }

  /** Spawn again after `delay`, and after each failure a longer one, until one answers. */
  async function restart(delay: number): Promise<void> {
    for (let wait = delay; !stopping.signal.aborted; wait = backoff.next()) {
      try {
        await sleep(wait, stopping.signal);
        child = await spawnReady();
        if (stopping.signal.aborted) return void child.kill("SIGTERM");
        generation++;
        watch(child);
        options.onRestart?.();
        return;
      } catch (err) {
        if (stopping.signal.aborted) return;
        log.error("wireguard-go did not restart", { device, error: errorText(err) });
      }
    }
  }

  try {
    child = await spawnReady();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new BackendError(
        "wireguard",
        `the kernel has no wireguard module and ${program} is not installed ` +
          "(apt-get install wireguard-go, or modprobe wireguard)",
      );
    }
    throw err;
  }
  generation = 1;
  watch(child);

  return {
    device,
    get generation() {
      return generation;
    },
    async stop() {
      stopping.abort();
      const process = child;
      child = undefined;
      if (process) {
        try {
          process.kill("SIGTERM");
        } catch { /* already gone */ }
        const timer = setTimeout(() => {
          try {
            process.kill("SIGKILL");
          } catch { /* gone */ }
        }, 3000);
        await process.status;
        clearTimeout(timer);
      }
      await Deno.remove(uapiSocketPath(device)).catch(() => {});
    },
  };
}

/** Call `each` for every line of a process's output stream until it ends. */
function forwardLines(stream: ReadableStream<Uint8Array>, each: (line: string) => void): void {
  (async () => {
    let rest = "";
    for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) if (line.trim()) each(line.trim());
    }
    if (rest.trim()) each(rest.trim());
  })().catch(() => {});
}
