/**
 * Serving the admin app over HTTP (`--healthz-ip`, `--healthz-port`).
 *
 * As in flannel, `--healthz-ip` defaults to `0.0.0.0` (config/flags.ts), so that
 * kubelet probes on the pod IP work under host networking, and `--healthz-port=0` (the default)
 * means no server at all: the caller does not call {@link serveAdmin} then. Because that
 * address faces the network, the server is the bounded one in `http1.ts` (request deadline, idle
 * timeout, connection cap), and `--admin-token-file` guards `/v1/*` and `/metrics`.
 *
 * @module
 */
import type { Hono } from "hono";
import { errorText, logger } from "../log.ts";
import { DEFAULT_HTTP1_LIMITS, type Http1Limits, serveHttp1 } from "./http1.ts";

/** How long in-flight requests may run after shutdown begins, as in flannel. */
export const DRAIN_MS = 3000;

/** How often at most a burst of refused connections is logged. */
const REFUSED_LOG_INTERVAL_MS = 60_000;

/** Raised when the admin address cannot be bound (flannel crashes here too). */
export class AdminBindError extends Error {
  constructor(readonly hostname: string, readonly port: number, cause: unknown) {
    super(
      `cannot serve the admin API on ${hostname}:${port}: ${errorText(cause)}`,
      { cause },
    );
    this.name = "AdminBindError";
  }
}

/**
 * The bearer token in `--admin-token-file` (surrounding whitespace trimmed).
 *
 * @throws {Error} naming the file when it cannot be read or holds no token: an empty file would
 * otherwise leave the API open although the operator asked for a token.
 */
export async function readAdminToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new Error(`--admin-token-file ${path}: cannot read: ${errorText(err)}`);
  }
  const token = text.trim();
  if (!token) throw new Error(`--admin-token-file ${path} is empty: put the bearer token in it`);
  return token;
}

/** Logs refused connections, at most once per {@link REFUSED_LOG_INTERVAL_MS}. */
function refusalLogger(limits: Http1Limits): () => void {
  const log = logger("api");
  let lastLogged = -Infinity;
  let unlogged = 0;
  return () => {
    unlogged++;
    if (performance.now() - lastLogged < REFUSED_LOG_INTERVAL_MS) return;
    log.warn("admin API connection refused: the connection cap is reached", {
      refused: unlogged,
      maxConnections: limits.maxConnections,
    });
    [lastLogged, unlogged] = [performance.now(), 0];
  };
}

/** Where to listen and when to stop. */
export interface ServeAdminOptions {
  readonly hostname: string;
  /** 0 picks an ephemeral port (tests); `--healthz-port=0` is handled by not serving. */
  readonly port: number;
  /** Aborting starts the graceful shutdown. */
  readonly signal: AbortSignal;
  /** Timeouts and caps; the defaults suit probes and Prometheus (tests shorten them). */
  readonly limits?: Http1Limits;
}

/** A running admin server. */
export interface AdminServer {
  /** The bound address (the real port when 0 was asked for). */
  readonly hostname: string;
  readonly port: number;
  /** Settles once the server has stopped (drained, or the drain time ran out). */
  readonly finished: Promise<void>;
}

/**
 * Serve the app until `signal` aborts, then drain for at most {@link DRAIN_MS}.
 *
 * @example
 * ```ts
 * const ctl = new AbortController();
 * const server = serveAdmin(app, { hostname: "127.0.0.1", port: 0, signal: ctl.signal });
 * await fetch(`http://127.0.0.1:${server.port}/healthz`);
 * ctl.abort();
 * await server.finished;
 * ```
 */
export function serveAdmin(app: Hono, options: ServeAdminOptions): AdminServer {
  const log = logger("api");
  const limits = options.limits ?? DEFAULT_HTTP1_LIMITS;
  let server: ReturnType<typeof serveHttp1>;
  try {
    server = serveHttp1(options, (request) => app.fetch(request), limits, refusalLogger(limits));
  } catch (err) {
    throw new AdminBindError(options.hostname, options.port, err);
  }
  const { hostname, port } = server.addr;

  const finished = new Promise<void>((resolve) => {
    const stop = async () => {
      if (!await server.shutdown(DRAIN_MS)) {
        log.warn("admin API drain timed out; abandoning open requests", { drainMs: DRAIN_MS });
      }
      resolve();
    };
    if (options.signal.aborted) stop();
    else options.signal.addEventListener("abort", stop, { once: true });
  });
  return { hostname, port, finished };
}
