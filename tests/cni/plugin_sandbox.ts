/**
 * Driving the CNI plugin exactly as a runtime drives it (environment + stdin in, stdout + status
 * out) in a sandbox: a temp dir with subnet.env, a data dir, and recording stand-ins for the
 * delegate plugins, so every byte a delegate receives can be checked without root.
 *
 * @module
 */
import assert from "node:assert/strict";
import { cniMain } from "../../cni/plugin.ts";
import { setLogSink } from "../../log.ts";

export const SUBNET_ENV =
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
export const CONFORMANCE_33 =
  '{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":' +
  '"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},' +
  '"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","type":"bridge"}';
export const ADD_RESULT =
  '{ "cniVersion": "0.3.1",  "ips": [{"version":"4","address":"10.244.1.2/24"}] }\n';
export const CONTAINER = "f00dcafe";

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

export interface Sandbox {
  readonly dir: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly bin: string;
}

export interface Call {
  readonly command: string;
  readonly plugin: string;
  readonly stdin: string;
  readonly env: string[];
  readonly saved: string[];
}

/** A temp dir with subnet.env, a data dir and stand-in plugins; plugin log lines discarded. */
export async function withSandbox(fn: (sb: Sandbox) => Promise<void>): Promise<void> {
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
export async function answer(
  sb: Sandbox,
  command: string,
  stdout: string,
  status = 0,
): Promise<void> {
  await Deno.writeTextFile(`${sb.dir}/${command}.out`, stdout);
  await Deno.writeTextFile(`${sb.dir}/${command}.status`, String(status));
}

export async function calls(sb: Sandbox): Promise<Call[]> {
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

export function netConf(sb: Sandbox, extra: Record<string, unknown> = {}): Record<string, unknown> {
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

export interface Outcome {
  readonly code: number;
  readonly stdout: string;
}

export async function invoke(
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
export function errorResult(outcome: Outcome, code: number): Record<string, unknown> {
  assert.notEqual(outcome.code, 0, outcome.stdout);
  const result = JSON.parse(outcome.stdout);
  assert.equal(result.code, code, outcome.stdout);
  assert.equal(typeof result.msg, "string");
  assert.equal(typeof result.cniVersion, "string");
  return result;
}

export function savedPath(sb: Sandbox): string {
  return `${sb.dataDir}/${CONTAINER}`;
}
