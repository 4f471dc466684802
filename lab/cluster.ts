/**
 * A Tartan cluster in network namespaces: one etcd (or, in kube mode, a fake Kubernetes API) on
 * the host loopback, N nodes on an underlay bridge each running `tartan run`, and pods created
 * through our CNI plugin. The demo, `tartan lab` and the end-to-end tests all use it.
 *
 * @module
 */
import { commandRunner } from "../exec.ts";
import { type EtcdFixture, startEtcd } from "./etcd.ts";
import { DEFAULTS } from "../config/flags.ts";
import { parseNetConfig } from "../config/netconf.ts";
import { formatNet, nthSubnet } from "../ip/mod.ts";
import { type FakeKubeApi, fakeNode, startFakeKubeApi } from "./kube_api.ts";
import { type NodeDaemon, type NodeStoreOptions, startNodeDaemon } from "./node.ts";
import { cniConfig, invokeCni, type LabPod, resultAddress } from "./pods.ts";
import { addNetns, createNode, createUnderlay, deleteLabNetns, labNames } from "./topology.ts";

/** flannel's default etcd prefix; the lab writes its config there. */
export const LAB_ETCD_PREFIX = DEFAULTS.etcdPrefix;

/** How to build the lab. */
export interface LabOptions {
  /** Namespace prefix, `t?-<tag>-` (e.g. `tt-ab12cd-`). */
  readonly prefix: string;
  readonly nodes: number;
  /** The net-conf (written to `<prefix>/config` in etcd, or to the kube mode's file). */
  readonly netConf: Readonly<Record<string, unknown>>;
  /** Extra `tartan run` flags for every node. */
  readonly flags?: readonly string[];
  /** Extra environment for every node's daemon. */
  readonly env?: Readonly<Record<string, string>>;
  /** Where node files go (subnet.env, logs, CNI state); a temp dir by default. */
  readonly workDir?: string;
  /** Give the underlay IPv6 addresses too (for a dual-stack net-conf). */
  readonly ipv6Underlay?: boolean;
}

/** A running lab, whatever holds its leases. */
export interface LabBase {
  readonly prefix: string;
  readonly workDir: string;
  readonly nodes: NodeDaemon[];
  readonly pods: LabPod[];
  /** Add and start one more node; returns it. */
  addNode(): Promise<NodeDaemon>;
  /** Create `count` pods on node `index` (0-based) through the CNI plugin. */
  addPods(index: number, count: number): Promise<LabPod[]>;
  /** Wait until every running node is ready and has programmed all other nodes. */
  waitConverged(timeoutMs?: number): Promise<void>;
  /** Stop daemons, delete namespaces, stop etcd (or the API), remove files. Safe to call twice. */
  stop(): Promise<void>;
}

/** A running lab whose leases live in etcd (flannel's default). */
export interface LabCluster extends LabBase {
  readonly etcd: EtcdFixture;
}

/** A running lab in Kubernetes mode: leases are Node annotations on a fake API server. */
export interface KubeLabCluster extends LabBase {
  readonly kube: FakeKubeApi;
}

/** The default lab net-conf: flannel's usual network with the given backend. */
export function defaultNetConf(backend: string): Record<string, unknown> {
  return { Network: "10.244.0.0/16", Backend: { Type: backend } };
}

interface BackendPeers {
  type: string;
  peers: Array<{ inSync: boolean }>;
}

async function fetchJson<T>(url: string): Promise<T | undefined> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
    return res.ok ? await res.json() as T : (await res.body?.cancel(), undefined);
  } catch {
    return undefined;
  }
}

