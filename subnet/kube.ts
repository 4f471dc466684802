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
 * @module
 */
import { DEFAULTS } from "../config/flags.ts";
import { ConfigError, parseNetConfig } from "../config/netconf.ts";
import type { NetworkConfig } from "../config/network_config.ts";
import { errorText, type Logger, logger } from "../log.ts";
import { Backoff } from "./backoff.ts";
import { sleep } from "../sleep.ts";
import { formatNet, type IPAddr, type IPNet, netContainsNet, netEqual } from "../ip/mod.ts";
import {
  annotatedAddr,
  type AnnotationNames,
  annotationNames,
  annotationPatch,
  nodeLease,
  NodeLeaseError,
  previousData,
  publication,
} from "./kube_annotations.ts";
import { KubeApiError, type KubeClient, KubeConfigError } from "./kube_client.ts";
import {
  type KubeNode,
  networkAvailable,
  networkUpPatch,
  NodeShapeError,
  parseKubeNode,
  podCidrsOf,
} from "./kube_node.ts";
import { listWatchNodes, type NodeWatchItem } from "./kube_watch.ts";
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

const MAX_SKIPS_LOGGED = 1000;
/** A problem that persists is logged again this often while we wait. */
const REPEAT_LOG_MS = 30_000;

/** Timings; the defaults suit production, tests shorten them. */
export interface KubeTiming {
  /** First wait after a failed request or while the pod CIDR is missing (default 500 ms). */
  readonly retryInitialMs: number;
  /** Longest such wait (default 10 s). */
  readonly retryMaxMs: number;
  /** How often our Node is re-read when the watch brings no news of it (default 5 min). */
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

/** Our Node cannot give us a lease: a pod CIDR outside the network, or unreadable pod CIDRs. */
export class KubeLeaseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KubeLeaseError";
  }
}

/** What we published, kept to re-assert it. */
interface OwnLease {
  readonly lease: Lease;
  /** The attributes the backend gave us (before any `*-overwrite`). */
  readonly attrs: LeaseAttrs;
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
  readonly #pod?: { readonly name: string; readonly namespace: string };
  readonly #setNetworkUnavailable: boolean;
  readonly #onNodeName?: (name: string) => void;
  readonly #timing: KubeTiming;
  readonly #closed = new AbortController();
  readonly #skipsLogged = new Set<string>();
  #nodeName?: string;
  #config?: NetworkConfig;
  /** Our Node as first read: what a previous run left (VTEP MAC, pinned public IPs). */
  #startNode?: Promise<KubeNode>;
  #own?: OwnLease;
  /** Latest state of our Node seen by the watch, for maintainLease. */
  #ownNodeSeen?: KubeNode;
  #wakeMaintainer?: () => void;
  #lastProblem = "";
  #lastLogged = 0;

