/**
 * The shipped alert rules (deploy/prometheus/tartan-rules.yml): `promtool check rules` accepts them,
 * and the README's table shows exactly their expressions. A real Prometheus loads them against
 * live nodes in tests/e2e/prometheus_test.ts.
 */
import assert from "node:assert/strict";
import { hasCommand, run, testNeeding } from "../helpers/netns.ts";

const RULES = new URL("../../deploy/prometheus/tartan-rules.yml", import.meta.url).pathname;
const README = new URL("../../README.md", import.meta.url).pathname;

/** Each rule's alert name and expression (one `expr:` line per rule in this file's style). */
async function rules(): Promise<Array<[string, string]>> {
  const text = await Deno.readTextFile(RULES);
  const names = [...text.matchAll(/^\s+- alert: (\S+)$/gm)].map((m) => m[1]);
  const exprs = [...text.matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1]);
  assert.equal(names.length, exprs.length, "one expr per alert");
  return names.map((name, i) => [name, exprs[i]]);
}

testNeeding(
  "deploy: promtool check rules accepts the shipped alert rules",
  await hasCommand("promtool") ? undefined : "promtool (Debian prometheus)",
  async () => {
    const { stdout } = await run(["promtool", "check", "rules", RULES]);
    assert.match(stdout, new RegExp(`SUCCESS: ${(await rules()).length} rules found`));
  },
);

Deno.test("deploy: the README shows every shipped alert with its expression", async () => {
  const readme = await Deno.readTextFile(README);
  const all = await rules();
  assert.ok(all.length >= 6);
  for (const [name, expr] of all) {
    assert.match(
      readme,
      new RegExp(`\\| \`${name}\` +\\| \`${RegExp.escape(expr)}\` +\\|`),
      `${name}: ${expr}`,
    );
  }
});
