/**
 * `--admin-token-file` on a running daemon: `/v1/*` and `/metrics` answer 401 without the token
 * and 200 with it (the scheme in any case), the probes stay open for kubelet, and an empty token
 * file stops the daemon at start-up instead of leaving the API open.
 */
import assert from "node:assert/strict";
import type { NodeDaemon } from "../../lab/node.ts";
import { probe, withLab } from "./faults_kit.ts";
import { rootSuite } from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const TOKEN = "e2e-admin-token";

async function status(node: NodeDaemon, path: string, authorization?: string): Promise<number> {
  const res = await fetch(`${node.adminUrl}${path}`, {
    headers: authorization ? { authorization } : {},
    signal: AbortSignal.timeout(5000),
  });
  await res.body?.cancel();
  return res.status;
}

rootSuite("e2e: the admin token guards the API of a running daemon", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "tt-admin-token-" });
  const tokenFile = `${dir}/token`;
  try {
    await Deno.writeTextFile(tokenFile, `${TOKEN}\n`);
    await withLab({
      nodes: 1,
      netConf: { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } },
      flags: [`--admin-token-file=${tokenFile}`],
    }, async (lab) => {
      const [node] = lab.nodes;
      await waitFor("node ready", async () => await probe(node, "/readyz") === 200, 30_000, 50);

      await t.step("/v1/* and /metrics: 401 without the token, 200 with it", async () => {
        for (const path of ["/v1/status", "/v1/leases", "/v1/backend", "/metrics"]) {
          assert.equal(await status(node, path), 401, path);
          assert.equal(await status(node, path, "Bearer wrong"), 401, path);
          assert.equal(await status(node, path, `Bearer ${TOKEN}`), 200, path);
          assert.equal(await status(node, path, `bearer ${TOKEN}`), 200, path);
        }
      });

      await t.step("the probes stay open", async () => {
        assert.equal(await status(node, "/healthz"), 200);
        assert.equal(await status(node, "/readyz"), 200);
      });

      await t.step("an empty token file is refused at start-up", async () => {
        assert.equal(await node.stop(), 0, "a clean stop first");
        await Deno.writeTextFile(tokenFile, "  \n");
        await node.start();
        const said = async () =>
          (await Deno.readTextFile(node.logFile)).includes(
            `--admin-token-file ${tokenFile} is empty`,
          );
        await waitFor("the refusal in the log", said, 30_000, 50);
        assert.equal(await node.stop(), 1, "the daemon exited 1 by itself");
        assert.equal(await probe(node, "/healthz"), 0, "nothing serves");
      });
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
