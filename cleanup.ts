/**
 * `tartan cleanup`: remove every device, route, rule and file Tartan created on this node
 * (flannel has no uninstall: #886). Pods' own interfaces and `cni0` belong to the bridge
 * plugin and the runtime, and stay.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { DEFAULTS } from "./config/flags.ts";
import { isOurBlackhole } from "./backends/blackhole_route.ts";
import { isBackendDevice } from "./backends/registry.ts";
import { deleteLink, listLinks } from "./ffi/netlink/link.ts";
import { RT_TABLE_MAIN, RTPROT_KERNEL } from "./ffi/netlink/constants.ts";
import { deleteRoute, listRoutes } from "./ffi/netlink/route.ts";
import { closeNetlink, type NetlinkHandle, openNetlink } from "./ffi/netlink/socket.ts";
import { errorText } from "./log.ts";
import { formatNet, type IPNet, netContainsNet, netEqual, tryParseNet } from "./ip/mod.ts";
import { parseSubnetEnv } from "./subnet/subnet_env.ts";
import { removeAllTrafficState } from "./traffic/manager.ts";

/** The cluster networks and own subnets a subnet file names (empty when unreadable). */
async function networksOf(subnetFile: string): Promise<{ networks: IPNet[]; own: IPNet[] }> {
  try {
    const vars = parseSubnetEnv(await Deno.readTextFile(subnetFile));
    const nets = (keys: string[]) =>
      keys.flatMap((k) => (vars.get(k) ?? "").split(",")).map((t) => tryParseNet(t.trim()))
        .filter((n) => n !== undefined);
    return {
      networks: nets(["FLANNEL_NETWORK", "FLANNEL_IPV6_NETWORK"]),
      own: nets(["FLANNEL_SUBNET", "FLANNEL_IPV6_SUBNET"]),
    };
  } catch {
    return { networks: [], own: [] };
  }
}

/**
 * Routes into the cluster network that are ours: peer routes and our blackhole routes, not the
 * bridge's own subnet route.
 */
function removeRoutes(h: NetlinkHandle, networks: IPNet[], own: IPNet[], say: (s: string) => void) {
  for (const route of listRoutes(h, { table: RT_TABLE_MAIN })) {
    const inside = networks.some((n) => netContainsNet(n, route.dst) && !netEqual(n, route.dst));
    const isOwn = own.some((o) => netEqual(o, route.dst)) && !isOurBlackhole(route);
    if (!inside || isOwn || route.protocol === RTPROT_KERNEL) continue;
    deleteRoute(h, { ...route, table: RT_TABLE_MAIN });
    say(`removed route ${formatNet(route.dst)}`);
  }
}

export const CLEANUP_USAGE = "usage: tartan cleanup [--subnet-file PATH]";

/** Run the clean-up; resolves to the exit status. */
export async function cleanupCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { "subnet-file": { type: "string", default: DEFAULTS.subnetFile } },
  });
  const subnetFile = values["subnet-file"];
  const say = (line: string) => console.log(line);
  let failures = 0;
  const attempt = async (what: string, step: () => void | Promise<void>) => {
    try {
      await step();
    } catch (err) {
      failures++;
      console.error(`cleanup: ${what}: ${errorText(err)}`);
    }
  };
  const { networks, own } = await networksOf(subnetFile);
  const h = openNetlink();
  try {
    await attempt("routes", () => removeRoutes(h, networks, own, say));
    for (const link of listLinks(h).filter((l) => isBackendDevice(l.name))) {
      await attempt(`device ${link.name}`, () => {
        deleteLink(h, link.index);
        say(`removed device ${link.name}`);
      });
    }
  } finally {
    closeNetlink(h);
  }
  await attempt("iptables/nftables rules", async () => {
    await removeAllTrafficState();
    say("removed masquerade and forward rules");
  });
  await attempt("subnet file", async () => {
    await Deno.remove(subnetFile).catch((err) => {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    });
    say(`removed ${subnetFile}`);
  });
  return failures === 0 ? 0 : 1;
}
