/**
 * The admin server's bounds (api/http1.ts), over real loopback TCP: stalled and idle
 * connections are closed, connections over the cap are answered 503 and closed while /healthz
 * keeps answering once they are gone, and malformed requests get a clear status.
 */
import assert from "node:assert/strict";
import { createApp } from "../../api/app.ts";
import { DEFAULT_HTTP1_LIMITS, type Http1Limits } from "../../api/http1.ts";
import { createMetrics } from "../../api/metrics.ts";
import { serveAdmin } from "../../api/server.ts";
import { setLogSink } from "../../log.ts";
import { readyState } from "./fixture.ts";

setLogSink(() => {});

/** Upper bound on any single wait here, so a broken server fails the test instead of hanging. */
const GIVE_UP_MS = 30_000;

async function withAdmin(
  limits: Partial<Http1Limits>,
  body: (port: number) => Promise<void>,
): Promise<void> {
  const state = readyState();
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }));
  const ctl = new AbortController();
  const server = serveAdmin(app, {
    hostname: "127.0.0.1",
    port: 0,
    signal: ctl.signal,
    limits: { ...DEFAULT_HTTP1_LIMITS, ...limits },
  });
  try {
    await body(server.port);
  } finally {
    ctl.abort();
    await server.finished;
  }
}

async function connect(port: number, text = ""): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  if (text) await conn.write(new TextEncoder().encode(text));
  return conn;
}

/** Everything the server sends until it closes the connection (bounded by GIVE_UP_MS). */
async function readUntilClosed(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(4096);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const gaveUp = new Promise<"gave up">((r) => timer = setTimeout(() => r("gave up"), GIVE_UP_MS));
  try {
    while (true) {
      const n = await Promise.race([conn.read(buf), gaveUp]);
      if (n === "gave up") assert.fail("the server never closed the connection");
      if (n === null) break;
      chunks.push(buf.slice(0, n));
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.ConnectionReset)) throw err;
  } finally {
    clearTimeout(timer);
    conn.close();
  }
  return new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
}

