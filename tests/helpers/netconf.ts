/**
 * Parsing net-confs in tests: the document as JSON (or raw text), its families as text, and
 * rejections checked by field and message.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ConfigError, type NetConfMode, parseNetConfig } from "../../config/netconf.ts";
import type { FamilyConfig } from "../../config/network_config.ts";
import { formatAddr, formatNet } from "../../ip/mod.ts";

/** Parse `doc` (an object, or raw text) as a net-conf. */
export function parse(doc: unknown, mode: NetConfMode = "etcd") {
  return parseNetConfig(typeof doc === "string" ? doc : JSON.stringify(doc), mode);
}

/** The family as text, for readable assertions. */
export function shown(family: FamilyConfig | undefined) {
  assert.ok(family, "family missing");
  return {
    network: formatNet(family.network),
    subnetLen: family.subnetLen,
    subnetMin: formatAddr(family.subnetMin),
    subnetMax: formatAddr(family.subnetMax),
  };
}

/** The ConfigError `doc` is rejected with (fails when it is accepted). */
export function rejection(doc: unknown, mode: NetConfMode = "etcd"): ConfigError {
  try {
    parse(doc, mode);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail(`accepted ${JSON.stringify(doc)}`);
}

/** `doc` is rejected naming `field` with exactly `message`. */
export function rejects(doc: unknown, field: string, message: string, mode: NetConfMode = "etcd") {
  const err = rejection(doc, mode);
  assert.equal(err.field, field, JSON.stringify(doc));
  assert.equal(err.message, message, JSON.stringify(doc));
}

/** The smallest Backend. */
export const VXLAN = { Type: "vxlan" };
