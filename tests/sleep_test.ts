/**
 * sleep(): any finite delay is honoured. setTimeout fires at once for delays above 2^31 − 1 ms,
 * so a naive long sleep (`--iptables-resync=3000000`) turned every resync loop into a spin.
 * The clock and the timers are replaced by a fake here, so days pass without waiting.
 */
import assert from "node:assert/strict";
import { MAX_TIMER_MS, sleep } from "../sleep.ts";

interface FakeTimer {
  readonly due: number;
  readonly fire: () => void;
}

/** Run `fn` with performance.now and setTimeout/clearTimeout replaced by a manual clock. */
async function withFakeClock(
  fn: (
    clock: { timers: Map<number, FakeTimer>; delays: number[]; advance(): boolean },
  ) => Promise<void>,
): Promise<void> {
  const real = {
    now: performance.now,
    setTimeout: globalThis.setTimeout,
    clearTimeout: globalThis.clearTimeout,
  };
  let now = 0;
  let nextId = 1;
  const timers = new Map<number, FakeTimer>();
  const delays: number[] = [];
  performance.now = () => now;
  globalThis.setTimeout = ((fire: () => void, delay: number) => {
    // What a real timer does with an oversized delay: it fires at once.
    const effective = delay > MAX_TIMER_MS ? 1 : delay;
    delays.push(delay);
    timers.set(nextId, { due: now + effective, fire });
    return nextId++;
  }) as unknown as typeof setTimeout;
  globalThis.clearTimeout = ((id: number) => timers.delete(id)) as unknown as typeof clearTimeout;
  /** Jump to the earliest timer and fire it; false when none is pending. */
  const advance = () => {
    const [id, timer] = [...timers].sort((a, b) => a[1].due - b[1].due)[0] ?? [];
    if (id === undefined) return false;
    timers.delete(id);
    now = timer.due;
    timer.fire();
    return true;
  };
  try {
    await fn({ timers, delays, advance });
  } finally {
    performance.now = real.now;
    globalThis.setTimeout = real.setTimeout;
    globalThis.clearTimeout = real.clearTimeout;
  }
}

Deno.test("sleep: 3 000 000 s wakes twice in 35 days, not 1 000 times a second", async () => {
  await withFakeClock(async ({ delays, advance }) => {
    let resolved = false;
    const wanted = 3_000_000 * 1000;
    const slept = sleep(wanted, new AbortController().signal).then(() => resolved = true);
    let wakeUps = 0;
    while (!resolved && wakeUps < 100 && advance()) {
      wakeUps++;
      await Promise.resolve();
    }
    await slept;
    assert.equal(wakeUps, 2);
    assert.ok(delays.every((d) => d <= MAX_TIMER_MS), `delays ${delays}`);
    assert.equal(delays.reduce((a, b) => a + b, 0), wanted);
  });
});

Deno.test("sleep: short sleeps use one timer; abort ends a long sleep and clears its timer", async () => {
  await withFakeClock(async ({ timers, delays, advance }) => {
    const short = sleep(5000, new AbortController().signal);
    assert.deepEqual(delays, [5000]);
    assert.ok(advance());
    await short;
    const abort = new AbortController();
    const long = sleep(10 * MAX_TIMER_MS, abort.signal);
    assert.equal(timers.size, 1);
    abort.abort();
    await long;
    assert.equal(timers.size, 0, "the pending timer is cleared");
  });
});
