/**
 * What a backend puts on the wire between nodes, as `tartan doctor` names it in a fix: the
 * protocol and port a firewall must let through, and the bytes of outer headers each pod
 * packet costs (for the path-MTU advice).
 *
 * @module
 */
import {
  KERNEL_VXLAN_PORT,
  readUdpOptions,
  readVxlanOptions,
  readWireguardOptions,
  VXLAN_OVERHEAD,
  WIREGUARD_OVERHEAD,
} from "../config/backend_options.ts";
import { IPIP_OVERHEAD } from "../backends/ipip.ts";
import type { Family } from "../ip/mod.ts";
import { UDP_OVERHEAD } from "../backends/udp/tun_device.ts";

/** How one backend carries pod packets between nodes. */
export interface Encapsulation {
  /** What to allow between the nodes, e.g. `UDP port 8472 (vxlan)`. */
  readonly allow: string;
  /** Short form for evidence, e.g. `udp/8472`. */
  readonly port: string;
  /** Outer header bytes per packet (0: routed as is). */
  readonly overhead: number;
}

type RawOptions = Readonly<Record<string, unknown>>;

/**
 * The encapsulation of backend `type` with the net-conf's (lower-cased) backend options, over an
 * underlay of `family` (vxlan's outer headers are 20 bytes longer over IPv6).
 */
export function encapsulationOf(
  type: string,
  options: RawOptions,
  family: Family = 4,
): Encapsulation {
  try {
    switch (type) {
      case "vxlan": {
        const port = readVxlanOptions(options).port || KERNEL_VXLAN_PORT;
        return {
          allow: `UDP port ${port} (vxlan)`,
          port: `udp/${port}`,
          overhead: VXLAN_OVERHEAD[family],
        };
      }
      case "udp": {
        const port = readUdpOptions(options).port;
        return {
          allow: `UDP port ${port} (udp backend)`,
          port: `udp/${port}`,
          overhead: UDP_OVERHEAD,
        };
      }
      case "wireguard": {
        // The admin API redacts the PSK, which the reader would reject; the port is what matters.
        const { psk: _, ...rest } = options;
        const port = readWireguardOptions(rest).listenPort;
        return {
          allow: `UDP port ${port} (wireguard)`,
          port: `udp/${port}`,
          overhead: WIREGUARD_OVERHEAD,
        };
      }
      case "ipip":
        return { allow: "IP protocol 4 (ipip)", port: "ip-proto/4", overhead: IPIP_OVERHEAD };
    }
  } catch {
    // Options the daemon accepted but we cannot read: describe the backend generically.
  }
  if (type === "host-gw") {
    return {
      allow: "packets from and to the pod network unencapsulated (host-gw routes them as is; " +
        "on cloud VMs disable the source/destination check)",
      port: "routed",
      overhead: 0,
    };
  }
  return { allow: `the ${type} backend's traffic`, port: type, overhead: 0 };
}
