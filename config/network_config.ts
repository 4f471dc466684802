/**
 * The effective network configuration (net-conf with every default filled in).
 *
 * Produced by `parseNetConfig` in `netconf.ts`; consumed by subnet managers, backends and
 * traffic rules. Kept apart from the parser so that consumers do not depend on zod.
 *
 * @module
 */
import type { IPAddr, IPNet } from "../ip/mod.ts";

/** One address family's allocation settings (spec §2.2–2.3). */
export interface FamilyConfig {
  /** The cluster network, host bits cleared. */
  readonly network: IPNet;
  /** Prefix length of each node's subnet. */
  readonly subnetLen: number;
  /** First subnet base eligible for allocation. */
  readonly subnetMin: IPAddr;
  /** Last subnet base eligible for allocation. */
  readonly subnetMax: IPAddr;
}

/** Backend selection plus its options, member names as the user wrote them. */
export interface BackendConfig {
  /** Lower-cased backend type (`vxlan`, `host-gw`, `udp`, …). */
  readonly type: string;
  /** Backend-specific members with lower-cased names (e.g. `vni`, `directrouting`). */
  readonly options: Readonly<Record<string, unknown>>;
}

/** The whole effective net-conf. */
export interface NetworkConfig {
  /** IPv4 settings when EnableIPv4, else undefined. */
  readonly ipv4?: FamilyConfig;
  /** IPv6 settings when EnableIPv6, else undefined. */
  readonly ipv6?: FamilyConfig;
  readonly enableNFTables: boolean;
  readonly backend: BackendConfig;
}
