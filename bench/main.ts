/**
 * `deno task bench [name…]`: run the benchmarks one after another (each is also a script of its
 * own), each printing its table with ratios to a baseline measured in the same run and writing
 * JSON to bench/results/. Without names, all of them.
 */
import { fileURLToPath } from "node:url";

const BENCHES: Record<string, string> = {
  netlink: "netlink_bench.ts",
  etcd: "etcd_bench.ts",
  etcd_client: "etcd_client.ts",
  owner_claim: "owner_claim.ts",
  control_plane: "control_plane.ts",
  dataplane: "dataplane.ts",
  udp: "udp_bench.ts",
  wireguard: "wireguard_bench.ts",
  admin_api: "admin_api.ts",
  footprint: "footprint.ts",
  peer_probe: "peer_probe.ts",
  dist: "dist_bench.ts",
};

const chosen = Deno.args.length ? Deno.args : Object.keys(BENCHES);
const unknown = chosen.filter((name) => !(name in BENCHES));
if (unknown.length) {
  console.error(
    `unknown benchmark ${unknown.join(", ")}; choose from ${Object.keys(BENCHES).join(", ")}`,
  );
  Deno.exit(2);
}
let failed = 0;
for (const name of chosen) {
  const script = fileURLToPath(new URL(BENCHES[name], import.meta.url));
  console.log(`\n=== ${name} (${BENCHES[name]})`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    failed++;
    console.error(`${name} exited with status ${code}`);
  }
}
Deno.exit(failed ? 1 : 0);
