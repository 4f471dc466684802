/**
 * The main thread's handle on the data-path Worker: start it with the fds, ship peer tables
 * (post, then ring the control eventfd), read the shared counters, restart the Worker when it
 * dies (a bounded number of times in a row), and stop it before the fds are closed.
 *
 * @module
 */
import { Backoff } from "../../backoff.ts";
import { closeFd } from "../../ffi/libc.ts";
import { errorText, type Logger } from "../../log.ts";
import { drainControl, openControlFd, ringControl } from "./control_fd.ts";
import { createCounterBuffer, readCounters, SLOT } from "./counters.ts";
import { encodePeerTable, type PeerRecord } from "./peers.ts";
import type { FromWorker, ToWorker } from "./protocol.ts";
import { type DataPathCounters } from "../backend.ts";

/** What the data path forwards between. */
export interface DataPathOptions {
  readonly tunFd: number;
  readonly udpFd: number;
  readonly tunMtu: number;
  /** This node's subnet base, unsigned 32-bit. */
  readonly ownAddress: number;
  readonly port: number;
  readonly log: Logger;
  /** The Worker module (tests substitute one). */
  readonly workerUrl?: URL;
  /** Restarts in a row before giving up (default 5). */
  readonly maxRestarts?: number;
  /** A Worker that ran this long has recovered: its death starts a new count (default 60 s). */
  readonly healthyAfterMs?: number;
}

/** The running data path. */
export interface DataPath {
  /** Replace the peer table; returns its generation (1, 2, …). */
  setPeers(records: readonly PeerRecord[]): number;
  /** The generation the Worker has installed (0: none yet). */
  readonly appliedGeneration: number;
  /** Whether a Worker is up and forwarding. */
  readonly running: boolean;
  /** Why the last Worker died. */
  readonly lastError: string | undefined;
  /** Workers started after a death, in total. */
  readonly restarts: number;
  counters(): DataPathCounters;
  /** Resolves after stop(); rejects with {@link DataPathError} when restarts run out. */
  readonly done: Promise<void>;
  /** Stop the Worker (waiting for it to let go of the fds) and close the control fd. */
  stop(): Promise<void>;
}

/** The Worker kept dying. */
export class DataPathError extends Error {
  constructor(readonly attempts: number, readonly lastError: string) {
    super(`the udp data path died ${attempts} times in a row; last error: ${lastError}`);
    this.name = "DataPathError";
  }
}

const WORKER_URL = new URL("./worker.ts", import.meta.url);
const STOP_WAIT_MS = 2000;

/**
 * Start the Worker. The caller keeps ownership of the TUN and UDP fds and closes them after
 * {@link DataPath.stop} resolves.
 */
export function startDataPath(options: DataPathOptions): DataPath {
  const { log } = options;
  const maxRestarts = options.maxRestarts ?? 5;
  const healthyAfterMs = options.healthyAfterMs ?? 60_000;
  const controlFd = openControlFd();
  const counterBuffer = createCounterBuffer();
  const slots = new Float64Array(counterBuffer);
  let worker: Worker | undefined;
  let startedAt = 0;
  let running = false;
  let stopped = false;
  let failuresInRow = 0;
  /** Delay before each restart in a row: 100 ms doubling, at most 5 s. */
  const restartDelay = new Backoff(100, 5000);
  let restarts = 0;
  let lastError: string | undefined;
  let restartTimer: ReturnType<typeof setTimeout> | undefined;
  let generation = 0;
  let table = encodePeerTable([]);
  let onStopped: (() => void) | undefined;
  let settle: { resolve: () => void; reject: (err: Error) => void };
  const done = new Promise<void>((resolve, reject) => settle = { resolve, reject });
  // `done` may legitimately never be awaited (e.g. a stop()ped path); its rejection still matters.
  done.catch(() => {});

  function send(message: ToWorker): void {
    worker?.postMessage(message);
  }

  function died(reason: string): void {
    worker?.terminate();
    worker = undefined;
    running = false;
    if (stopped) return;
    lastError = reason;
    if (performance.now() - startedAt >= healthyAfterMs) {
      failuresInRow = 0;
      restartDelay.reset();
    }
    failuresInRow++;
    if (failuresInRow > maxRestarts) {
      log.error("udp data path gave up", { attempts: failuresInRow, error: reason });
      settle.reject(new DataPathError(failuresInRow, reason));
      return;
    }
    const delay = restartDelay.next();
    log.error("udp data path died; restarting", { error: reason, inMs: delay });
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      restarts++;
      spawn();
    }, delay);
  }

  function spawn(): void {
    // Rings meant for a dead Worker would make the new one wait for messages it never gets.
    drainControl(controlFd);
    const w = new Worker(options.workerUrl ?? WORKER_URL, {
      type: "module",
      name: "udp-data-path",
    });
    worker = w;
    startedAt = performance.now();
    w.onmessage = (event: MessageEvent<FromWorker>) => {
      if (event.data.type === "running") running = true;
      if (event.data.type === "stopped") {
        running = false;
        onStopped?.();
        if (!stopped && worker === w) died("the Worker stopped on its own");
      }
    };
    w.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      if (worker === w) died(event.message || "Worker error");
    };
    send({
      type: "start",
      setup: {
        tunFd: options.tunFd,
        udpFd: options.udpFd,
        controlFd,
        counters: counterBuffer,
        tunMtu: options.tunMtu,
        ownAddress: options.ownAddress,
        port: options.port,
        generation,
        table,
      },
    });
  }

  spawn();
  return {
    setPeers(records) {
      table = encodePeerTable(records);
      generation++;
      if (worker) {
        send({ type: "peers", generation, table });
        ringControl(controlFd);
      }
      return generation;
    },
    get appliedGeneration() {
      return slots[SLOT.appliedGeneration];
    },
    get running() {
      return running;
    },
    get lastError() {
      return lastError;
    },
    get restarts() {
      return restarts;
    },
    counters: () => readCounters(counterBuffer),
    done,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearTimeout(restartTimer);
      const w = worker;
      if (w) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const exited = new Promise<void>((resolve) => {
          onStopped = resolve;
          timer = setTimeout(() => {
            log.warn("udp data path did not confirm the stop; terminating it");
            resolve();
          }, STOP_WAIT_MS);
        });
        try {
          send({ type: "stop" });
          ringControl(controlFd);
          await exited;
        } catch (err) {
          log.warn("udp data path did not stop cleanly", { error: errorText(err) });
        } finally {
          clearTimeout(timer);
        }
        w.terminate();
        worker = undefined;
        running = false;
      }
      closeFd(controlFd);
      settle.resolve();
    },
  };
}
