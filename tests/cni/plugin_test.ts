/**
 * The plugin's ADD/DEL lifecycle as a runtime drives it, against recording stand-ins for the
 * delegate (plugin_sandbox.ts). The real bridge/host-local run in plugin_netns_test.ts.
 */
import assert from "node:assert/strict";
import { exists } from "./fs_helpers.ts";
import {
  ADD_RESULT,
  answer,
  calls,
  CONFORMANCE_33,
  CONTAINER,
  errorResult,
  invoke,
  netConf,
  savedPath,
  SUBNET_ENV,
  withSandbox,
} from "./plugin_sandbox.ts";

Deno.test("plugin: ADD saves the §9.3 bytes, then runs bridge with them (conformance 33)", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", ADD_RESULT);
    const outcome = await invoke(sb, "ADD", netConf(sb), { CNI_ARGS: "K8S_POD_NAME=web" });
    assert.deepEqual(outcome, { code: 0, stdout: ADD_RESULT }); // verbatim
    assert.equal(await Deno.readTextFile(savedPath(sb)), CONFORMANCE_33);
    assert.equal((await Deno.stat(savedPath(sb))).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(sb.dataDir)).mode! & 0o777, 0o700);
    const [call, ...rest] = await calls(sb);
    assert.deepEqual(rest, []);
    assert.equal(call.plugin, "bridge");
    assert.equal(call.command, "ADD");
    assert.equal(call.stdin, CONFORMANCE_33);
    assert.deepEqual(call.saved, [CONTAINER]); // saved before the delegate ran
    assert.deepEqual(call.env, [
      "CNI_ARGS=K8S_POD_NAME=web",
      "CNI_COMMAND=ADD",
      `CNI_CONTAINERID=${CONTAINER}`,
      "CNI_IFNAME=eth0",
      "CNI_NETNS=/run/netns/tt-fake",
      `CNI_PATH=/nonexistent:${sb.bin}`,
    ]);
  });
});

Deno.test("plugin: DEL of an unknown container succeeds without a delegate (conformance 34)", async () => {
  await withSandbox(async (sb) => {
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb), { CNI_NETNS: "" }), {
      code: 0,
      stdout: "",
    });
    assert.deepEqual(await calls(sb), []);
  });
});

Deno.test("plugin: 0.1.0, 0.2.0 and version-less configs reach the delegate as the caller wrote them", async () => {
  await withSandbox(async (sb) => {
    // A 0.2.0 result has ip4/ip6 objects; the delegate writes it and we pass it on unchanged.
    const oldResult = '{"cniVersion":"0.2.0","ip4":{"ip":"10.244.1.2/24","gateway":"10.244.1.1"}}';
    await answer(sb, "ADD", oldResult);
    for (
      const [container, cniVersion] of [["v010", "0.1.0"], ["v020", "0.2.0"], ["none", undefined]]
    ) {
      const out = await invoke(sb, "ADD", netConf(sb, { cniVersion }), {
        CNI_CONTAINERID: container!,
      });
      assert.deepEqual(out, { code: 0, stdout: oldResult });
    }
    const adds = await calls(sb);
    assert.equal(JSON.parse(adds[0].stdin).cniVersion, "0.1.0");
    assert.equal(JSON.parse(adds[1].stdin).cniVersion, "0.2.0");
    // No version in, none out (flannel copies it only when non-empty): the delegate reads 0.1.0.
    assert.equal(adds[2].stdin, CONFORMANCE_33.replace('"cniVersion":"0.3.1",', ""));
    // CHECK does not exist before 0.4.0; DEL replays the record.
    const noVersion = netConf(sb, { cniVersion: undefined });
    const check = errorResult(await invoke(sb, "CHECK", noVersion, { CNI_CONTAINERID: "none" }), 1);
    assert.match(String(check.details), /config is 0\.1\.0/);
    assert.deepEqual(await invoke(sb, "DEL", noVersion, { CNI_CONTAINERID: "none" }), {
      code: 0,
      stdout: "",
    });
    assert.equal((await calls(sb))[3].stdin, adds[2].stdin);
  });
});

