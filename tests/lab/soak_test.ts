/**
 * The soak (lab/soak.ts): how it picks its steps, and its final report. Running it needs root and
 * minutes (`tartan lab soak`); the stepping rules are checked here against a model of the counts.
 */
import assert from "node:assert/strict";
import {
  formatSoakReport,
  nextStep,
  seededRandom,
  type SoakAction,
  type SoakCounts,
  type SoakStep,
} from "../../lab/soak.ts";

/** The counts after `action`, as the soak's actions change the lab. */
function apply(c: SoakCounts, action: SoakAction): SoakCounts {
  switch (action) {
    case "join":
      return { ...c, nodes: c.nodes + 1, running: c.running + 1 };
    case "leave":
      return { ...c, running: c.running - 1, left: c.left + 1 };
    case "rejoin":
      return { ...c, running: c.running + 1, left: c.left - 1 };
    default:
      return c;
  }
}

function walk(seed: number, steps: number): { action: SoakAction; target?: number }[] {
  const random = seededRandom(seed);
  let counts: SoakCounts = { nodes: 3, running: 3, left: 0, maxNodes: 6 };
  const taken = [];
  for (let i = 0; i < steps; i++) {
    const next = nextStep(counts, random);
    const pool = next.action === "rejoin" ? counts.left : counts.running;
    if (next.action === "join") {
      assert.equal(next.target, undefined);
    } else {
      assert.ok(next.target! >= 0 && next.target! < pool, `target ${next.target} of ${pool}`);
    }
    counts = apply(counts, next.action);
    assert.ok(counts.running >= 2, `step ${i}: ${counts.running} nodes left running`);
    assert.ok(counts.nodes <= counts.maxNodes, `step ${i}: ${counts.nodes} nodes`);
    assert.ok(counts.left >= 0 && counts.running + counts.left === counts.nodes);
    taken.push(next);
  }
  return taken;
}

Deno.test("soak steps keep two nodes running, stay under the node cap and target real nodes", () => {
  for (const seed of [1, 7, 42, 2024]) {
    const actions = new Set(walk(seed, 2000).map((s) => s.action));
    assert.deepEqual(
      [...actions].sort(),
      ["join", "leave", "rejoin", "restart-kill", "restart-term"],
      `seed ${seed} uses every kind of step`,
    );
  }
});

Deno.test("a soak's steps are replayed exactly from its seed", () => {
  assert.deepEqual(walk(99, 200), walk(99, 200));
  assert.notDeepEqual(walk(99, 200), walk(100, 200));
});

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
