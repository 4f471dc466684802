/**
 * Exponential backoff for retry loops: the subnet managers, the supervisors of wireguard-go and
 * of the udp data path.
 *
 * @module
 */

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
