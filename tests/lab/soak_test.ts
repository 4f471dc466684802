/**
 * The soak's final report (lab/soak.ts): totals over steps, and the verdict it prints. The soak
 * itself needs root and minutes; `tartan lab soak` runs it.
 */
import assert from "node:assert/strict";
import { formatSoakReport, type SoakStep } from "../../lab/soak.ts";

function step(over: Partial<SoakStep>): SoakStep {
  return {
    action: "restart-kill",
    node: "tl-x-n1",
    during: { sent: 10, lost: 0 },
    after: { sent: 6, lost: 0 },
    convergedMs: 1500,
    problems: [],
    ...over,
  };
}

Deno.test("the soak report totals lost pings per phase and counts actions", () => {
  const text = formatSoakReport({
    seed: 7,
    seconds: 150.2,
    ok: false,
    steps: [
      step({ action: "join", convergedMs: 900 }),
      step({ during: { sent: 12, lost: 2 }, convergedMs: 2100 }),
      step({ action: "leave", after: { sent: 2, lost: 1 }, convergedMs: undefined }),
      step({ problems: ["tl-x-n2 exited 1 on SIGTERM"], convergedMs: 1200 }),
    ],
  });
  const lines = text.split("\n");
  assert.equal(
    lines[0],
    "soak (seed 7): 4 steps in 150 s (join 1, restart-kill 2, leave 1)",
  );
  assert.equal(lines[1], "lost pings during steps: 2 of 42");
  assert.equal(lines[2], "lost pings after steps:  1 of 20");
  assert.equal(lines[3], "convergence: median 1200 ms, max 2100 ms");
  assert.equal(lines[4], "other problems: 1");
  assert.equal(lines[5], "SOAK FAILED");
});

Deno.test("a clean soak passes", () => {
  const text = formatSoakReport({ seed: 1, seconds: 60, ok: true, steps: [step({})] });
  assert.match(text, /lost pings during steps: 0 of 10/);
  assert.match(text, /SOAK PASSED$/);
});