Deno.test("plugin: container IDs of any length the spec allows; too long for a file name is an error", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", ADD_RESULT);
    const longest = "c".repeat(255); // NAME_MAX: the temp file name must not grow with the ID
    assert.equal((await invoke(sb, "ADD", netConf(sb), { CNI_CONTAINERID: longest })).code, 0);
    assert.equal(await Deno.readTextFile(`${sb.dataDir}/${longest}`), CONFORMANCE_33);
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb), { CNI_CONTAINERID: longest }), {
      code: 0,
      stdout: "",
    });
    assert.equal(await exists(`${sb.dataDir}/${longest}`), false);

    const tooLong = "d".repeat(256);
    const refused = errorResult(
      await invoke(sb, "ADD", netConf(sb), { CNI_CONTAINERID: tooLong }),
      4,
    );
    assert.match(String(refused.msg), /CNI_CONTAINERID is too long to name a file \(256 bytes/);
    // It can never have been added, so DEL succeeds and CHECK does not know it.
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb), { CNI_CONTAINERID: tooLong }), {
      code: 0,
      stdout: "",
    });
    const conf = netConf(sb, { cniVersion: "1.0.0", prevResult: {} });
    errorResult(await invoke(sb, "CHECK", conf, { CNI_CONTAINERID: tooLong }), 3);
    assert.deepEqual((await calls(sb)).map((c) => c.command), ["ADD", "DEL"]);
    assert.deepEqual([...Deno.readDirSync(sb.dataDir)], [], "no record or temporary left");
  });
});

Deno.test("plugin: DEL replays the saved bytes after subnet.env changed, then vanished", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", ADD_RESULT);
    assert.equal((await invoke(sb, "ADD", netConf(sb))).code, 0);
    await Deno.writeTextFile(sb.subnetFile, SUBNET_ENV.replace("10.244.1.1", "10.244.9.1"));
    // A DEL that fails keeps the record, so the change must not leak into the retry.
    await answer(sb, "DEL", '{"code":11,"msg":"busy"}', 1);
    const failed = await invoke(sb, "DEL", netConf(sb, { runtimeConfig: { changed: true } }));
    assert.equal(failed.stdout, '{"code":11,"msg":"busy"}');
    await Deno.remove(sb.subnetFile);
    await answer(sb, "DEL", "");
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb)), { code: 0, stdout: "" });
    const dels = (await calls(sb)).filter((c) => c.command === "DEL");
    assert.equal(dels.length, 2);
    for (const del of dels) {
      assert.equal(del.stdin, CONFORMANCE_33);
      assert.ok(del.env.includes("CNI_COMMAND=DEL"));
    }
    assert.equal(await exists(savedPath(sb)), false);
    // And again: nothing left, nothing run.
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb)), { code: 0, stdout: "" });
    assert.equal((await calls(sb)).length, 3);
  });
});

Deno.test("plugin: a failed delegate DEL keeps the saved config (quirk 32 fixed)", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", ADD_RESULT);
    await invoke(sb, "ADD", netConf(sb));
    const delegateError = '{\n    "code": 999,\n    "msg": "netns busy"\n}\n';
    await answer(sb, "DEL", delegateError, 1);
    const outcome = await invoke(sb, "DEL", netConf(sb));
    assert.deepEqual(outcome, { code: 1, stdout: delegateError }); // passed through verbatim
    assert.equal(await Deno.readTextFile(savedPath(sb)), CONFORMANCE_33);
    // A delegate dying without an error result is reported by us, file still kept.
    await answer(sb, "DEL", "segfault", 139);
    const crashed = errorResult(await invoke(sb, "DEL", netConf(sb)), 999);
    assert.match(String(crashed.msg), /bridge DEL failed with exit status 139/);
    assert.equal(crashed.details, "segfault");
    assert.equal(await exists(savedPath(sb)), true);
  });
});

