/**
 * Summary statistics for the benchmarks: on this shared 2-core machine one disturbed run must
 * not decide a figure, so the benches report medians and quantiles of repeated samples.
 *
 * @module
 */

function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

/** The median: the middle sample, or the mean of the two middle ones. */
export function median(xs: readonly number[]): number {
  const s = sorted(xs);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The q-quantile (q in 0..1) by linear interpolation between the nearest samples. */
export function quantile(xs: readonly number[], q: number): number {
  const s = sorted(xs);
  const pos = (s.length - 1) * q;
  const lo = Math.floor(pos);
  return s[lo] + (s[Math.ceil(pos)] - s[lo]) * (pos - lo);
}

/**
 * The p-th percentile (p in 0..100) by the nearest-rank method: always one of the samples, so
 * a tail figure such as p99 is a latency that was actually seen.
 */
export function percentile(xs: readonly number[], p: number): number {
  const s = sorted(xs);
  const rank = Math.ceil((p / 100) * s.length);
  return s[Math.min(s.length, Math.max(1, rank)) - 1];
}

/** `x` rounded to `digits` decimals (for JSON output that reads well). */
export function round(x: number, digits = 3): number {
  return Number(x.toFixed(digits));
}
