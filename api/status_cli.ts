/**
 * `tartan status`: fetch a node's admin API and print its lease, backend health and peers.
 *
 * The address comes from, in order: `--url`, `--healthz-ip`/`--healthz-port` (the daemon's own
 * flags), `TARTAN_ADMIN_URL`, `FLANNELD_HEALTHZ_IP`/`FLANNELD_HEALTHZ_PORT` (the daemon's
 * environment). A wildcard bind address (`0.0.0.0`, `::`) is reached over loopback.
 *
 * Exit status: 0 printed, 1 the API could not be reached or answered nonsense, 2 bad usage.
 *
 * @module
 */
import type { z } from "zod";
import {
  BackendSchema,
  ErrorSchema,
  type LeaseListBody,
  LeaseListSchema,
  type PeersBody,
  PeersSchema,
  type StatusBody,
  StatusSchema,
} from "./schemas.ts";
import { errorText } from "../log.ts";
import { readAdminToken } from "./server.ts";
import { renderStatus, type StatusReport } from "./status_render.ts";

/** How long each request may take before the daemon counts as unreachable. */
const REQUEST_TIMEOUT_MS = 5000;

export const STATUS_USAGE =
  "tartan status [--url http://127.0.0.1:PORT | --healthz-ip IP --healthz-port PORT] " +
  "[--admin-token-file FILE] [--json]";

/**
 * Where `tartan status` (and `tartan doctor`) writes and what environment it sees (tests
 * substitute these).
 */
export interface StatusIO {
  out(text: string): void;
  err(text: string): void;
  env(name: string): string | undefined;
}

/** The console and the process environment. */
export const CONSOLE_IO: StatusIO = {
  out: (text) => console.log(text),
  err: (text) => console.error(text),
  env: (name) => Deno.env.get(name),
};

/** Raised for arguments `tartan status` cannot use. */
export class StatusUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StatusUsageError";
  }
}

/** Raised when the admin API cannot be reached or its answer does not parse. */
export class AdminUnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AdminUnreachableError";
  }
}

/** Parsed `tartan status` arguments. */
export interface StatusArgs {
  /** Base URL without trailing slash. */
  readonly url: string;
  readonly json: boolean;
  /** The daemon's `--admin-token-file`, when it requires a bearer token. */
  readonly tokenFile?: string;
}

/** The flags that say where the admin API is (shared with `tartan doctor`). */
export const ADMIN_FLAGS = ["url", "healthz-ip", "healthz-port", "admin-token-file"] as const;

/** Go-flag style: `-x`/`--x`, `--x=v` or `--x v`; `--json` is a boolean. */
export function readFlags(
  args: readonly string[],
  valueFlags: ReadonlySet<string> = new Set(ADMIN_FLAGS),
): Map<string, string> {
  const flags = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const match = /^--?([a-z-]+)(?:=(.*))?$/s.exec(args[i]);
    if (!match) throw new StatusUsageError(`unexpected argument ${JSON.stringify(args[i])}`);
    const [, name, inline] = match;
    if (name === "json") {
      if (inline !== undefined && inline !== "true" && inline !== "false") {
        throw new StatusUsageError(`invalid boolean value ${JSON.stringify(inline)} for --json`);
      }
      flags.set(name, inline ?? "true");
    } else if (valueFlags.has(name)) {
      const value = inline ?? args[++i];
      if (value === undefined) throw new StatusUsageError(`flag needs an argument: --${name}`);
      flags.set(name, value);
    } else {
      throw new StatusUsageError(`unknown flag --${name}`);
    }
  }
  return flags;
}

function urlFromBind(ip: string | undefined, portText: string, source: string): string {
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port < 1 || port > 65535) {
    throw new StatusUsageError(`${source}: invalid port ${JSON.stringify(portText)}`);
  }
  // The daemon binds every address by default (flannel's 0.0.0.0): loopback reaches it.
  let host = ip || "127.0.0.1";
  if (host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::" || host === "[::]") host = "::1";
  if (host.includes(":") && !host.startsWith("[")) host = `[${host}]`;
  return `http://${host}:${port}`;
}

