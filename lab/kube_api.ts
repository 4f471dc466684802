/**
 * A stand-in for kube-apiserver that serves exactly what a flannel node uses (spec §4): Nodes
 * (get, list with pages, watch as a chunked stream of JSON lines, strategic-merge PATCH of
 * `nodes/<name>/status`) and Pods (get), with resourceVersions, 404/410 Status bodies and
 * optional bearer-token auth and TLS. The lab runs its kube mode on it and the kube tests drive
 * it: they seed and change nodes, make watches expire (410 Gone), cut streams, inject failures
 * and read back every request.
 *
 * The HTTP side is a Hono app ({@link kubeApiApp}) over a {@link FakeKubeStore} (kube_store.ts),
 * so it can be exercised with `app.request()` without a listening socket.
 *
 * @example
 * ```ts
 * await using api = startFakeKubeApi();
 * api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
 * // point a client at api.url
 * ```
 *
 * @module
 */
import { type Context, Hono } from "hono";
import { FakeKubeStore, type JsonObject, status, type StoreReply } from "./kube_store.ts";

export { FakeKubeStore, fakeNode, type JsonObject } from "./kube_store.ts";

/** One request as the server received it. */
export interface RecordedRequest {
  readonly method: string;
  /** Path without the query, e.g. `/api/v1/nodes/n1/status`. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly contentType: string | null;
  readonly authorization: string | null;
  /** Raw body text (PATCH). */
  readonly body: string;
}

/** Options of {@link startFakeKubeApi}. */
export interface FakeKubeApiOptions {
  /** Require `Authorization: Bearer <token>` (401 otherwise). */
  readonly token?: string;
  /** Serve HTTPS with these PEM texts. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Listen port (default: any free one). */
  readonly port?: number;
}

/** A running fake API server. */
export interface FakeKubeApi extends AsyncDisposable {
  /** `http(s)://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Every request, in arrival order. */
  readonly requests: RecordedRequest[];
  /** The current resourceVersion (the last change's). */
  readonly resourceVersion: number;
  /** The store behind the server. */
  readonly store: FakeKubeStore;
  /** A copy of a stored node. */
  node(name: string): JsonObject | undefined;
  /** Create or replace a node (a fresh resourceVersion; ADDED or MODIFIED for watchers). */
  setNode(node: JsonObject): void;
  /** Change a stored node through a copy; throws if absent. */
  updateNode(name: string, change: (node: JsonObject) => void): void;
  deleteNode(name: string): void;
  /** Store a pod (`metadata.namespace`, `metadata.name`, `spec.nodeName`). */
  setPod(pod: JsonObject): void;
  /** See {@link FakeKubeStore.expire}. */
  expire(as?: "event" | "http"): void;
  /** End every open watch stream normally (as a server-side timeout does). */
  closeWatches(): void;
  /** Number of watch streams open now. */
  openWatches(): number;
  /**
   * Answer requests with `respond` instead while it returns a Response (e.g. a 500 for every
   * PATCH); undefined removes it.
   */
  intercept(respond?: (request: RecordedRequest) => Response | undefined): void;
  close(): Promise<void>;
}

/** What the app shares with its owner: the request log and the current interceptor. */
export interface KubeApiHooks {
  /** Every request is appended here. */
  readonly requests: RecordedRequest[];
  /** Answers instead of the API while it returns a Response. */
  interceptor?: (request: RecordedRequest) => Response | undefined;
}

type Env = { Variables: { recorded: RecordedRequest } };

function reply(c: Context, { code, body }: StoreReply): Response {
  return c.json(body, code as 200);
}

function failure(c: Context, code: number, reason: string, message: string): Response {
  return reply(c, { code, body: status(code, reason, message) });
}

/**
 * The fake API as a Hono app over `store`: requests are recorded in `hooks`, then answered by
 * the interceptor if it has an answer, else checked for the bearer `token` (when set) and served.
 */
