/**
 * Waiting that any layer can use: a sleep that ends early when its signal aborts.
 *
 * @module
 */

/**
 * The longest delay `setTimeout` honours (2^31 − 1 ms, about 24.8 days). A longer one fires at
 * once, so a loop sleeping "3 000 000 s" would spin; {@link sleep} waits in pieces instead.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Resolve after `ms` milliseconds, or as soon as `signal` aborts (never rejects, so loops just
 * re-check the signal). `Infinity` waits for the abort only; any finite `ms` is honoured, a
 * long one in pieces of at most {@link MAX_TIMER_MS}.
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const due = performance.now() + Math.max(0, ms);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const wait = () => {
      const left = due - performance.now();
      if (left <= 0) return done();
      timer = setTimeout(wait, Math.min(left, MAX_TIMER_MS));
    };
    signal.addEventListener("abort", done, { once: true });
    if (Number.isFinite(ms)) wait();
  });
}
