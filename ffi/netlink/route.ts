/**
 * Routes (IPv4 and IPv6): list, add, replace, delete, and a kernel route lookup.
 *
 * @module
 */
import { bitsOf, type Family, type IPAddr, type IPNet, makeNet } from "../../ip/mod.ts";
import {
  addrAttr,
  type Attr,
  attrAddr,
  attrMap,
  attrU32,
  NetlinkDecodeError,
  type NetlinkMessage,
  type RtMsg,
  u32Attr,
} from "./codec.ts";
import {
  NLM_F_CREATE,
  NLM_F_EXCL,
  NLM_F_REPLACE,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  RT_TABLE_COMPAT,
  RT_TABLE_MAIN,
  RTA_DST,
  RTA_GATEWAY,
  RTA_OIF,
  RTA_PREFSRC,
  RTA_PRIORITY,
  RTA_TABLE,
  RTM_DELROUTE,
  RTM_F_CLONED,
  RTM_GETROUTE,
  RTM_NEWROUTE,
  RTN_UNICAST,
  RTN_UNSPEC,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  RTPROT_UNSPEC,
} from "./constants.ts";
import { dump, execute, type NetlinkHandle, type NetlinkRequest } from "./socket.ts";
import { AF_INET, AF_INET6, AF_UNSPEC } from "../unix.ts";

/** A route as the kernel reports it. */
export interface Route {
  family: Family;
  /** Destination; the default route is `0.0.0.0/0` or `::/0`. */
  dst: IPNet;
  gateway?: IPAddr;
  /** Output interface index. */
  oif?: number;
  prefsrc?: IPAddr;
  /** Routing table id (RTA_TABLE, so ids above 255 are exact). */
  table: number;
  /** RTPROT_*. */
  protocol: number;
  /** RT_SCOPE_*. */
  scope: number;
  /** RTN_* (unicast, blackhole, local, ...). */
  type: number;
  /** Metric (RTA_PRIORITY). */
  priority?: number;
  /** The gateway is used without checking that it is on a connected network. */
  onlink: boolean;
  /** `rtm_flags`. */
  flags: number;
}

/**
 * A route to add, replace or delete. Defaults: table main, protocol boot (like `ip route`),
 * scope universe, type unicast. For delete, unset protocol/scope/type match any.
 */
export interface RouteSpec {
  dst: IPNet;
  gateway?: IPAddr;
  oif?: number;
  prefsrc?: IPAddr;
  table?: number;
  protocol?: number;
  scope?: number;
  type?: number;
  priority?: number;
  onlink?: boolean;
}

/** Which routes {@link listRoutes} returns (unset fields match everything). */
export interface RouteFilter {
  family?: Family;
  table?: number;
  oif?: number;
}

function familyOf(f: Family): number {
  return f === 4 ? AF_INET : AF_INET6;
}

/** Turn an RTM_NEWROUTE message into a {@link Route} ({@link NetlinkDecodeError} if malformed). */
export function routeFromMessage(m: NetlinkMessage): Route {
  if (m.body.kind !== "route") throw new NetlinkDecodeError("not a route message", 0);
  const { msg } = m.body;
  if (msg.family !== AF_INET && msg.family !== AF_INET6) {
    throw new NetlinkDecodeError(`route family ${msg.family}`, 0);
  }
  const family: Family = msg.family === AF_INET ? 4 : 6;
  if (msg.dstLen > bitsOf(family)) {
    throw new NetlinkDecodeError(`route prefix /${msg.dstLen} too long`, 0);
  }
  const a = attrMap(m.body.attrs);
  const addrOf = (type: number) => {
    const x = a.get(type);
    if (!x) return undefined;
    const addr = attrAddr(x);
    if (addr.family !== family) throw new NetlinkDecodeError(`attribute ${type}: wrong family`, 0);
    return addr;
  };
  const dst = addrOf(RTA_DST) ?? { family, value: 0n };
  const table = a.get(RTA_TABLE);
  const route: Route = {
    family,
    dst: makeNet(dst, msg.dstLen),
    table: table ? attrU32(table) : msg.table,
    protocol: msg.protocol,
    scope: msg.scope,
    type: msg.type,
    onlink: (msg.flags & RTNH_F_ONLINK) !== 0,
    flags: msg.flags,
  };
  const gateway = addrOf(RTA_GATEWAY);
  if (gateway) route.gateway = gateway;
  const prefsrc = addrOf(RTA_PREFSRC);
  if (prefsrc) route.prefsrc = prefsrc;
  const oif = a.get(RTA_OIF);
  if (oif) route.oif = attrU32(oif);
  const priority = a.get(RTA_PRIORITY);
  if (priority) route.priority = attrU32(priority);
  return route;
}