Deno.test("plugin: DEL keeps and skips a saved config it cannot read (no delegate)", async () => {
  await withSandbox(async (sb) => {
    await Deno.mkdir(sb.dataDir, { recursive: true });
    await Deno.writeTextFile(savedPath(sb), "{not json");
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb)), { code: 0, stdout: "" });
    assert.equal(await Deno.readTextFile(savedPath(sb)), "{not json");
    assert.deepEqual(await calls(sb), []);
  });
});

Deno.test("plugin: a failed ADD passes the delegate's error on and rolls back with DEL", async () => {
  await withSandbox(async (sb) => {
    const delegateError = '{"cniVersion":"0.3.1","code":11,"msg":"no IP addresses available"}';
    await answer(sb, "ADD", delegateError, 1);
    assert.deepEqual(await invoke(sb, "ADD", netConf(sb)), { code: 1, stdout: delegateError });
    const [add, del, ...rest] = await calls(sb);
    assert.deepEqual(rest, []);
    assert.equal(add.command, "ADD");
    assert.equal(del.command, "DEL");
    assert.equal(del.stdin, CONFORMANCE_33);
    assert.equal(await exists(savedPath(sb)), false);
  });
});

Deno.test("plugin: when the rollback DEL fails too, the record stays for the runtime's DEL", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", "", 2);
    await answer(sb, "DEL", '{"code":5,"msg":"io"}', 1);
    const result = errorResult(await invoke(sb, "ADD", netConf(sb)), 999);
    assert.match(String(result.msg), /delegate plugin bridge ADD failed with exit status 2/);
    assert.equal(await Deno.readTextFile(savedPath(sb)), CONFORMANCE_33);
    await answer(sb, "DEL", "");
    assert.deepEqual(await invoke(sb, "DEL", netConf(sb)), { code: 0, stdout: "" });
    assert.equal(await exists(savedPath(sb)), false);
    assert.deepEqual((await calls(sb)).map((c) => c.command), ["ADD", "DEL", "DEL"]);
  });
});

Deno.test("plugin: an ADD 'success' that is not a result object is a failure", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", "ok\n");
    const result = errorResult(await invoke(sb, "ADD", netConf(sb)), 999);
    assert.match(String(result.msg), /returned an invalid ADD result/);
    assert.deepEqual((await calls(sb)).map((c) => c.command), ["ADD", "DEL"]);
    assert.equal(await exists(savedPath(sb)), false);
  });
});

Deno.test("plugin: a repeated ADD re-runs the delegate with the saved bytes, never new ones", async () => {
  await withSandbox(async (sb) => {
    await answer(sb, "ADD", ADD_RESULT);
    await invoke(sb, "ADD", netConf(sb));
    await Deno.writeTextFile(sb.subnetFile, SUBNET_ENV.replace("10.244.1.1", "10.244.9.1"));
    const again = await invoke(sb, "ADD", netConf(sb, { delegate: { type: "macvlan" } }));
    assert.deepEqual(again, { code: 0, stdout: ADD_RESULT });
    // It fails the second time: the first attachment is not torn down (no rollback).
    await answer(sb, "ADD", '{"code":999,"msg":"eth0 already exists"}', 1);
    const failed = await invoke(sb, "ADD", netConf(sb));
    assert.equal(JSON.parse(failed.stdout).msg, "eth0 already exists");
    const all = await calls(sb);
    assert.deepEqual(all.map((c) => [c.plugin, c.command]), [
      ["bridge", "ADD"],
      ["bridge", "ADD"],
      ["bridge", "ADD"],
    ]);
    for (const call of all) assert.equal(call.stdin, CONFORMANCE_33);
    assert.equal(await Deno.readTextFile(savedPath(sb)), CONFORMANCE_33);
  });
});