/** Whether a node serves readiness and has every other running node programmed in sync. */
async function converged(node: NodeDaemon, peers: number): Promise<boolean> {
  const ready = await fetch(`${node.adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) })
    .then(async (res) => (await res.body?.cancel(), res.ok), () => false);
  if (!ready) return false;
  const backend = await fetchJson<BackendPeers>(`${node.adminUrl}/v1/backend`);
  if (backend?.type === "alloc") return true; // alloc programs nothing
  return backend !== undefined && backend.peers.length >= peers &&
    backend.peers.every((p) => p.inSync);
}

/** Where a lab's leases live: what each node needs to reach it, and how to stop it. */
interface LeaseStore {
  /** Wiring for node `i` (1-based) in namespace `ns`. */
  wire(i: number, ns: string): NodeStoreOptions;
  stop(): Promise<void>;
}

/** Build and start a lab (etcd mode). Everything it made is removed if start-up fails. */
export async function startLab(options: LabOptions): Promise<LabCluster> {
  let etcd: EtcdFixture | undefined;
  const lab = await buildLab(options, async () => {
    const fixture = etcd = await startEtcd();
    await fixture.client().put({
      key: `${LAB_ETCD_PREFIX}/config`,
      value: JSON.stringify(options.netConf),
    });
    const etcdPort = Number(new URL(fixture.endpoint).port);
    return { wire: () => ({ etcdPort }), stop: () => fixture.stop() };
  });
  return { ...lab, etcd: etcd! };
}

/**
 * Build and start a lab in Kubernetes mode: the nodes run `--kube-subnet-mgr` against a fake API
 * server on the host loopback (forwarded into each node as etcd is), each with `NODE_NAME` set
 * and a Node object whose pod CIDR is the node's slice of the network, as the controller
 * manager would assign it. The net-conf is a file (`--net-config-path`).
 */
export async function startKubeLab(options: LabOptions): Promise<KubeLabCluster> {
  let kube: FakeKubeApi | undefined;
  const lab = await buildLab(options, async (workDir) => {
    const api = kube = startFakeKubeApi();
    const text = JSON.stringify(options.netConf);
    const netConfigPath = `${workDir}/net-conf.json`;
    await Deno.writeTextFile(netConfigPath, text);
    const { config } = parseNetConfig(text, "kube");
    return {
      wire(i, ns) {
        const podCIDRs = [config.ipv4, config.ipv6].flatMap((fam) =>
          fam ? [formatNet(nthSubnet(fam.network, fam.subnetLen, BigInt(i)))] : []
        );
        api.setNode(fakeNode(ns, { podCIDRs }));
        return { kube: { apiPort: api.port, nodeName: ns, netConfigPath } };
      },
      stop: () => api.close(),
    };
  });
  return { ...lab, kube: kube! };
}

/** The lab without its lease store: topology, nodes, pods. */
async function buildLab(
  options: LabOptions,
  startStore: (workDir: string) => Promise<LeaseStore>,
): Promise<LabBase> {
  const run = commandRunner();
  const names = labNames(options.prefix);
  const workDir = options.workDir ?? await Deno.makeTempDir({ prefix: "tartan-lab-" });
  const nodes: NodeDaemon[] = [];
  const pods: LabPod[] = [];
  let store: LeaseStore | undefined;
  let stopped = false;

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    await Promise.all(nodes.map((n) => n.close()));
    await deleteLabNetns(run, options.prefix);
    await store?.stop();
    if (!options.workDir) await Deno.remove(workDir, { recursive: true }).catch(() => {});
  }

  try {
    store = await startStore(workDir);
    const leases = store;
    const underlay = { ipv6: options.ipv6Underlay };
    await createUnderlay(run, names.underlay, underlay);

    const lab: LabBase = {
      prefix: options.prefix,
      workDir,
      nodes,
      pods,
      async addNode() {
        const i = nodes.length + 1;
        const ns = names.node(i);
        await createNode(run, names.underlay, ns, i, underlay);
        const node = await startNodeDaemon({
          ns,
          dir: `${workDir}/n${i}`,
          ...leases.wire(i, ns),
          flags: options.flags,
          env: options.env,
        });
        nodes.push(node);
        return node;
      },
      async addPods(index, count) {
        const node = nodes[index];
        const made: LabPod[] = [];
        for (let j = 0; j < count; j++) {
          const ns = names.pod(index + 1, pods.filter((p) => p.node === node.ns).length + 1);
          await addNetns(run, ns);
          const result = await invokeCni("ADD", node.ns, ns, cniConfig(node.subnetFile, node.dir));
          const pod = {
            ns,
            node: node.ns,
            ip: resultAddress(result),
            ipv6: resultAddress(result, 6),
          };
          pods.push(pod);
          made.push(pod);
        }
        return made;
      },
      async waitConverged(timeoutMs = 30_000) {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const running = nodes.filter((n) => n.running());
          const states = await Promise.all(running.map((n) => converged(n, running.length - 1)));
          if (states.every(Boolean)) return;
          if (Date.now() > deadline) {
            const lagging = running.filter((_, i) => !states[i]).map((n) => n.ns);
            throw new Error(`lab did not converge in ${timeoutMs} ms: ${lagging.join(", ")}`);
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      stop,
    };
    for (let i = 0; i < options.nodes; i++) await lab.addNode();
    return lab;
  } catch (err) {
    await stop();
    throw err;
  }
}
