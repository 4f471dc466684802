/**
 * A small HTTP/1.1 server for the admin API. `Deno.serve` has no header-read timeout, no idle
 * timeout and no connection cap: a client that sends half a request holds its connection, and
 * one of the daemon's file descriptors, forever, and a few hundred of them exhaust the files of a
 * process that must keep talking netlink and etcd. This server reads each request head and body
 * against a deadline, closes kept-alive connections that stay idle, refuses connections beyond a
 * cap, and bounds head and body sizes. Requests on one connection are handled one after another;
 * responses are buffered and sent with a Content-Length (the admin API's bodies are small).
 *
 * @module
 */

/** The bounds one server enforces. */
export interface Http1Limits {
  /** A request head and body must arrive within this long of its first byte (or the accept). */
  readonly requestTimeoutMs: number;
  /** A kept-alive connection with no new request for this long is closed. */
  readonly idleTimeoutMs: number;
  /** Connections beyond this many open ones are answered 503 and closed at once. */
  readonly maxConnections: number;
  readonly maxHeadBytes: number;
  readonly maxBodyBytes: number;
}

/** Generous for probes, Prometheus and `tartan status`; tight enough that stalls cost little. */
export const DEFAULT_HTTP1_LIMITS: Http1Limits = {
  requestTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxConnections: 64,
  maxHeadBytes: 16 * 1024,
  maxBodyBytes: 64 * 1024,
};

/** A running server. */
export interface Http1Server {
  readonly addr: Deno.NetAddr;
  /**
   * Stop accepting, close idle connections, let in-flight requests finish for at most
   * `drainMs`, then close everything. Resolves true when everything finished in time.
   */
  shutdown(drainMs: number): Promise<boolean>;
}

/** Serves one request. A thrown error becomes a 500. */
export type Http1Handler = (request: Request) => Response | Promise<Response>;

/** A request the server answers itself and then closes the connection. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const REASONS: Readonly<Record<number, string>> = {
  200: "OK",
  400: "Bad Request",
  401: "Unauthorized",
  404: "Not Found",
  405: "Method Not Allowed",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  501: "Not Implemented",
  503: "Service Unavailable",
};

const HEAD_END = new Uint8Array([13, 10, 13, 10]);
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\/\S*) HTTP\/1\.([01])$/;
const HEADER_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*(.*?)[ \t]*$/;
/** Response headers the server sets itself from the buffered body and the connection state. */
const FRAMING_HEADERS = new Set([
  "content-length",
  "transfer-encoding",
  "connection",
  "keep-alive",
]);
const latin1 = new TextDecoder("latin1");
const encoder = new TextEncoder();

/** Closes the connection when the deadline passes; a pending read or write then fails. */
class Deadline {
  #timer: ReturnType<typeof setTimeout> | undefined;
  constructor(private readonly conn: Deno.Conn) {}
  arm(ms: number): void {
    this.disarm();
    this.#timer = setTimeout(() => closeQuietly(this.conn), ms);
  }
  disarm(): void {
    clearTimeout(this.#timer);
  }
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // already closed
  }
}

