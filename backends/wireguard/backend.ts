/**
 * `wireguard` (spec §6.6): devices `flannel-wg`, and `flannel-wg-v6` in the default `separate`
 * mode, run by the kernel's WireGuard when it has the module and by wireguard-go otherwise
 * (`driver.ts`); the node key pair (`keys.ts`), device MTU, addresses and the cluster-network
 * route, and the lease flannel publishes (`{"PublicKey":…,"Port":…}`, advertising the port
 * actually listened on: quirk 21 fixed). Peers come from the leases (`peers.ts`) and are kept in
 * sync by the network (`network.ts`).
 *
 * @module
 */
import { readWireguardOptions, WIREGUARD_OVERHEAD } from "../../config/backend_options.ts";
import { RT_SCOPE_LINK } from "../../ffi/netlink/constants.ts";
import { replaceAddr } from "../../ffi/netlink/addr.ts";
import { setLinkUp } from "../../ffi/netlink/link.ts";
import { replaceRoute } from "../../ffi/netlink/route.ts";
import type { NetlinkHandle } from "../../ffi/netlink/socket.ts";
import { bitsOf, type Family, type IPNet, netAddr } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { type Backend, BackendError, type Network } from "../backend.ts";
import {
  publishedData,
  WIREGUARD_DEVICES,
  type WireguardDevice,
  wireguardDevices,
} from "./config.ts";
import type { WireguardDriver } from "./driver.ts";
import { kernelDriver } from "./kernel.ts";
import { decodeKey, keyFilePath, loadOrCreateKeys } from "./keys.ts";
import { type WireguardControl, wireguardNetwork } from "./network.ts";
import { peerDefaults } from "./peers.ts";

/** The wireguard backend. */
export const wireguardBackend: Backend = {
  type: "wireguard",
  devices: WIREGUARD_DEVICES,
  tunnelAddress: true,
  async register(ctx): Promise<Network> {
    const config = readWireguardOptions(ctx.config.backend.options);
    const h = ctx.netlink;
    const networks = new Map<Family, IPNet>();
    if (ctx.config.ipv4) networks.set(4, ctx.config.ipv4.network);
    if (ctx.config.ipv6) networks.set(6, ctx.config.ipv6.network);
    const specs = wireguardDevices(config, [...networks.keys()]);
    const mtu = (config.mtu || ctx.ext.mtu) - WIREGUARD_OVERHEAD;
    const plan = { mode: config.mode, devices: specs, ...peerDefaults(config) };
    const keys = await loadOrCreateKeys(keyFilePath());
    const options = { devices: specs, mtu, privateKey: decodeKey(keys.privateKey, "the key") };
    let driver = kernelDriver(h, options, ctx.log);
    if (!driver) {
      ctx.log.info("the kernel has no wireguard module: running the devices with wireguard-go");
      const { wireguardGoDriver } = await import("./userspace.ts");
      driver = await wireguardGoDriver(h, options, ctx.log);
    }
    try {
      const lease = await ctx.manager.acquireLease({
        publicIP: ctx.ext.publicIP ?? { family: 4, value: 0n },
        publicIPv6: ctx.ext.publicIPv6,
        backendType: "wireguard",
        ...publishedData(specs, keys.publicKey),
      }, ctx.signal);
      const devices = deviceSetup(h, driver, lease, networks);
      for (const spec of specs) devices.setUp(spec);
      devices.refreshRoutes();
      const control: WireguardControl = {
        implementation: driver.implementation,
        apply: driver.apply,
        read: driver.read,
        async repairDevices() {
          const again = await driver.restarted();
          for (const spec of again) devices.setUp(spec);
          if (again.length) devices.refreshRoutes();
          return again.length;
        },
        onDeviceRestart: (listener) => driver.onRestart(listener),
        refreshRoutes: () => Promise.resolve(devices.refreshRoutes()),
        close: driver.close,
      };
      return wireguardNetwork(lease, mtu, plan, control, {
        resyncMs: ctx.resyncMs,
        log: ctx.log,
        onReconcile: ctx.observeReconcile,
      });
    } catch (err) {
      await driver.close();
      throw err;
    }
  },
};

/**
 * What every device gets whoever runs it: our subnet's network address (/32, /128), link up, and
 * the route of each cluster network it carries (replaced, as flannel does after each peer).
 */
function deviceSetup(
  h: NetlinkHandle,
  driver: WireguardDriver,
  lease: Lease,
  networks: ReadonlyMap<Family, IPNet>,
) {
  const devices: WireguardDevice[] = [];
  return {
    setUp(spec: WireguardDevice): void {
      const index = driver.indexOf(spec.name);
      for (const family of spec.families) {
        const own = family === 4 ? lease.subnet : lease.ipv6Subnet;
        if (!own) throw new BackendError("wireguard", `the lease has no IPv${family} subnet`);
        replaceAddr(h, { index, address: netAddr(own), prefix: bitsOf(family) });
      }
      setLinkUp(h, index);
      if (!devices.includes(spec)) devices.push(spec);
    },
    refreshRoutes(): void {
      for (const spec of devices) {
        for (const family of spec.families) {
          const dst = networks.get(family)!;
          replaceRoute(h, { dst, oif: driver.indexOf(spec.name), scope: RT_SCOPE_LINK });
        }
      }
    },
  };
}
