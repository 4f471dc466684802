/**
 * flannel's node annotations (spec §4.2–4.4): the prefix rules, the annotation names, what a
 * node publishes about its lease, and how a peer's lease is read back from its node object.
 * Pure: no I/O.
 *
 * @module
 */
import { DEFAULTS } from "../config/flags.ts";
import type { NetworkConfig } from "../config/network_config.ts";
import { formatAddr, type IPAddr, tryParseAddr } from "../ip/mod.ts";
import { type KubeNode, NodeShapeError, podCidrsOf } from "./kube_node.ts";
import {
  formatLeaseKey,
  goJson,
  type JsonValue,
  type Lease,
  type LeaseAttrs,
  LeaseKeyError,
} from "./lease.ts";

/** A `--kube-annotation-prefix` flannel would reject. */
export class AnnotationPrefixError extends Error {
  constructor(readonly prefix: string, reason: string) {
    super(`--kube-annotation-prefix ${JSON.stringify(prefix)} ${reason}`);
    this.name = "AnnotationPrefixError";
  }
}

const PREFIX_PATTERN = /^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/;

/**
 * Normalise `--kube-annotation-prefix` as flannel does: no `/` ⇒ append `/`; not ending in `/`
 * or `-` ⇒ append `-`; then it must be `label.label…/` optionally followed by `name-`.
 *
 * @throws {AnnotationPrefixError} for more than one `/` or a result of the wrong shape.
 * @example
 * ```ts
 * normalizeAnnotationPrefix("flannel.alpha.coreos.com"); // "flannel.alpha.coreos.com/"
 * normalizeAnnotationPrefix("org.com/9"); // "org.com/9-"
 * ```
 */
export function normalizeAnnotationPrefix(raw: string): string {
  const slashes = raw.split("/").length - 1;
  if (slashes > 1) throw new AnnotationPrefixError(raw, "contains more than one /");
  let prefix = slashes === 0 ? `${raw}/` : raw;
  if (!prefix.endsWith("/") && !prefix.endsWith("-")) prefix += "-";
  if (!PREFIX_PATTERN.test(prefix)) {
    throw new AnnotationPrefixError(
      raw,
      "is not a DNS-style prefix (lower-case labels separated by dots, then /, then optionally name-)",
    );
  }
  return prefix;
}

/** Every annotation name flannel reads or writes, under one normalised prefix. */
export interface AnnotationNames {
  readonly subnetKubeManaged: string;
  readonly backendType: string;
  readonly backendData: string;
  readonly backendPublicIP: string;
  readonly backendV6Data: string;
  readonly backendPublicIPv6: string;
  /** Read only: pins the node's public IPv4 (overrides `--public-ip`). */
  readonly nodePublicIP: string;
  readonly nodePublicIPv6: string;
  /** Read only: published as `public-ip` instead of the detected address (NAT). */
  readonly publicIPOverwrite: string;
  readonly publicIPv6Overwrite: string;
}

/**
 * The annotation names under a raw `--kube-annotation-prefix` (normalised first). Unlike flannel,
 * the VTEP MAC is read back from these same names (quirk 16).
 */
export function annotationNames(
  rawPrefix: string = DEFAULTS.kubeAnnotationPrefix,
): AnnotationNames {
  const p = normalizeAnnotationPrefix(rawPrefix);
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendType: `${p}backend-type`,
    backendData: `${p}backend-data`,
    backendPublicIP: `${p}public-ip`,
    backendV6Data: `${p}backend-v6-data`,
    backendPublicIPv6: `${p}public-ipv6`,
    nodePublicIP: `${p}node-public-ip`,
    nodePublicIPv6: `${p}node-public-ipv6`,
    publicIPOverwrite: `${p}public-ip-overwrite`,
    publicIPv6Overwrite: `${p}public-ipv6-overwrite`,
  };
}

/** Backend data as annotation text: Go's JSON bytes, `null` when the backend has none. */
function dataText(data: JsonValue | undefined): string {
  return data === undefined ? "null" : goJson(data);
}

