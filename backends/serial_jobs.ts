/**
 * How a backend follows the lease watch: each update, and a full resync on a timer, run one at a
 * time through one queue, so events and the timer never write the kernel concurrently.
 *
 * @module
 */
import type { LeaseWatchUpdate } from "../subnet/manager.ts";

/** Jobs run one at a time, in the order queued; a failed job does not stop the next. */
export class SerialJobs {
  #queue: Promise<void> = Promise.resolve();

  /** Queue `job`; settles as it does. */
  run(job: () => Promise<void>): Promise<void> {
    this.#queue = this.#queue.then(job, job);
    return this.#queue;
  }

  /** Settles once every job queued so far has run. */
  idle(): Promise<void> {
    return this.#queue;
  }
}

/** What a backend does with the watch (each runs as one job of the queue). */
export interface UpdateHandlers {
  readonly handle: (update: LeaseWatchUpdate) => Promise<void>;
  /** Every `resyncMs`. */
  readonly resync: () => Promise<void>;
  readonly resyncMs: number;
}

/**
 * Run each update through `handle` and `resync` on its timer, one job at a time on `jobs`, until
 * the updates end or `signal` aborts; then wait for the jobs queued.
 */
export async function followUpdates(
  updates: AsyncIterable<LeaseWatchUpdate>,
  signal: AbortSignal,
  jobs: SerialJobs,
  { handle, resync, resyncMs }: UpdateHandlers,
): Promise<void> {
  const timer = setInterval(() => jobs.run(resync), resyncMs);
  try {
    for await (const update of updates) {
      if (signal.aborted) break;
      await jobs.run(() => handle(update));
    }
  } finally {
    clearInterval(timer);
    await jobs.idle();
  }
}
