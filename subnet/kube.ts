/**
 * Subnet leases from the Kubernetes API (`--kube-subnet-mgr`, spec §4): our subnet is our Node's
 * `spec.podCIDRs`, our lease is published as flannel's node annotations, peers' leases are read
 * from every Node through a list/watch, and the node condition NetworkUnavailable=False tells
 * the scheduler the network is up.
 *
 * Differences from flannel, chosen on purpose:
 * - A node without a pod CIDR yet is waited for (log line `node "<name>" pod cidr not assigned`,
 *   repeated while it lasts), where flannel exits 1 and crash-loops until the controller manager
 *   allocates one. A pod CIDR outside the configured network is still fatal, as in flannel:
 *   waiting cannot fix it (pod CIDRs are immutable).
 * - API errors at start-up are retried with backoff instead of failing after 30 s.
 * - A node update is reported when either family's annotations or the pod CIDRs changed
 *   (quirk 15); an update that leaves a node unreadable is skipped, keeping its last good lease
 *   (as malformed etcd events are, quirk 1).
 * - The VTEP MAC is restored from the normalised annotation names (quirk 16).
 * - Our annotations and the NetworkUnavailable=False condition are re-asserted when they drift,
 *   seen through the node watch or a slow periodic read (quirk 34). Repairs are rate-limited so
 *   a controller that keeps flipping the condition cannot make us hammer the API.
 * - Our Node's pod CIDR changing under us (node deleted and re-registered) ends
 *   {@link KubeSubnetManager.maintainLease} with {@link LeaseLostError}, so the daemon restarts
 *   with the new subnet instead of serving a stale one.
 *
 * Our own Node is handled in `kube_own_node.ts` (name, pod CIDRs, annotations) and kept as
 * published by `kube_maintain.ts`, which watches it on its own; the peers' leases come from
 * the list/watch of every Node here.
 *
 * @module
 */
import { DEFAULTS } from "../config/flags.ts";
import { ConfigError, parseNetConfig } from "../config/netconf.ts";
import type { NetworkConfig } from "../config/network_config.ts";
import { errorText, type Logger, logger } from "../log.ts";
import { formatNet, type IPAddr, type IPNet } from "../ip/mod.ts";
import {
  annotatedAddr,
  type AnnotationNames,
  annotationNames,
  nodeLease,
  NodeLeaseError,
  previousData,
} from "./kube_annotations.ts";
import { type KubeClient, KubeConfigError } from "./kube_client.ts";
import { maintainOwnNode } from "./kube_maintain.ts";
import type { KubeNode, NodeShapeError } from "./kube_node.ts";
import { type OwnLease, OwnNode } from "./kube_own_node.ts";
import { listWatchNodes } from "./kube_watch.ts";
import {
  formatLeaseKey,
  type JsonValue,
  type Lease,
  type LeaseAttrs,
  sameSubnets,
} from "./lease.ts";
import { LeaseTracker } from "./lease_tracker.ts";
import {
  LeaseLostError,
  type LeaseStoreCounters,
  type LeaseWatchUpdate,
  newLeaseStoreCounters,
  type SubnetManager,
} from "./manager.ts";

export { KubeLeaseError } from "./kube_own_node.ts";

const MAX_SKIPS_LOGGED = 1000;

/** Timings; the defaults suit production, tests shorten them. */
export interface KubeTiming {
  /** First wait after a failed request or while the pod CIDR is missing (default 500 ms). */
  readonly retryInitialMs: number;
  /** Longest such wait (default 10 s). */
  readonly retryMaxMs: number;
  /** How often our Node is re-read when its watch brings no news of it (default 5 min). */
  readonly checkMs: number;
  /** Least time between two repairs of drifted annotations or condition (default 10 s). */
  readonly minRepairIntervalMs: number;
  /** Watch reconnect backoff (default 100 ms doubling to 5 s). */
  readonly watchBackoff: { readonly initialMs: number; readonly maxMs: number };
}

const DEFAULT_TIMING: KubeTiming = {
  retryInitialMs: 500,
  retryMaxMs: 10_000,
  checkMs: 300_000,
  minRepairIntervalMs: 10_000,
  watchBackoff: { initialMs: 100, maxMs: 5000 },
};

/** Options of {@link KubeSubnetManager}. */
export interface KubeManagerOptions {
  readonly client: KubeClient;
  /** `--net-config-path`. */
  readonly netConfigPath?: string;
  /** `--kube-annotation-prefix` as given (normalised here). */
  readonly annotationPrefix?: string;
  /** Our Node's name (`NODE_NAME`); when empty, read from our pod's `spec.nodeName`. */
  readonly nodeName?: string;
  /** Our pod (`POD_NAME`, `POD_NAMESPACE`), used when `nodeName` is empty. */
  readonly pod?: { readonly name: string; readonly namespace: string };
  /** `--set-node-network-unavailable` (default true). */
  readonly setNodeNetworkUnavailable?: boolean;
  /** Counters to update, e.g. the daemon state's `store`; a fresh set by default. */
  readonly counters?: LeaseStoreCounters;
  /** Told our node name once known (the daemon shows it). */
  readonly onNodeName?: (name: string) => void;
  readonly log?: Logger;
  readonly timing?: Partial<KubeTiming>;
}

