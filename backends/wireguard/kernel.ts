/**
 * The kernel's WireGuard (the first choice): `wireguard` links configured through the WireGuard
 * generic netlink family.
 *
 * UNVERIFIED: the kernel this was developed on has no wireguard module; the netlink encoding is
 * tested byte for byte against the UAPI header, and the missing module is detected here (so the
 * backend falls back to wireguard-go).
 *
 * @module
 */
import { NETLINK_GENERIC } from "../../ffi/netlink/constants.ts";
import { resolveFamily } from "../../ffi/netlink/genl.ts";
import { addLink, deleteLink, getLink, type Link } from "../../ffi/netlink/link.ts";
import { closeNetlink, type NetlinkHandle, openNetlink } from "../../ffi/netlink/socket.ts";
import { executeBatch } from "../../ffi/netlink/batch.ts";
import {
  getDevice,
  setDevice,
  setDeviceRequest,
  WG_GENL_NAME,
  type WgPeerState,
} from "../../ffi/netlink/wireguard.ts";
import type { Logger } from "../../log.ts";
import { errorText } from "../../log.ts";
import { isMissingDriver } from "../kernel_module.ts";
import type { DriverOptions, WireguardDriver } from "./driver.ts";

/** Delete any device of that name and create a fresh one (flannel never reuses them). */
function recreateDevice(h: NetlinkHandle, name: string, mtu: number): Link {
  const existing = getLink(h, name);
  if (existing) deleteLink(h, existing.index);
  return addLink(h, { name, kind: "wireguard", mtu });
}

/**
 * Create the devices as kernel `wireguard` links with key and port; undefined when the kernel
 * has no wireguard module (no link kind, or no generic netlink family), with nothing left behind.
 */
export function kernelDriver(
  h: NetlinkHandle,
  options: DriverOptions,
  log: Logger,
): WireguardDriver | undefined {
  const links = new Map<string, Link>();
  let genl: NetlinkHandle | undefined;
  const release = () => {
    for (const link of links.values()) {
      try {
        deleteLink(h, link.index);
      } catch (cleanup) {
        log.warn("device not removed", { device: link.name, error: errorText(cleanup) });
      }
    }
    if (genl) closeNetlink(genl);
  };
  try {
    for (const spec of options.devices) {
      links.set(spec.name, recreateDevice(h, spec.name, options.mtu));
    }
    genl = openNetlink({ netns: h.netns, protocol: NETLINK_GENERIC });
    const family = resolveFamily(genl, WG_GENL_NAME);
    if (!family) {
      release();
      return undefined;
    }
    for (const spec of options.devices) {
      const index = links.get(spec.name)!.index;
      setDevice(genl, family, { index, privateKey: options.privateKey, listenPort: spec.port });
    }
    const socket = genl;
    return {
      implementation: "kernel",
      indexOf: (device) => links.get(device)!.index,
      apply: (changes) =>
        Promise.resolve(executeBatch(
          socket,
          changes.map((c) =>
            setDeviceRequest(family.id, { index: links.get(c.device)!.index, peers: [c.peer] })
          ),
        )),
      read() {
        const peers = new Map<string, readonly WgPeerState[]>();
        for (const [name, link] of links) {
          peers.set(name, getDevice(socket, family, link.index).peers);
        }
        return Promise.resolve(peers);
      },
      restarted: () => Promise.resolve([]),
      onRestart: () => {}, // kernel devices do not restart
      close: () => Promise.resolve(release()),
    };
  } catch (err) {
    release();
    if (isMissingDriver(err)) return undefined;
    throw err;
  }
}
