/**
 * The admin API of a running node: readiness follows the lease and the routes, `/metrics`
 * follows the cluster, and an etcd outage past the lease's expiry makes the node not ready.
 *
 * The lease TTL is shortened with the daemon's test-only knob (`TARTAN_TEST_LEASE_TTL_SECONDS`)
 * to just over flannel's shortest renew margin (1 min), so the expiry comes within a minute.
 */
import assert from "node:assert/strict";
import { TEST_LEASE_TTL_ENV } from "../../daemon.ts";
import type { NodeDaemon } from "../../lab/node.ts";
import { parseExposition, sampleValue } from "../helpers/prometheus.ts";
import { ipJson } from "../helpers/netns.ts";
import { withLab } from "./faults_kit.ts";
import { deleteLease, ownLeaseName, rootSuite } from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const LEASE_TTL_SECONDS = 62;

async function get(node: NodeDaemon, path: string): Promise<{ status: number; text: string }> {
  try {
    const res = await fetch(`${node.adminUrl}${path}`, { signal: AbortSignal.timeout(2000) });
    return { status: res.status, text: await res.text() };
  } catch {
    return { status: 0, text: "" };
  }
}

async function metric(
  node: NodeDaemon,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  const { status, text } = await get(node, "/metrics");
  assert.equal(status, 200);
  return sampleValue(parseExposition(text), name, labels);
}

interface JsonRoute {
  dst: string;
  dev?: string;
}

rootSuite("e2e: admin API readiness and metrics follow the cluster", async (t) => {
  Deno.env.set(TEST_LEASE_TTL_ENV, String(LEASE_TTL_SECONDS));
  try {
    await withLab({
      nodes: 2,
      netConf: { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } },
      flags: ["--subnet-lease-renew-margin=1"],
    }, async (lab) => {
      const [n1, n2] = lab.nodes;

      await t.step("/readyz turns 200 only once the lease and the peer route exist", async () => {
        await waitFor(
          "n1 ready",
          async () => (await get(n1, "/readyz")).status === 200,
          30_000,
          10,
        );
        // Restart n1 once n2 is up: the moment n1 is ready again, it must already route to n2.
        await lab.waitConverged();
        await n1.stop();
        await n1.start();
        await waitFor(
          "n1 ready again",
          async () => (await get(n1, "/readyz")).status === 200,
          30_000,
          5,
        );
        const peer = (await ownLeaseName(n2.subnetFile)).replace("-", "/");
        const routes = await ipJson<JsonRoute[]>(n1.ns, ["route", "show"]);
        assert.ok(routes.some((r) => r.dst === peer && r.dev === "flannel.1"), `route to ${peer}`);
        assert.ok(await Deno.stat(n1.subnetFile), "subnet.env written before ready");
        const verbose = await get(n1, "/readyz?verbose");
        assert.match(verbose.text, /^\[\+\]lease/m);
      });

      await t.step("/metrics counts leases as nodes come and go", async () => {
        assert.equal(await metric(n1, "tartan_leases"), 2);
        assert.equal(await metric(n1, "tartan_ready"), 1);
        const eventsBefore = await metric(n1, "tartan_watch_events_total");
        const n3 = await lab.addNode();
        await lab.waitConverged();
        await waitFor("n1 sees n3", async () => await metric(n1, "tartan_leases") === 3, 10_000);
        assert.ok(await metric(n1, "tartan_watch_events_total") > eventsBefore);
        assert.equal(await metric(n1, "tartan_backend_peers", { state: "in_sync" }), 2);
        await n3.stop();
        await deleteLease(lab.etcd.client(), await ownLeaseName(n3.subnetFile));
        await waitFor(
          "n1 forgets n3",
          async () => await metric(n1, "tartan_leases") === 2,
          10_000,
        );
      });

      await t.step(
        "etcd down past the lease's expiry: 503 with the reason; back: 200",
        async () => {
          await lab.etcd.kill();
          try {
            await waitFor(
              "n1 not ready",
              async () => (await get(n1, "/readyz")).status === 503,
              (LEASE_TTL_SECONDS + 10) * 1000,
              500,
            );
            const verbose = await get(n1, "/readyz?verbose");
            assert.match(verbose.text, /flanneld is not ready yet/);
            assert.match(verbose.text, /^\[-\]lease/m);
            assert.equal((await get(n1, "/healthz")).status, 200, "alive throughout");
          } finally {
            await lab.etcd.restart();
          }
          await waitFor(
            "n1 ready after etcd",
            async () => (await get(n1, "/readyz")).status === 200,
            30_000,
            200,
          );
          assert.ok(await metric(n1, "tartan_lease_renewal_failures_total") > 0);
        },
      );
    });
  } finally {
    Deno.env.delete(TEST_LEASE_TTL_ENV);
  }
});
