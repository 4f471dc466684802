/**
 * A Kubernetes watch stream over Deno's own `fetch`: GET `<url>?watch=true&…`, then one JSON
 * event per line of the chunked body, ended (to be resumed) when it stays silent too long.
 *
 * @module
 */
import { isRecord, member, parseJsonOrUndefined, stringOr } from "../json.ts";

/** One event of a watch stream, as the API sends it. */
export interface WatchEvent {
  /** `ADDED`, `MODIFIED`, `DELETED`, `BOOKMARK` or `ERROR`. */
  readonly type: string;
  readonly object: unknown;
}

/** A watch the server refused or that broke; `status` is the HTTP status when there was one. */
export class WatchStreamError extends Error {
  constructor(readonly status: number | undefined, message: string) {
    super(message);
    this.name = "WatchStreamError";
  }
}

/** What {@link watchStream} opens. */
export interface WatchRequest {
  /** The collection, e.g. `https://10.96.0.1/api/v1/nodes`. */
  readonly url: string;
  /** Query parameters besides `watch=true` (resourceVersion, …). */
  readonly params: Readonly<Record<string, string>>;
  readonly headers: Readonly<Record<string, string>>;
  /** Carries the TLS settings, when there are any. */
  readonly client?: Deno.HttpClient;
  /**
   * End the stream (normally, to be resumed) after this long without a byte: catches dead
   * connections. Default 90 s, above the API server's once-a-minute bookmarks.
   */
  readonly idleMs?: number;
}

/** The `message` of a Kubernetes Status body (JSON text or parsed), when it has one. */
export function statusMessage(body: unknown): string | undefined {
  const parsed = typeof body === "string" ? parseJsonOrUndefined(body) : body;
  return stringOr(member(parsed, "message"));
}

/**
 * Watch `request.url` until the server ends the stream, it goes idle, or `signal` aborts — all
 * of which simply end the iteration.
 *
 * @throws {WatchStreamError} when the server refuses the watch (with its HTTP status, e.g. 410)
 *   or the stream breaks or carries a line that is not a watch event.
 * @example
 * ```ts
 * const request = { url: `${server}/api/v1/nodes`, params: { resourceVersion: "42" }, headers: {} };
 * for await (const event of watchStream(request, signal)) console.log(event.type);
 * ```
 */
export async function* watchStream(
  request: WatchRequest,
  signal: AbortSignal,
): AsyncGenerator<WatchEvent> {
  const url = new URL(request.url);
  url.searchParams.set("watch", "true");
  for (const [name, value] of Object.entries(request.params)) url.searchParams.set(name, value);
  const path = url.pathname;
  const idleMs = request.idleMs ?? 90_000;
  const idle = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const stillAlive = () => {
    clearTimeout(timer);
    timer = setTimeout(() => idle.abort(), idleMs);
  };
  const { headers, client } = request;
  const stop = AbortSignal.any([signal, idle.signal]);
  let reader: ReadableStreamDefaultReader<string> | undefined;
  try {
    stillAlive();
    const res = await fetch(url, { headers, signal: stop, ...(client && { client }) });
    if (!res.ok) {
      const body = await res.text().catch(() => "");
      const detail = statusMessage(body) ?? res.statusText;
      throw new WatchStreamError(res.status, `watch ${path}: HTTP ${res.status} ${detail}`);
    }
    reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let pending = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      stillAlive();
      pending += value;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        if (line.trim() === "") continue;
        const event = parseJsonOrUndefined(line);
        if (!isRecord(event) || typeof event.type !== "string") {
          throw new WatchStreamError(
            undefined,
            `watch ${path}: not an event: ${line.slice(0, 80)}`,
          );
        }
        yield { type: event.type, object: event.object };
      }
    }
  } catch (error) {
    if (stop.aborted) return; // our caller stopped, or the connection went silent: resume
    if (error instanceof WatchStreamError) throw error;
    throw new WatchStreamError(undefined, `watch ${path}: ${(error as Error)?.message ?? error}`);
  } finally {
    clearTimeout(timer);
    idle.abort();
    await reader?.cancel().catch(() => {});
  }
}
