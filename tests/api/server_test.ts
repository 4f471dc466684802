import assert from "node:assert/strict";
import { Hono } from "hono";
import { createApp } from "../../api/app.ts";
import { createMetrics } from "../../api/metrics.ts";
import { AdminBindError, serveAdmin } from "../../api/server.ts";
import { statusCommand, type StatusIO } from "../../api/status_cli.ts";
import { setLogSink } from "../../log.ts";
import { readyState } from "./fixture.ts";

setLogSink(() => {});

/** Serve `app` on an ephemeral loopback port for the duration of `body`. */
async function withServer(app: Hono, body: (base: string) => Promise<void>): Promise<void> {
  const ctl = new AbortController();
  const server = serveAdmin(app, { hostname: "127.0.0.1", port: 0, signal: ctl.signal });
  try {
    assert.equal(server.hostname, "127.0.0.1");
    assert.ok(server.port > 0);
    await body(`http://127.0.0.1:${server.port}`);
  } finally {
    ctl.abort();
    await server.finished;
  }
}

function capture(): StatusIO & { out_: string[]; err_: string[] } {
  const out_: string[] = [];
  const err_: string[] = [];
  return {
    out_,
    err_,
    out: (text) => out_.push(text),
    err: (text) => err_.push(text),
    env: () => undefined,
  };
}

function adminApp() {
  const state = readyState();
  return createApp(state, createMetrics(state, { defaultMetrics: false }));
}

Deno.test("serveAdmin serves /healthz on an ephemeral port and stops on abort", async () => {
  let base = "";
  await withServer(adminApp(), async (url) => {
    base = url;
    const res = await fetch(`${url}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "flanneld is running");
    const ready = await fetch(`${url}/readyz`);
    assert.equal(ready.status, 200);
    assert.equal(await ready.text(), "flanneld is ready");
  });
  await assert.rejects(fetch(`${base}/healthz`), TypeError);
});

Deno.test("shutdown lets an in-flight request finish", async () => {
  // The handler holds the request until the test lets it go, after shutdown has begun.
  const arrived = Promise.withResolvers<void>();
  const release = Promise.withResolvers<void>();
  const events: string[] = [];
  const app = new Hono();
  app.get("/slow", async (c) => {
    arrived.resolve();
    await release.promise;
    events.push("handler answered");
    return c.text("done");
  });
  const ctl = new AbortController();
  const server = serveAdmin(app, { hostname: "127.0.0.1", port: 0, signal: ctl.signal });
  const finished = server.finished.then(() => events.push("server finished"));
  const pending = fetch(`http://127.0.0.1:${server.port}/slow`);
  await arrived.promise;
  ctl.abort();
  events.push("shutdown begun");
  release.resolve();
  const res = await pending;
  assert.equal(await res.text(), "done");
  await finished;
  assert.deepEqual(events, ["shutdown begun", "handler answered", "server finished"]);
});

Deno.test("a taken port raises AdminBindError naming the address", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const { port } = listener.addr as Deno.NetAddr;
    const ctl = new AbortController();
    assert.throws(
      () => serveAdmin(adminApp(), { hostname: "127.0.0.1", port, signal: ctl.signal }),
      (err: unknown) => err instanceof AdminBindError && err.message.includes(`127.0.0.1:${port}`),
    );
  } finally {
    listener.close();
  }
});

Deno.test("tartan status against a live server prints the lease and the peers", async () => {
  await withServer(adminApp(), async (url) => {
    const io = capture();
    assert.equal(await statusCommand(["--url", url], io), 0);
    assert.deepEqual(io.err_, []);
    const text = io.out_.join("\n");
    assert.match(text, /^node {7}node-a \(etcd mode/m);
    assert.match(text, /^lease {6}10\.244\.1\.0\/24, expires /m);
    assert.match(text, /^peers \(3\)$/m);
    assert.match(text, /^10\.244\.2\.0\/24\s+198\.18\.0\.2\s+vxlan\s+-\s+yes\s+-\s+-\s+-$/m);
    assert.match(
      text,
      /^10\.244\.3\.0\/24\s+198\.18\.0\.3\s+.*no: network is unreachable\s+-\s+-\s+-$/m,
    );

    const port = new URL(url).port;
    const json = capture();
    assert.equal(await statusCommand(["--healthz-port", port, "--json"], json), 0);
    const raw = JSON.parse(json.out_.join("\n"));
    assert.equal(raw.status.lease.subnet, "10.244.1.0/24");
    assert.equal(raw.backend.peersOutOfSync, 1);
    assert.equal(raw.leases.leases.length, 4);
  });
});

Deno.test("tartan status copes with a node whose backend is not registered yet", async () => {
  const state = readyState();
  state.backend = undefined;
  await withServer(
    createApp(state, createMetrics(state, { defaultMetrics: false })),
    async (url) => {
      const io = capture();
      assert.equal(await statusCommand([`--url=${url}`], io), 0);
      assert.match(io.out_.join("\n"), /^backend {4}not registered yet$/m);
      assert.match(io.out_.join("\n"), /^ready {6}no: backend not registered yet$/m);
    },
  );
});

Deno.test("tartan status exits 1 with a clear message when nothing listens", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  const io = capture();
  assert.equal(await statusCommand(["--url", `http://127.0.0.1:${port}`], io), 1);
  assert.deepEqual(io.out_, []);
  assert.match(
    io.err_.join("\n"),
    new RegExp(
      `^tartan status: cannot reach the tartan admin API at http://127\\.0\\.0\\.1:${port}: .*Connection refused`,
    ),
  );
});

Deno.test("tartan status exits 1 when the URL is not a tartan admin API", async () => {
  const other = new Hono();
  other.get("*", (c) => c.json({ hello: "world" }));
  await withServer(other, async (url) => {
    const io = capture();
    assert.equal(await statusCommand(["--url", url], io), 1);
    assert.match(io.err_.join("\n"), /\/v1\/status is not a tartan admin API answer/);
  });
  const missing = new Hono();
  await withServer(missing, async (url) => {
    const io = capture();
    assert.equal(await statusCommand(["--url", url], io), 1);
    assert.match(io.err_.join("\n"), /\/v1\/status answered 404: 404 Not Found/);
  });
});

Deno.test("tartan status sends the bearer token from --admin-token-file", async () => {
  const state = readyState();
  const app = createApp(state, createMetrics(state, { defaultMetrics: false }), {
    token: "tok-123",
  });
  const tokenFile = await Deno.makeTempFile({ prefix: "tt-token-" });
  try {
    await Deno.writeTextFile(tokenFile, "tok-123\n");
    await withServer(app, async (url) => {
      const denied = capture();
      assert.equal(await statusCommand(["--url", url], denied), 1);
      assert.match(denied.err_.join("\n"), /answered 401: missing or wrong bearer token/);
      const allowed = capture();
      assert.equal(
        await statusCommand(["--url", url, "--admin-token-file", tokenFile], allowed),
        0,
      );
      assert.match(allowed.out_.join("\n"), /^lease {6}10\.244\.1\.0\/24/m);
      const missing = capture();
      assert.equal(
        await statusCommand(["--url", url, "--admin-token-file=/nonexistent"], missing),
        1,
      );
      assert.match(missing.err_.join("\n"), /--admin-token-file \/nonexistent: cannot read/);
      await Deno.writeTextFile(tokenFile, " \n");
      const empty = capture();
      assert.equal(await statusCommand(["--url", url, "--admin-token-file", tokenFile], empty), 1);
      assert.match(empty.err_.join("\n"), /--admin-token-file .* is empty/);
    });
  } finally {
    await Deno.remove(tokenFile);
  }
});
