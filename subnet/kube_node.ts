/**
 * The parts of a Kubernetes Node object the kube subnet manager reads (name, resource version,
 * annotations, pod CIDRs, conditions), checked member by member, and the one condition it writes
 * (spec §4.5). Pure: no I/O.
 *
 * @module
 */
import { isRecord, jsonKind, member, stringOr } from "../json.ts";
import { type IPNet, tryParseNet } from "../ip/mod.ts";

/** A node condition: the members the manager reads. */
export interface NodeCondition {
  readonly type: string;
  readonly status: string;
  readonly reason?: string;
}

/** A node as the manager sees it. */
export interface KubeNode {
  readonly name: string;
  /** Absent only on objects that never came from an API server. */
  readonly resourceVersion?: string;
  readonly annotations: Readonly<Record<string, string>>;
  /** `spec.podCIDRs`, or `[spec.podCIDR]` when that list is empty (spec §4.1). */
  readonly podCIDRs: readonly string[];
  readonly conditions: readonly NodeCondition[];
  /** `metadata.creationTimestamp` in ms since the epoch, when the object carries a valid one. */
  readonly created?: number;
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
  const fail = (path: string, expected: string, got: unknown): never => {
    throw new NodeShapeError(
      nameOf(raw) ?? "?",
      `is malformed at ${path}: expected ${expected}, got ${jsonKind(got)}`,
    );
  };
  /** An object member that may be absent or null. */
  const optionalObject = (value: unknown, path: string): Record<string, unknown> | undefined =>
    value === undefined || value === null
      ? undefined
      : isRecord(value)
      ? value
      : fail(path, "object", value);
  /** A list member that may be absent or null, each item checked by `item`. */
  const optionalList = <T>(value: unknown, path: string, item: (v: unknown, at: string) => T) =>
    value === undefined || value === null
      ? []
      : Array.isArray(value)
      ? value.map((v, i) => item(v, `${path}.${i}`))
      : fail(path, "array", value);
  const text = (value: unknown, path: string): string =>
    typeof value === "string" ? value : fail(path, "string", value);
  const optionalText = (value: unknown, path: string): string | undefined =>
    value === undefined || value === null ? undefined : text(value, path);

  const metadata = isRecord(member(raw, "metadata"))
    ? member(raw, "metadata") as Record<string, unknown>
    : fail("metadata", "object", member(raw, "metadata"));
  const name = text(metadata.name, "metadata.name");
  if (name === "") fail("metadata.name", "a non-empty string", name);
  // A string from the API, a Date from the client library's typed objects; anything else is
  // ignored (it only orders conflicting leases, never decides whether a node counts).
  const stamp = metadata.creationTimestamp;
  const created = stamp instanceof Date
    ? stamp.getTime()
    : typeof stamp === "string"
    ? Date.parse(stamp)
    : NaN;
  const resourceVersion = metadata.resourceVersion === undefined
    ? undefined
    : text(metadata.resourceVersion, "metadata.resourceVersion");
  const annotations: Record<string, string> = {};
  for (
    const [key, value] of Object.entries(
      optionalObject(metadata.annotations, "metadata.annotations") ?? {},
    )
  ) {
    annotations[key] = text(value, `metadata.annotations.${key}`);
  }
  const spec = optionalObject(member(raw, "spec"), "spec");
  const list = optionalList(spec?.podCIDRs, "spec.podCIDRs", text);
  const podCIDR = optionalText(spec?.podCIDR, "spec.podCIDR");
  const status = optionalObject(member(raw, "status"), "status");
  const conditions = optionalList(status?.conditions, "status.conditions", (value, at) => {
    const condition = isRecord(value) ? value : fail(at, "object", value);
    const reason = condition.reason === undefined
      ? undefined
      : text(condition.reason, `${at}.reason`);
    return {
      type: text(condition.type, `${at}.type`),
      status: text(condition.status, `${at}.status`),
      ...(reason !== undefined && { reason }),
    };
  });
  return {
    name,
    ...(resourceVersion !== undefined && { resourceVersion }),
    annotations,
    podCIDRs: list.length > 0 ? list : podCIDR ? [podCIDR] : [],
    conditions,
    ...(Number.isFinite(created) && { created }),
  };
}

/** `metadata.name` of any object, when it has one. */
export function nameOf(raw: unknown): string | undefined {
  return stringOr(member(member(raw, "metadata"), "name"));
}

/** `metadata.resourceVersion` of any object (watch events, bookmarks), when it has one. */
export function resourceVersionOf(raw: unknown): string | undefined {
  return stringOr(member(member(raw, "metadata"), "resourceVersion"));
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
