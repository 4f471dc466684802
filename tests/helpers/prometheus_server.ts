/**
 * Debian's Prometheus as a real scraper for lab nodes. It runs in a network namespace of its
 * own, so its fixed ports can never collide with anything: each target node's admin API is
 * forwarded onto that namespace's loopback, and its web port onto a free host loopback port.
 *
 * @module
 */
import { type Forwarder, forwardTcp } from "../../lab/forward.ts";
import { createNetns, deleteNetns, run } from "./netns.ts";

/** Where Prometheus listens inside its namespace. */
const WEB_PORT = 9090;
/** The first target port inside its namespace (target i gets `TARGET_BASE_PORT + i`). */
const TARGET_BASE_PORT = 9101;

/** A node's admin API, as a scrape target: its namespace and loopback port there. */
export interface ScrapeTarget {
  readonly netns: string;
  readonly port: number;
}

/** Options of {@link startPrometheus}. */
export interface PrometheusOptions {
  readonly targets: readonly ScrapeTarget[];
  /** Rule files to load (absolute paths). */
  readonly ruleFiles?: readonly string[];
}

/** A running Prometheus. */
export interface PrometheusServer {
  /** Host loopback URL of its web API. */
  readonly url: string;
  /** The `instance` label of each target, in the order given. */
  readonly instances: readonly string[];
  /** What it logged so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

function config(instances: readonly string[], ruleFiles: readonly string[]): string {
  // JSON is YAML: no YAML writer needed.
  return JSON.stringify({
    global: { scrape_interval: "1s", scrape_timeout: "1s", evaluation_interval: "1s" },
    rule_files: ruleFiles,
    scrape_configs: [{ job_name: "tartan", static_configs: [{ targets: instances }] }],
  });
}

/** Start Prometheus scraping `targets`; everything is removed again by `stop()`. */
export async function startPrometheus(options: PrometheusOptions): Promise<PrometheusServer> {
  const dir = await Deno.makeTempDir({ prefix: "tt-prom-" });
  const ns = await createNetns("prom");
  const forwarders: Forwarder[] = [];
  let child: Deno.ChildProcess | undefined;
  let logText = "";

  async function stop(): Promise<void> {
    if (child) {
      child.kill("SIGTERM");
      await child.status;
      child = undefined;
    }
    for (const f of forwarders) f.close();
    await deleteNetns(ns);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }

  try {
    await run(["ip", "-n", ns, "link", "set", "lo", "up"]);
    const instances = options.targets.map((target, i) => {
      const port = TARGET_BASE_PORT + i;
      forwarders.push(forwardTcp({ netns: ns, port }, target));
      return `127.0.0.1:${port}`;
    });
    const web = forwardTcp({ port: 0 }, { netns: ns, port: WEB_PORT });
    forwarders.push(web);
    await Deno.writeTextFile(`${dir}/prometheus.yml`, config(instances, options.ruleFiles ?? []));
    const proc = child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        "prometheus",
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/data`,
        `--web.listen-address=127.0.0.1:${WEB_PORT}`,
        "--log.level=warn",
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    (async () => {
      for await (const chunk of proc.stderr.pipeThrough(new TextDecoderStream())) logText += chunk;
    })().catch(() => {});
    return {
      url: `http://127.0.0.1:${web.port}`,
      instances,
      log: () => logText,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
