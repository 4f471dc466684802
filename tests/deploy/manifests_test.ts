/**
 * The deployment files (deploy/): the DaemonSet manifest is what the daemon and the CNI plugin
 * expect (flags parse, ports agree, flannel's RBAC, the repo's CNI config, a net-conf that
 * parses), `kubectl apply --dry-run=client` accepts it, and the systemd unit's environment file
 * holds only real FLANNELD_* variables.
 */
import assert from "node:assert/strict";
import { loadAll } from "js-yaml";
import type { DaemonSet } from "kubernetes-types/apps/v1";
import type { ConfigMap, Namespace, ServiceAccount } from "kubernetes-types/core/v1";
import type { ObjectMeta } from "kubernetes-types/meta/v1";
import type { ClusterRole, ClusterRoleBinding } from "kubernetes-types/rbac/v1";
import { parseNetConfig } from "../../config/netconf.ts";
import { parseRunFlags } from "../../config/flags.ts";
import { IMAGE_REFERENCE } from "../../packaging/image.ts";
import { hasCommand, testNeeding } from "../helpers/netns.ts";

const DEPLOY = new URL("../../deploy/", import.meta.url).pathname;
const MANIFEST = `${DEPLOY}kube-tartan.yml`;

/** What every Kubernetes object has. */
interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: ObjectMeta;
}

async function objects(): Promise<KubeObject[]> {
  return loadAll(await Deno.readTextFile(MANIFEST)) as KubeObject[];
}

function find<T extends KubeObject>(all: KubeObject[], kind: string): T {
  const found = all.filter((o) => o.kind === kind);
  assert.equal(found.length, 1, `one ${kind}`);
  return found[0] as T;
}

Deno.test("the manifest holds flannel's set of objects, all in one namespace", async () => {
  const all = await objects();
  assert.deepEqual(all.map((o) => o.kind), [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "DaemonSet",
  ]);
  const ns = find<Namespace>(all, "Namespace").metadata!.name;
  for (
    const o of all.filter((o) => ["ServiceAccount", "ConfigMap", "DaemonSet"].includes(o.kind!))
  ) {
    assert.equal(o.metadata?.namespace, ns, String(o.kind));
  }
  const binding = find<ClusterRoleBinding>(all, "ClusterRoleBinding");
  const account = find<ServiceAccount>(all, "ServiceAccount");
  assert.deepEqual(JSON.parse(JSON.stringify(binding.subjects)), [{
    kind: "ServiceAccount",
    name: account.metadata!.name,
    namespace: ns,
  }]);
  assert.equal(binding.roleRef.name, find<ClusterRole>(all, "ClusterRole").metadata!.name);
});

Deno.test("RBAC is exactly what the kube subnet manager uses (spec §4.2)", async () => {
  const role = find<ClusterRole>(await objects(), "ClusterRole");
  const grants = role.rules!.flatMap((r) =>
    r.resources!.map((res) => `${r.apiGroups!.join(",")}/${res}: ${[...r.verbs].sort().join(",")}`)
  ).sort();
  assert.deepEqual(grants, ["/nodes/status: patch", "/nodes: get,list,watch", "/pods: get"]);
});

Deno.test("the ConfigMap carries the repo's CNI config and a net-conf that parses", async () => {
  const cm = find<ConfigMap>(await objects(), "ConfigMap");
  const repoConflist = JSON.parse(
    await Deno.readTextFile(new URL("../../cni/10-flannel.conflist", import.meta.url)),
  );
  assert.deepEqual(JSON.parse(cm.data!["cni-conf.json"]), repoConflist);
  const { config } = parseNetConfig(cm.data!["net-conf.json"], "kube");
  assert.equal(config.backend.type, "vxlan");
  assert.ok(config.ipv4);
});

