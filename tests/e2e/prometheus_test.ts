/**
 * A real Prometheus scrapes two lab nodes: Debian's `prometheus`, in a namespace of its own with
 * each node's admin API forwarded onto its loopback, reports both targets up through its HTTP
 * API and has loaded the alert rules we ship (deploy/prometheus/tartan-rules.yml). `promtool check
 * metrics` accepts each node's `/metrics`, and every metric the rules use is exposed.
 */
import assert from "node:assert/strict";
import { NODE_ADMIN_PORT } from "../../lab/node.ts";
import { parseExposition } from "../helpers/prometheus.ts";
import { type PrometheusServer, startPrometheus } from "../helpers/prometheus_server.ts";
import { hasCommand, run } from "../helpers/netns.ts";
import { withLab } from "./faults_kit.ts";
import { rootSuite } from "./overlay_kernel.ts";
import { waitFor } from "../helpers/leases.ts";

const RULES = new URL("../../deploy/prometheus/tartan-rules.yml", import.meta.url).pathname;

interface Target {
  labels: { instance: string; job: string };
  health: string;
  lastError: string;
}

interface RuleGroup {
  name: string;
  rules: Array<{ name: string; type: string; health: string; query: string }>;
}

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

/** `GET <prometheus>/api/v1/<path>`: the `data` of a successful answer. */
async function api<T>(prometheus: PrometheusServer, path: string): Promise<T> {
  const res = await fetch(`${prometheus.url}/api/v1/${path}`, {
    signal: AbortSignal.timeout(2000),
  });
  const body = await res.json() as { status: string; data: T };
  assert.equal(body.status, "success", `${path}: ${JSON.stringify(body)}`);
  return body.data;
}

/** Both targets scraped successfully (false while Prometheus starts or has not scraped yet). */
async function targetsUp(prometheus: PrometheusServer): Promise<boolean> {
  try {
    const { activeTargets } = await api<{ activeTargets: Target[] }>(prometheus, "targets");
    return activeTargets.length === prometheus.instances.length &&
      activeTargets.every((t) => t.health === "up");
  } catch {
    return false;
  }
}

/** Metric names in PromQL expressions (every name the rules use starts with `tartan_`). */
function metricNames(expressions: readonly string[]): Set<string> {
  return new Set(expressions.flatMap((e) => e.match(/\btartan_[a-z_]+/g) ?? []));
}

rootSuite("e2e: Prometheus scrapes two nodes and loads the shipped alert rules", async (t) => {
  await withLab({
    nodes: 2,
    netConf: { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } },
  }, async (lab) => {
    await lab.waitConverged();
    const prometheus = await startPrometheus({
      targets: lab.nodes.map((node) => ({ netns: node.ns, port: NODE_ADMIN_PORT })),
      ruleFiles: [RULES],
    });
    try {
      await t.step("both targets are up in Prometheus's API", async () => {
        await waitFor("both targets up", () => targetsUp(prometheus), 30_000, 200)
          .catch((err) => {
            throw new Error(`${err.message}\nprometheus log:\n${prometheus.log()}`);
          });
        const { activeTargets } = await api<{ activeTargets: Target[] }>(prometheus, "targets");
        assert.deepEqual(
          activeTargets.map((t) => [t.labels.job, t.labels.instance, t.lastError]).sort(),
          prometheus.instances.map((instance) => ["tartan", instance, ""]),
        );
        // The scraped values are the nodes' own: both ready, each with its one peer in sync.
        await waitFor(
          "samples stored",
          async () => {
            const ready = await api<{ result: Sample[] }>(prometheus, "query?query=tartan_ready");
            return ready.result.length === 2;
          },
          10_000,
          200,
        );
        for (const query of ["tartan_ready", 'tartan_backend_peers{state="in_sync"}']) {
          const { result } = await api<{ result: Sample[] }>(
            prometheus,
            `query?query=${encodeURIComponent(query)}`,
          );
          assert.deepEqual(
            result.map((s) => [s.metric.instance, s.value[1]]).sort(),
            prometheus.instances.map((instance) => [instance, "1"]),
            query,
          );
        }
      });

      await t.step("the shipped rules load, evaluate, and use only exposed metrics", async () => {
        await run(["promtool", "check", "rules", RULES]);
        await waitFor(
          "rules evaluated",
          async () => {
            const { groups } = await api<{ groups: RuleGroup[] }>(prometheus, "rules");
            return groups.length === 1 && groups[0].rules.every((r) => r.health === "ok");
          },
          10_000,
          200,
        );
        const { groups } = await api<{ groups: RuleGroup[] }>(prometheus, "rules");
        assert.equal(groups[0].name, "tartan");
        assert.ok(groups[0].rules.length >= 6, `${groups[0].rules.length} rules`);
        assert.ok(groups[0].rules.every((r) => r.type === "alerting"));
        // A healthy two-node cluster raises none of them.
        const { alerts } = await api<{ alerts: unknown[] }>(prometheus, "alerts");
        assert.deepEqual(alerts, []);
        const exposed = parseExposition(
          await (await fetch(`${lab.nodes[0].adminUrl}/metrics`))
            .text(),
        );
        for (const name of metricNames(groups[0].rules.map((r) => r.query))) {
          assert.ok(exposed.has(name), `the rules use ${name}, which /metrics does not expose`);
        }
      });

      await t.step("promtool check metrics accepts each node's /metrics", async () => {
        for (const node of lab.nodes) {
          const text = await (await fetch(`${node.adminUrl}/metrics`)).text();
          const { code, stdout, stderr } = await run(["promtool", "check", "metrics"], {
            stdin: text,
            allowFail: true,
          });
          assert.equal(code, 0, `${node.ns}: ${stdout}${stderr}`);
        }
      });
    } finally {
      await prometheus.stop();
    }
  });
}, await hasCommand("prometheus") ? undefined : "prometheus (Debian prometheus)");
