import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  BLACKHOLE_METRIC,
  ensureBlackholeRoutes,
  maintainBlackholeRoutes,
} from "../../backends/blackhole_route.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import { logger } from "../../log.ts";
import { formatNet, parseNet } from "../../ip/mod.ts";
import { waitFor } from "../helpers/leases.ts";
import { ipJson, rootTest, run, withNetns } from "../helpers/netns.ts";

interface IpRoute {
  type?: string;
  dst: string;
  dev?: string;
  metric?: number;
}

const SUBNET = parseNet("10.244.7.0/24");
const SUBNET6 = parseNet("fd00:10:244:7::/64");

/** The blackhole routes `ip` shows in `ns`, as `dst metric` lines. */
async function blackholes(ns: string): Promise<string[]> {
  const routes = [
    ...await ipJson<IpRoute[]>(ns, ["-4", "route", "show", "type", "blackhole"]),
    ...await ipJson<IpRoute[]>(ns, ["-6", "route", "show", "type", "blackhole"]),
  ];
  return routes.map((r) => `${r.dst} ${r.metric ?? 0}`).sort();
}

/** Where the kernel sends a packet for `address` in `ns`: a device name, or "blackhole". */
async function routeOf(ns: string, address: string): Promise<string> {
  const result = await run(["ip", "-n", ns, "-j", "route", "get", address], { allowFail: true });
  if (result.code !== 0) return result.stderr.includes("Invalid argument") ? "blackhole" : "?";
  return (JSON.parse(result.stdout) as IpRoute[])[0].dev ?? "?";
}

rootTest("blackhole route: added once per subnet with the lowest priority", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, (h) => {
      assert.deepEqual(ensureBlackholeRoutes(h, [SUBNET, SUBNET6]).map(formatNet), [
        "10.244.7.0/24",
        "fd00:10:244:7::/64",
      ]);
      assert.deepEqual(ensureBlackholeRoutes(h, [SUBNET, SUBNET6]), [], "already there");
    });
    assert.deepEqual(await blackholes(ns), [
      `10.244.7.0/24 ${BLACKHOLE_METRIC}`,
      `fd00:10:244:7::/64 ${BLACKHOLE_METRIC}`,
    ]);
  });
});

rootTest("blackhole route: the bridge's own route wins while it exists", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, (h) => ensureBlackholeRoutes(h, [SUBNET]));
    assert.equal(await routeOf(ns, "10.244.7.5"), "blackhole", "no bridge: dropped here");
    await run(["ip", "-n", ns, "link", "add", "cni0", "type", "bridge"]);
    await run(["ip", "-n", ns, "addr", "add", "10.244.7.1/24", "dev", "cni0"]);
    await run(["ip", "-n", ns, "link", "set", "cni0", "up"]);
    assert.equal(await routeOf(ns, "10.244.7.5"), "cni0", "pods stay reachable");
    await run(["ip", "-n", ns, "link", "del", "cni0"]);
    assert.equal(await routeOf(ns, "10.244.7.5"), "blackhole");
  });
});

rootTest("blackhole route: removed by hand, it is back within a period", async () => {
  await withNetns(async (ns) => {
    await withNetlink({ netns: ns }, async (h) => {
      const stop = new AbortController();
      const loop = maintainBlackholeRoutes(h, [SUBNET], 1, logger("test"), stop.signal);
      try {
        const installed = [`10.244.7.0/24 ${BLACKHOLE_METRIC}`];
        await waitFor(
          "the blackhole route",
          async () => isDeepStrictEqual(await blackholes(ns), installed),
        );
        await run([
          "ip",
          "-n",
          ns,
          "route",
          "del",
          "blackhole",
          "10.244.7.0/24",
          "metric",
          "4294967295",
        ]);
        assert.deepEqual(await blackholes(ns), []);
        await waitFor(
          "the blackhole route put back",
          async () => isDeepStrictEqual(await blackholes(ns), installed),
          5_000,
        );
      } finally {
        stop.abort();
        await loop;
      }
    });
  });
});
