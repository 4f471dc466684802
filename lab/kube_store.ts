/**
 * The state behind the fake kube-apiserver (kube_api.ts): Nodes and Pods with resourceVersions,
 * the change history watches replay, open watch streams, expiry (410 Gone) and the
 * strategic-merge PATCH of `nodes/<name>/status`. It knows nothing of HTTP beyond the Status
 * objects and watch lines it produces, so tests can drive it directly or through the app.
 *
 * @module
 */
import type { JsonValue } from "../subnet/lease.ts";

/** A JSON object. */
export type JsonObject = { [key: string]: JsonValue };

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

/** A `Status` object, as the API sends with every error. */
export function status(code: number, reason: string, message: string): JsonObject {
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

interface WatchStream {
  readonly controller: ReadableStreamDefaultController<Uint8Array>;
  /** Only this node's changes (`fieldSelector=metadata.name=…`). */
  readonly name?: string;
  /** Last resourceVersion sent to this watcher. */
  sent: number;
  closed: boolean;
}

interface Change {
  readonly rv: number;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly object: JsonObject;
}

/** The outcome of a store operation as the API answers it: a status code and a JSON body. */
export interface StoreReply {
  readonly code: number;
  readonly body: JsonObject;
}

const ENCODER = new TextEncoder();

function ok(body: JsonObject): StoreReply {
  return { code: 200, body };
}

function failure(code: number, reason: string, message: string): StoreReply {
  return { code, body: status(code, reason, message) };
}

/** Nodes, Pods and watches of the fake API. */
export class FakeKubeStore {
  readonly #nodes = new Map<string, JsonObject>();
  readonly #pods = new Map<string, JsonObject>();
  readonly #history: Change[] = [];
  readonly #watches = new Set<WatchStream>();
  #rv = 100;
  /** Watches must start at or after this resourceVersion. */
  #oldest = 0;
  #goneAs: "event" | "http" = "event";

  /** The current resourceVersion (the last change's). */
  get resourceVersion(): number {
    return this.#rv;
  }

  /** A copy of a stored node. */
  node(name: string): JsonObject | undefined {
    const node = this.#nodes.get(name);
    return node && copy(node);
  }

  /** Create or replace a node (a fresh resourceVersion; ADDED or MODIFIED for watchers). */
  setNode(node: JsonObject): JsonObject {
    return this.#store(node);
  }

  /** Change a stored node through a copy; throws if absent. */
  updateNode(name: string, change: (node: JsonObject) => void): void {
    const node = this.#nodes.get(name);
    if (!node) throw new Error(`no node ${name}`);
    const next = copy(node);
    change(next);
    this.#store(next, "MODIFIED");
  }

  deleteNode(name: string): void {
    const node = this.#nodes.get(name);
    if (!node) return;
    this.#nodes.delete(name);
    const gone = copy(node);
    metadataOf(gone).resourceVersion = String(++this.#rv);
    this.#record("DELETED", gone);
  }

  /** Store a pod (`metadata.namespace`, `metadata.name`, `spec.nodeName`). */
  setPod(pod: JsonObject): void {
    const meta = metadataOf(pod);
    this.#pods.set(`${meta.namespace}/${meta.name}`, copy(pod));
  }

  /**
   * Forget history up to now, as etcd compaction does: open watches receive an ERROR event with
   * a 410 Status (or, `as: "http"`, are cut), and watches from an older resourceVersion are
   * refused with 410 (as an ERROR event, or `as: "http"` as the HTTP status).
   */
  expire(as: "event" | "http" = "event"): void {
    this.#goneAs = as;
    this.#oldest = this.#rv + 1;
    this.#history.length = 0;
    for (const stream of [...this.#watches]) {
      if (as === "event") {
        this.#send(stream, {
          type: "ERROR",
          object: status(410, "Expired", "too old resource version"),
        });
      }
      this.#end(stream);
    }
  }

  /** End every open watch stream normally (as a server-side timeout does). */
  closeWatches(): void {
    for (const stream of [...this.#watches]) this.#end(stream);
  }

  /** Number of watch streams open now. */
  openWatches(): number {
    return this.#watches.size;
  }

  /** GET a node. */
  getNode(name: string): StoreReply {
    const node = this.#nodes.get(name);
    return node ? ok(node) : failure(404, "NotFound", `nodes "${name}" not found`);
  }

  /** GET a pod. */
  getPod(namespace: string, name: string): StoreReply {
    const pod = this.#pods.get(`${namespace}/${name}`);
    return pod ? ok(pod) : failure(404, "NotFound", `pods "${name}" not found`);
  }

  /** List nodes (all, or the one named), `limit` per page from the `continue` token on. */
  listNodes(limit: number, from: number, name?: string): StoreReply {
    const all = [...this.#nodes.keys()].filter((n) => name === undefined || n === name).sort();
    const names = limit > 0 ? all.slice(from, from + limit) : all.slice(from);
    const next = limit > 0 && from + limit < all.length ? String(from + limit) : undefined;
    return ok({
      kind: "NodeList",
      apiVersion: "v1",
      metadata: { resourceVersion: String(this.#rv), ...(next && { continue: next }) },
      items: names.map((n) => this.#nodes.get(n)!),
    });
  }

  /**
   * PATCH `nodes/<name>/status` with a strategic merge patch (JSON text): metadata and status
   * merge, spec is kept, as the status subresource does.
   */
  patchNodeStatus(name: string, patchText: string): StoreReply {
    const node = this.#nodes.get(name);
    if (!node) return failure(404, "NotFound", `nodes "${name}" not found`);
    let patch: JsonValue;
    try {
      patch = JSON.parse(patchText);
    } catch {
      return failure(400, "BadRequest", "invalid JSON");
    }
    if (!isObject(patch)) return failure(400, "BadRequest", "not an object");
    const next = copy(node);
    const { spec: _ignored, ...allowed } = patch;
    strategicMerge(next, allowed);
    next.spec = copy(node.spec ?? {});
    return ok(this.#store(next, "MODIFIED"));
  }

  /**
   * A watch from resourceVersion `from` (default: now) as a stream of JSON lines, ended after
   * `timeoutSeconds` when above 0; a 410 reply when `from` is expired and expiry is answered
   * over HTTP. With `name`, only that node's changes are sent.
   */
  watchNodes(
    from: number | undefined,
    timeoutSeconds: number,
    name?: string,
  ): ReadableStream<Uint8Array> | StoreReply {
    const start = from ?? this.#rv;
    const gone = () => `too old resource version: ${start} (${this.#oldest})`;
    if (start < this.#oldest && this.#goneAs === "http") return failure(410, "Expired", gone());
    let stream: WatchStream | undefined;
    let timer: ReturnType<typeof setTimeout> | undefined;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        stream = { controller, name, sent: start, closed: false };
        if (start < this.#oldest) {
          this.#send(stream, { type: "ERROR", object: status(410, "Expired", gone()) });
          this.#end(stream);
          return;
        }
        for (const change of this.#history) {
          if (change.rv > start) this.#sendChange(stream, change);
        }
        stream.sent = this.#rv;
        this.#watches.add(stream);
        if (timeoutSeconds > 0) timer = setTimeout(() => this.#end(stream!), timeoutSeconds * 1000);
      },
      cancel: () => {
        clearTimeout(timer);
        if (stream) {
          stream.closed = true;
          this.#watches.delete(stream);
        }
      },
    });
  }

  #store(object: JsonObject, type?: Change["type"]): JsonObject {
    const name = nameOf(object);
    const next = copy(object);
    metadataOf(next).resourceVersion = String(++this.#rv);
    const existed = this.#nodes.has(name);
    this.#nodes.set(name, next);
    this.#record(type ?? (existed ? "MODIFIED" : "ADDED"), next);
    return next;
  }

  #record(type: Change["type"], object: JsonObject): void {
    const change = { rv: this.#rv, type, object: copy(object) };
    this.#history.push(change);
    for (const stream of this.#watches) {
      this.#sendChange(stream, change);
      stream.sent = this.#rv;
    }
  }

  #sendChange(stream: WatchStream, change: Change): void {
    if (stream.name !== undefined && nameOf(change.object) !== stream.name) return;
    this.#send(stream, { type: change.type, object: change.object });
  }

  #send(stream: WatchStream, line: JsonObject): void {
    if (stream.closed) return;
    try {
      stream.controller.enqueue(ENCODER.encode(`${JSON.stringify(line)}\n`));
    } catch {
      stream.closed = true;
      this.#watches.delete(stream);
    }
  }

  #end(stream: WatchStream): void {
    if (stream.closed) return;
    stream.closed = true;
    this.#watches.delete(stream);
    try {
      stream.controller.close();
    } catch { /* reader gone */ }
  }
}
