/**
 * A stand-in for kube-apiserver that serves exactly what a flannel node uses (spec §4): Nodes
 * (get, list with pages, watch as a chunked stream of JSON lines, strategic-merge PATCH of
 * `nodes/<name>/status`) and Pods (get), with resourceVersions, 404/410 Status bodies and
 * optional bearer-token auth and TLS. The lab runs its kube mode on it and the kube tests drive
 * it: they seed and change nodes, make watches expire (410 Gone), cut streams, inject failures
 * and read back every request.
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
import type { JsonValue } from "../subnet/lease.ts";

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

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
  /** A copy of a stored node. */
  node(name: string): JsonObject | undefined;
  /** Create or replace a node (a fresh resourceVersion; ADDED or MODIFIED for watchers). */
  setNode(node: JsonObject): void;
  /** Change a stored node through a copy; throws if absent. */
  updateNode(name: string, change: (node: JsonObject) => void): void;
  deleteNode(name: string): void;
  /** Store a pod (`metadata.namespace`, `metadata.name`, `spec.nodeName`). */
  setPod(pod: JsonObject): void;
  /**
   * Forget history up to now, as etcd compaction does: open watches receive an ERROR event with
   * a 410 Status (or, `as: "http"`, are cut), and watches from an older resourceVersion are
   * refused with 410 (as an ERROR event, or `as: "http"` as the HTTP status).
   */
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

/** A Node object in the API's JSON shape. */
export function fakeNode(
  name: string,
  options: {
    podCIDR?: string;
    podCIDRs?: string[];
    annotations?: Record<string, string>;
    conditions?: JsonObject[];
  } = {},
): JsonObject {
  const podCIDRs = options.podCIDRs ?? (options.podCIDR ? [options.podCIDR] : undefined);
  return {
    kind: "Node",
    apiVersion: "v1",
    metadata: {
      name,
      uid: crypto.randomUUID(),
      creationTimestamp: new Date().toISOString().replace(/\.\d{3}Z$/, "Z"),
      labels: { "kubernetes.io/hostname": name, "kubernetes.io/os": "linux" },
      ...(options.annotations && { annotations: options.annotations }),
    },
    spec: {
      ...(podCIDRs && { podCIDR: podCIDRs[0], podCIDRs }),
    },
    status: {
      conditions: options.conditions ?? [
        { type: "Ready", status: "True", reason: "KubeletReady", message: "kubelet is ready" },
      ],
    },
  };
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function copy<T extends JsonValue>(value: T): T {
  return structuredClone(value);
}

function metadataOf(object: JsonObject): JsonObject {
  if (!isObject(object.metadata)) object.metadata = {};
  return object.metadata as JsonObject;
}

function nameOf(object: JsonObject): string {
  const name = metadataOf(object).name;
  if (typeof name !== "string" || name === "") throw new Error("object without metadata.name");
  return name;
}

/**
 * Strategic merge as the API applies it to the members flannel patches: objects merge, `null`
 * deletes a member, `status.conditions` merges by `type` (its patchMergeKey), other lists are
 * replaced.
 */
function strategicMerge(target: JsonObject, patch: JsonObject, path = ""): void {
  for (const [key, value] of Object.entries(patch)) {
    const here = `${path}/${key}`;
    if (value === null) {
      delete target[key];
    } else if (here === "/status/conditions" && Array.isArray(value)) {
      const merged = Array.isArray(target[key]) ? [...target[key] as JsonValue[]] : [];
      for (const item of value) {
        if (!isObject(item)) continue;
        const at = merged.findIndex((c) => isObject(c) && c.type === item.type);
        if (at >= 0) {
          const existing = copy(merged[at] as JsonObject);
          strategicMerge(existing, item, `${here}[]`);
          merged[at] = existing;
        } else merged.push(copy(item));
      }
      target[key] = merged;
    } else if (isObject(value)) {
      const base = isObject(target[key]) ? target[key] as JsonObject : {};
      strategicMerge(base, value, here);
      target[key] = base;
    } else {
      target[key] = copy(value);
    }
  }
}

function status(code: number, reason: string, message: string): JsonObject {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: "Failure",
    message,
    reason,
    code,
  };
}