function describe(lease: Lease): string {
  const nets = [lease.subnet, lease.ipv6Subnet].filter((n): n is IPNet => n !== undefined);
  return nets.map(formatNet).join(",");
}

/**
 * The Kubernetes subnet manager.
 *
 * @example
 * ```ts
 * const client = createKubeClient(loadKubeConfig({}));
 * const manager = new KubeSubnetManager({ client, nodeName: Deno.env.get("NODE_NAME") });
 * const config = await manager.getNetworkConfig(signal);
 * const lease = await manager.acquireLease(attrs, signal); // waits for the pod CIDR
 * await manager.maintainLease(lease, signal); // until signal aborts
 * ```
 */
export class KubeSubnetManager implements SubnetManager {
  /** Counters for metrics and tests. */
  readonly stats: LeaseStoreCounters;
  /** The annotation names in use. */
  readonly names: AnnotationNames;
  readonly #client: KubeClient;
  readonly #log: Logger;
  readonly #netConfigPath: string;
  readonly #setNetworkUnavailable: boolean;
  readonly #timing: KubeTiming;
  readonly #closed = new AbortController();
  readonly #skipsLogged = new Set<string>();
  readonly #node: OwnNode;
  #config?: NetworkConfig;
  #own?: OwnLease;

  /**
   * @throws {AnnotationPrefixError} for a prefix flannel would reject.
   * @throws {KubeConfigError} when neither a node name nor a pod (name and namespace) is given.
   */
  constructor(options: KubeManagerOptions) {
    this.#client = options.client;
    this.names = annotationNames(options.annotationPrefix);
    this.#netConfigPath = options.netConfigPath ?? DEFAULTS.netConfigPath;
    if (!options.nodeName && !(options.pod?.name && options.pod.namespace)) {
      throw new KubeConfigError(
        "cannot tell which node this is: set NODE_NAME, or POD_NAME and POD_NAMESPACE",
      );
    }
    this.#setNetworkUnavailable = options.setNodeNetworkUnavailable ?? true;
    this.#timing = { ...DEFAULT_TIMING, ...options.timing };
    this.stats = options.counters ?? newLeaseStoreCounters();
    this.#log = options.log ?? logger("kube");
    this.#node = new OwnNode({
      client: this.#client,
      names: this.names,
      log: this.#log,
      retry: { initialMs: this.#timing.retryInitialMs, maxMs: this.#timing.retryMaxMs },
      nodeName: options.nodeName,
      pod: options.pod,
      onNodeName: options.onNodeName,
    });
  }

  /** The net-conf file, read once (spec §2.1); unreadable or invalid is fatal, as in flannel. */
  async getNetworkConfig(signal: AbortSignal): Promise<NetworkConfig> {
    signal.throwIfAborted();
    if (this.#config) return this.#config;
    let text: string;
    try {
      text = await Deno.readTextFile(this.#netConfigPath);
    } catch (error) {
      throw new ConfigError("", `cannot read ${this.#netConfigPath}: ${errorText(error)}`);
    }
    const { config, warnings } = parseNetConfig(text, "kube");
    for (const warning of warnings) this.#log.warn(warning, { file: this.#netConfigPath });
    this.#config = config;
    return config;
  }

  /**
   * Our Node's pod CIDRs as our lease, and our attributes published as annotations. Waits (with
   * a log line) while the pod CIDR is not assigned, and retries API errors, until `signal` aborts.
   *
   * @throws {KubeLeaseError} when the pod CIDRs are unreadable or outside the network.
   */
  async acquireLease(attrs: LeaseAttrs, callerSignal: AbortSignal): Promise<Lease> {
    const signal = this.#until(callerSignal);
    const config = await this.getNetworkConfig(signal);
    const name = await this.#node.name(signal);
    const { node, subnets } = await this.#node.leaseSubnets(config, signal);
    const published = await this.#node.publish(node, attrs, signal);
    const lease: Lease = { ...subnets, attrs: published };
    this.#own = { lease, attrs };
    this.#log.info("lease acquired", { node: name, subnet: describe(lease) });
    return lease;
  }

  /** Kube leases never expire: re-publish our annotations if someone changed them. */
  async renewLease(lease: Lease, callerSignal: AbortSignal): Promise<Lease> {
    const signal = this.#until(callerSignal);
    const own = this.#ownFor(lease);
    const node = await this.#node.read(signal);
    if (await this.#node.repairAnnotations(node, own, signal)) this.stats.renewals++;
    return own.lease;
  }

  /**
   * Keep our Node as we published it until `signal` aborts: set NetworkUnavailable=False once
   * (spec §4.5), then re-assert it and our annotations whenever they drift (quirk 34). It watches
   * our Node itself (kube_maintain.ts), whether or not {@link watchLeases} runs.
   *
   * @throws {LeaseLostError} when our Node's pod CIDR no longer matches our lease.
   */
  async maintainLease(lease: Lease, callerSignal: AbortSignal): Promise<void> {
    const signal = this.#until(callerSignal);
    await maintainOwnNode(
      {
        client: this.#client,
        own: this.#node,
        log: this.#log,
        stats: this.stats,
        setNetworkUnavailable: this.#setNetworkUnavailable,
        checkMs: this.#timing.checkMs,
        minRepairIntervalMs: this.#timing.minRepairIntervalMs,
        retry: { initialMs: this.#timing.retryInitialMs, maxMs: this.#timing.retryMaxMs },
        watchBackoff: this.#timing.watchBackoff,
      },
      this.#ownFor(lease),
      signal,
    );
  }

  /** Every Node's lease: a snapshot, then events; survives expiry (410) and reconnects. */
  async *watchLeases(callerSignal: AbortSignal): AsyncGenerator<LeaseWatchUpdate> {
    const signal = this.#until(callerSignal);
    const config = await this.getNetworkConfig(signal);
    const tracker = new LeaseTracker(this.stats);
    const items = listWatchNodes(this.#client, {
      backoff: this.#timing.watchBackoff,
      onFailure: (failure) => {
        this.stats.watchErrors++;
        const fields = { stage: failure.stage, expired: failure.expired, error: failure.error };
        if (failure.expired) this.#log.info("node watch expired; listing again", fields);
        else this.#log.warn("node watch failed; retrying", fields);
      },
      onMalformed: (error) => this.#skipped(error),
    }, signal);
    for await (const item of items) {
      if (item.type === "snapshot") {
        yield tracker.snapshot(item.nodes.map((node) => [node.name, this.#leaseOf(node, config)]));
        continue;
      }
      // A node left unreadable is left out: it keeps its last good lease (quirk 15).
      const lease = item.event === "DELETED" ? undefined : this.#leaseOf(item.node, config);
      if (item.event !== "DELETED" && !lease) continue;
      const update = tracker.changes([{ name: item.node.name, lease }]);
      if (update) yield update;
    }
  }

  /** The backend data our Node carried at start-up for one family (VTEP MAC reuse, §4.2). */
  async previousBackendData(family: 4 | 6, signal: AbortSignal): Promise<JsonValue | undefined> {
    return previousData(await this.#node.startState(this.#until(signal)), this.names, family);
  }

  /**
   * Addresses pinned by the `node-public-ip(v6)` annotations at start-up; they override
   * `--public-ip(v6)` and so interface selection (spec §10.1 step 6). Invalid ones are ignored.
   */
  async nodePublicIPs(signal: AbortSignal): Promise<{ publicIP?: IPAddr; publicIPv6?: IPAddr }> {
    const node = await this.#node.startState(this.#until(signal));
    const read = (name: string, family: 4 | 6) => {
      const addr = annotatedAddr(node.annotations, name, family);
      if (!addr && node.annotations[name]) {
        this.#log.warn("ignoring an annotation that holds no address of its family", {
          annotation: name,
          value: node.annotations[name],
        });
      }
      return addr;
    };
    const publicIP = read(this.names.nodePublicIP, 4);
    const publicIPv6 = read(this.names.nodePublicIPv6, 6);
    return { ...(publicIP && { publicIP }), ...(publicIPv6 && { publicIPv6 }) };
  }

  /** Stop every request and watch, and release the client (the manager owns it). */
  close(): Promise<void> {
    this.#closed.abort();
    this.#client.close();
    return Promise.resolve();
  }

  #ownFor(lease: Lease): OwnLease {
    const own = this.#own;
    if (!own || !sameSubnets(own.lease, lease)) {
      throw new LeaseLostError(formatLeaseKey(lease), "not the lease this manager acquired");
    }
    return own;
  }

  // --- peers -----------------------------------------------------------------------------------

  #leaseOf(node: KubeNode, config: NetworkConfig): Lease | undefined {
    try {
      return nodeLease(node, this.names, config);
    } catch (error) {
      if (!(error instanceof NodeLeaseError)) throw error;
      this.#skipped(error);
      return undefined;
    }
  }

  /** Count a skipped node; log each distinct reason once (unmanaged nodes only at debug). */
  #skipped(error: NodeLeaseError | NodeShapeError): void {
    this.stats.malformedSkipped++;
    if (this.#skipsLogged.size >= MAX_SKIPS_LOGGED || this.#skipsLogged.has(error.message)) return;
    this.#skipsLogged.add(error.message);
    if (error instanceof NodeLeaseError && error.kind === "unmanaged") {
      this.#log.debug("skipping node without a flannel lease", { error: error.message });
    } else {
      this.#log.warn("skipping node with unusable lease data", { error: error.message });
    }
  }

  // --- shared ----------------------------------------------------------------------------------

  /** `signal`, also aborted when the manager is closed. */
  #until(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, this.#closed.signal]);
  }
}
