/**
 * The plugin's refusals, its CHECK, STATUS and VERSION, and fuzzing of stdin and configs, driven
 * as a runtime drives it (plugin_sandbox.ts).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { cniMain } from "../../cni/plugin.ts";
import { exists } from "./fs_helpers.ts";
import {
  ADD_RESULT,
  answer,
  calls,
  CONTAINER,
  errorResult,
  invoke,
  netConf,
  type Outcome,
  savedPath,
  withSandbox,
} from "./plugin_sandbox.ts";

Deno.test("plugin: a delegate missing from CNI_PATH fails before anything is saved", async () => {
  await withSandbox(async (sb) => {
    const result = errorResult(
      await invoke(sb, "ADD", netConf(sb, { delegate: { type: "ipvlan" } })),
      999,
    );
    assert.equal(result.msg, `failed to find plugin "ipvlan" in path [/nonexistent ${sb.bin}]`);
    assert.equal(await exists(sb.dataDir), false);
  });
});

Deno.test("plugin: ADD without a usable subnet.env is 'try again later' with the reason", async () => {
  await withSandbox(async (sb) => {
    await Deno.writeTextFile(sb.subnetFile, "FLANNEL_NETWORK=10.244.0.0/16\n");
    const incomplete = errorResult(await invoke(sb, "ADD", netConf(sb)), 11);
    assert.equal(
      incomplete.msg,
      `${sb.subnetFile} is missing FLANNEL_SUBNET, FLANNEL_IPV6_SUBNET, FLANNEL_MTU, FLANNEL_IPMASQ`,
    );
    assert.equal(incomplete.cniVersion, "0.3.1");
    await Deno.remove(sb.subnetFile);
    const absent = errorResult(await invoke(sb, "ADD", netConf(sb)), 11);
    assert.match(String(absent.msg), /is flanneld\/tartan running\?/);
    assert.deepEqual(await calls(sb), []);
    assert.equal(await exists(sb.dataDir), false);
  });
});

Deno.test("plugin: bad configs and environments are CNI errors with the right codes", async () => {
  await withSandbox(async (sb) => {
    const bad = (conf: Record<string, unknown>) => invoke(sb, "ADD", netConf(sb, conf));
    const nameErr = errorResult(await bad({ delegate: { name: "x" } }), 7);
    assert.match(String(nameErr.msg), /must not have 'name' field, it'll be set by flannel/);
    errorResult(await bad({ delegate: { ipam: { type: "dhcp" } } }), 7);
    errorResult(await bad({ ipam: { routes: [{ dst: "nowhere" }] } }), 7);
    errorResult(await bad({ cniVersion: "0.5.0" }), 1);
    errorResult(await bad({ cniVersion: "2.0.0" }), 1);
    errorResult(await invoke(sb, "ADD", new TextEncoder().encode("{oops")), 6);
    const env = errorResult(await invoke(sb, "ADD", netConf(sb), { CNI_NETNS: "" }), 4);
    assert.equal(env.msg, "required env variables [CNI_NETNS] missing");
    assert.equal(env.cniVersion, "0.3.1"); // stamped with the caller's version
    errorResult(await invoke(sb, "GC", netConf(sb)), 4);
    errorResult(await invoke(sb, "ADD", netConf(sb), { CNI_CONTAINERID: "../../etc" }), 4);
    assert.deepEqual(await calls(sb), []);
    assert.equal(await exists(sb.dataDir), false);
  });
});

Deno.test("plugin: CHECK needs the record of an ADD and does not run the delegate", async () => {
  await withSandbox(async (sb) => {
    const conf = netConf(sb, { cniVersion: "1.0.0" });
    const prevResult = { cniVersion: "1.0.0", ips: [{ address: "10.244.1.2/24" }] };
    const unknown = errorResult(await invoke(sb, "CHECK", { ...conf, prevResult }), 3);
    assert.equal(unknown.msg, `no saved delegate config for container ${CONTAINER}`);
    await answer(sb, "ADD", ADD_RESULT);
    await invoke(sb, "ADD", conf);
    await answer(sb, "CHECK", '{"code":999,"msg":"must not be asked"}', 1);
    assert.deepEqual(await invoke(sb, "CHECK", { ...conf, prevResult }), { code: 0, stdout: "" });
    const old = errorResult(await invoke(sb, "CHECK", { ...conf, cniVersion: "0.3.1" }), 1);
    assert.equal(old.msg, "config version does not allow CHECK");
    await Deno.writeTextFile(savedPath(sb), "[]");
    errorResult(await invoke(sb, "CHECK", { ...conf, prevResult }), 999);
    assert.deepEqual((await calls(sb)).map((c) => c.command), ["ADD"]);
  });
});

Deno.test("plugin: STATUS reports whether subnet.env can serve an ADD", async () => {
  await withSandbox(async (sb) => {
    const conf = netConf(sb, { cniVersion: "1.1.0" });
    const env = { CNI_CONTAINERID: "", CNI_NETNS: "", CNI_IFNAME: "", CNI_PATH: "" };
    assert.deepEqual(await invoke(sb, "STATUS", conf, env), { code: 0, stdout: "" });
    await Deno.writeTextFile(sb.subnetFile, "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_MTU=1450\n");
    const incomplete = errorResult(await invoke(sb, "STATUS", conf, env), 50);
    assert.match(String(incomplete.msg), /is missing FLANNEL_SUBNET/);
    await Deno.remove(sb.subnetFile);
    const absent = errorResult(await invoke(sb, "STATUS", conf, env), 50);
    assert.equal(absent.cniVersion, "1.1.0");
    const old = errorResult(await invoke(sb, "STATUS", netConf(sb, { cniVersion: "1.0.0" })), 1);
    assert.equal(old.msg, "config version does not allow STATUS");
    assert.deepEqual(await calls(sb), []);
  });
});

Deno.test("plugin: VERSION lists the spec versions and echoes a supported request", async () => {
  await withSandbox(async (sb) => {
    const out = await invoke(sb, "VERSION", { cniVersion: "0.4.0" }, { CNI_CONTAINERID: "" });
    assert.equal(out.code, 0);
    assert.deepEqual(JSON.parse(out.stdout), {
      cniVersion: "0.4.0",
      supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
    });
    const empty = await cniMain({ CNI_COMMAND: "VERSION" }, new Uint8Array());
    assert.equal(JSON.parse(empty.stdout).cniVersion, "1.1.0");
  });
});

function assertErrorJson(outcome: Outcome): void {
  assert.equal(outcome.code, 1);
  const result = JSON.parse(outcome.stdout);
  assert.equal(typeof result.code, "number");
  assert.ok(result.code > 0);
  assert.equal(typeof result.msg, "string");
  assert.equal(typeof result.cniVersion, "string");
}

Deno.test("plugin fuzz: arbitrary stdin bytes give a CNI error result, never a throw", async () => {
  await withSandbox(async (sb) => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.string().map((s) => new TextEncoder().encode(s)),
        ),
        fc.constantFrom("ADD", "DEL", "CHECK", "STATUS"),
        async (stdin, command) => assertErrorJson(await invoke(sb, command, stdin)),
      ),
      { numRuns: 300 },
    );
    const version = await invoke(sb, "VERSION", new Uint8Array([0xff, 0x00, 0x7b]));
    assert.equal(version.code, 0);
    assert.deepEqual(await calls(sb), []);
  });
});

Deno.test("plugin fuzz: configs with arbitrary members never crash the plugin", async () => {
  await withSandbox(async (sb) => {
    await Deno.remove(sb.subnetFile); // ADD must stop at subnet.env at the latest
    const fields = fc.constantFrom(
      "cniVersion",
      "name",
      "subnetFile",
      "dataDir",
      "delegate",
      "ipam",
      "runtimeConfig",
      "prevResult",
    );
    const mutation = fc.dictionary(fields, fc.jsonValue({ maxDepth: 3 }), { maxKeys: 4 });
    await fc.assert(
      fc.asyncProperty(
        mutation,
        fc.constantFrom("ADD", "CHECK", "STATUS", "DEL"),
        async (fields, command) => {
          const outcome = await invoke(sb, command, netConf(sb, fields));
          if (command === "DEL" && outcome.code === 0) assert.equal(outcome.stdout, "");
          else assertErrorJson(outcome);
        },
      ),
      { numRuns: 300 },
    );
    assert.deepEqual(await calls(sb), []);
  });
});
