/**
 * The client's transport against a scripted gateway on loopback, for what a healthy etcd never
 * does: garbled answers and streams, a server that goes silent, a refused token, a proxy's
 * error page. (Against a real etcd: tests/subnet/etcd_security_test.ts and the manager tests.)
 */
import assert from "node:assert/strict";
import { EtcdClient } from "../../etcd/client.ts";
import { EtcdError, GrpcCode } from "../../etcd/errors.ts";
import { EtcdDecodeError } from "../../etcd/codec.ts";
import { listWatch, type WatchFailure } from "../../subnet/etcd_watch.ts";
import { waitFor } from "../helpers/leases.ts";

type Handler = (
  path: string,
  body: Record<string, unknown>,
  req: Request,
) => Response | Promise<Response>;

/** A loopback HTTP server answering every POST with `handler`. */
function fakeGateway(handler: Handler): Deno.HttpServer<Deno.NetAddr> & { endpoint: string } {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = JSON.parse(await req.text() || "{}");
    return handler(new URL(req.url).pathname, body, req);
  });
  return Object.assign(server, { endpoint: `http://127.0.0.1:${server.addr.port}` });
}

const json = (value: unknown, status = 200) =>
  new Response(JSON.stringify(value), { status, headers: { "content-type": "application/json" } });

/** A streamed response: `lines` now, then the stream stays open until the request ends. */
function stream(req: Request, lines: string[]): Response {
  const encoder = new TextEncoder();
  return new Response(
    new ReadableStream({
      start(controller) {
        for (const line of lines) controller.enqueue(encoder.encode(line + "\n"));
        req.signal.addEventListener("abort", () => controller.close());
      },
    }),
  );
}

const header = (revision: number) => ({ header: { revision: String(revision) } });
const result = (value: unknown) => JSON.stringify({ result: value });

Deno.test("client: a non-JSON answer is a decode error; a proxy's error page moves to the next endpoint", async () => {
  await using garbled = fakeGateway(() => new Response("<html>hi</html>"));
  await using proxy = fakeGateway(() => new Response("Bad Gateway", { status: 502 }));
  await using good = fakeGateway(() => json({ ...header(4), kvs: [] }));
  const client = new EtcdClient({ endpoints: [garbled.endpoint] });
  try {
    await assert.rejects(client.range({ key: "a" }), EtcdDecodeError);
  } finally {
    client.close();
  }
  const failover = new EtcdClient({ endpoints: [proxy.endpoint, good.endpoint] });
  try {
    assert.equal((await failover.range({ key: "a" })).revision, 4);
  } finally {
    failover.close();
  }
  const onlyProxy = new EtcdClient({ endpoints: [proxy.endpoint] });
  try {
    await assert.rejects(
      onlyProxy.range({ key: "a" }),
      (error: EtcdError) => error.code === GrpcCode.UNAVAILABLE && /HTTP 502/.test(error.message),
    );
  } finally {
    onlyProxy.close();
  }
});

Deno.test("client: a refused token is renewed once, then the request succeeds", async () => {
  let tokens = 0;
  const seen: string[] = [];
  await using server = fakeGateway((path, body, req) => {
    if (path === "/v3/auth/authenticate") {
      assert.deepEqual(body, { name: "root", password: "pw" });
      return json({ ...header(1), token: `token-${++tokens}` });
    }
    seen.push(req.headers.get("authorization") ?? "");
    // The first token "expires" at once.
    if (req.headers.get("authorization") === "token-1") {
      return json({ error: "etcdserver: invalid auth token", code: 16 }, 401);
    }
    return json(header(2));
  });
  const client = new EtcdClient({ endpoints: [server.endpoint], username: "root", password: "pw" });
  try {
    await client.put({ key: "a", value: "b" });
    await client.put({ key: "a", value: "c" });
  } finally {
    client.close();
  }
  assert.deepEqual(seen, ["token-1", "token-2", "token-2"]);
});

Deno.test("client: a watch whose server stopped answering ends instead of hanging", async () => {
  let silent = false;
  await using server = fakeGateway((path, _body, req) => {
    if (path === "/v3/watch") return stream(req, [result({ ...header(3), created: true })]);
    // The status probe: answered while alive, never once "dead".
    // (It answers once the client gives up, so the server can shut down.)
    if (silent) {
      return new Promise<Response>((resolve) =>
        req.signal.addEventListener("abort", () => resolve(json({})))
      );
    }
    return json({ ...header(3), version: "3.4.23" });
  });
  const client = new EtcdClient({
    endpoints: [server.endpoint],
    watchProbeMs: 100,
    requestTimeoutMs: 300,
  });
  try {
    const messages: boolean[] = [];
    const watching = (async () => {
      for await (const res of client.watch({ key: "a" }, AbortSignal.timeout(20_000))) {
        messages.push(res.created);
        silent = true; // probes from now on get no answer
      }
    })();
    await assert.rejects(watching, /stopped answering/);
    assert.deepEqual(messages, [true]);
  } finally {
    client.close();
  }
});

Deno.test("listWatch: a garbled or broken stream is counted and resumed after the last revision", async () => {
  const starts: string[] = [];
  await using server = fakeGateway((path, body, req) => {
    if (path === "/v3/kv/range") return json({ ...header(4), kvs: [] });
    const create = body.create_request as { start_revision: string };
    starts.push(create.start_revision);
    const event = (rev: number) => ({
      ...header(rev),
      events: [{ kv: { key: "L2Ev", mod_revision: String(rev), value: "eA==" } }],
    });
    if (starts.length === 1) {
      return stream(req, [result({ ...header(4), created: true }), result(event(5)), "{garbage"]);
    }
    if (starts.length === 2) return new Response(result(event(6)) + "\n"); // then the stream ends
    return stream(req, [result({ ...header(6), created: true }), result(event(7))]);
  });
  const client = new EtcdClient({ endpoints: [server.endpoint] });
  const failures: WatchFailure[] = [];
  const revisions: number[] = [];
  const abort = new AbortController();
  try {
    const items = listWatch({
      client,
      key: "/a/",
      prefix: true,
      backoff: { initialMs: 1, maxMs: 1 },
      onFailure: (failure) => failures.push(failure),
    }, abort.signal);
    const consuming = (async () => {
      for await (const item of items) revisions.push(item.revision);
    })();
    await waitFor("three streams and the event at 7", () => revisions.includes(7));
    abort.abort();
    await consuming;
  } finally {
    client.close();
  }
  assert.deepEqual(starts, ["5", "6", "7"]);
  assert.deepEqual(revisions, [4, 5, 6, 7]);
  assert.deepEqual(failures.map((f) => [f.stage, f.compacted]), [
    ["watch", false],
    ["watch", false],
  ]);
  assert.match(failures[0].error, /not JSON/);
});