Deno.test("the DaemonSet runs the daemon with flags that parse, and probes the port it binds", async () => {
  const all = await objects();
  const ds = find<DaemonSet>(all, "DaemonSet");
  const pod = ds.spec!.template.spec!;
  assert.equal(pod.hostNetwork, true);
  assert.equal(
    pod.serviceAccountName,
    find<ServiceAccount>(all, "ServiceAccount").metadata!.name,
  );
  const [main] = pod.containers;
  const env = Object.fromEntries(main.env!.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
  assert.deepEqual(env, {
    NODE_NAME: "spec.nodeName",
    POD_NAME: "metadata.name",
    POD_NAMESPACE: "metadata.namespace",
    HOST_IP: "status.hostIP",
  });
  // The kubelet expands $(HOST_IP); then the arguments must be flags `tartan run` accepts.
  const args = main.args!.map((a) => a.replace("$(HOST_IP)", "198.18.0.11"));
  assert.deepEqual(main.command, ["/usr/local/bin/tartan", "run"]);
  const { options } = parseRunFlags(args, {});
  assert.equal(options.kubeSubnetMgr, true);
  assert.equal(options.ipMasq, true);
  assert.equal(options.healthzIp, "198.18.0.11");
  const port = main.ports!.find((p) => p.name === "admin")!.containerPort;
  assert.equal(options.healthzPort, port);
  assert.equal(main.readinessProbe!.httpGet!.path, "/readyz");
  assert.equal(main.livenessProbe!.httpGet!.path, "/healthz");
  for (const probe of [main.readinessProbe!, main.livenessProbe!]) {
    assert.equal(probe.httpGet!.port, "admin");
    assert.equal(probe.httpGet!.host, undefined, "probes go to the pod IP, which the daemon binds");
  }
  const scrape = ds.spec!.template.metadata!.annotations!;
  assert.equal(scrape["prometheus.io/scrape"], "true");
  assert.equal(scrape["prometheus.io/port"], String(port));
  assert.equal(scrape["prometheus.io/path"], "/metrics");
  assert.deepEqual(main.securityContext!.capabilities!.add, ["NET_ADMIN", "NET_RAW"]);
  assert.equal(main.securityContext!.privileged, false);

  // Mounts: the net-conf where --net-config-path looks, subnet.env's directory, the xtables lock,
  // the TUN device.
  const mounts = Object.fromEntries(main.volumeMounts!.map((m) => [m.mountPath, m.name]));
  const volumes = Object.fromEntries(pod.volumes!.map((v) => [v.name, v]));
  assert.equal(
    volumes[mounts["/etc/kube-flannel/"]].configMap?.name,
    find<ConfigMap>(all, "ConfigMap").metadata!.name,
  );
  assert.equal(options.netConfigPath, "/etc/kube-flannel/net-conf.json");
  assert.equal(volumes[mounts["/run/flannel"]].hostPath?.path, "/run/flannel");
  assert.equal(options.subnetFile, "/run/flannel/subnet.env");
  assert.equal(volumes[mounts["/run/xtables.lock"]].hostPath?.type, "FileOrCreate");
  // The TUN device for the udp backend and wireguard-go.
  assert.deepEqual(volumes[mounts["/dev/net/tun"]].hostPath, {
    path: "/dev/net/tun",
    type: "CharDevice",
  });

  // Init steps: the plugin lands as /opt/cni/bin/flannel, the config as 10-flannel.conflist.
  // Both are atomic copies by the image's install-conf.
  const [plugin, conf] = pod.initContainers!;
  assert.deepEqual([...plugin.command!, ...plugin.args!], [
    "/opt/bin/install-conf",
    "/flannel",
    "/opt/cni/bin/flannel",
  ]);
  assert.equal(volumes[plugin.volumeMounts![0].name].hostPath?.path, "/opt/cni/bin");
  assert.deepEqual([...conf.command!, ...conf.args!], [
    "/opt/bin/install-conf",
    "/etc/kube-flannel/cni-conf.json",
    "/etc/cni/net.d/10-flannel.conflist",
  ]);
  // Every container runs the image `deno task dist` builds.
  for (const container of [...pod.initContainers!, ...pod.containers]) {
    assert.equal(container.image, IMAGE_REFERENCE, container.name);
  }
  assert.ok(pod.tolerations!.some((t) => t.operator === "Exists" && t.effect === "NoSchedule"));
});

Deno.test("the systemd unit restarts on failure and its environment file holds real flags", async () => {
  const unit = await Deno.readTextFile(`${DEPLOY}tartan.service`);
  for (
    const line of [
      "Type=notify",
      "Restart=on-failure",
      "EnvironmentFile=-/etc/tartan/tartan.env",
      "ExecStart=/usr/local/bin/tartan run",
    ]
  ) {
    assert.ok(unit.split("\n").includes(line), line);
  }
  const env = Object.fromEntries(
    (await Deno.readTextFile(`${DEPLOY}tartan.env`)).split("\n")
      .filter((l) => /^[A-Z_]+=/.test(l))
      .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
  assert.ok(Object.keys(env).length >= 5);
  const parsed = parseRunFlags([], env);
  assert.deepEqual(parsed.warnings, [], "every variable applies cleanly");
  assert.equal(parsed.options.etcdEndpoints.length, 3);
  assert.equal(parsed.options.ipMasq, true);
  assert.equal(parsed.options.healthzPort, 9101);
});

/** Legacy discovery for the kinds in the manifest; every object GET is a 404 (nothing exists). */
function discoveryStub(): { url: string; gets: string[]; close(): Promise<void> } {
  const resource = (name: string, kind: string, namespaced: boolean) => ({
    name,
    singularName: kind.toLowerCase(),
    namespaced,
    kind,
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
  });
  const group = (name: string) => ({
    name,
    versions: [{ groupVersion: `${name}/v1`, version: "v1" }],
    preferredVersion: { groupVersion: `${name}/v1`, version: "v1" },
  });
  const docs: Record<string, unknown> = {
    "/version": { major: "1", minor: "32", gitVersion: "v1.32.0" },
    "/api": { kind: "APIVersions", versions: ["v1"], serverAddressByClientCIDRs: [] },
    "/apis": {
      kind: "APIGroupList",
      apiVersion: "v1",
      groups: [group("apps"), group("rbac.authorization.k8s.io")],
    },
    "/api/v1": {
      kind: "APIResourceList",
      groupVersion: "v1",
      resources: [
        resource("namespaces", "Namespace", false),
        resource("serviceaccounts", "ServiceAccount", true),
        resource("configmaps", "ConfigMap", true),
        resource("nodes", "Node", false),
        resource("pods", "Pod", true),
      ],
    },
    "/apis/apps/v1": {
      kind: "APIResourceList",
      groupVersion: "apps/v1",
      resources: [resource("daemonsets", "DaemonSet", true)],
    },
    "/apis/rbac.authorization.k8s.io/v1": {
      kind: "APIResourceList",
      groupVersion: "rbac.authorization.k8s.io/v1",
      resources: [
        resource("clusterroles", "ClusterRole", false),
        resource("clusterrolebindings", "ClusterRoleBinding", false),
      ],
    },
  };
  const gets: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    const headers = { "content-type": "application/json" };
    if (path in docs) return new Response(JSON.stringify(docs[path]), { headers });
    gets.push(`${req.method} ${path}`);
    const notFound = {
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      reason: "NotFound",
      code: 404,
    };
    return new Response(JSON.stringify(notFound), { status: 404, headers });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, gets, close: () => server.shutdown() };
}

testNeeding(
  "kubectl apply --dry-run=client accepts deploy/",
  await hasCommand("kubectl") ? undefined : "kubectl (Debian kubernetes-client)",
  async () => {
    const stub = discoveryStub();
    const dir = await Deno.makeTempDir({ prefix: "tt-kubectl-" });
    try {
      await Deno.writeTextFile(`${dir}/kubeconfig`, "");
      // Client dry-run still asks the server which kinds exist and whether objects do: the stub.
      const out = await new Deno.Command("kubectl", {
        args: [
          `--server=${stub.url}`,
          `--cache-dir=${dir}/cache`,
          "apply",
          "--dry-run=client",
          "--validate=false",
          "-f",
          DEPLOY,
        ],
        env: { KUBECONFIG: `${dir}/kubeconfig`, HOME: dir },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.ok(out.success, `${text}${new TextDecoder().decode(out.stderr)}`);
      assert.deepEqual(text.trim().split("\n").sort(), [
        "clusterrole.rbac.authorization.k8s.io/tartan created (dry run)",
        "clusterrolebinding.rbac.authorization.k8s.io/tartan created (dry run)",
        "configmap/kube-tartan-cfg created (dry run)",
        "daemonset.apps/kube-tartan-ds created (dry run)",
        "namespace/kube-tartan created (dry run)",
        "serviceaccount/tartan created (dry run)",
      ]);
      assert.ok(
        stub.gets.includes("GET /apis/apps/v1/namespaces/kube-tartan/daemonsets/kube-tartan-ds"),
      );
    } finally {
      await stub.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
);
