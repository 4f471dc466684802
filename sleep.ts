/**
 * Waiting that any layer can use: a sleep that ends early when its signal aborts.
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
