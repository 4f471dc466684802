import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { route } from "../main.ts";

const MAIN = fileURLToPath(new URL("../main.ts", import.meta.url));

async function tartan(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decode = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: decode(out.stdout), stderr: decode(out.stderr) };
}

Deno.test("the program name picks the CNI plugin or the daemon", () => {
  assert.deepEqual(route("flannel", ["x"]), ["cni", ["x"]]);
  assert.deepEqual(route("flanneld", ["--ip-masq"]), ["run", ["--ip-masq"]]);
  assert.deepEqual(route("tartan", ["status", "--json"]), ["status", ["--json"]]);
  assert.deepEqual(route("tartan", []), ["help", []]);
});

Deno.test("help, version and an unknown command", async () => {
  const help = await tartan(["help"]);
  assert.equal(help.code, 0);
  for (const name of ["run", "status", "doctor", "cni", "lab", "config", "cleanup", "version"]) {
    assert.match(help.stdout, new RegExp(`^  ${name} `, "m"));
  }
  const version = await tartan(["version"]);
  assert.match(version.stdout, /^tartan \d+\.\d+\.\d+\n$/);
  const unknown = await tartan(["frobnicate"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown command "frobnicate"/);
});

Deno.test("tartan run: bad flags exit 2 naming the flag; --help lists flanneld's flags", async () => {
  const unknown = await tartan(["run", "--no-such-flag"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /flag provided but not defined: -no-such-flag/);
  const bad = await tartan(["run", "--iptables-resync=abc"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid value "abc" for flag -iptables-resync/);
  const help = await tartan(["run", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--etcd-endpoints/);
  assert.match(help.stdout, /--kube-subnet-mgr/);
});

Deno.test("tartan run warns about a bad FLANNELD_* value, retries an unreachable etcd, stops on SIGTERM", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      MAIN,
      "run",
      "--etcd-endpoints=http://127.0.0.1:1",
      "--subnet-file=/nonexistent/x",
    ],
    env: { NO_COLOR: "1", FLANNELD_IP_MASQ: "maybe" },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline && !/cannot read \/coreos.com\/network\/config/.test(seen)) {
    const { value, done } = await reader.read();
    if (done) break;
    seen += value;
  }
  child.kill("SIGTERM");
  while (!(await reader.read()).done) { /* drain */ }
  const status = await child.status;
  assert.match(seen, /level=warn .*ignoring FLANNELD_IP_MASQ=\\"maybe\\"/);
  assert.match(seen, /cannot read \/coreos.com\/network\/config.*retrying/);
  assert.equal(status.code, 0, "SIGTERM is a clean stop");
});
