/**
 * Whether this node reaches its etcd: a TCP connection to each endpoint the daemon would use
 * (its `--etcd-endpoints`, or `FLANNELD_ETCD_ENDPOINTS`, or flannel's default). A connection is
 * enough: TLS and authentication failures show up in the daemon's own readiness instead.
 *
 * @module
 */
import type { CheckResult } from "./finding.ts";

/** How long one endpoint may take to accept a connection. */
const CONNECT_TIMEOUT_MS = 2000;

/** Connect to `endpoint` (a URL); undefined when it accepts, else why not. */
async function connectError(endpoint: string): Promise<string | undefined> {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return "not a URL";
  }
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<string>((resolve) => {
    timer = setTimeout(
      () => resolve(`no answer within ${CONNECT_TIMEOUT_MS} ms`),
      CONNECT_TIMEOUT_MS,
    );
  });
  const attempt = Deno.connect({ hostname, port }).then(
    (conn) => (conn.close(), undefined),
    (err: Error) => err.message,
  );
  try {
    return await Promise.race([attempt, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The etcd reachability check over `endpoints`. */
export async function etcdReachabilityCheck(endpoints: readonly string[]): Promise<CheckResult> {
  const errors = await Promise.all(endpoints.map(connectError));
  if (errors.some((error) => error === undefined)) return { check: "datastore", findings: [] };
  const evidence = Object.fromEntries(endpoints.map((endpoint, i) => [endpoint, errors[i]!]));
  return {
    check: "datastore",
    findings: [{
      check: "datastore",
      title: `no etcd endpoint is reachable (${endpoints.join(", ")})`,
      detail: "The daemon can neither renew its lease nor see other nodes join or leave; " +
        "when the lease expires other nodes drop their routes to this one.",
      evidence,
      fix: "Check that etcd runs and that this node may reach it (firewall, DNS, " +
        "--etcd-endpoints); pass the daemon's --etcd-endpoints to tartan doctor too.",
    }],
  };
}