function json(body: JsonValue, code = 200): Response {
  return new Response(JSON.stringify(body), {
    status: code,
    headers: { "content-type": "application/json" },
  });
}

interface WatchStream {
  readonly controller: ReadableStreamDefaultController<Uint8Array>;
  /** Last resourceVersion sent to this watcher. */
  sent: number;
  closed: boolean;
}

interface Change {
  readonly rv: number;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: JsonObject;
}

const ENCODER = new TextEncoder();
const NODE_PATH = /^\/api\/v1\/nodes\/([^/]+)(\/status)?$/;
const POD_PATH = /^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)$/;

/** Start the fake API server on 127.0.0.1. */
export function startFakeKubeApi(options: FakeKubeApiOptions = {}): FakeKubeApi {
  const nodes = new Map<string, JsonObject>();
  const pods = new Map<string, JsonObject>();
  const history: Change[] = [];
  const watches = new Set<WatchStream>();
  const requests: RecordedRequest[] = [];
  let rv = 100;
  let oldest = 0; // watches must start at or after this resourceVersion
  let goneAs: "event" | "http" = "event";
  let interceptor: ((request: RecordedRequest) => Response | undefined) | undefined;

  const send = (stream: WatchStream, line: JsonObject) => {
    if (stream.closed) return;
    try {
      stream.controller.enqueue(ENCODER.encode(`${JSON.stringify(line)}\n`));
    } catch {
      stream.closed = true;
      watches.delete(stream);
    }
  };
  const end = (stream: WatchStream) => {
    if (stream.closed) return;
    stream.closed = true;
    watches.delete(stream);
    try {
      stream.controller.close();
    } catch { /* reader gone */ }
  };

  const record = (type: Change["type"], object: JsonObject) => {
    const change = { rv, type, object: copy(object) };
    history.push(change);
    for (const stream of watches) {
      send(stream, { type, object: change.object });
      stream.sent = rv;
    }
  };

  const store = (object: JsonObject, type?: Change["type"]) => {
    const name = nameOf(object);
    const next = copy(object);
    metadataOf(next).resourceVersion = String(++rv);
    const existed = nodes.has(name);
    nodes.set(name, next);
    record(type ?? (existed ? "MODIFIED" : "ADDED"), next);
    return next;
  };

  const list = (query: URLSearchParams): Response => {
    const all = [...nodes.keys()].sort();
    const limit = Number(query.get("limit") ?? "0");
    const start = Number(query.get("continue") ?? "0");
    const names = limit > 0 ? all.slice(start, start + limit) : all.slice(start);
    const next = limit > 0 && start + limit < all.length ? String(start + limit) : undefined;
    return json({
      kind: "NodeList",
      apiVersion: "v1",
      metadata: { resourceVersion: String(rv), ...(next && { continue: next }) },
      items: names.map((n) => nodes.get(n)!),
    });
  };

  const watch = (query: URLSearchParams): Response => {
    const from = Number(query.get("resourceVersion") ?? String(rv));
    if (from < oldest && goneAs === "http") {
      return json(status(410, "Expired", `too old resource version: ${from} (${oldest})`), 410);
    }
    let stream: WatchStream | undefined;
    const timeout = Number(query.get("timeoutSeconds") ?? "0");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        stream = { controller, sent: from, closed: false };
        if (from < oldest) {
          send(stream, {
            type: "ERROR",
            object: status(410, "Expired", `too old resource version: ${from} (${oldest})`),
          });
          end(stream);
          return;
        }
        for (const change of history) {
          if (change.rv > from) send(stream, { type: change.type, object: change.object });
        }
        stream.sent = rv;
        watches.add(stream);
        if (timeout > 0) timer = setTimeout(() => end(stream!), timeout * 1000);
      },
      cancel() {
        clearTimeout(timer);
        if (stream) {
          stream.closed = true;
          watches.delete(stream);
        }
      },
    });
    return new Response(body, {
      headers: { "content-type": "application/json", "transfer-encoding": "chunked" },
    });
  };

  const handle = async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    const request: RecordedRequest = {
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      contentType: req.headers.get("content-type"),
      authorization: req.headers.get("authorization"),
      body: req.body ? await req.text() : "",
    };
    requests.push(request);
    const intercepted = interceptor?.(request);
    if (intercepted) return intercepted;
    if (options.token && request.authorization !== `Bearer ${options.token}`) {
      return json(status(401, "Unauthorized", "Unauthorized"), 401);
    }
    if (url.pathname === "/api/v1/nodes" && req.method === "GET") {
      return url.searchParams.get("watch") === "true"
        ? watch(url.searchParams)
        : list(url.searchParams);
    }
    const nodeMatch = NODE_PATH.exec(url.pathname);
    if (nodeMatch) {
      const name = decodeURIComponent(nodeMatch[1]);
      const node = nodes.get(name);
      if (!node) return json(status(404, "NotFound", `nodes "${name}" not found`), 404);
      if (req.method === "GET") return json(node);
      if (req.method === "PATCH" && nodeMatch[2]) {
        if (request.contentType !== "application/strategic-merge-patch+json") {
          return json(status(415, "UnsupportedMediaType", `${request.contentType}`), 415);
        }
        let patch: JsonValue;
        try {
          patch = JSON.parse(request.body);
        } catch {
          return json(status(400, "BadRequest", "invalid JSON"), 400);
        }
        if (!isObject(patch)) return json(status(400, "BadRequest", "not an object"), 400);
        const next = copy(node);
        // The status subresource keeps spec; metadata and status merge.
        const { spec: _ignored, ...allowed } = patch;
        strategicMerge(next, allowed);
        next.spec = copy(node.spec ?? {});
        return json(store(next, "MODIFIED"));
      }
      return json(status(405, "MethodNotAllowed", req.method), 405);
    }
    const podMatch = POD_PATH.exec(url.pathname);
    if (podMatch && req.method === "GET") {
      const [ns, name] = [decodeURIComponent(podMatch[1]), decodeURIComponent(podMatch[2])];
      const pod = pods.get(`${ns}/${name}`);
      return pod ? json(pod) : json(status(404, "NotFound", `pods "${name}" not found`), 404);
    }
    return json(status(404, "NotFound", "the server could not find the requested resource"), 404);
  };

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    onListen: () => {},
    ...(options.tls && { cert: options.tls.cert, key: options.tls.key }),
  }, handle);
  const port = server.addr.port;
  let closed = false;

  const api: FakeKubeApi = {
    url: `${options.tls ? "https" : "http"}://127.0.0.1:${port}`,
    port,
    requests,
    get resourceVersion() {
      return rv;
    },
    node: (name) => {
      const node = nodes.get(name);
      return node && copy(node);
    },
    setNode: (node) => void store(node),
    updateNode(name, change) {
      const node = nodes.get(name);
      if (!node) throw new Error(`no node ${name}`);
      const next = copy(node);
      change(next);
      store(next, "MODIFIED");
    },
    deleteNode(name) {
      const node = nodes.get(name);
      if (!node) return;
      nodes.delete(name);
      const gone = copy(node);
      metadataOf(gone).resourceVersion = String(++rv);
      record("DELETED", gone);
    },
    setPod(pod) {
      const meta = metadataOf(pod);
      pods.set(`${meta.namespace}/${meta.name}`, copy(pod));
    },
    expire(as = "event") {
      goneAs = as;
      oldest = rv + 1;
      history.length = 0;
      for (const stream of [...watches]) {
        if (as === "event") {
          send(stream, {
            type: "ERROR",
            object: status(410, "Expired", "too old resource version"),
          });
        }
        end(stream);
      }
    },
    closeWatches() {
      for (const stream of [...watches]) end(stream);
    },
    openWatches: () => watches.size,
    intercept(respond) {
      interceptor = respond;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const stream of [...watches]) end(stream);
      await server.shutdown();
    },
    [Symbol.asyncDispose]: () => api.close(),
  };
  return api;
}
