/**
 * Leases and compact peer summaries shared by the wireguard backend tests.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { DevicePeer } from "../../../backends/wireguard/peers.ts";
import type { WireguardOptions } from "../../../config/backend_options.ts";
import { formatAddr, formatNet, parseAddr, parseNet } from "../../../ip/mod.ts";
import type { Lease, LeaseAttrs } from "../../../subnet/lease.ts";

export const DEFAULTS: WireguardOptions = {
  listenPort: 51820,
  listenPortV6: 51821,
  mtu: 0,
  persistentKeepaliveInterval: 0,
  mode: "separate",
};

export const keyOf = (byte: number) => Buffer.alloc(32, byte).toString("base64");

export function wgLease(
  subnets: { v4?: string; v6?: string },
  attrs: Partial<LeaseAttrs>,
  backendType = "wireguard",
): Lease {
  return {
    ...(subnets.v4 && { subnet: parseNet(subnets.v4) }),
    ...(subnets.v6 && { ipv6Subnet: parseNet(subnets.v6) }),
    attrs: { publicIP: parseAddr("0.0.0.0"), backendType, ...attrs },
  };
}

/** `device key=<first byte> endpoint allowed-ips [remove]` for compact assertions. */
export function summary({ device, peer }: DevicePeer): string {
  const endpoint = peer.endpoint &&
    (peer.endpoint.address.family === 4
      ? `${formatAddr(peer.endpoint.address)}:${peer.endpoint.port}`
      : `[${formatAddr(peer.endpoint.address)}]:${peer.endpoint.port}`);
  return [
    device,
    `key=${peer.publicKey[0]}`,
    ...(peer.remove
      ? ["remove"]
      : [endpoint ?? "no-endpoint", ...(peer.allowedIps ?? []).map(formatNet)]),
  ].join(" ");
}

export const OWN = wgLease({ v4: "10.244.7.0/24", v6: "fd00:7::/64" }, {
  publicIP: parseAddr("198.18.0.11"),
  publicIPv6: parseAddr("2001:db8::11"),
});

export function dualPeer(publicIP: string, publicIPv6: string | undefined, v6Port = 4001): Lease {
  return wgLease({ v4: "10.244.8.0/24", v6: "fd00:8::/64" }, {
    publicIP: parseAddr(publicIP),
    ...(publicIPv6 && { publicIPv6: parseAddr(publicIPv6) }),
    backendData: { PublicKey: keyOf(8), Port: 0 },
    backendV6Data: { PublicKey: keyOf(8), Port: v6Port },
  });
}

export function v4Peer(subnet: string, ip: string, key: number, backendType = "wireguard"): Lease {
  return wgLease({ v4: subnet }, {
    publicIP: parseAddr(ip),
    backendData: { PublicKey: keyOf(key), Port: 51820 },
  }, backendType);
}