function emptyRtMsg(family: number): RtMsg {
  return {
    family,
    dstLen: 0,
    srcLen: 0,
    tos: 0,
    table: 0,
    protocol: 0,
    scope: 0,
    type: 0,
    flags: 0,
  };
}

/** List routes (cached clones excluded), filtered by family, table and output interface. */
export function listRoutes(h: NetlinkHandle, filter: RouteFilter = {}): Route[] {
  const family = filter.family ? familyOf(filter.family) : AF_UNSPEC;
  return dump(h, {
    type: RTM_GETROUTE,
    body: { kind: "route", msg: emptyRtMsg(family), attrs: [] },
  }, (m) => {
    if (
      m.body.kind !== "route" ||
      (m.body.msg.family !== AF_INET && m.body.msg.family !== AF_INET6) ||
      (m.body.msg.flags & RTM_F_CLONED)
    ) return undefined;
    const r = routeFromMessage(m);
    const wanted = (filter.family === undefined || r.family === filter.family) &&
      (filter.table === undefined || r.table === filter.table) &&
      (filter.oif === undefined || r.oif === filter.oif);
    return wanted ? r : undefined;
  });
}

const OPS = {
  add: { type: RTM_NEWROUTE, flags: NLM_F_CREATE | NLM_F_EXCL },
  replace: { type: RTM_NEWROUTE, flags: NLM_F_CREATE | NLM_F_REPLACE },
  delete: { type: RTM_DELROUTE, flags: 0 },
} as const;

/**
 * The request for one route operation, for batches (`executeBatch` in batch.ts).
 *
 * @example
 * ```ts
 * executeBatch(h, peers.map((p) => routeRequest("replace", { dst: p.subnet, gateway: p.ip })));
 * ```
 */
export function routeRequest(op: keyof typeof OPS, spec: RouteSpec): NetlinkRequest {
  const del = op === "delete";
  const table = spec.table ?? RT_TABLE_MAIN;
  const attrs: Attr[] = [u32Attr(RTA_TABLE, table)];
  if (spec.dst.prefix > 0) {
    attrs.push(addrAttr(RTA_DST, { family: spec.dst.family, value: spec.dst.base }));
  }
  if (spec.gateway) attrs.push(addrAttr(RTA_GATEWAY, spec.gateway));
  if (spec.oif !== undefined) attrs.push(u32Attr(RTA_OIF, spec.oif));
  if (spec.prefsrc) attrs.push(addrAttr(RTA_PREFSRC, spec.prefsrc));
  if (spec.priority !== undefined) attrs.push(u32Attr(RTA_PRIORITY, spec.priority));
  return {
    type: OPS[op].type,
    flags: OPS[op].flags,
    body: {
      kind: "route",
      msg: {
        ...emptyRtMsg(familyOf(spec.dst.family)),
        dstLen: spec.dst.prefix,
        table: table < 256 ? table : RT_TABLE_COMPAT,
        protocol: spec.protocol ?? (del ? RTPROT_UNSPEC : RTPROT_BOOT),
        scope: spec.scope ?? (del ? RT_SCOPE_NOWHERE : RT_SCOPE_UNIVERSE),
        type: spec.type ?? (del ? RTN_UNSPEC : RTN_UNICAST),
        flags: spec.onlink ? RTNH_F_ONLINK : 0,
      },
      attrs,
    },
  };
}

/** Add a route (`EEXIST` if the same destination/table/metric already exists). */
export function addRoute(h: NetlinkHandle, spec: RouteSpec): void {
  execute(h, routeRequest("add", spec));
}

/**
 * Add or replace the route for a destination.
 *
 * @example
 * ```ts
 * replaceRoute(h, { dst: parseNet("10.244.2.0/24"), gateway: parseAddr("10.244.2.0"), oif, onlink: true });
 * ```
 */
export function replaceRoute(h: NetlinkHandle, spec: RouteSpec): void {
  execute(h, routeRequest("replace", spec));
}

/** Delete a route (`ESRCH` if none matches). */
export function deleteRoute(h: NetlinkHandle, spec: RouteSpec): void {
  execute(h, routeRequest("delete", spec));
}

/**
 * Ask the kernel which route it would use to reach `dst` (`ip route get`): the answer carries
 * the output interface, gateway (absent when `dst` is on a connected network) and source.
 * Throws NetlinkError `ENETUNREACH` when there is no route.
 */
export function getRoute(h: NetlinkHandle, dst: IPAddr): Route {
  const replies = execute(h, {
    type: RTM_GETROUTE,
    body: {
      kind: "route",
      msg: { ...emptyRtMsg(familyOf(dst.family)), dstLen: bitsOf(dst.family) },
      attrs: [addrAttr(RTA_DST, dst)],
    },
  });
  const reply = replies.find((m) => m.body.kind === "route");
  if (!reply) throw new NetlinkDecodeError("RTM_GETROUTE answered without a route", 0);
  return routeFromMessage(reply);
}
