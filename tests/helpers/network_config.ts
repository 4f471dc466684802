/**
 * The usual test net-conf: 10.244.0.0/16 split into /24s, with a given backend.
 *
 * @module
 */
import type { NetworkConfig } from "../../config/network_config.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";

/** An IPv4 net-conf with the given backend type and options. */
export function networkConfig(type: string, options: Record<string, unknown> = {}): NetworkConfig {
  return {
    ipv4: {
      network: parseNet("10.244.0.0/16"),
      subnetLen: 24,
      subnetMin: parseAddr("10.244.1.0"),
      subnetMax: parseAddr("10.244.255.0"),
    },
    enableNFTables: false,
    backend: { type, options },
  };
}
