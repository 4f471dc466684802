/**
 * The kube subnet manager's test bench: a fake API server speaking the real paths and JSON,
 * reached through a kubeconfig file and `--kube-api-url` as flanneld is configured, and the
 * node shapes and readers the kube tests share.
 *
 * @module
 */
import {
  type FakeKubeApi,
  fakeNode,
  type JsonObject,
  startFakeKubeApi,
} from "../../lab/kube_api.ts";
import { parseAddr } from "../../ip/mod.ts";
import { type KubeManagerOptions, KubeSubnetManager } from "../../subnet/kube.ts";
import { annotationNames, publication } from "../../subnet/kube_annotations.ts";
import { createKubeClient, loadKubeConfig } from "../../subnet/kube_client.ts";
import type { LeaseAttrs } from "../../subnet/lease.ts";
import { captureLog } from "./leases.ts";

/** flannel's default annotation prefix. */
export const AP = "flannel.alpha.coreos.com/";
/** The annotation names under the default prefix. */
export const names = annotationNames();
/** An IPv4 vxlan net-conf. */
export const V4_CONF = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
/** A dual-stack vxlan net-conf. */
export const DUAL_CONF =
  '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}';
/** Manager timings shortened for tests. */
export const TIMING = {
  retryInitialMs: 20,
  retryMaxMs: 100,
  checkMs: 300,
  minRepairIntervalMs: 50,
  watchBackoff: { initialMs: 10, maxMs: 100 },
};

/** Our attributes as the vxlan backend gives them. */
export function vxlanAttrs(ip: string, mac: string): LeaseAttrs {
  return { publicIP: parseAddr(ip), backendType: "vxlan", backendData: { VNI: 1, VtepMAC: mac } };
}

/** A node as another flannel node left it: annotated by publication(), with a pod CIDR. */
export function flannelNode(name: string, podCIDR: string, ip: string, mac: string): JsonObject {
  const { patch } = publication(names, vxlanAttrs(ip, mac), {});
  return fakeNode(name, { podCIDR, annotations: { ...patch } });
}

/** What each test gets: the fake API, a temp dir and a manager factory. */
export interface KubeEnv {
  readonly api: FakeKubeApi;
  readonly dir: string;
  manager(
    options?: Partial<KubeManagerOptions> & { conf?: string; watchIdleMs?: number },
  ): KubeSubnetManager;
}

/**
 * Run `fn` against a fake API server (bearer token auth) reached through a kubeconfig file and
 * `--kube-api-url`; every manager made is closed, the server stopped and the dir removed after.
 */
export async function withKubeEnv(
  fn: (env: KubeEnv) => Promise<void>,
  token = "s3cret",
): Promise<void> {
  const api = startFakeKubeApi({ token });
  const dir = await Deno.makeTempDir({ prefix: "tt-kube-" });
  const kubeconfig = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters: [{name: fake, cluster: {server: 'http://127.0.0.1:1'}}]",
      `users: [{name: node, user: {token: ${token}}}]`,
      "contexts: [{name: fake, context: {cluster: fake, user: node}}]",
      "current-context: fake",
    ].join("\n"),
  );
  // The server in the file is wrong on purpose: --kube-api-url must win.
  const connection = await loadKubeConfig({ kubeconfigFile: kubeconfig, apiUrl: api.url });
  const managers: KubeSubnetManager[] = [];
  try {
    await fn({
      api,
      dir,
      manager(options = {}) {
        const confPath = `${dir}/net-conf-${managers.length}.json`;
        Deno.writeTextFileSync(confPath, options.conf ?? V4_CONF);
        const manager = new KubeSubnetManager({
          client: createKubeClient(connection, {
            requestTimeoutMs: 5000,
            watchTimeoutSeconds: () => 60,
            watchIdleMs: options.watchIdleMs,
          }),
          netConfigPath: confPath,
          nodeName: "n1",
          timing: TIMING,
          log: captureLog().log,
          ...options,
        });
        managers.push(manager);
        return manager;
      },
    });
  } finally {
    await Promise.all(managers.map((m) => m.close()));
    await api.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** The status PATCHes the API received for `node`. */
export function patchesOf(api: FakeKubeApi, node: string) {
  return api.requests.filter((r) =>
    r.method === "PATCH" && r.path === `/api/v1/nodes/${node}/status`
  );
}

/** Direct reads (not watches) of one node. */
export function readsOf(api: FakeKubeApi, node: string) {
  return api.requests.filter((r) =>
    r.method === "GET" && r.path === `/api/v1/nodes/${node}` && r.query.watch !== "true"
  );
}

/** A stored node's annotations. */
export function annotationsOf(api: FakeKubeApi, name: string): Record<string, string> {
  const meta = api.node(name)?.metadata as JsonObject;
  return (meta.annotations ?? {}) as Record<string, string>;
}

/** A stored node's condition of `type`. */
export function conditionOf(api: FakeKubeApi, name: string, type: string): JsonObject | undefined {
  const conditions = ((api.node(name)?.status as JsonObject).conditions ?? []) as JsonObject[];
  return conditions.find((c) => c.type === type);
}
