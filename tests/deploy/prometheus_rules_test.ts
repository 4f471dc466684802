/**
 * The shipped alert rules (deploy/prometheus/tartan-rules.yml): `promtool check rules` accepts
 * them, `promtool test rules` shows each one firing on a sick node and none on a healthy one
 * (tartan_rules.promtool.yml), and the README's table shows exactly their expressions and
 * durations. A real Prometheus loads them against live nodes in tests/e2e/prometheus_test.ts.
 */
import assert from "node:assert/strict";
import { load } from "js-yaml";
import { hasCommand, run, testNeeding } from "../helpers/netns.ts";

const RULES = new URL("../../deploy/prometheus/tartan-rules.yml", import.meta.url).pathname;
const RULE_TESTS = new URL("tartan_rules.promtool.yml", import.meta.url).pathname;
const README = new URL("../../README.md", import.meta.url).pathname;
const NEEDS_PROMTOOL = await hasCommand("promtool") ? undefined : "promtool (Debian prometheus)";

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
}

/** The shipped alerting rules. */
async function rules(): Promise<AlertRule[]> {
  const file = load(await Deno.readTextFile(RULES)) as { groups: Array<{ rules: AlertRule[] }> };
  return file.groups.flatMap((group) => group.rules);
}

testNeeding(
  "deploy: promtool check rules accepts the shipped alert rules",
  NEEDS_PROMTOOL,
  async () => {
    const { stdout } = await run(["promtool", "check", "rules", RULES]);
    assert.match(stdout, new RegExp(`SUCCESS: ${(await rules()).length} rules found`));
  },
);

testNeeding(
  "deploy: each alert fires on a sick node and stays quiet on a healthy one (promtool test rules)",
  NEEDS_PROMTOOL,
  async () => {
    const { code, stdout, stderr } = await run(["promtool", "test", "rules", RULE_TESTS], {
      allowFail: true,
    });
    assert.equal(code, 0, stdout + stderr);
    // Every shipped alert is expected to fire somewhere in the unit test.
    const tests = await Deno.readTextFile(RULE_TESTS);
    for (const { alert } of await rules()) {
      assert.match(tests, new RegExp(`alertname="${alert}",alertstate="firing"`), alert);
    }
  },
);

Deno.test("deploy: the README's table shows every shipped alert: expression and duration", async () => {
  const readme = await Deno.readTextFile(README);
  const all = await rules();
  assert.ok(all.length >= 6);
  for (const rule of all) {
    const row = [`\`${rule.alert}\``, `\`${rule.expr}\``, rule.for ?? ""].map(RegExp.escape);
    assert.match(readme, new RegExp(`^\\| ${row.join(" *\\| ")} *\\|$`, "m"), rule.alert);
  }
});
