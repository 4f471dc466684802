/**
 * The parts of a Kubernetes Node object the kube subnet manager reads (name, resource version,
 * annotations, pod CIDRs, conditions), checked with zod, and the one condition it writes
 * (spec §4.5). Pure: no I/O.
 *
 * @module
 */
import { z } from "zod";
import { type IPNet, tryParseNet } from "../ip/mod.ts";

const ConditionSchema = z.object({
  type: z.string(),
  status: z.string(),
  reason: z.string().optional(),
});

const NodeSchema = z.object({
  metadata: z.object({
    name: z.string().min(1),
    resourceVersion: z.string().optional(),
    annotations: z.record(z.string(), z.string()).nullish(),
  }),
  spec: z.object({
    podCIDR: z.string().nullish(),
    podCIDRs: z.array(z.string()).nullish(),
  }).nullish(),
  status: z.object({
    conditions: z.array(ConditionSchema).nullish(),
  }).nullish(),
});

/** A node as the manager sees it. */
export interface KubeNode {
  readonly name: string;
  /** Absent only on objects that never came from an API server. */
  readonly resourceVersion?: string;
  readonly annotations: Readonly<Record<string, string>>;
  /** `spec.podCIDRs`, or `[spec.podCIDR]` when that list is empty (spec §4.1). */
  readonly podCIDRs: readonly string[];
  readonly conditions: readonly z.infer<typeof ConditionSchema>[];
}

/** An object that is not a Node as the API serves them, or a node whose pod CIDRs are unusable. */
export class NodeShapeError extends Error {
  constructor(readonly node: string, readonly reason: string) {
    super(`node ${JSON.stringify(node)} ${reason}`);
    this.name = "NodeShapeError";
  }
}

/**
 * Read a Node object (JSON from the API, or the client library's typed object).
 *
 * @throws {NodeShapeError} when a member the manager reads has the wrong type.
 * @example
 * ```ts
 * parseKubeNode({ metadata: { name: "n1" }, spec: { podCIDR: "10.244.1.0/24" } }).podCIDRs; // ["10.244.1.0/24"]
 * ```
 */
export function parseKubeNode(raw: unknown): KubeNode {
  const result = NodeSchema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0];
    const name = nameOf(raw) ?? "?";
    throw new NodeShapeError(name, `is malformed at ${issue.path.join(".")}: ${issue.message}`);
  }
  const { metadata, spec, status } = result.data;
  const list = spec?.podCIDRs ?? [];
  return {
    name: metadata.name,
    ...(metadata.resourceVersion !== undefined && { resourceVersion: metadata.resourceVersion }),
    annotations: metadata.annotations ?? {},
    podCIDRs: list.length > 0 ? list : spec?.podCIDR ? [spec.podCIDR] : [],
    conditions: status?.conditions ?? [],
  };
}

const MetadataOnly = z.object({
  metadata: z.object({ name: z.string().optional(), resourceVersion: z.string().optional() }),
});

/** `metadata.name` of any object, when it has one. */
export function nameOf(raw: unknown): string | undefined {
  const parsed = MetadataOnly.safeParse(raw);
  return parsed.success ? parsed.data.metadata.name : undefined;
}

/** `metadata.resourceVersion` of any object (watch events, bookmarks), when it has one. */
export function resourceVersionOf(raw: unknown): string | undefined {
  const parsed = MetadataOnly.safeParse(raw);
  return parsed.success ? parsed.data.metadata.resourceVersion : undefined;
}

/** A node's pod CIDRs by family, host bits cleared. */
export interface PodCidrs {
  readonly ipv4?: IPNet;
  readonly ipv6?: IPNet;
}

/**
 * Split a node's pod CIDRs into IPv4 and IPv6 (spec §4.1): at most two entries, each a CIDR.
 *
 * @throws {NodeShapeError} for more than two entries or one that is not a CIDR.
 */
export function podCidrsOf(node: KubeNode): PodCidrs {
  if (node.podCIDRs.length > 2) {
    throw new NodeShapeError(
      node.name,
      `has ${node.podCIDRs.length} pod CIDRs; pod cidrs should be IPv4/IPv6 only or dualstack`,
    );
  }
  let ipv4: IPNet | undefined;
  let ipv6: IPNet | undefined;
  for (const text of node.podCIDRs) {
    const net = tryParseNet(text);
    if (!net) {
      throw new NodeShapeError(node.name, `has an invalid pod CIDR ${JSON.stringify(text)}`);
    }
    if (net.family === 4) ipv4 = net;
    else ipv6 = net;
  }
  return { ...(ipv4 && { ipv4 }), ...(ipv6 && { ipv6 }) };
}

/** The condition type flannel sets. */
export const NETWORK_UNAVAILABLE = "NetworkUnavailable";

/** Whether the node's NetworkUnavailable condition says the network is up. */
export function networkAvailable(node: KubeNode): boolean {
  const condition = node.conditions.find((c) => c.type === NETWORK_UNAVAILABLE);
  return condition?.status === "False";
}

/** metav1.Time text: RFC 3339 in UTC with whole seconds, as Go writes it. */
export function kubeTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * flannel's strategic-merge patch for `nodes/<name>/status` (spec §4.5), members in the order
 * Go serialises a NodeCondition: `{"status":{"conditions":[{"type":"NetworkUnavailable",
 * "status":"False","lastHeartbeatTime":T,"lastTransitionTime":T,"reason":"FlannelIsUp",
 * "message":"Flannel is running on this node"}]}}`.
 */
export function networkUpPatch(now: Date): { status: { conditions: Record<string, string>[] } } {
  const time = kubeTime(now);
  return {
    status: {
      conditions: [{
        type: NETWORK_UNAVAILABLE,
        status: "False",
        lastHeartbeatTime: time,
        lastTransitionTime: time,
        reason: "FlannelIsUp",
        message: "Flannel is running on this node",
      }],
    },
  };
}