/** Read one response (head + Content-Length body) from a kept-alive connection. */
async function readResponse(conn: Deno.Conn): Promise<{ head: string; body: string }> {
  let text = "";
  const buf = new Uint8Array(4096);
  for (let reads = 0; reads < 100; reads++) {
    const end = text.indexOf("\r\n\r\n");
    const length = Number(/content-length: (\d+)/i.exec(text)?.[1] ?? NaN);
    if (end >= 0 && text.length >= end + 4 + length) {
      return { head: text.slice(0, end), body: text.slice(end + 4, end + 4 + length) };
    }
    const n = await conn.read(buf);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  assert.fail(`no complete response: ${JSON.stringify(text)}`);
}

Deno.test("admin server: a half-sent request is closed at the request deadline", async () => {
  await withAdmin({ requestTimeoutMs: 200 }, async (port) => {
    const silent = await connect(port);
    const half = await connect(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    assert.equal(await readUntilClosed(half), "", "closed without an answer");
    assert.equal(await readUntilClosed(silent), "", "a silent connection too");
    // Trickling a byte at a time does not extend the deadline past its first byte.
    const trickle = await connect(port, "G");
    const closed = readUntilClosed(trickle);
    for (const ch of "ET /healthz HTTP/1.1\r\n") {
      try {
        await trickle.write(new TextEncoder().encode(ch));
      } catch {
        break; // closed under us: what we want
      }
    }
    assert.equal(await closed, "");
  });
});

Deno.test("admin server: keep-alive serves several requests, then closes when idle", async () => {
  await withAdmin({ idleTimeoutMs: 200 }, async (port) => {
    const conn = await connect(port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    const first = await readResponse(conn);
    assert.match(first.head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(first.body, "flanneld is running");
    // Two pipelined requests on the same connection, answered in order.
    await conn.write(
      new TextEncoder().encode(
        "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
      ),
    );
    const rest = await readUntilClosed(conn);
    const [ready, head] = rest.split(/(?<=flanneld is ready)/);
    assert.match(ready, /^HTTP\/1\.1 200 OK\r\n[^]*content-length: 17\r\n\r\nflanneld is ready$/);
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(head.endsWith("\r\n\r\n"), "HEAD has no body; then the idle connection is closed");
  });
});

Deno.test("admin server: Connection: close and HTTP/1.0 end the connection", async () => {
  await withAdmin({}, async (port) => {
    for (
      const request of [
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.0\r\n\r\n",
      ]
    ) {
      const answer = await readUntilClosed(await connect(port, request));
      assert.match(
        answer,
        /^HTTP\/1\.1 200 OK\r\n[^]*connection: close\r\n[^]*flanneld is running$/,
      );
    }
  });
});

Deno.test("admin server: malformed and oversized requests get a status and a close", async () => {
  await withAdmin({ maxHeadBytes: 1024, maxBodyBytes: 16 }, async (port) => {
    const cases: [string, RegExp][] = [
      ["NOT HTTP\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET http://x/healthz HTTP/1.1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["GET /healthz HTTP/1.1\r\nno colon\r\n\r\n", /^HTTP\/1\.1 400 /],
      [`GET /healthz HTTP/1.1\r\nX: ${"a".repeat(2000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
      ["POST /healthz HTTP/1.1\r\nContent-Length: 17\r\n\r\n", /^HTTP\/1\.1 413 /],
      ["POST /healthz HTTP/1.1\r\nContent-Length: -1\r\n\r\n", /^HTTP\/1\.1 400 /],
      ["POST /healthz HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", /^HTTP\/1\.1 501 /],
    ];
    for (const [request, status] of cases) {
      const answer = await readUntilClosed(await connect(port, request));
      assert.match(answer, status, JSON.stringify(request));
      assert.match(answer, /connection: close/, JSON.stringify(request));
    }
    // A body within the limit reaches the app (the probes answer any method).
    const post = await readUntilClosed(
      await connect(
        port,
        "POST /healthz HTTP/1.1\r\nContent-Length: 4\r\nConnection: close\r\n\r\nping",
      ),
    );
    assert.match(post, /^HTTP\/1\.1 200 OK\r\n[^]*flanneld is running$/);
    // A target of "//host/path" is a path, not another host.
    const other = await readUntilClosed(
      await connect(port, "GET //evil.example/healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
    );
    assert.match(other, /^HTTP\/1\.1 404 /);
  });
});

Deno.test("admin server: 300 half-sent requests hold at most the cap; /healthz answers after", async () => {
  const cap = DEFAULT_HTTP1_LIMITS.maxConnections;
  // A long deadline, so that only the cap (not a timeout) decides what happens here.
  await withAdmin({ requestTimeoutMs: 600_000 }, async (port) => {
    const held: Deno.TcpConn[] = [];
    try {
      for (let i = 0; i < cap; i++) held.push(await connect(port, "GET /healthz HTTP/1.1\r\n"));
      // The server accepts in order, so every connection after the first `cap` is over it.
      const over = await Promise.all(
        Array.from(
          { length: 300 - cap },
          async () => readUntilClosed(await connect(port, "GET /healthz HTTP/1.1\r\n")),
        ),
      );
      for (const answer of over) {
        assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable\r\n[^]*too many connections/);
      }
    } finally {
      for (const conn of held) conn.close();
    }
    // Once the stalled clients are gone, their slots free up and the probe answers again.
    let status = 0;
    for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
      const answer = await readUntilClosed(
        await connect(port, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
      );
      status = Number(/^HTTP\/1\.1 (\d+)/.exec(answer)?.[1]);
    }
    assert.equal(status, 200);
  });
});

Deno.test("admin server: shutdown closes idle kept-alive connections at once", async () => {
  const state = readyState();
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }));
  const ctl = new AbortController();
  const server = serveAdmin(app, { hostname: "127.0.0.1", port: 0, signal: ctl.signal });
  const conn = await connect(server.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  assert.equal((await readResponse(conn)).body, "flanneld is running");
  ctl.abort();
  await server.finished;
  assert.equal(await readUntilClosed(conn), "");
});