/** Bytes read from a connection and not consumed yet. */
class Buffered {
  #bytes: Uint8Array<ArrayBuffer> = new Uint8Array(0);
  readonly #chunk = new Uint8Array(16 * 1024);
  constructor(private readonly conn: Deno.Conn) {}
  get length(): number {
    return this.#bytes.length;
  }
  /** Read more; false at end of stream. */
  async fill(): Promise<boolean> {
    const n = await this.conn.read(this.#chunk);
    if (n === null) return false;
    const joined = new Uint8Array(this.#bytes.length + n);
    joined.set(this.#bytes);
    joined.set(this.#chunk.subarray(0, n), this.#bytes.length);
    this.#bytes = joined;
    return true;
  }
  indexOf(needle: Uint8Array, from: number): number {
    outer: for (let i = Math.max(0, from); i + needle.length <= this.#bytes.length; i++) {
      for (let j = 0; j < needle.length; j++) {
        if (this.#bytes[i + j] !== needle[j]) continue outer;
      }
      return i;
    }
    return -1;
  }
  take(n: number): Uint8Array<ArrayBuffer> {
    const taken = this.#bytes.slice(0, n);
    this.#bytes = this.#bytes.slice(n);
    return taken;
  }
}

/** A parsed request head. */
interface Head {
  readonly method: string;
  readonly target: string;
  readonly minor: number;
  readonly headers: Headers;
}

/**
 * Read one request head. Undefined when the peer closed before sending anything; `started` is
 * called when the first byte of a new request arrives.
 */
async function readHead(
  input: Buffered,
  limits: Http1Limits,
  started: () => void,
): Promise<Head | undefined> {
  if (input.length > 0) started();
  let end = input.indexOf(HEAD_END, 0);
  while (end < 0) {
    if (input.length > limits.maxHeadBytes) throw new HttpError(431, "request head too large");
    const before = input.length;
    if (!await input.fill()) {
      if (before === 0) return undefined;
      throw new HttpError(400, "connection closed inside the request head");
    }
    if (before === 0) started();
    end = input.indexOf(HEAD_END, before - 3);
  }
  if (end > limits.maxHeadBytes) throw new HttpError(431, "request head too large");
  const lines = latin1.decode(input.take(end + HEAD_END.length)).slice(0, -4).split("\r\n");
  const request = REQUEST_LINE.exec(lines[0]);
  if (!request) throw new HttpError(400, "malformed request line");
  const headers = new Headers();
  for (const line of lines.slice(1)) {
    const header = HEADER_LINE.exec(line);
    if (!header) throw new HttpError(400, "malformed header line");
    try {
      headers.append(header[1], header[2]);
    } catch {
      throw new HttpError(400, `malformed value of header ${header[1]}`);
    }
  }
  return { method: request[1], target: request[2], minor: Number(request[3]), headers };
}

async function readBody(
  input: Buffered,
  head: Head,
  limits: Http1Limits,
): Promise<Uint8Array<ArrayBuffer>> {
  if (head.headers.has("transfer-encoding")) {
    throw new HttpError(501, "Transfer-Encoding in requests is not supported; send Content-Length");
  }
  const lengthText = head.headers.get("content-length") ?? "0";
  if (!/^[0-9]{1,15}$/.test(lengthText)) throw new HttpError(400, "malformed Content-Length");
  const length = Number(lengthText);
  if (length > limits.maxBodyBytes) throw new HttpError(413, "request body too large");
  while (input.length < length) {
    if (!await input.fill()) throw new HttpError(400, "connection closed inside the body");
  }
  return input.take(length);
}

function keepAlive(head: Head): boolean {
  const tokens = (head.headers.get("connection") ?? "").toLowerCase().split(/\s*,\s*/);
  return head.minor === 1 ? !tokens.includes("close") : tokens.includes("keep-alive");
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let done = 0; done < bytes.length;) done += await conn.write(bytes.subarray(done));
}

/** The response as bytes: status line, headers, Content-Length, body (none for HEAD). */
async function encodeResponse(response: Response, close: boolean, head: boolean) {
  const body = new Uint8Array(await response.arrayBuffer());
  const reason = response.statusText || REASONS[response.status] || "Status";
  const lines = [`HTTP/1.1 ${response.status} ${reason}`];
  for (const [name, value] of response.headers) {
    if (!FRAMING_HEADERS.has(name)) lines.push(`${name}: ${value}`);
  }
  lines.push(`content-length: ${body.length}`);
  if (close) lines.push("connection: close");
  const headBytes = encoder.encode(lines.join("\r\n") + "\r\n\r\n");
  if (head) return headBytes;
  const all = new Uint8Array(headBytes.length + body.length);
  all.set(headBytes);
  all.set(body, headBytes.length);
  return all;
}

function plain(status: number, text: string): Response {
  return new Response(`${text}\n`, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8" },
  });
}

/** One open connection and whether a request on it is being handled. */
interface Connection {
  readonly conn: Deno.Conn;
  busy: boolean;
}

/**
 * Listen on `hostname:port` and serve `handler` within `limits`.
 *
 * @throws {Deno.errors.AddrInUse} and the other errors of `Deno.listen`.
 */
export function serveHttp1(
  address: { readonly hostname: string; readonly port: number },
  handler: Http1Handler,
  limits: Http1Limits = DEFAULT_HTTP1_LIMITS,
  onRefused: () => void = () => {},
): Http1Server {
  const listener = Deno.listen({ hostname: address.hostname, port: address.port });
  /** Open connections and the promise that settles when each is closed. */
  const open = new Map<Connection, Promise<void>>();
  let closing = false;

  async function serveConnection(connection: Connection): Promise<void> {
    const { conn } = connection;
    const deadline = new Deadline(conn);
    const input = new Buffered(conn);
    try {
      deadline.arm(limits.requestTimeoutMs);
      while (!closing) {
        let head: Head | undefined;
        let response: Response;
        let close: boolean;
        try {
          head = await readHead(input, limits, () => deadline.arm(limits.requestTimeoutMs));
          if (!head) return;
          const body = await readBody(input, head, limits);
          deadline.disarm();
          connection.busy = true;
          close = closing || !keepAlive(head);
          response = await respond(handler, head, body);
        } catch (err) {
          if (!(err instanceof HttpError)) return; // reset, or closed by the deadline
          [response, close] = [plain(err.status, err.message), true];
        }
        // A client that does not read its answer is cut off like one that does not write.
        deadline.arm(limits.requestTimeoutMs);
        await writeAll(conn, await encodeResponse(response, close, head?.method === "HEAD"));
        connection.busy = false;
        if (close || closing) return;
        deadline.arm(limits.idleTimeoutMs);
      }
    } catch {
      // the peer went away, or a deadline closed the connection under a read or write
    } finally {
      deadline.disarm();
      closeQuietly(conn);
    }
  }

  async function refuse(conn: Deno.Conn): Promise<void> {
    onRefused();
    const deadline = new Deadline(conn);
    deadline.arm(limits.requestTimeoutMs);
    try {
      const response = plain(503, "too many connections to the admin API");
      await writeAll(conn, await encodeResponse(response, true, false));
    } catch {
      // the peer does not care
    } finally {
      deadline.disarm();
      closeQuietly(conn);
    }
  }

  const accepting = (async () => {
    try {
      for await (const conn of listener) {
        if (closing) {
          closeQuietly(conn);
          continue;
        }
        if (open.size >= limits.maxConnections) {
          refuse(conn);
          continue;
        }
        conn.setNoDelay(true);
        const connection: Connection = { conn, busy: false };
        open.set(connection, serveConnection(connection).finally(() => open.delete(connection)));
      }
    } catch {
      // the listener was closed
    }
  })();

  return {
    addr: listener.addr as Deno.NetAddr,
    async shutdown(drainMs: number): Promise<boolean> {
      closing = true;
      try {
        listener.close();
      } catch {
        // already closed
      }
      await accepting;
      for (const connection of open.keys()) if (!connection.busy) closeQuietly(connection.conn);
      let timer: ReturnType<typeof setTimeout> | undefined;
      const drained = await Promise.race([
        Promise.all(open.values()).then(() => true),
        new Promise<boolean>((done) => timer = setTimeout(() => done(false), drainMs)),
      ]);
      clearTimeout(timer);
      for (const connection of open.keys()) closeQuietly(connection.conn);
      return drained;
    },
  };
}

async function respond(
  handler: Http1Handler,
  head: Head,
  body: Uint8Array<ArrayBuffer>,
): Promise<Response> {
  let request: Request;
  try {
    const hasBody = body.length > 0 && head.method !== "GET" && head.method !== "HEAD";
    // Concatenated, not resolved: a target of "//host/x" stays a path.
    request = new Request(`http://admin${head.target}`, {
      method: head.method,
      headers: head.headers,
      ...(hasBody && { body }),
    });
  } catch {
    return plain(400, "malformed request");
  }
  try {
    return await handler(request);
  } catch {
    return plain(500, "internal error");
  }
}
