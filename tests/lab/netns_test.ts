import assert from "node:assert/strict";
import { CommandFailedError } from "../../exec.ts";
import {
  createNetns,
  ipJson,
  nsExec,
  removeLeftovers,
  rootTest,
  run,
  RUN_PREFIX,
  withNetns,
} from "../helpers/netns.ts";

async function namespaces(): Promise<string[]> {
  return (await run(["ip", "netns", "list"])).stdout.split("\n").map((l) => l.split(" ")[0]);
}

Deno.test("netns fixture: run-unique prefix and refusal to clean foreign prefixes", async () => {
  assert.match(RUN_PREFIX, /^tt-[a-z0-9]{6}-$/);
  await assert.rejects(() => removeLeftovers("tt"), RangeError);
  await assert.rejects(() => removeLeftovers("eth"), RangeError);
  await assert.rejects(() => run(["false"]), CommandFailedError);
  assert.equal((await run(["false"], { allowFail: true })).code, 1);
});

rootTest("netns fixture: withNetns creates, runs inside, and deletes even on failure", async () => {
  let seen = "";
  await assert.rejects(() =>
    withNetns(async (ns) => {
      seen = ns;
      assert.ok(ns.startsWith(RUN_PREFIX));
      assert.ok((await namespaces()).includes(ns));
      const links = await ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
      assert.deepStrictEqual(links.map((l) => l.ifname), ["lo"]);
      const { stdout } = await nsExec(ns, ["ip", "-j", "link", "show"]);
      assert.equal(JSON.parse(stdout).length, 1);
      throw new Error("test body failed");
    }), /test body failed/);
  assert.ok(seen !== "" && !(await namespaces()).includes(seen));
});

rootTest("netns fixture: removeLeftovers deletes only this run's namespaces", async () => {
  const a = await createNetns("left");
  const b = await createNetns("left");
  assert.deepStrictEqual((await removeLeftovers()).sort(), [a, b].sort());
  const after = await namespaces();
  assert.ok(!after.includes(a) && !after.includes(b));
});
