/**
 * Extension commands as flannel runs them (spec §6.8): split like Go's `strings.Fields`,
 * variables expanded like Go's `os.Expand`, run without a shell with the variables in the
 * environment and the input plus a newline on stdin; failures are outcomes, never exceptions.
 */
import assert from "node:assert/strict";
import {
  expandVariables,
  runExtensionCommand,
  splitFields,
} from "../../../backends/extension/command.ts";

Deno.test("extension commands split on white space as strings.Fields does", () => {
  assert.deepEqual(splitFields("  ip route add\t$SUBNET\nvia  ${PUBLIC_IP} "), [
    "ip",
    "route",
    "add",
    "$SUBNET",
    "via",
    "${PUBLIC_IP}",
  ]);
  assert.deepEqual(splitFields("a\u00a0b\u3000c\u200bd"), ["a", "b", "c\u200bd"], "Go's spaces");
  assert.deepEqual(splitFields(" \t "), []);
  assert.deepEqual(splitFields("'quoted words'"), ["'quoted", "words'"], "no shell quoting");
});

Deno.test("extension variables expand as os.Expand does", () => {
  const vars: Record<string, string> = { SUBNET: "10.244.1.0/24", PUBLIC_IP: "198.18.0.12" };
  const expand = (text: string) => expandVariables(text, (name) => vars[name] ?? "");
  const cases: Array<[string, string]> = [
    ["$SUBNET", "10.244.1.0/24"],
    ["${PUBLIC_IP}:8472", "198.18.0.12:8472"],
    ["a$SUBNET.b", "a10.244.1.0/24.b"],
    ["$UNSET", ""],
    ["cost$", "cost$"],
    ["$ x", "$ x"],
    ["$$", ""],
    ["$1st", "st"],
    ["${1}", ""],
    ["$-x", "x"],
    ["${}x", "x"],
    ["${SUBNET", "SUBNET"],
    ["${A-B}", ""],
    ["$SUBNET$PUBLIC_IP", "10.244.1.0/24198.18.0.12"],
    ["no variables", "no variables"],
  ];
  for (const [text, want] of cases) assert.equal(expand(text), want, text);
});

Deno.test("extension commands run without a shell; output, input, environment, failures", async () => {
  const vars = { SUBNET: "10.244.1.0/24" };
  const echo = await runExtensionCommand("echo  route  $SUBNET  ;  rm -rf /nowhere", vars);
  assert.deepEqual(echo, { ok: true, output: "route 10.244.1.0/24 ; rm -rf /nowhere" });
  const input = await runExtensionCommand("cat", {}, '{"VNI":1}');
  assert.equal(input.output, '{"VNI":1}', "BackendData and a newline on stdin, output trimmed");
  const env = await runExtensionCommand("printenv SUBNET", vars);
  assert.equal(env.output, "10.244.1.0/24", "the variables are in the environment too");
  const injected = await runExtensionCommand("echo $SUBNET", { SUBNET: "x; reboot" });
  assert.equal(injected.output, "x; reboot", "a value is one literal word");
  const failed = await runExtensionCommand("ls /no/such/dir", {});
  assert.equal(failed.ok, false);
  assert.match(failed.failure!, /exit status 2/);
  assert.match(failed.output, /No such file or directory/, "stderr is part of the output");
  const missing = await runExtensionCommand("/no/such/program arg", {});
  assert.deepEqual(missing, {
    ok: false,
    output: "",
    failure: "/no/such/program: no such program",
  });
  assert.equal((await runExtensionCommand("   ", {})).ok, false);
});
