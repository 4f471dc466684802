/**
 * `tartan doctor`'s arguments: the admin API address as `tartan status` resolves it, and the
 * subnet file and etcd endpoints from the daemon's own flags or `FLANNELD_*` variables.
 */
import assert from "node:assert/strict";
import { StatusUsageError } from "../../api/status_cli.ts";
import { doctorCommand, parseDoctorArgs } from "../../doctor/command.ts";

type Env = (name: string) => string | undefined;
const envOf = (vars: Record<string, string>): Env => (name) => vars[name];

Deno.test("doctor args: defaults are the daemon's; flags and FLANNELD_* override", () => {
  const bare = parseDoctorArgs([], envOf({}));
  assert.equal(bare.url, undefined, "no address: host checks only");
  assert.equal(bare.subnetFile, "/run/flannel/subnet.env");
  assert.equal(bare.etcdEndpoints, undefined, "the daemon's endpoints are used then");
  assert.deepEqual(bare.defaultEtcdEndpoints, ["http://127.0.0.1:4001", "http://127.0.0.1:2379"]);

  const env = envOf({
    FLANNELD_SUBNET_FILE: "/tmp/s.env",
    FLANNELD_ETCD_ENDPOINTS: "http://10.0.0.1:2379",
    FLANNELD_HEALTHZ_PORT: "8081",
  });
  const fromEnv = parseDoctorArgs([], env);
  assert.equal(fromEnv.url, "http://127.0.0.1:8081");
  assert.equal(fromEnv.subnetFile, "/tmp/s.env");
  assert.deepEqual(fromEnv.etcdEndpoints, ["http://10.0.0.1:2379"]);

  const flags = parseDoctorArgs(
    ["--url=http://10.1.1.1:9", "--subnet-file", "/x.env", "--etcd-endpoints=http://a:1", "--json"],
    env,
  );
  assert.deepEqual(
    [flags.url, flags.subnetFile, flags.etcdEndpoints, flags.json],
    ["http://10.1.1.1:9", "/x.env", ["http://a:1"], true],
  );
  assert.throws(() => parseDoctorArgs(["--bogus"], envOf({})), StatusUsageError);
});

Deno.test("doctor: bad usage exits 2 with the usage line", async () => {
  const err: string[] = [];
  const code = await doctorCommand(["--healthz-port=99999"], {
    out: () => {},
    err: (text) => err.push(text),
    env: () => undefined,
  });
  assert.equal(code, 2);
  assert.match(err.join("\n"), /usage: tartan doctor/);
});
