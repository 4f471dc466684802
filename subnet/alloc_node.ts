/**
 * A node running flannel's `alloc` backend: it only holds a lease and publishes subnet.env
 * with the external MTU (spec §6.7); it programs nothing.
 *
 * @module
 */
import type { IPAddr } from "../ip/mod.ts";
import type { Lease } from "./lease.ts";
import type { SubnetManager } from "./manager.ts";
import { subnetEnvFor, writeSubnetEnv } from "./subnet_env.ts";

/** What an alloc node needs. */
export interface AllocNodeOptions {
  readonly manager: SubnetManager;
  readonly publicIP: IPAddr;
  readonly publicIPv6?: IPAddr;
  /** The external interface's MTU, written as FLANNEL_MTU. */
  readonly mtu: number;
  readonly ipMasq: boolean;
  readonly subnetFile: string;
  /** Told the lease once subnet.env is written (the daemon marks itself ready). */
  readonly onLease?: (lease: Lease) => void;
}

/**
 * Acquire a lease, write subnet.env, then keep the lease until `signal` aborts. Rejects when the
 * lease cannot be acquired or is lost to another node.
 */
export async function runAllocNode(options: AllocNodeOptions, signal: AbortSignal): Promise<void> {
  const { manager } = options;
  const config = await manager.getNetworkConfig(signal);
  const lease = await manager.acquireLease(
    { publicIP: options.publicIP, ...(options.publicIPv6 && { publicIPv6: options.publicIPv6 }) },
    signal,
  );
  await writeSubnetEnv(
    options.subnetFile,
    subnetEnvFor(config, lease, options.mtu, options.ipMasq),
  );
  options.onLease?.(lease);
  await manager.maintainLease(lease, signal);
}
