import assert from "node:assert/strict";
import fc from "fast-check";
import { createApp } from "../../api/app.ts";
import { createMetrics } from "../../api/metrics.ts";
import { BackendSchema, LeaseListSchema, PeersSchema, StatusSchema } from "../../api/schemas.ts";
import { parseStatusArgs, statusCommand, StatusUsageError } from "../../api/status_cli.ts";
import {
  formatBytes,
  formatDuration,
  renderStatus,
  type StatusReport,
} from "../../api/status_render.ts";
import {
  probeReport,
  readyState,
  sampleBackend,
  stateWithSkippedLease,
  vxlanLease,
} from "./fixture.ts";
import { parseAddr } from "../../ip/mod.ts";
import { newPeerProbeState, recordAnswer, recordFailure } from "../../probe/peer_state.ts";
import { probeTargets } from "../../probe/targets.ts";

type Env = (name: string) => string | undefined;
const noEnv: Env = () => undefined;
const envOf = (vars: Record<string, string>): Env => (name) => vars[name];

Deno.test("the admin URL comes from flags, then TARTAN_ADMIN_URL, then FLANNELD_* env", () => {
  const url = (args: string[], env: Env = noEnv) => parseStatusArgs(args, env).url;
  assert.equal(url(["--url", "http://127.0.0.1:8081/"]), "http://127.0.0.1:8081");
  assert.equal(url(["-url=http://10.0.0.1:9000"]), "http://10.0.0.1:9000");
  assert.equal(url(["--healthz-port", "8081"]), "http://127.0.0.1:8081");
  assert.equal(url(["--healthz-ip=0.0.0.0", "--healthz-port=8081"]), "http://127.0.0.1:8081");
  assert.equal(url(["--healthz-ip=::", "--healthz-port=8081"]), "http://[::1]:8081");
  assert.equal(url(["--healthz-ip=fd00::5", "--healthz-port=81"]), "http://[fd00::5]:81");
  const env = envOf({
    TARTAN_ADMIN_URL: "http://127.0.0.2:7000",
    FLANNELD_HEALTHZ_PORT: "8081",
  });
  assert.equal(url(["--healthz-port", "9"], env), "http://127.0.0.1:9");
  assert.equal(url([], env), "http://127.0.0.2:7000");
  assert.equal(
    url([], envOf({ FLANNELD_HEALTHZ_IP: "198.18.0.1", FLANNELD_HEALTHZ_PORT: "8081" })),
    "http://198.18.0.1:8081",
  );
  assert.equal(parseStatusArgs(["--json", "--healthz-port=1"], noEnv).json, true);
  assert.equal(parseStatusArgs(["--json=false", "--healthz-port=1"], noEnv).json, false);
});

Deno.test("unusable status arguments raise StatusUsageError", () => {
  for (
    const args of [
      [],
      ["--healthz-ip", "127.0.0.1"],
      ["--healthz-port", "0"],
      ["--healthz-port", "65536"],
      ["--healthz-port", "80a"],
      ["--url"],
      ["--url", "ftp://x"],
      ["--url", "not a url"],
      ["--bogus"],
      ["positional"],
      ["--json=maybe"],
    ]
  ) {
    assert.throws(() => parseStatusArgs(args, noEnv), StatusUsageError, args.join(" "));
  }
  // flannel's "port 0 disables" means nothing to connect to
  assert.throws(
    () => parseStatusArgs([], envOf({ FLANNELD_HEALTHZ_PORT: "0" })),
    /address unknown/,
  );
});

