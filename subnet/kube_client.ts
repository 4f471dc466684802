/**
 * The Kubernetes API as the kube subnet manager uses it, on `@kubernetes/client-node`: where the
 * API is (in-cluster service account, `--kubeconfig-file`, `--kube-api-url`, as flannel resolves
 * them) and the five calls flannel makes — get/list/watch nodes, patch `nodes/<name>/status`,
 * get a pod. Every request has a deadline and every watch an idle limit, so nothing here can hang
 * the daemon. The watch runs on `fetch` (see `kube_stream.ts`), the rest on the library's client.
 *
 * @module
 */
import * as k8s from "@kubernetes/client-node";
import { statusMessage, type WatchEvent, watchStream, WatchStreamError } from "./kube_stream.ts";

export type { WatchEvent };

/** Where the API is: flannel's two flags, or (both empty) the pod's service account. */
export interface KubeConfigSource {
  /** `--kube-api-url`: overrides the server of the kubeconfig, or alone means anonymous access. */
  readonly apiUrl?: string;
  /** `--kubeconfig-file`. */
  readonly kubeconfigFile?: string;
  /** Tests only: root under which `/var/run/secrets/kubernetes.io/serviceaccount` lives. */
  readonly serviceAccountRoot?: string;
}

/** The API cannot be located or the kubeconfig cannot be read. */
export class KubeConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KubeConfigError";
  }
}

/**
 * Build the client configuration as flannel does: a kubeconfig file (its current context) with
 * `apiUrl` replacing the server when both are given; `apiUrl` alone for an unauthenticated
 * endpoint; neither ⇒ the in-cluster service account (token re-read as it rotates).
 *
 * @throws {KubeConfigError} when the file cannot be loaded, has no current cluster, or in-cluster
 *   mode is chosen outside a pod.
 */
export function loadKubeConfig(source: KubeConfigSource): k8s.KubeConfig {
  const kc = locate(source);
  const current = kc.getCurrentCluster();
  if (current?.skipTLSVerify && current.server.startsWith("https:")) {
    throw new KubeConfigError(
      `insecure-skip-tls-verify is not supported for ${current.server}: give the cluster's CA`,
    );
  }
  // The library refuses plain-http servers unless TLS verification is off; there is none to do.
  mapClusters(kc, (c) => c.server.startsWith("http:") ? { ...c, skipTLSVerify: true } : c);
  return kc;
}

