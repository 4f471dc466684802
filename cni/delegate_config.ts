/**
 * The delegate config flannel synthesises on ADD (spec §9.3): the user's `delegate` object,
 * completed from subnet.env, with a host-local `ipam` for this node's subnet(s).
 *
 * @module
 */
import { z } from "zod";
import { formatAddr, formatNet, type IPNet, parseAddr, parseNet } from "../ip/mod.ts";
import { encodeCanonical } from "./canonical_json.ts";
import { ConfigError } from "./errors.ts";
import type { JsonObject } from "../json.ts";
import type { NetConf } from "./netconf.ts";
import type { SubnetEnv } from "./subnet_env.ts";
import { errorText } from "../log.ts";

const has = (obj: JsonObject, key: string) => Object.hasOwn(obj, key);

// A plugin `type` names a file in CNI_PATH: keep it to a plain file name.
const PLUGIN_NAME = /^[^/\0]+$/;

/** Whether `name` can name a plugin binary (no path separators, not `.`/`..`). */
export function isPluginName(name: string): boolean {
  return PLUGIN_NAME.test(name) && name !== "." && name !== "..";
}

const optionalInt = z.number().int().nullish();

// The members of a CNI route; anything else is dropped, as upstream's typed re-encoding does.
const RouteSchema = z.object({
  dst: z.string({ error: "dst is required" }),
  gw: z.string().nullish(),
  mtu: optionalInt,
  advmss: optionalInt,
  priority: optionalInt,
  table: optionalInt,
  scope: optionalInt,
});

function canonicalAddr(text: string): string {
  return formatAddr(parseAddr(text));
}

// The destination keeps its host bits (Go's types.IPNet does), only the text is canonical.
function canonicalCidr(text: string): string {
  const net = parseNet(text);
  return `${canonicalAddr(text.slice(0, text.indexOf("/")))}/${net.prefix}`;
}

function reencodeRoute(input: unknown, index: number): JsonObject {
  const path = `ipam.routes.${index}`;
  const parsed = RouteSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError([path, ...issue.path].join("."), issue.message);
  }
  const route = parsed.data;
  const out: JsonObject = {};
  try {
    out.dst = canonicalCidr(route.dst);
    if (route.gw) out.gw = canonicalAddr(route.gw);
  } catch (err) {
    throw new ConfigError(path, errorText(err));
  }
  // Zero means unset for these (Go omitempty); table and scope are pointers, so 0 is kept.
  for (const key of ["mtu", "advmss", "priority"] as const) {
    if (route[key]) out[key] = route[key];
  }
  for (const key of ["table", "scope"] as const) {
    if (route[key] !== null && route[key] !== undefined) out[key] = route[key];
  }
  return out;
}

function inputRoutes(ipam: JsonObject): JsonObject[] {
  const routes = ipam.routes;
  if (routes === undefined || routes === null) return [];
  if (!Array.isArray(routes)) throw new ConfigError("ipam.routes", "must be an array");
  return routes.map(reencodeRoute);
}

function delegateIpam(conf: NetConf, env: SubnetEnv): JsonObject {
  const subnets = [env.subnet, env.ipv6Subnet].filter((s): s is IPNet => s !== undefined);
  const clusterRoutes = [...env.networks, ...env.ipv6Networks].map((n) => ({ dst: formatNet(n) }));
  return {
    ...conf.ipam,
    type: has(conf.ipam, "type") ? conf.ipam.type : "host-local",
    ranges: subnets.map((s) => [{ subnet: formatNet(s) }]),
    routes: [...inputRoutes(conf.ipam), ...clusterRoutes],
  };
}

function checkDelegate(delegate: JsonObject): void {
  if (has(delegate, "type")) {
    if (typeof delegate.type !== "string") {
      throw new ConfigError(
        "delegate.type",
        "'delegate' dictionary, if present, must have (string) 'type' field",
      );
    }
    if (!isPluginName(delegate.type)) {
      throw new ConfigError("delegate.type", "must be a plugin name, not a path");
    }
  }
  for (const key of ["name", "ipam"]) {
    if (has(delegate, key)) {
      throw new ConfigError(
        `delegate.${key}`,
        `'delegate' dictionary must not have '${key}' field, it'll be set by flannel`,
      );
    }
  }
}

/**
 * Build the delegate config object: members the user set in `delegate` win, except `name`,
 * `ipam`, `runtimeConfig` (when the input has one) and `cniVersion` (when the input names one;
 * otherwise the delegate, like us, reads the config as the implied 0.1.0).
 *
 * @throws {ConfigError} for a bad `delegate` (`name`/`ipam` present, non-string `type`) or a
 *   bad `ipam.routes` entry.
 */
export function buildDelegateConfig(conf: NetConf, env: SubnetEnv): JsonObject {
  checkDelegate(conf.delegate);
  const delegate: JsonObject = { ...conf.delegate, name: conf.name };
  if (conf.runtimeConfig) delegate.runtimeConfig = conf.runtimeConfig;
  if (!has(delegate, "type")) delegate.type = "bridge";
  // flanneld masquerading pod traffic means the bridge must not, and vice versa.
  if (!has(delegate, "ipMasq")) delegate.ipMasq = !env.ipMasq;
  if (!has(delegate, "mtu")) delegate.mtu = env.mtu;
  if (delegate.type === "bridge" && !has(delegate, "isGateway")) delegate.isGateway = true;
  if (conf.cniVersion) delegate.cniVersion = conf.cniVersion;
  delegate.ipam = delegateIpam(conf, env);
  return delegate;
}

/**
 * The bytes saved and fed to the delegate: compact JSON, keys sorted.
 *
 * @example
 * ```ts
 * // conformance 33: {"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{…},…}
 * const bytes = encodeDelegateConfig(buildDelegateConfig(conf, env));
 * ```
 */
export function encodeDelegateConfig(config: JsonObject): Uint8Array {
  return new TextEncoder().encode(encodeCanonical(config));
}
