/**
 * Waiting helpers for the subnet managers' retry loops.
 *
 * @module
 */

/**
 * Resolve after `ms` milliseconds, or as soon as `signal` aborts (never rejects, so loops just
 * re-check the signal). `Infinity` waits for the abort only.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = Number.isFinite(ms) ? setTimeout(done, Math.max(0, ms)) : undefined;
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * Exponential backoff: `initialMs`, doubling up to `maxMs`; `reset()` after a success.
 *
 * @example
 * ```ts
 * const backoff = new Backoff(100, 5000);
 * backoff.next(); // 100, then 200, 400, … 5000, 5000
 * ```
 */
export class Backoff {
  #current: number;

  constructor(readonly initialMs: number, readonly maxMs: number) {
    this.#current = initialMs;
  }

  /** The delay to wait now; the following one doubles. */
  next(): number {
    const delay = this.#current;
    this.#current = Math.min(this.#current * 2, this.maxMs);
    return delay;
  }

  /** Start again from `initialMs`. */
  reset(): void {
    this.#current = this.initialMs;
  }
}