  /**
   * @throws {AnnotationPrefixError} for a prefix flannel would reject.
   * @throws {KubeConfigError} when neither a node name nor a pod (name and namespace) is given.
   */
  constructor(options: KubeManagerOptions) {
    this.#client = options.client;
    this.names = annotationNames(options.annotationPrefix);
    this.#netConfigPath = options.netConfigPath ?? DEFAULTS.netConfigPath;
    this.#nodeName = options.nodeName || undefined;
    if (!this.#nodeName && !(options.pod?.name && options.pod.namespace)) {
      throw new KubeConfigError(
        "cannot tell which node this is: set NODE_NAME, or POD_NAME and POD_NAMESPACE",
      );
    }
    this.#pod = options.pod;
    this.#setNetworkUnavailable = options.setNodeNetworkUnavailable ?? true;
    this.#onNodeName = options.onNodeName;
    this.#timing = { ...DEFAULT_TIMING, ...options.timing };
    this.stats = options.counters ?? newLeaseStoreCounters();
    this.#log = options.log ?? logger("kube");
    if (this.#nodeName) this.#onNodeName?.(this.#nodeName);
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
    const name = await this.#resolveNodeName(signal);
    const backoff = new Backoff(this.#timing.retryInitialMs, this.#timing.retryMaxMs);
    let node = await this.#readOwnNode(signal);
    let subnets = this.#subnetsOf(node, config);
    while (!subnets) {
      await sleep(backoff.next(), signal);
      signal.throwIfAborted();
      node = await this.#readOwnNode(signal);
      subnets = this.#subnetsOf(node, config);
    }
    this.#problemSolved();
    const published = await this.#publish(node, attrs, signal);
    const lease: Lease = { ...subnets, attrs: published };
    this.#own = { lease, attrs };
    this.#log.info("lease acquired", { node: name, subnet: describe(lease) });
    return lease;
  }

  /** Kube leases never expire: re-publish our annotations if someone changed them. */
  async renewLease(lease: Lease, callerSignal: AbortSignal): Promise<Lease> {
    const signal = this.#until(callerSignal);
    const own = this.#ownFor(lease);
    const name = await this.#resolveNodeName(signal);
    const node = parseKubeNode(await this.#client.getNode(name, signal));
    if (await this.#repairAnnotations(node, own, signal)) this.stats.renewals++;
    return own.lease;
  }

  /**
   * Keep our Node as we published it until `signal` aborts: set NetworkUnavailable=False once
   * (spec §4.5), then re-assert it and our annotations whenever they drift (quirk 34).
   *
   * @throws {LeaseLostError} when our Node's pod CIDR no longer matches our lease.
   */
  async maintainLease(lease: Lease, callerSignal: AbortSignal): Promise<void> {
    const signal = this.#until(callerSignal);
    const own = this.#ownFor(lease);
    const name = await this.#resolveNodeName(signal);
    const backoff = new Backoff(this.#timing.retryInitialMs, this.#timing.retryMaxMs);
    let conditionSent = !this.#setNetworkUnavailable;
    let node: KubeNode | undefined;
    let fresh = false;
    while (!signal.aborted) {
      let wait = this.#timing.checkMs;
      try {
        if (!node) [node, fresh] = [parseKubeNode(await this.#client.getNode(name, signal)), true];
        this.#checkSubnets(node, own.lease);
        const annotationsDrifted = this.#annotationPatch(node, own) !== undefined;
        const conditionDrifted = conditionSent && this.#setNetworkUnavailable &&
          !networkAvailable(node);
        if ((annotationsDrifted || conditionDrifted) && !fresh) {
          node = undefined; // the watch may lag behind our own patches: confirm with a read
          continue;
        }
        if (annotationsDrifted) await this.#repairAnnotations(node, own, signal);
        if (!conditionSent || conditionDrifted) {
          await this.#client.patchNodeStatus(name, networkUpPatch(new Date()), signal);
          if (conditionSent) {
            this.#log.warn("NetworkUnavailable was not False; set it back", { node: name });
          } else this.#log.info("set NetworkUnavailable=False", { node: name });
          conditionSent = true;
        }
        if (annotationsDrifted || conditionDrifted) {
          this.stats.renewals++;
          await sleep(this.#timing.minRepairIntervalMs, signal);
        }
        backoff.reset();
      } catch (error) {
        if (error instanceof LeaseLostError) throw error;
        if (signal.aborted) break;
        this.stats.renewFailures++;
        wait = backoff.next();
        this.#log.warn("could not check our node; will retry", {
          node: name,
          error: errorText(error),
          retryInMs: wait,
        });
      }
      node = await this.#nextOwnNode(wait, signal);
      fresh = false;
    }
  }

  /** Every Node's lease: a snapshot, then events; survives expiry (410) and reconnects. */
  async *watchLeases(callerSignal: AbortSignal): AsyncGenerator<LeaseWatchUpdate> {
    const signal = this.#until(callerSignal);
    const config = await this.getNetworkConfig(signal);
    const ownName = await this.#resolveNodeName(signal);
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
      this.#noteOwnNode(item, ownName);
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
    return previousData(await this.#startState(signal), this.names, family);
  }

  /**
   * Addresses pinned by the `node-public-ip(v6)` annotations at start-up; they override
   * `--public-ip(v6)` and so interface selection (spec §10.1 step 6). Invalid ones are ignored.
   */
  async nodePublicIPs(signal: AbortSignal): Promise<{ publicIP?: IPAddr; publicIPv6?: IPAddr }> {
    const node = await this.#startState(signal);
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

  close(): Promise<void> {
    this.#closed.abort();
    return Promise.resolve();
  }

  // --- our node --------------------------------------------------------------------------------

  /** NODE_NAME, or our pod's `spec.nodeName` (retried until the pod is readable and scheduled). */
  async #resolveNodeName(signal: AbortSignal): Promise<string> {
    if (this.#nodeName) return this.#nodeName;
    const pod = this.#pod!;
    const backoff = new Backoff(this.#timing.retryInitialMs, this.#timing.retryMaxMs);
    for (;;) {
      signal.throwIfAborted();
      try {
        const name = await this.#client.podNodeName(pod.namespace, pod.name, signal);
        if (name) {
          this.#problemSolved();
          this.#nodeName = name;
          this.#onNodeName?.(name);
          return name;
        }
        this.#waiting(`pod ${pod.namespace}/${pod.name} has no spec.nodeName yet`);
      } catch (error) {
        if (signal.aborted) throw error;
        this.#waiting(`cannot read pod ${pod.namespace}/${pod.name}: ${errorText(error)}`);
      }
      await sleep(backoff.next(), signal);
    }
  }

  /** GET our Node, retrying any failure (404 included: it may still be registering). */
  async #readOwnNode(signal: AbortSignal): Promise<KubeNode> {
    const name = await this.#resolveNodeName(signal);
    const backoff = new Backoff(this.#timing.retryInitialMs, this.#timing.retryMaxMs);
    for (;;) {
      signal.throwIfAborted();
      try {
        return parseKubeNode(await this.#client.getNode(name, signal));
      } catch (error) {
        if (signal.aborted) throw error;
        const missing = error instanceof KubeApiError && error.status === 404;
        this.#waiting(missing ? `node "${name}" not found` : errorText(error));
      }
      await sleep(backoff.next(), signal);
    }
  }

  /** Our Node as first read; read once, shared by the start-up questions. */
  #startState(signal: AbortSignal): Promise<KubeNode> {
    if (!this.#startNode) {
      const reading = this.#readOwnNode(this.#until(signal));
      reading.catch(() => { // an abort must not stick
        if (this.#startNode === reading) this.#startNode = undefined;
      });
      this.#startNode = reading;
    }
    return this.#startNode;
  }

  /** Our lease's subnets, or undefined (logged) while a needed pod CIDR is not assigned yet. */
  #subnetsOf(
    node: KubeNode,
    config: NetworkConfig,
  ): Pick<Lease, "subnet" | "ipv6Subnet"> | undefined {
    let cidrs;
    try {
      cidrs = podCidrsOf(node);
    } catch (error) {
      if (error instanceof NodeShapeError) throw new KubeLeaseError(error.message);
      throw error;
    }
    const missing = [
      ...(config.ipv4 && !cidrs.ipv4 ? ["IPv4"] : []),
      ...(config.ipv6 && !cidrs.ipv6 ? ["IPv6"] : []),
    ];
    if (missing.length > 0) {
      const which = node.podCIDRs.length === 0 ? "" : ` (no ${missing.join("/")} pod CIDR)`;
      this.#waiting(
        `node "${node.name}" pod cidr not assigned${which}; waiting for the controller ` +
          "manager to allocate one (kube-controller-manager --allocate-node-cidrs)",
      );
      return undefined;
    }
    const within = (family: "ipv4" | "ipv6", subnet: IPNet | undefined): IPNet | undefined => {
      const fam = config[family];
      if (!fam || !subnet) return undefined;
      if (!netContainsNet(fam.network, subnet)) {
        throw new KubeLeaseError(
          `subnet "${formatNet(fam.network)}" specified in the flannel net config doesn't ` +
            `contain "${formatNet(subnet)}" PodCIDR of the "${node.name}" node`,
        );
      }
      return subnet;
    };
    const subnet = within("ipv4", cidrs.ipv4);
    const ipv6Subnet = within("ipv6", cidrs.ipv6);
    return { ...(subnet && { subnet }), ...(ipv6Subnet && { ipv6Subnet }) };
  }

  /** Patch our annotations until the API takes them; returns the attributes as published. */
  async #publish(node: KubeNode, attrs: LeaseAttrs, signal: AbortSignal): Promise<LeaseAttrs> {
    const backoff = new Backoff(this.#timing.retryInitialMs, this.#timing.retryMaxMs);
    for (;;) {
      const { patch, attrs: published, badOverwrites } = publication(
        this.names,
        attrs,
        node.annotations,
      );
      for (const name of badOverwrites) {
        this.#log.warn("ignoring an overwrite annotation that holds no address of its family", {
          annotation: name,
          value: node.annotations[name],
        });
      }
      if (Object.keys(patch).length === 0) return published;
      try {
        await this.#client.patchNodeStatus(node.name, annotationPatch(patch), signal);
        this.#problemSolved();
        this.#log.info("published our lease as node annotations", {
          node: node.name,
          annotations: Object.keys(patch).join(","),
        });
        return published;
      } catch (error) {
        if (signal.aborted) throw error;
        this.#waiting(`cannot annotate node "${node.name}": ${errorText(error)}`);
      }
      await sleep(backoff.next(), signal);
      signal.throwIfAborted();
      node = await this.#readOwnNode(signal);
    }
  }

  /** The annotation patch that would restore what we published, if any annotation drifted. */
  #annotationPatch(node: KubeNode, own: OwnLease): Readonly<Record<string, string>> | undefined {
    const { patch } = publication(this.names, own.attrs, node.annotations);
    return Object.keys(patch).length > 0 ? patch : undefined;
  }

  /** Re-publish annotations that drifted from ours; true when a patch was sent. */
  async #repairAnnotations(node: KubeNode, own: OwnLease, signal: AbortSignal): Promise<boolean> {
    const patch = this.#annotationPatch(node, own);
    if (!patch) return false;
    await this.#client.patchNodeStatus(node.name, annotationPatch(patch), signal);
    this.#log.warn("our node annotations had changed; published them again", {
      node: node.name,
      annotations: Object.keys(patch).join(","),
    });
    return true;
  }

