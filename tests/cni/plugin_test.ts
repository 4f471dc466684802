/**
 * The plugin driven exactly as a runtime drives it (environment + stdin in, stdout + status
 * out), with recording stand-ins for the delegate so every byte it receives can be checked
 * without root. The real bridge/host-local run in plugin_netns_test.ts.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { cniMain } from "../../cni/plugin.ts";
import { setLogSink } from "../../log.ts";
import { exists } from "./fs_helpers.ts";

const SUBNET_ENV =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
const CONFORMANCE_33 =
  '{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":' +
  '"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
  '"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}';
const ADD_RESULT =
  '{ "cniVersion": "0.3.1",  "ips": [{"version":"4","address":"10.244.1.2/24"}] }\n';
const CONTAINER = "f00dcafe";

// Records each call under $FAKE_DIR/calls/NNN, then answers from $FAKE_DIR/<COMMAND>.out with
// the status in $FAKE_DIR/<COMMAND>.status (default 0).
const FAKE_PLUGIN = `#!/bin/sh
call="$FAKE_DIR/calls/$(printf %03d "$(ls "$FAKE_DIR/calls" | wc -l)")"
mkdir "$call"
cat > "$call/stdin"
printf %s "$CNI_COMMAND" > "$call/command"
printf %s "$(basename "$0")" > "$call/plugin"
env | grep '^CNI_' | sort > "$call/env"
ls -A "$FAKE_DATA" > "$call/saved" 2>/dev/null
[ -f "$FAKE_DIR/$CNI_COMMAND.out" ] && cat "$FAKE_DIR/$CNI_COMMAND.out"
exit "$(cat "$FAKE_DIR/$CNI_COMMAND.status" 2>/dev/null || echo 0)"
`;

interface Sandbox {
  readonly dir: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly bin: string;
}

interface Call {
  readonly command: string;
  readonly plugin: string;
  readonly stdin: string;
  readonly env: string[];
  readonly saved: string[];
}

/** A temp dir with subnet.env, a data dir and stand-in plugins; plugin log lines discarded. */
async function withSandbox(fn: (sb: Sandbox) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "tt-cni-" });
  setLogSink(() => {}); // failures are the point here; their log lines are noise
  try {
    const sb = {
      dir,
      subnetFile: `${dir}/subnet.env`,
      dataDir: `${dir}/var/lib/cni/flannel`, // created by the plugin
      bin: `${dir}/bin`,
    };
    await Deno.mkdir(`${dir}/calls`);
    await Deno.mkdir(sb.bin);
    for (const name of ["bridge", "macvlan"]) {
      await Deno.writeTextFile(`${sb.bin}/${name}`, FAKE_PLUGIN, { mode: 0o755 });
    }
    await Deno.writeTextFile(sb.subnetFile, SUBNET_ENV);
    await fn(sb);
  } finally {
    setLogSink((line) => console.error(line));
    await Deno.remove(dir, { recursive: true });
  }
}

/** The stand-in's answer to `command`. */
async function answer(sb: Sandbox, command: string, stdout: string, status = 0): Promise<void> {
  await Deno.writeTextFile(`${sb.dir}/${command}.out`, stdout);
  await Deno.writeTextFile(`${sb.dir}/${command}.status`, String(status));
}

async function calls(sb: Sandbox): Promise<Call[]> {
  const names = [...Deno.readDirSync(`${sb.dir}/calls`)].map((e) => e.name).sort();
  const read = (name: string, file: string) => Deno.readTextFile(`${sb.dir}/calls/${name}/${file}`);
  return await Promise.all(names.map(async (name) => ({
    command: await read(name, "command"),
    plugin: await read(name, "plugin"),
    stdin: await read(name, "stdin"),
    env: (await read(name, "env")).split("\n").filter(Boolean),
    saved: (await read(name, "saved")).split("\n").filter(Boolean),
  })));
}

function netConf(sb: Sandbox, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "cbr0",
    type: "flannel",
    cniVersion: "0.3.1",
    delegate: { hairpinMode: true, isDefaultGateway: true },
    subnetFile: sb.subnetFile,
    dataDir: sb.dataDir,
    ...extra,
  };
}

interface Outcome {
  readonly code: number;
  readonly stdout: string;
}

async function invoke(
  sb: Sandbox,
  command: string,
  conf: Record<string, unknown> | Uint8Array,
  env: Record<string, string> = {},
): Promise<Outcome> {
  const stdin = conf instanceof Uint8Array ? conf : new TextEncoder().encode(JSON.stringify(conf));
  return await cniMain({
    CNI_COMMAND: command,
    CNI_CONTAINERID: CONTAINER,
    CNI_NETNS: "/run/netns/tt-fake",
    CNI_IFNAME: "eth0",
    CNI_PATH: `/nonexistent:${sb.bin}`,
    FAKE_DIR: sb.dir,
    FAKE_DATA: sb.dataDir,
    ...env,
  }, stdin);
}

/** Assert a CNI error result and return it. */
function errorResult(outcome: Outcome, code: number): Record<string, unknown> {
  assert.notEqual(outcome.code, 0, outcome.stdout);
  const result = JSON.parse(outcome.stdout);
  assert.equal(result.code, code, outcome.stdout);
  assert.equal(typeof result.msg, "string");
  assert.equal(typeof result.cniVersion, "string");
  return result;
}

function savedPath(sb: Sandbox): string {
  return `${sb.dataDir}/${CONTAINER}`;
}

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