/** An address read from an annotation; undefined when absent, empty or of another family. */
export function annotatedAddr(
  annotations: Readonly<Record<string, string>>,
  name: string,
  family: 4 | 6,
): IPAddr | undefined {
  const addr = tryParseAddr(annotations[name] ?? "");
  return addr?.family === family ? addr : undefined;
}

/** What a node publishes: the annotations to patch, and the attributes peers will read. */
export interface Publication {
  /** Only the annotations whose value must change (empty: the node is up to date). */
  readonly patch: Readonly<Record<string, string>>;
  /** The attributes as published (public IPs after any `*-overwrite`). */
  readonly attrs: LeaseAttrs;
  /** Overwrite annotations that are set but hold no address of their family (ignored). */
  readonly badOverwrites: readonly string[];
}

/**
 * The annotations our node must carry for `attrs` (spec §4.2 write rules), compared against the
 * node's current ones. The IPv4 pair (`backend-data`, `public-ip`) is written for every backend
 * except IPv6-only vxlan; the IPv6 pair for vxlan/wireguard with IPv6 data, and host-gw and
 * extension with a public IPv6. A `public-ip(v6)-overwrite` annotation replaces the published
 * address; one that holds no valid address is ignored (flannel would publish it verbatim).
 *
 * @example
 * ```ts
 * const { patch } = publication(annotationNames(), attrs, node.annotations);
 * if (Object.keys(patch).length > 0) await client.patchNodeStatus(node.name, annotationPatch(patch));
 * ```
 */
export function publication(
  names: AnnotationNames,
  attrs: LeaseAttrs,
  current: Readonly<Record<string, string>>,
): Publication {
  const type = attrs.backendType ?? "";
  const desired: Record<string, string> = {};
  const badOverwrites: string[] = [];
  let published: LeaseAttrs = attrs;
  const overwrite = (name: string, family: 4 | 6): IPAddr | undefined => {
    if (!current[name]) return undefined;
    const addr = annotatedAddr(current, name, family);
    if (!addr) badOverwrites.push(name);
    return addr;
  };
  desired[names.backendType] = type;
  if (!(type === "vxlan" && attrs.backendData === undefined)) {
    const publicIP = overwrite(names.publicIPOverwrite, 4) ?? attrs.publicIP;
    desired[names.backendData] = dataText(attrs.backendData);
    desired[names.backendPublicIP] = formatAddr(publicIP);
    published = { ...published, publicIP };
  }
  const v6Data = attrs.backendV6Data !== undefined;
  const hasV6 = attrs.publicIPv6 !== undefined;
  const writeV6 = (type === "vxlan" && v6Data) || (type === "wireguard" && v6Data && hasV6) ||
    ((type === "host-gw" || type === "extension") && hasV6);
  if (writeV6 && attrs.publicIPv6) {
    const publicIPv6 = overwrite(names.publicIPv6Overwrite, 6) ?? attrs.publicIPv6;
    desired[names.backendV6Data] = dataText(attrs.backendV6Data);
    desired[names.backendPublicIPv6] = formatAddr(publicIPv6);
    published = { ...published, publicIPv6 };
  }
  desired[names.subnetKubeManaged] = "true";
  const patch: Record<string, string> = {};
  for (const name of Object.keys(desired).sort()) {
    if (current[name] !== desired[name]) patch[name] = desired[name];
  }
  return { patch, attrs: published, badOverwrites };
}

/**
 * The strategic-merge patch body flannel sends for changed annotations: `{"metadata":
 * {"annotations":{…}}}`, names in byte order as Go's encoder writes map keys.
 */
export function annotationPatch(
  patch: Readonly<Record<string, string>>,
): { metadata: { annotations: Record<string, string> } } {
  const annotations: Record<string, string> = {};
  for (const name of Object.keys(patch).sort()) annotations[name] = patch[name];
  return { metadata: { annotations } };
}