  /** Our Node's pod CIDRs must still be our lease's (they change only if it re-registered). */
  #checkSubnets(node: KubeNode, lease: Lease): void {
    const cidrs = podCidrsOf(node);
    const same = (held: IPNet | undefined, now: IPNet | undefined) =>
      !held || (now !== undefined && netEqual(held, now));
    if (!same(lease.subnet, cidrs.ipv4) || !same(lease.ipv6Subnet, cidrs.ipv6)) {
      throw new LeaseLostError(
        formatLeaseKey(lease),
        `node "${node.name}" now has pod CIDRs ${node.podCIDRs.join(",") || "none"}`,
      );
    }
  }

  #ownFor(lease: Lease): OwnLease {
    const own = this.#own;
    if (!own || !sameSubnets(own.lease, lease)) {
      throw new LeaseLostError(formatLeaseKey(lease), "not the lease this manager acquired");
    }
    return own;
  }

  /** Hand our Node's latest state from the watch to maintainLease. */
  #noteOwnNode(item: NodeWatchItem, ownName: string): void {
    const node = item.type === "snapshot"
      ? item.nodes.find((n) => n.name === ownName)
      : item.event !== "DELETED" && item.node.name === ownName
      ? item.node
      : undefined;
    if (!node) return;
    this.#ownNodeSeen = node;
    this.#wakeMaintainer?.();
  }

  /** Our Node as the watch next shows it, or undefined after `ms` (then it is read directly). */
  async #nextOwnNode(ms: number, signal: AbortSignal): Promise<KubeNode | undefined> {
    if (!this.#ownNodeSeen) {
      const woken = new AbortController();
      this.#wakeMaintainer = () => woken.abort();
      await sleep(ms, AbortSignal.any([signal, woken.signal]));
      this.#wakeMaintainer = undefined;
    }
    const node = this.#ownNodeSeen;
    this.#ownNodeSeen = undefined;
    return node;
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

  /** Log a problem we are waiting out: when it changes, and again every 30 s while it lasts. */
  #waiting(problem: string): void {
    if (problem === this.#lastProblem && Date.now() - this.#lastLogged < REPEAT_LOG_MS) return;
    this.#log.warn(`${problem} (retrying)`);
    [this.#lastProblem, this.#lastLogged] = [problem, Date.now()];
  }

  #problemSolved(): void {
    this.#lastProblem = "";
  }

  /** `signal`, also aborted when the manager is closed. */
  #until(signal: AbortSignal): AbortSignal {
    return AbortSignal.any([signal, this.#closed.signal]);
  }
}
