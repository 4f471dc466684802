import assert from "node:assert/strict";
import fc from "fast-check";
import {
  RTN_BLACKHOLE,
  RTN_UNICAST,
  RTPROT_BOOT,
  RTPROT_KERNEL,
} from "../../ffi/netlink/constants.ts";
import type { Route } from "../../ffi/netlink/route.ts";
import { formatNet, ipv4, makeNet, netOverlaps, parseAddr, parseNet } from "../../ip/mod.ts";
import {
  classifyRoutes,
  isOurDestination,
  routeRefusal,
  type RouteScope,
} from "../../backends/route_ownership.ts";

const OURS = 3; // flannel.1
const OTHER = 7; // some other agent's device
const SCOPE: RouteScope = {
  networks: [parseNet("10.244.0.0/16")],
  ownSubnets: [parseNet("10.244.7.0/24")],
  routeDevices: [2, OURS],
};

function route(dst: string, extra: Partial<Route> = {}): Route {
  return {
    family: 4,
    dst: parseNet(dst),
    gateway: parseAddr("198.18.0.12"),
    oif: OURS,
    table: 254,
    protocol: RTPROT_BOOT,
    scope: 0,
    type: RTN_UNICAST,
    onlink: false,
    flags: 0,
    ...extra,
  };
}

Deno.test("only destinations strictly inside a network and clear of our subnet are ours", () => {
  const verdicts = [
    "10.244.3.0/24",
    "10.244.0.0/16",
    "10.0.0.0/8",
    "198.18.0.0/24",
    "0.0.0.0/1",
    "10.244.7.128/25",
    "10.244.0.0/20",
    "10.244.200.0/21",
  ]
    .map((dst) => [dst, isOurDestination(SCOPE, parseNet(dst))]);
  assert.deepEqual(Object.fromEntries(verdicts), {
    "10.244.3.0/24": true,
    "10.244.0.0/16": false,
    "10.0.0.0/8": false,
    "198.18.0.0/24": false,
    "0.0.0.0/1": false,
    "10.244.7.128/25": false,
    "10.244.0.0/20": false, // covers our 10.244.7.0/24
    "10.244.200.0/21": true,
  });
});

Deno.test("kernel, foreign-device and blackhole routes make their destination foreign", () => {
  const { ours, foreign } = classifyRoutes(SCOPE, [
    route("10.244.3.0/24"),
    route("10.244.4.0/24", { protocol: RTPROT_KERNEL, gateway: undefined }),
    route("10.244.5.0/24", { oif: OTHER }),
    route("10.244.6.0/24", { type: RTN_BLACKHOLE, oif: undefined, gateway: undefined }),
    // ours and someone else's at one destination: hands off the destination as a whole
    route("10.244.8.0/24"),
    route("10.244.8.0/24", { oif: OTHER, priority: 100 }),
    route("198.18.0.0/24", { protocol: RTPROT_KERNEL, oif: 2, gateway: undefined }),
    route("10.244.7.0/24", { protocol: RTPROT_KERNEL, oif: 9, gateway: undefined }),
  ]);
  assert.deepEqual(ours.map((r) => formatNet(r.dst)), ["10.244.3.0/24"]);
  assert.deepEqual([...foreign].sort(), [
    "10.244.4.0/24",
    "10.244.5.0/24",
    "10.244.6.0/24",
    "10.244.8.0/24",
  ]);
});

Deno.test("routeRefusal names why, and lets our own routes through", () => {
  const foreign = new Set(["10.244.4.0/24"]);
  const refusal = (dst: string, gateway = "198.18.0.12") =>
    routeRefusal(SCOPE, foreign, { dst: parseNet(dst), gateway: parseAddr(gateway), oif: 2 });
  assert.equal(refusal("10.244.3.0/24"), undefined);
  assert.match(refusal("198.18.0.0/24")!, /not inside the cluster network/);
  assert.match(refusal("10.244.7.0/24")!, /own subnet/);
  assert.match(refusal("10.244.3.0/24", "0.0.0.0")!, /unspecified gateway/);
  assert.match(refusal("10.244.4.0/24")!, /does not own/);
});

Deno.test("property: nothing refused is outside the networks' strict inside or over our subnet", () => {
  fc.assert(fc.property(
    fc.integer({ min: 0, max: 0xffffffff }),
    fc.integer({ min: 0, max: 32 }),
    (base, prefix) => {
      const dst = makeNet(ipv4(base), prefix);
      const allowed = routeRefusal(SCOPE, new Set(), { dst, gateway: parseAddr("198.18.0.12") }) ===
        undefined;
      const inside = dst.prefix > 16 && (dst.base >> 16n) === 0x0af4n;
      return allowed === (inside && !netOverlaps(dst, SCOPE.ownSubnets[0]));
    },
  ));
});
