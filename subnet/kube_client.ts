/**
 * The Kubernetes API as the kube subnet manager uses it, on Deno's `fetch`: the five calls
 * flannel makes — get/list/watch nodes, strategic-merge patch of `nodes/<name>/status`, get a
 * pod. Every request has a deadline and every watch an idle limit, so nothing here can hang the
 * daemon. (A general client library cost ~80 MB of resident memory for these five calls.)
 *
 * @module
 */
import type { NodeList, Pod } from "kubernetes-types/core/v1";
import { errorText } from "../log.ts";
import type { KubeConnection } from "./kube_config.ts";
import { statusMessage, type WatchEvent, watchStream, WatchStreamError } from "./kube_stream.ts";

export { KubeConfigError, type KubeConfigSource, loadKubeConfig } from "./kube_config.ts";
export type { WatchEvent };

/** A failed API request; `status` is the HTTP status when the server answered. */
export class KubeApiError extends Error {
  constructor(readonly status: number | undefined, message: string) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** One page-complete node listing. */
export interface NodeListing {
  /** The Node objects, unchecked. */
  readonly items: readonly unknown[];
  /** The list's resourceVersion: where a watch resumes. */
  readonly resourceVersion: string;
}

/** Which nodes a listing or watch covers: all, or (`name`) one, by field selector. */
export interface NodeSelection {
  readonly name?: string;
}

/** The calls the kube subnet manager makes. */
export interface KubeClient {
  /** The API server URL. */
  readonly server: string;
  /** GET `/api/v1/nodes/<name>`: the Node object, unchecked. */
  getNode(name: string, signal: AbortSignal): Promise<unknown>;
  /** GET `/api/v1/nodes`, all pages. */
  listNodes(signal: AbortSignal, selection?: NodeSelection): Promise<NodeListing>;
  /**
   * GET `/api/v1/nodes?watch=true&resourceVersion=…`: events until the server ends the stream or
   * it stays silent too long (a dead connection); a refused or broken watch throws
   * {@link KubeApiError}, with the HTTP status when there is one.
   */
  watchNodes(
    resourceVersion: string,
    signal: AbortSignal,
    selection?: NodeSelection,
  ): AsyncIterable<WatchEvent>;
  /** Strategic-merge PATCH of `/api/v1/nodes/<name>/status` (flannel's only write). */
  patchNodeStatus(name: string, patch: object, signal: AbortSignal): Promise<void>;
  /** GET `/api/v1/namespaces/<ns>/pods/<name>`: the pod's `spec.nodeName` ("" if unscheduled). */
  podNodeName(namespace: string, name: string, signal: AbortSignal): Promise<string>;
  /** Release the connection pool. */
  close(): void;
}

/** Tunables of {@link createKubeClient}. */
export interface KubeClientOptions {
  /** Deadline of each non-watch request (default 30 s). */
  readonly requestTimeoutMs?: number;
  /** Page size of node listings (default 500, as client-go). */
  readonly pageSize?: number;
  /** Ask the server to end each watch after this long (default: random 5–10 min, as client-go). */
  readonly watchTimeoutSeconds?: () => number;
  /** End a watch that stays silent this long, to resume it on a new connection (default 90 s). */
  readonly watchIdleMs?: number;
}

const STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json";

const segment = encodeURIComponent;

function selector(selection: NodeSelection | undefined): Record<string, string> {
  return selection?.name ? { fieldSelector: `metadata.name=${selection.name}` } : {};
}

/**
 * A {@link KubeClient} for `connection`.
 *
 * @example
 * ```ts
 * const client = createKubeClient(await loadKubeConfig({ kubeconfigFile: "/etc/kubernetes/kubelet.conf" }));
 * const node = await client.getNode("node-1", signal);
 * ```
 */
export function createKubeClient(
  connection: KubeConnection,
  options: KubeClientOptions = {},
): KubeClient {
  const timeoutMs = options.requestTimeoutMs ?? 30_000;
  const pageSize = options.pageSize ?? 500;
  const watchTimeout = options.watchTimeoutSeconds ??
    (() => 300 + Math.floor(Math.random() * 300));
  const { caCerts, cert, key } = connection.tls;
  const httpClient = caCerts || cert
    ? Deno.createHttpClient({
      ...(caCerts && { caCerts: [...caCerts] }),
      ...(cert && key && { cert, key }),
    })
    : undefined;

  async function headers(extra: Record<string, string> = {}): Promise<Record<string, string>> {
    const authorization = await connection.authorization();
    return { accept: "application/json", ...(authorization && { authorization }), ...extra };
  }

  /** One request with our deadline; the JSON body of a 2xx answer, else a KubeApiError. */
  async function request<T>(
    what: string,
    path: string,
    signal: AbortSignal,
    init: { method?: string; query?: Record<string, string>; body?: string; type?: string } = {},
  ): Promise<T> {
    const url = new URL(`${connection.server}${path}`);
    for (const [name, value] of Object.entries(init.query ?? {})) url.searchParams.set(name, value);
    let res: Response;
    try {
      res = await fetch(url, {
        method: init.method ?? "GET",
        headers: await headers(init.type ? { "content-type": init.type } : {}),
        body: init.body,
        signal: AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]),
        ...(httpClient && { client: httpClient }),
      });
    } catch (error) {
      throw new KubeApiError(undefined, `${what}: ${errorText(error)}`);
    }
    const text = await res.text().catch(() => "");
    if (!res.ok) {
      const detail = statusMessage(text) ?? `HTTP ${res.status}`;
      throw new KubeApiError(res.status, `${what}: ${detail}`);
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new KubeApiError(res.status, `${what}: the answer is not JSON`);
    }
  }

  return {
    server: connection.server,
    getNode: (name, signal) =>
      request(`get node ${name}`, `/api/v1/nodes/${segment(name)}`, signal),
    async listNodes(signal, selection) {
      const items: unknown[] = [];
      let next: string | undefined;
      let resourceVersion = "";
      do {
        const page = await request<NodeList>("list nodes", "/api/v1/nodes", signal, {
          query: {
            limit: String(pageSize),
            ...selector(selection),
            ...(next && { continue: next }),
          },
        });
        items.push(...(Array.isArray(page.items) ? page.items : []));
        resourceVersion = page.metadata?.resourceVersion ?? "";
        next = page.metadata?.continue || undefined;
      } while (next);
      return { items, resourceVersion };
    },
    async *watchNodes(resourceVersion, signal, selection) {
      const params = {
        resourceVersion,
        allowWatchBookmarks: "true",
        timeoutSeconds: String(watchTimeout()),
        ...selector(selection),
      };
      try {
        yield* watchStream({
          url: `${connection.server}/api/v1/nodes`,
          params,
          headers: await headers(),
          client: httpClient,
          idleMs: options.watchIdleMs,
        }, signal);
      } catch (error) {
        if (!(error instanceof WatchStreamError)) throw error;
        throw new KubeApiError(error.status, error.message);
      }
    },
    async patchNodeStatus(name, patch, signal) {
      await request(`patch node ${name} status`, `/api/v1/nodes/${segment(name)}/status`, signal, {
        method: "PATCH",
        body: JSON.stringify(patch),
        type: STRATEGIC_MERGE_PATCH,
      });
    },
    async podNodeName(namespace, name, signal) {
      const path = `/api/v1/namespaces/${segment(namespace)}/pods/${segment(name)}`;
      const pod = await request<Pod>(`get pod ${namespace}/${name}`, path, signal);
      return pod.spec?.nodeName ?? "";
    },
    close: () => httpClient?.close(),
  };
}
