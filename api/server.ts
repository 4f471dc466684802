/**
 * Serving the admin app over HTTP (`--healthz-ip`, `--healthz-port`).
 *
 * Flannel binds `0.0.0.0` by default; Tartan keeps the flag names but defaults the address to
 * `127.0.0.1` ({@link DEFAULT_ADMIN_HOSTNAME}) because `/v1/*` and `/metrics` say more about
 * the cluster than flannel's two probes. As in flannel, `--healthz-port=0` (the default)
 * means no server at all: the caller does not call {@link serveAdmin} then.
 *
 * @module
 */
import type { Hono } from "hono";
import { errorText, logger } from "../log.ts";

/** Tartan's default for `--healthz-ip` (flannel: `0.0.0.0`). */
export const DEFAULT_ADMIN_HOSTNAME = "127.0.0.1";

/** How long in-flight requests may run after shutdown begins, as in flannel. */
export const DRAIN_MS = 3000;

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

/** Where to listen and when to stop. */
export interface ServeAdminOptions {
  readonly hostname: string;
  /** 0 picks an ephemeral port (tests); `--healthz-port=0` is handled by not serving. */
  readonly port: number;
  /** Aborting starts the graceful shutdown. */
  readonly signal: AbortSignal;
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
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname: options.hostname, port: options.port, onListen: () => {} },
      app.fetch,
    );
  } catch (err) {
    throw new AdminBindError(options.hostname, options.port, err);
  }
  const { hostname, port } = server.addr;
  log.info("admin API listening", { address: `${hostname}:${port}` });

  const finished = new Promise<void>((resolve) => {
    const stop = async () => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = await Promise.race([
        server.shutdown().then(() => true),
        new Promise<boolean>((done) => timer = setTimeout(() => done(false), DRAIN_MS)),
      ]);
      clearTimeout(timer);
      if (!drained) {
        log.warn("admin API drain timed out; abandoning open requests", { drainMs: DRAIN_MS });
        server.unref();
      }
      resolve();
    };
    if (options.signal.aborted) stop();
    else options.signal.addEventListener("abort", stop, { once: true });
  });
  return { hostname, port, finished };
}