export function kubeApiApp(
  store: FakeKubeStore,
  hooks: KubeApiHooks,
  token?: string,
): Hono<Env> {
  const app = new Hono<Env>();
  app.use(async (c, next) => {
    const url = new URL(c.req.url);
    const recorded: RecordedRequest = {
      method: c.req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      contentType: c.req.header("content-type") ?? null,
      authorization: c.req.header("authorization") ?? null,
      body: c.req.raw.body ? await c.req.text() : "",
    };
    hooks.requests.push(recorded);
    const intercepted = hooks.interceptor?.(recorded);
    if (intercepted) return intercepted;
    if (token && recorded.authorization !== `Bearer ${token}`) {
      return failure(c, 401, "Unauthorized", "Unauthorized");
    }
    c.set("recorded", recorded);
    await next();
  });

  app.get("/api/v1/nodes", (c) => {
    // The one field selector a node agent uses: its own Node (`metadata.name=<name>`).
    const selector = c.req.query("fieldSelector");
    const name = selector?.match(/^metadata\.name=(.+)$/)?.[1];
    if (selector !== undefined && name === undefined) {
      return failure(c, 400, "BadRequest", `unsupported field selector ${selector}`);
    }
    if (c.req.query("watch") !== "true") {
      const limit = Number(c.req.query("limit") ?? "0");
      return reply(c, store.listNodes(limit, Number(c.req.query("continue") ?? "0"), name));
    }
    const rv = c.req.query("resourceVersion");
    const watch = store.watchNodes(
      rv === undefined ? undefined : Number(rv),
      Number(c.req.query("timeoutSeconds") ?? "0"),
      name,
    );
    if (!(watch instanceof ReadableStream)) return reply(c, watch);
    return new Response(watch, {
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  });

  const node = (c: Context<Env>, subresource: boolean): Response => {
    const name = c.req.param("name")!;
    const found = store.getNode(name);
    if (found.code !== 200 || c.req.method === "GET") return reply(c, found);
    if (c.req.method !== "PATCH" || !subresource) {
      return failure(c, 405, "MethodNotAllowed", c.req.method);
    }
    const { contentType, body } = c.get("recorded");
    if (contentType !== "application/strategic-merge-patch+json") {
      return failure(c, 415, "UnsupportedMediaType", `${contentType}`);
    }
    return reply(c, store.patchNodeStatus(name, body));
  };
  app.all("/api/v1/nodes/:name", (c) => node(c, false));
  app.all("/api/v1/nodes/:name/status", (c) => node(c, true));

  app.get("/api/v1/namespaces/:namespace/pods/:name", (c) => {
    return reply(c, store.getPod(c.req.param("namespace"), c.req.param("name")));
  });

  app.notFound((c) =>
    failure(c, 404, "NotFound", "the server could not find the requested resource")
  );
  return app;
}

/** Start the fake API server on 127.0.0.1. */
export function startFakeKubeApi(options: FakeKubeApiOptions = {}): FakeKubeApi {
  const store = new FakeKubeStore();
  const hooks: KubeApiHooks = { requests: [] };
  const app = kubeApiApp(store, hooks, options.token);
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    onListen: () => {},
    ...(options.tls && { cert: options.tls.cert, key: options.tls.key }),
  }, app.fetch);
  const port = server.addr.port;
  let closed = false;

  const api: FakeKubeApi = {
    url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    requests: hooks.requests,
    store,
    get resourceVersion() {
      return store.resourceVersion;
    },
    node: (name) => store.node(name),
    setNode: (node) => void store.setNode(node),
    updateNode: (name, change) => store.updateNode(name, change),
    deleteNode: (name) => store.deleteNode(name),
    setPod: (pod) => store.setPod(pod),
    expire: (as) => store.expire(as),
    closeWatches: () => store.closeWatches(),
    openWatches: () => store.openWatches(),
    intercept(respond) {
      hooks.interceptor = respond;
    },
    async close() {
      if (closed) return;
      closed = true;
      store.closeWatches();
      await server.shutdown();
    },
    [Symbol.asyncDispose]: () => api.close(),
  };
  return api;
}