/** Replace the kubeconfig's clusters through `change` (the library keeps them read-only). */
function mapClusters(kc: k8s.KubeConfig, change: (cluster: k8s.Cluster) => k8s.Cluster): void {
  kc.loadFromOptions({
    clusters: kc.clusters.map(change),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
}

function locate(source: KubeConfigSource): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  const apiUrl = source.apiUrl ?? "";
  if (source.kubeconfigFile) {
    try {
      kc.loadFromFile(source.kubeconfigFile);
    } catch (error) {
      throw new KubeConfigError(
        `cannot load kubeconfig ${source.kubeconfigFile}: ${(error as Error).message}`,
      );
    }
    const current = kc.getCurrentCluster();
    if (!current) {
      throw new KubeConfigError(`kubeconfig ${source.kubeconfigFile} has no current cluster`);
    }
    if (apiUrl) mapClusters(kc, (c) => c.name === current.name ? { ...c, server: apiUrl } : c);
    return kc;
  }
  if (apiUrl) {
    kc.loadFromClusterAndUser({ name: "kube-api-url", server: apiUrl, skipTLSVerify: false }, {
      name: "anonymous",
    });
    return kc;
  }
  // The library reads these itself; without them it would build the URL https://undefined:…
  if (!Deno.env.get("KUBERNETES_SERVICE_HOST") || !Deno.env.get("KUBERNETES_SERVICE_PORT")) {
    throw new KubeConfigError(
      "not running in a pod (KUBERNETES_SERVICE_HOST/PORT unset): " +
        "give --kubeconfig-file or --kube-api-url",
    );
  }
  kc.loadFromCluster(source.serviceAccountRoot);
  return kc;
}

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

/** The calls the kube subnet manager makes. */
export interface KubeClient {
  /** The API server URL. */
  readonly server: string;
  /** GET `/api/v1/nodes/<name>`: the Node object, unchecked. */
  getNode(name: string, signal: AbortSignal): Promise<unknown>;
  /** GET `/api/v1/nodes`, all pages. */
  listNodes(signal: AbortSignal): Promise<NodeListing>;
  /**
   * GET `/api/v1/nodes?watch=true&resourceVersion=…`: events until the server ends the stream or
   * it stays silent too long (a dead connection); a refused or broken watch throws
   * {@link KubeApiError}, with the HTTP status when there is one.
   */
  watchNodes(resourceVersion: string, signal: AbortSignal): AsyncIterable<WatchEvent>;
  /** Strategic-merge PATCH of `/api/v1/nodes/<name>/status` (flannel's only write). */
  patchNodeStatus(name: string, patch: object, signal: AbortSignal): Promise<void>;
  /** GET `/api/v1/namespaces/<ns>/pods/<name>`: the pod's `spec.nodeName` ("" if unscheduled). */
  podNodeName(namespace: string, name: string, signal: AbortSignal): Promise<string>;
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

/** A library error (or any other failure) as a KubeApiError. */
function apiError(what: string, error: unknown): KubeApiError {
  if (error instanceof KubeApiError) return error;
  if (error instanceof k8s.ApiException) {
    const detail = statusMessage(error.body) ?? `HTTP ${error.code}`;
    return new KubeApiError(error.code, `${what}: ${detail}`);
  }
  return new KubeApiError(undefined, `${what}: ${(error as Error)?.message ?? String(error)}`);
}

/** Per-request options: our deadline, and extra headers. */
function requestOptions(
  signal: AbortSignal,
  timeoutMs: number,
  headers: Record<string, string> = {},
): k8s.ConfigurationOptions {
  return {
    middleware: [{
      pre: (context: k8s.RequestContext) => {
        context.setSignal(AbortSignal.any([signal, AbortSignal.timeout(timeoutMs)]));
        for (const [name, value] of Object.entries(headers)) context.setHeaderParam(name, value);
        return new k8s.Observable(Promise.resolve(context));
      },
      post: (response: k8s.ResponseContext) => new k8s.Observable(Promise.resolve(response)),
    }],
    middlewareMergeStrategy: "append",
  };
}

/**
 * A {@link KubeClient} on `@kubernetes/client-node`.
 *
 * @example
 * ```ts
 * const client = createKubeClient(loadKubeConfig({ kubeconfigFile: "/etc/kubernetes/kubelet.conf" }));
 * const node = await client.getNode("node-1", signal);
 * ```
 */
export function createKubeClient(kc: k8s.KubeConfig, options: KubeClientOptions = {}): KubeClient {
  const api = kc.makeApiClient(k8s.CoreV1Api);
  const timeoutMs = options.requestTimeoutMs ?? 30_000;
  const pageSize = options.pageSize ?? 500;
  const watchTimeout = options.watchTimeoutSeconds ??
    (() => 300 + Math.floor(Math.random() * 300));
  const server = kc.getCurrentCluster()?.server ?? "";
  const call = async <T>(what: string, request: () => Promise<T>): Promise<T> => {
    try {
      return await request();
    } catch (error) {
      throw apiError(what, error);
    }
  };
  return {
    server,
    getNode: (name, signal) =>
      call(`get node ${name}`, () => api.readNode({ name }, requestOptions(signal, timeoutMs))),
    async listNodes(signal) {
      const items: unknown[] = [];
      let next: string | undefined;
      let resourceVersion = "";
      do {
        const page = await call("list nodes", () =>
          api.listNode(
            { limit: pageSize, ...(next && { _continue: next }) },
            requestOptions(signal, timeoutMs),
          ));
        items.push(...page.items);
        resourceVersion = page.metadata?.resourceVersion ?? "";
        next = page.metadata?._continue || undefined;
      } while (next);
      return { items, resourceVersion };
    },
    async *watchNodes(resourceVersion, signal) {
      const params = {
        resourceVersion,
        allowWatchBookmarks: "true",
        timeoutSeconds: String(watchTimeout()),
      };
      try {
        yield* watchStream(kc, "/api/v1/nodes", params, { idleMs: options.watchIdleMs }, signal);
      } catch (error) {
        if (!(error instanceof WatchStreamError)) throw error;
        throw new KubeApiError(error.status, error.message);
      }
    },
    async patchNodeStatus(name, patch, signal) {
      await call(`patch node ${name} status`, () =>
        api.patchNodeStatus(
          { name, body: patch },
          requestOptions(signal, timeoutMs, {
            "Content-Type": k8s.PatchStrategy.StrategicMergePatch,
          }),
        ));
    },
    async podNodeName(namespace, name, signal) {
      const pod = await call(
        `get pod ${namespace}/${name}`,
        () => api.readNamespacedPod({ namespace, name }, requestOptions(signal, timeoutMs)),
      );
      return pod.spec?.nodeName ?? "";
    },
  };
}