Deno.test("any argument list parses or raises StatusUsageError", () => {
  fc.assert(
    fc.property(fc.array(fc.string({ maxLength: 20 }), { maxLength: 5 }), (args) => {
      try {
        parseStatusArgs(args, noEnv);
      } catch (err) {
        assert.ok(err instanceof StatusUsageError, String(err));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("formatDuration and formatBytes", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(59.9), "59s");
  assert.equal(formatDuration(61), "1m1s");
  assert.equal(formatDuration(3600), "1h0m");
  assert.equal(formatDuration(93784), "1d2h");
  assert.equal(formatDuration(-5), "0s");
  assert.equal(formatBytes(900), "900 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(5 * 1024 ** 3), "5.0 GiB");
});

async function reportFrom(state = readyState()): Promise<StatusReport> {
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }));
  const get = async (path: string) => await (await app.request(path)).json();
  return {
    status: StatusSchema.parse(await get("/v1/status")),
    backend: state.backend ? BackendSchema.parse(await get("/v1/backend")) : null,
    leases: LeaseListSchema.parse(await get("/v1/leases")),
    peers: PeersSchema.parse(await get("/v1/peers")),
  };
}

Deno.test("renderStatus shows node, lease, backend, counters and a peer table", async () => {
  const text = renderStatus(await reportFrom());
  const lines = text.split("\n");
  assert.match(lines[0], /^node {7}node-a \(etcd mode, tartan 0\.1\.0-test, up \d+s\)$/);
  assert.equal(lines[1], "ready      yes");
  assert.equal(lines[2], "public IP  198.18.0.1");
  assert.match(lines[3], /^lease {6}10\.244\.1\.0\/24, expires \S+Z \(in 23h59m\)$/);
  assert.equal(lines[4], "network    10.244.0.0/16 (/24 per node), backend vxlan");
  assert.match(
    lines[5],
    /^backend {4}vxlan, ready, last reconcile 2s ago \(ok\), drift repaired 3/,
  );
  assert.match(lines[5], /2\/3 peers in sync$/);
  assert.match(text, /^traffic {4}iptables, last check 1s ago \(ok\), repairs 2$/m);
  assert.match(text, /renewals 4, renewal failures 1/);
  assert.match(text, /watch events 17, relists 2, watch errors 1, malformed skipped 5/);
  const table = lines.slice(lines.indexOf("peers (3)") + 1);
  assert.equal(table.length, 4);
  assert.match(
    table[0],
    /^SUBNET\s+PUBLIC IP\s+BACKEND\s+EXPIRES\s+IN SYNC\s+UNDERLAY\s+OVERLAY\s+PROBE$/,
  );
  assert.match(table[1], /^10\.244\.2\.0\/24\s+198\.18\.0\.2\s+vxlan\s+-\s+yes\s+-\s+-\s+-$/);
  assert.match(text, /^probes {5}off: peer probing has not started yet/m);
  assert.match(
    table[2],
    /^10\.244\.3\.0\/24\s+198\.18\.0\.3 .* no: network is unreachable {2}- +- +-$/,
  );
  assert.match(table[3], /^10\.244\.4\.0\/24,fc00:0:0:4::\/64\s+198\.18\.0\.4 .* yes +- +- +-$/);
  // columns line up
  const column = table[0].indexOf("PUBLIC IP");
  for (const row of table.slice(1)) assert.equal(row[column - 1], " ");
});

Deno.test("renderStatus gives a dual-stack peer's IPv6 probe a row of its own", async () => {
  const state = readyState();
  const dual = state.leases.get("10.244.4.0-24&fc00:0:0:4::-64")!;
  state.leases.set("10.244.4.0-24&fc00:0:0:4::-64", {
    ...dual,
    attrs: { ...dual.attrs, publicIPv6: parseAddr("fc00::4") },
  });
  const peers = [4, 6].flatMap((family) =>
    probeTargets(state.leases.values(), state.ownLease, "vxlan", family as 4 | 6)
  ).map((target) => {
    const peer = newPeerProbeState(target);
    const lost = target.publicIP.family === 6;
    recordAnswer(peer.underlay, 0.25, new Date());
    if (lost) { for (let i = 0; i < 2; i++) recordFailure(peer.overlay!, "no reply", new Date()); }
    else recordAnswer(peer.overlay!, 0.5, new Date());
    recordAnswer(peer.fullSize, 0.5, new Date());
    return peer;
  });
  const zero = { answered: 0, lost: 0, unsent: 0 };
  state.peerProbes = () => probeReport(peers, { underlay: zero, overlay: zero, fullSize: zero });
  const lines = renderStatus(await reportFrom(state)).split("\n");
  const at = lines.findIndex((line) => line.startsWith("10.244.4.0/24,fc00:0:0:4::/64"));
  assert.match(lines[at], /\s198\.18\.0\.4\s.*\s0\.25ms\s+0\.50ms\s+ok$/);
  assert.match(lines[at + 1], /^\s+fc00::4\s+0\.25ms\s+lost ×2\s+overlay-blocked$/);
});

Deno.test("renderStatus shows a skipped lease with its reason, and the skip count", async () => {
  const text = renderStatus(await reportFrom(stateWithSkippedLease()));
  assert.match(text, /malformed skipped 5, leases skipped 1$/m);
  assert.match(
    text,
    /^10\.244\.0\.0\/16\s+198\.18\.0\.66 .* skipped: subnet_outside_network /m,
  );
  assert.match(
    text,
    /^skipped leases \(1\).*\n10\.244\.0\.0\/16: 10\.244\.0\.0\/16 is the network itself$/m,
  );
});

Deno.test("renderStatus of a node that is not ready says why, and shows udp counters", async () => {
  const state = readyState();
  state.subnetEnvWritten = false;
  state.traffic = undefined;
  state.backend = () =>
    sampleBackend({
      type: "udp",
      lastReconcileOk: false,
      lastError: "EPERM",
      dataPath: { packetsTx: 3, packetsRx: 2, bytesTx: 2048, bytesRx: 100, drops: { ttl: 4 } },
    });
  const text = renderStatus(await reportFrom(state));
  assert.match(text, /^ready {6}no: subnet\.env not written yet$/m);
  assert.match(text, /last reconcile 2s ago \(failed\)/);
  assert.match(text, /^ {11}last error: EPERM$/m);
  assert.match(text, /^udp {8}tx 3 packets \/ 2\.0 KiB, rx 2 packets \/ 100 B, drops: ttl=4$/m);
  assert.doesNotMatch(text, /^traffic/m);

  state.backend = undefined;
  state.ownLease = undefined;
  const bare = renderStatus(await reportFrom(state));
  assert.match(bare, /^backend {4}not registered yet$/m);
  assert.match(bare, /^lease {6}none yet$/m);
  assert.match(bare, /IN SYNC/);
  assert.match(bare, /^10\.244\.2\.0\/24 .* -$/m);
});

Deno.test("renderStatus and /v1/backend name the implementation where there is a choice", async () => {
  const state = readyState();
  state.backend = () => sampleBackend({ type: "wireguard", implementation: "wireguard-go" });
  const report = await reportFrom(state);
  assert.equal(report.backend?.implementation, "wireguard-go");
  assert.match(renderStatus(report), /^backend {4}wireguard \(wireguard-go\), ready, /m);
  const plain = await reportFrom();
  assert.equal(plain.backend?.implementation, null, "vxlan has one implementation");
  assert.match(renderStatus(plain), /^backend {4}vxlan, ready, /m);
});

Deno.test("renderStatus shows reserved, expired and never-expiring leases plainly", async () => {
  const state = readyState();
  state.ownLease = { ...vxlanLease("10.244.1.0/24", "198.18.0.1"), reserved: true };
  state.leases.set("10.244.2.0-24", {
    ...vxlanLease("10.244.2.0/24", "198.18.0.2"),
    reserved: true,
  });
  state.leases.set("10.244.3.0-24", vxlanLease("10.244.3.0/24", "198.18.0.3", -61_000));
  const text = renderStatus(await reportFrom(state));
  assert.match(text, /^lease {6}10\.244\.1\.0\/24, reserved, never expires$/m);
  assert.match(text, /^10\.244\.2\.0\/24 .* never \(reserved\)\s+yes\s+-\s+-\s+-$/m);
  assert.match(text, /^10\.244\.3\.0\/24 .* expired 1m[01]s ago\s+no: /m);

  state.ownLease = vxlanLease("10.244.1.0/24", "198.18.0.1"); // kube: no expiry at all
  assert.match(renderStatus(await reportFrom(state)), /^lease {6}10\.244\.1\.0\/24$/m);
});

Deno.test("statusCommand without an address exits 2 with usage", async () => {
  const err: string[] = [];
  const code = await statusCommand([], { out: () => {}, err: (t) => err.push(t), env: noEnv });
  assert.equal(code, 2);
  assert.match(err.join("\n"), /admin API address unknown[\s\S]*usage: tartan status/);
});