/** Why a node yields no lease: not a flannel node (yet), or a flannel node with bad data. */
export class NodeLeaseError extends Error {
  constructor(
    readonly node: string,
    readonly kind: "unmanaged" | "malformed",
    reason: string,
  ) {
    super(`node ${JSON.stringify(node)} ${reason}`);
    this.name = "NodeLeaseError";
  }
}

function backendDataOf(node: KubeNode, name: string): JsonValue | undefined {
  const text = node.annotations[name];
  if (text === undefined || text === "" || text === "null") return undefined;
  try {
    return JSON.parse(text) as JsonValue;
  } catch {
    throw new NodeLeaseError(node.name, "malformed", `has invalid JSON in ${name}`);
  }
}

function publicAddr(node: KubeNode, name: string, family: 4 | 6): IPAddr {
  const addr = annotatedAddr(node.annotations, name, family);
  if (!addr) {
    const value = node.annotations[name];
    const why = value === undefined ? "has no" : `has an invalid (${JSON.stringify(value)})`;
    throw new NodeLeaseError(node.name, "malformed", `${why} ${name} annotation`);
  }
  return addr;
}

/**
 * A peer's lease from its node object (spec §4.3): only nodes whose `kube-subnet-manager` is
 * exactly `"true"`; per enabled family a public address of that family, the backend data (JSON)
 * and a pod CIDR of that family.
 *
 * @throws {NodeLeaseError} `unmanaged` for nodes flannel does not run on (yet), `malformed` for
 *   flannel nodes whose annotations or pod CIDRs cannot be used.
 */
export function nodeLease(node: KubeNode, names: AnnotationNames, config: NetworkConfig): Lease {
  if (node.annotations[names.subnetKubeManaged] !== "true") {
    throw new NodeLeaseError(node.name, "unmanaged", `has no ${names.subnetKubeManaged}=true`);
  }
  let cidrs;
  try {
    cidrs = podCidrsOf(node);
  } catch (error) {
    if (!(error instanceof NodeShapeError)) throw error;
    throw new NodeLeaseError(node.name, "malformed", error.reason);
  }
  const backendType = node.annotations[names.backendType] || undefined;
  let lease: Lease = {
    attrs: { publicIP: { family: 4, value: 0n }, ...(backendType && { backendType }) },
  };
  if (config.ipv4) {
    if (!cidrs.ipv4) throw new NodeLeaseError(node.name, "malformed", "has no IPv4 pod CIDR");
    const backendData = backendDataOf(node, names.backendData);
    lease = {
      subnet: cidrs.ipv4,
      attrs: {
        ...lease.attrs,
        publicIP: publicAddr(node, names.backendPublicIP, 4),
        ...(backendData !== undefined && { backendData }),
      },
    };
  }
  if (config.ipv6) {
    if (!cidrs.ipv6) throw new NodeLeaseError(node.name, "malformed", "has no IPv6 pod CIDR");
    const backendV6Data = backendDataOf(node, names.backendV6Data);
    lease = {
      ...lease,
      ipv6Subnet: cidrs.ipv6,
      attrs: {
        ...lease.attrs,
        publicIPv6: publicAddr(node, names.backendPublicIPv6, 6),
        ...(backendV6Data !== undefined && { backendV6Data }),
      },
    };
  }
  try {
    formatLeaseKey(lease); // every consumer names leases this way: /32 or /128 cannot be named
  } catch (error) {
    if (!(error instanceof LeaseKeyError)) throw error;
    throw new NodeLeaseError(node.name, "malformed", `has an unusable pod CIDR: ${error.message}`);
  }
  return node.created === undefined ? lease : { ...lease, created: node.created };
}

/** The backend data a previous run published for one family, if it parses (VTEP MAC reuse). */
export function previousData(
  node: KubeNode,
  names: AnnotationNames,
  family: 4 | 6,
): JsonValue | undefined {
  try {
    return backendDataOf(node, family === 4 ? names.backendData : names.backendV6Data);
  } catch {
    return undefined;
  }
}
