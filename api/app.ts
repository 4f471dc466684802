/**
 * The admin HTTP API as a Hono app over the daemon state.
 *
 * `/healthz` and `/readyz` keep flannel's exact bodies, and like flannel answer any method;
 * the JSON API and `/metrics` answer GET (and HEAD) only. Handlers read the state and never
 * wait on I/O, so a scrape cannot stall the daemon.
 *
 * @example
 * ```ts
 * const app = createApp(state, createMetrics(state));
 * const res = await app.request("/v1/status");
 * ```
 *
 * @module
 */
import { type Context, Hono } from "hono";
import type { DaemonState } from "../state.ts";
import type { IPNet } from "../ip/mod.ts";
import { errorText, type Logger, logger } from "../log.ts";
import { EXPOSITION_CONTENT_TYPE, type Metrics } from "./metrics.ts";
import { ALIVE_TEXT, evaluateReadiness, readinessText } from "./readiness.ts";
import type { ErrorBody } from "./schemas.ts";
import {
  leaseHasSubnets,
  leaseWithin,
  parseSubnetParam,
  SubnetParamError,
} from "./subnet_param.ts";
import {
  backendView,
  leaseListView,
  leaseView,
  peersView,
  readinessView,
  statusView,
} from "./views.ts";

/** Options of {@link createApp}. */
export interface AppOptions {
  /** Where request failures are logged (default: the `api` component logger). */
  readonly log?: Logger;
  /**
   * When set, `/v1/*` and `/metrics` require `Authorization: Bearer <token>`; the probes stay
   * open so that kubelet needs no secret.
   */
  readonly token?: string;
}

/** `Authorization: Bearer <token>`, the scheme in any case, then one or more spaces. */
const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

/** Paths that answer GET and HEAD only (the probes answer any method, as flannel's do). */
const GET_ONLY_PATHS = [
  "/v1/status",
  "/v1/leases",
  "/v1/leases/:subnet{.+}",
  "/v1/backend",
  "/v1/peers",
  "/metrics",
];

function fail(c: Context, status: 400 | 401 | 404 | 405 | 500 | 503, error: string): Response {
  const body: ErrorBody = { error };
  return c.json(body, status);
}

/** Parse a subnet parameter, or produce the 400 response that explains why it is bad. */
function subnetParam(c: Context, text: string): IPNet[] | Response {
  try {
    return parseSubnetParam(text);
  } catch (err) {
    if (err instanceof SubnetParamError) return fail(c, 400, err.message);
    throw err;
  }
}

/** The lease under a key, or else the lease holding exactly these subnets. */
function findLease(state: DaemonState, text: string, nets: readonly IPNet[]) {
  const exact = state.leases.get(text);
  if (exact) return { key: text, lease: exact };
  for (const [key, lease] of state.leases) {
    if (leaseHasSubnets(lease, nets)) return { key, lease };
  }
  return undefined;
}

/** Whether two byte strings are equal, in a time that does not depend on where they differ. */
function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

/**
 * Build the admin app. `metrics` must have been created over the same state.
 */
export function createApp(state: DaemonState, metrics: Metrics, options: AppOptions = {}): Hono {
  const log = options.log ?? logger("api");
  const app = new Hono();

  app.all("/healthz", (c) => c.text(ALIVE_TEXT));

  const token = options.token;
  if (token) {
    const expected = new TextEncoder().encode(token);
    const guard = async (c: Context, next: () => Promise<void>) => {
      // The scheme name is case-insensitive (RFC 9110 §11.1); the token is not.
      const credentials = BEARER.exec(c.req.header("authorization") ?? "")?.[1] ?? "";
      const given = new TextEncoder().encode(credentials);
      // Constant-time comparison: the token must not leak through response timing.
      if (constantTimeEqual(given, expected)) return await next();
      c.header("www-authenticate", 'Bearer realm="tartan"');
      return fail(c, 401, "missing or wrong bearer token");
    };
    app.use("/v1/*", guard);
    app.use("/metrics", guard);
  }

  app.all("/readyz", (c) => {
    const readiness = evaluateReadiness(state);
    const status = readiness.ready ? 200 : 503;
    if (c.req.header("accept")?.includes("application/json")) {
      return c.json(readinessView(readiness), status);
    }
    return c.text(readinessText(readiness, c.req.query("verbose") !== undefined), status);
  });

  app.get("/v1/status", (c) => c.json(statusView(state, new Date())));

  app.get("/v1/leases", (c) => {
    const filters = c.req.queries("subnet") ?? [];
    if (filters.length > 1) return fail(c, 400, "subnet may be given at most once");
    if (filters.length === 0) return c.json(leaseListView(state, () => true, new Date()));
    const nets = subnetParam(c, filters[0]);
    if (nets instanceof Response) return nets;
    return c.json(leaseListView(state, (lease) => leaseWithin(lease, nets), new Date()));
  });

  app.get("/v1/leases/:subnet{.+}", (c) => {
    const text = c.req.param("subnet");
    const nets = subnetParam(c, text);
    if (nets instanceof Response) return nets;
    const found = findLease(state, text, nets);
    if (!found) return fail(c, 404, `no lease for subnet ${text}`);
    return c.json(leaseView(state, found.key, found.lease, new Date()));
  });

  app.get("/v1/backend", (c) => {
    const health = state.backend?.();
    if (!health) return fail(c, 503, "backend not registered yet");
    return c.json(backendView(health));
  });

  app.get("/v1/peers", (c) => {
    const problemsOnly = c.req.query("problems") !== undefined;
    return c.json(peersView(state.peerProbes?.(), problemsOnly));
  });

  app.get("/metrics", async (c) => {
    const text = await metrics.render();
    return c.body(text, 200, { "content-type": EXPOSITION_CONTENT_TYPE });
  });

  for (const path of GET_ONLY_PATHS) {
    app.all(path, (c) => {
      c.header("allow", "GET, HEAD");
      return fail(c, 405, `method ${c.req.method} not allowed; use GET`);
    });
  }

  app.notFound((c) => fail(c, 404, `no such endpoint: ${c.req.path.slice(0, 200)}`));
  app.onError((err, c) => {
    log.error("admin request failed", { path: c.req.path, error: errorText(err) });
    return fail(c, 500, errorText(err));
  });
  return app;
}
