/**
 * Our own Node, as the kube subnet manager reads and writes it: which node we are (NODE_NAME or
 * our pod's `spec.nodeName`), its pod CIDRs as our lease (waited for while unassigned), our
 * lease published as flannel's annotations, and re-published when they drift. Problems we wait
 * out are logged when they change and every 30 s while they last.
 *
 * @module
 */
import type { NetworkConfig } from "../config/network_config.ts";
import { errorText, type Logger } from "../log.ts";
import { formatNet, type IPNet, netContainsNet, netEqual } from "../ip/mod.ts";
import { sleep } from "../sleep.ts";
import { Backoff } from "../backoff.ts";
import { type AnnotationNames, annotationPatch, publication } from "./kube_annotations.ts";
import { KubeApiError, type KubeClient } from "./kube_client.ts";
import { type KubeNode, NodeShapeError, parseKubeNode, podCidrsOf } from "./kube_node.ts";
import { formatLeaseKey, type Lease, type LeaseAttrs } from "./lease.ts";
import { LeaseLostError } from "./manager.ts";

/** A problem that persists is logged again this often while we wait. */
const REPEAT_LOG_MS = 30_000;

/** Our Node cannot give us a lease: a pod CIDR outside the network, or unreadable pod CIDRs. */
export class KubeLeaseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "KubeLeaseError";
  }
}

/** What we published, kept to re-assert it. */
export interface OwnLease {
  readonly lease: Lease;
  /** The attributes the backend gave us (before any `*-overwrite`). */
  readonly attrs: LeaseAttrs;
}

/** Options of {@link OwnNode}. */
export interface OwnNodeOptions {
  readonly client: KubeClient;
  readonly names: AnnotationNames;
  readonly log: Logger;
  /** Retry waits: from `initialMs` doubling to `maxMs`. */
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
  /** `NODE_NAME`; when absent, read from `pod`'s `spec.nodeName`. */
  readonly nodeName?: string;
  readonly pod?: { readonly name: string; readonly namespace: string };
  /** Told our node name once known. */
  readonly onNodeName?: (name: string) => void;
}

/** Our Node: its name, its pod CIDRs, and the annotations we keep on it. */
export class OwnNode {
  readonly #client: KubeClient;
  readonly #names: AnnotationNames;
  readonly #log: Logger;
  readonly #options: OwnNodeOptions;
  #name?: string;
  /** Our Node as first read: what a previous run left (VTEP MAC, pinned public IPs). */
  #startNode?: Promise<KubeNode>;
  #lastProblem = "";
  #lastLogged = 0;

  constructor(options: OwnNodeOptions) {
    this.#client = options.client;
    this.#names = options.names;
    this.#log = options.log;
    this.#options = options;
    this.#name = options.nodeName || undefined;
    if (this.#name) options.onNodeName?.(this.#name);
  }

  #backoff(): Backoff {
    return new Backoff(this.#options.retry.initialMs, this.#options.retry.maxMs);
  }

  /** NODE_NAME, or our pod's `spec.nodeName` (retried until the pod is readable and scheduled). */
  async name(signal: AbortSignal): Promise<string> {
    if (this.#name) return this.#name;
    const pod = this.#options.pod!;
    const backoff = this.#backoff();
    for (;;) {
      signal.throwIfAborted();
      try {
        const name = await this.#client.podNodeName(pod.namespace, pod.name, signal);
        if (name) {
          this.#problemSolved();
          this.#name = name;
          this.#options.onNodeName?.(name);
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
  async read(signal: AbortSignal): Promise<KubeNode> {
    const name = await this.name(signal);
    const backoff = this.#backoff();
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
  startState(signal: AbortSignal): Promise<KubeNode> {
    if (!this.#startNode) {
      const reading = this.read(signal);
      reading.catch(() => { // an abort must not stick
        if (this.#startNode === reading) this.#startNode = undefined;
      });
      this.#startNode = reading;
    }
    return this.#startNode;
  }

  /**
   * Our Node's pod CIDRs as our lease, waited for (with a log line, retrying API errors) while
   * a family the network needs has none yet.
   *
   * @throws {KubeLeaseError} when the pod CIDRs are unreadable or outside the network.
   */
  async leaseSubnets(
    config: NetworkConfig,
    signal: AbortSignal,
  ): Promise<{ node: KubeNode; subnets: Pick<Lease, "subnet" | "ipv6Subnet"> }> {
    const backoff = this.#backoff();
    for (;;) {
      const node = await this.read(signal);
      const subnets = this.#subnetsOf(node, config);
      if (subnets) {
        this.#problemSolved();
        return { node, subnets };
      }
      await sleep(backoff.next(), signal);
      signal.throwIfAborted();
    }
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
  async publish(node: KubeNode, attrs: LeaseAttrs, signal: AbortSignal): Promise<LeaseAttrs> {
    const backoff = this.#backoff();
    for (;;) {
      const { patch, attrs: published, badOverwrites } = publication(
        this.#names,
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
      node = await this.read(signal);
    }
  }

  /** Whether any annotation we published differs on `node` now. */
  annotationsDrifted(node: KubeNode, own: OwnLease): boolean {
    return this.#annotationPatch(node, own) !== undefined;
  }

  /** The annotation patch that would restore what we published, if any annotation drifted. */
  #annotationPatch(node: KubeNode, own: OwnLease): Readonly<Record<string, string>> | undefined {
    const { patch } = publication(this.#names, own.attrs, node.annotations);
    return Object.keys(patch).length > 0 ? patch : undefined;
  }

  /** Re-publish annotations that drifted from ours; true when a patch was sent. */
  async repairAnnotations(node: KubeNode, own: OwnLease, signal: AbortSignal): Promise<boolean> {
    const patch = this.#annotationPatch(node, own);
    if (!patch) return false;
    await this.#client.patchNodeStatus(node.name, annotationPatch(patch), signal);
    this.#log.warn("our node annotations had changed; published them again", {
      node: node.name,
      annotations: Object.keys(patch).join(","),
    });
    return true;
  }

  /**
   * Our Node's pod CIDRs must still be our lease's (they change only if it re-registered).
   *
   * @throws {LeaseLostError} when they do not.
   */
  checkSubnets(node: KubeNode, lease: Lease): void {
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

  /** Log a problem we are waiting out: when it changes, and again every 30 s while it lasts. */
  #waiting(problem: string): void {
    if (problem === this.#lastProblem && Date.now() - this.#lastLogged < REPEAT_LOG_MS) return;
    this.#log.warn(`${problem} (retrying)`);
    [this.#lastProblem, this.#lastLogged] = [problem, Date.now()];
  }

  #problemSolved(): void {
    this.#lastProblem = "";
  }
}