function checkedUrl(text: string, source: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new StatusUsageError(`${source}: invalid URL ${JSON.stringify(text)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new StatusUsageError(`${source}: URL must be http or https, got ${url.protocol}`);
  }
  return url.href.replace(/\/+$/, "");
}

/**
 * The admin API's base URL from parsed flags and the environment (see the module doc for the
 * order); undefined when nothing names it.
 */
export function adminUrlFrom(
  flags: ReadonlyMap<string, string>,
  env: (name: string) => string | undefined,
): string | undefined {
  const url = flags.get("url");
  if (url !== undefined) return checkedUrl(url, "--url");
  const port = flags.get("healthz-port");
  if (port !== undefined) return urlFromBind(flags.get("healthz-ip"), port, "--healthz-port");
  if (flags.has("healthz-ip")) throw new StatusUsageError("--healthz-ip needs --healthz-port");
  const envUrl = env("TARTAN_ADMIN_URL");
  if (envUrl) return checkedUrl(envUrl, "TARTAN_ADMIN_URL");
  const envPort = env("FLANNELD_HEALTHZ_PORT");
  if (envPort && envPort !== "0") {
    return urlFromBind(env("FLANNELD_HEALTHZ_IP"), envPort, "FLANNELD_HEALTHZ_PORT");
  }
  return undefined;
}

/** The daemon's `--admin-token-file`, from the flags or the daemon's environment. */
export function tokenFileFrom(
  flags: ReadonlyMap<string, string>,
  env: (name: string) => string | undefined,
): string | undefined {
  return flags.get("admin-token-file") || env("FLANNELD_ADMIN_TOKEN_FILE") || undefined;
}

/** Parse the arguments and resolve the admin API's base URL. */
export function parseStatusArgs(
  args: readonly string[],
  env: (name: string) => string | undefined,
): StatusArgs {
  const flags = readFlags(args);
  const url = adminUrlFrom(flags, env);
  if (url === undefined) {
    throw new StatusUsageError(
      "admin API address unknown: pass --url or --healthz-port, or set TARTAN_ADMIN_URL " +
        "(the daemon serves it only when started with --healthz-port)",
    );
  }
  return { url, json: flags.get("json") === "true", tokenFile: tokenFileFrom(flags, env) };
}

/** fetch wraps the useful text ("Connection refused") in causes of a generic TypeError. */
function deepestMessage(err: unknown): string {
  let message = String(err);
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    message = e.message;
  }
  return message;
}

/** A parsed body, or the API's explanation of a 503. */
type Fetched<T> = { readonly body: T } | { readonly unavailable: string };

/** GET one endpoint and parse its body with the schema. */
async function getJson<T extends z.ZodType>(
  base: string,
  path: string,
  schema: T,
  token: string | undefined,
): Promise<Fetched<z.infer<T>>> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), REQUEST_TIMEOUT_MS);
  try {
    let response: Response;
    try {
      response = await fetch(`${base}${path}`, {
        headers: {
          accept: "application/json",
          ...(token && { authorization: `Bearer ${token}` }),
        },
        signal: abort.signal,
      });
    } catch (err) {
      const reason = abort.signal.aborted
        ? `no answer within ${REQUEST_TIMEOUT_MS / 1000}s`
        : deepestMessage(err);
      throw new AdminUnreachableError(`cannot reach the tartan admin API at ${base}: ${reason}`);
    }
    const text = await response.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    const error = ErrorSchema.safeParse(body);
    if (response.status === 503 && error.success) return { unavailable: error.data.error };
    if (!response.ok) {
      const detail = error.success ? error.data.error : text.slice(0, 200);
      throw new AdminUnreachableError(`${base}${path} answered ${response.status}: ${detail}`);
    }
    const parsed = schema.safeParse(body);
    if (!parsed.success) {
      throw new AdminUnreachableError(
        `${base}${path} is not a tartan admin API answer: ${parsed.error.issues[0]?.message}`,
      );
    }
    return { body: parsed.data };
  } finally {
    clearTimeout(timer);
  }
}

function required<T>(fetched: Fetched<T>, path: string): T {
  if ("unavailable" in fetched) {
    throw new AdminUnreachableError(`${path} unavailable: ${fetched.unavailable}`);
  }
  return fetched.body;
}

/**
 * `/v1/peers` (with `problemsOnly`, `/v1/peers?problems`: only peers with a problem verdict), or
 * null from a daemon that predates it.
 */
export async function fetchPeers(
  base: string,
  token: string | undefined,
  problemsOnly = false,
): Promise<PeersBody | null> {
  try {
    const path = problemsOnly ? "/v1/peers?problems" : "/v1/peers";
    const peers = await getJson(base, path, PeersSchema, token);
    return "unavailable" in peers ? null : peers.body;
  } catch (err) {
    if (err instanceof AdminUnreachableError && / answered 404:/.test(err.message)) return null;
    throw err;
  }
}

/**
 * Wait for every request, then fail with the first failure in argument order (not in time), so
 * that an error names the same endpoint every time.
 */
async function allInOrder<T extends readonly unknown[]>(
  requests: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const settled = await Promise.allSettled(requests);
  for (const result of settled) if (result.status === "rejected") throw result.reason;
  return settled.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T;
}

/** `/v1/status` and `/v1/leases` from the admin API at `base`. */
export async function fetchStatusAndLeases(
  base: string,
  token: string | undefined,
): Promise<{ status: StatusBody; leases: LeaseListBody }> {
  const [status, leases] = await allInOrder([
    getJson(base, "/v1/status", StatusSchema, token),
    getJson(base, "/v1/leases", LeaseListSchema, token),
  ]);
  return { status: required(status, "/v1/status"), leases: required(leases, "/v1/leases") };
}

/** Fetch status, backend, leases and peer probes from the admin API at `base`. */
export async function fetchStatusReport(base: string, token?: string): Promise<StatusReport> {
  const [{ status, leases }, backend, peers] = await allInOrder([
    fetchStatusAndLeases(base, token),
    getJson(base, "/v1/backend", BackendSchema, token),
    fetchPeers(base, token),
  ]);
  return { status, backend: "unavailable" in backend ? null : backend.body, leases, peers };
}

/**
 * Run `tartan status`; resolves to the exit status.
 *
 * @example
 * ```ts
 * Deno.exit(await statusCommand(["--url", "http://127.0.0.1:8081"]));
 * ```
 */
export async function statusCommand(
  args: string[],
  io: StatusIO = CONSOLE_IO,
): Promise<number> {
  let parsed: StatusArgs;
  try {
    parsed = parseStatusArgs(args, io.env);
  } catch (err) {
    if (!(err instanceof StatusUsageError)) throw err;
    io.err(`tartan status: ${err.message}\nusage: ${STATUS_USAGE}`);
    return 2;
  }
  let token: string | undefined;
  try {
    token = parsed.tokenFile ? await readAdminToken(parsed.tokenFile) : undefined;
  } catch (err) {
    io.err(`tartan status: ${errorText(err)}`);
    return 1;
  }
  try {
    const report = await fetchStatusReport(parsed.url, token);
    io.out(parsed.json ? JSON.stringify(report, null, 2) : renderStatus(report));
    return 0;
  } catch (err) {
    if (!(err instanceof AdminUnreachableError)) throw err;
    io.err(`tartan status: ${err.message}`);
    return 1;
  }
}
