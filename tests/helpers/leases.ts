/**
 * Seeding etcd the way flanneld (or an operator) does, with raw etcd calls and literal bytes,
 * so the subnet manager is tested against flannel's format rather than against itself.
 *
 * @module
 */
import type { EtcdClient } from "../../etcd/client.ts";
import { type KeyValue, prefixEnd, text } from "../../etcd/codec.ts";
import { formatLine, type LogFields, type Logger, type LogLevel } from "../../log.ts";

/** A key prefix no other test uses: `/tt-<random>/network`. */
export function uniquePrefix(): string {
  return `/tt-${crypto.randomUUID().slice(0, 8)}/network`;
}

/** Write `<prefix>/config` as an administrator would. */
export async function putConfig(client: EtcdClient, prefix: string, json: string): Promise<void> {
  await client.put({ key: `${prefix}/config`, value: json });
}

/**
 * Write `<prefix>/subnets/<name>` as flanneld does: grant a lease of `ttl` seconds (default
 * 86400) and put the value on it; `ttl: 0` writes a reservation (no lease). Returns the lease ID.
 */
export async function putLease(
  client: EtcdClient,
  prefix: string,
  name: string,
  value: string,
  ttl = 86_400,
): Promise<string> {
  const lease = ttl > 0 ? (await client.leaseGrant(ttl)).id : "0";
  await client.put({
    key: `${prefix}/subnets/${name}`,
    value,
    ...(lease !== "0" && { lease }),
  });
  return lease;
}

/** The value flannel's alloc/udp backends write for `ip`. */
export function allocValue(ip: string): string {
  return `{"PublicIP":"${ip}","PublicIPv6":null}`;
}

/** The value flannel's host-gw backend writes (spec §12 item 5). */
export function hostGwValue(ip: string): string {
  return `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"host-gw"}`;
}

/** The value flannel's vxlan backend writes. */
export function vxlanValue(ip: string, mac: string): string {
  return `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`;
}

/** One key as stored: value text and attached lease ID ("0" for none). */
export interface StoredKey {
  readonly value: string;
  readonly lease: string;
}

/** Every key under `<prefix>/subnets/`, by name. */
export async function readSubnets(
  client: EtcdClient,
  prefix: string,
): Promise<Map<string, StoredKey>> {
  const dir = `${prefix}/subnets/`;
  const res = await client.range({ key: dir, rangeEnd: prefixEnd(dir) });
  return new Map(res.kvs.map((kv) => [
    text(kv.key).slice(dir.length),
    { value: text(kv.value), lease: kv.lease },
  ]));
}

/** One key as stored, or undefined when absent. */
export async function readKey(client: EtcdClient, key: string): Promise<KeyValue | undefined> {
  return (await client.range({ key })).kvs[0];
}

/** One key's value as text, or undefined when absent. */
export async function readValue(client: EtcdClient, key: string): Promise<string | undefined> {
  const kv = await readKey(client, key);
  return kv && text(kv.value);
}

/** Remaining TTL of an etcd lease (-1 once gone) and the TTL it was granted with. */
export async function leaseTtl(
  client: EtcdClient,
  id: string,
): Promise<{ ttl: number; granted: number }> {
  const res = await client.leaseTimeToLive(id);
  return { ttl: res.ttl, granted: res.grantedTtl };
}

/** A logger that keeps its lines, for asserting on what was logged. */
export function captureLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const at = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    lines.push(formatLine(level, "test", msg, fields));
  };
  return {
    log: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
    lines,
  };
}

/**
 * Poll `check` every `intervalMs` until it returns true; returns the ms that took, fails after
 * `timeoutMs`. The one polling loop of the tests.
 */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 50,
): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    if (await check()) return performance.now() - started;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
