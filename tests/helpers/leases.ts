/**
 * Seeding etcd the way flanneld (or an operator) does, with raw etcd calls and literal bytes,
 * so the subnet manager is tested against flannel's format rather than against itself.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Etcd3 } from "etcd3";
import { formatLine, type LogFields, type Logger, type LogLevel } from "../../log.ts";

/** A key prefix no other test uses: `/tt-<random>/network`. */
export function uniquePrefix(): string {
  return `/tt-${crypto.randomUUID().slice(0, 8)}/network`;
}

/** Write `<prefix>/config` as an administrator would. */
export async function putConfig(client: Etcd3, prefix: string, json: string): Promise<void> {
  await client.kv.put({ key: Buffer.from(`${prefix}/config`), value: Buffer.from(json) });
}

/**
 * Write `<prefix>/subnets/<name>` as flanneld does: grant a lease of `ttl` seconds (default
 * 86400) and put the value on it; `ttl: 0` writes a reservation (no lease). Returns the lease ID.
 */
export async function putLease(
  client: Etcd3,
  prefix: string,
  name: string,
  value: string,
  ttl = 86_400,
): Promise<string> {
  const lease = ttl > 0 ? (await client.leaseClient.leaseGrant({ TTL: ttl })).ID : "0";
  await client.kv.put({
    key: Buffer.from(`${prefix}/subnets/${name}`),
    value: Buffer.from(value),
    ...(lease !== "0" && { lease }),
  });
  return lease;
}

/** The value flannel's alloc/udp backends write for `ip`. */
export function allocValue(ip: string): string {
  return `{"PublicIP":"${ip}","PublicIPv6":null}`;
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
export async function readSubnets(client: Etcd3, prefix: string): Promise<Map<string, StoredKey>> {
  const dir = `${prefix}/subnets/`;
  const res = await client.kv.range({
    key: Buffer.from(dir),
    range_end: Buffer.from(`${prefix}/subnets0`),
  });
  return new Map(res.kvs.map((kv) => [
    kv.key.toString().slice(dir.length),
    { value: kv.value.toString(), lease: kv.lease },
  ]));
}

/** Remaining TTL of an etcd lease (-1 once gone) and the TTL it was granted with. */
export async function leaseTtl(
  client: Etcd3,
  id: string,
): Promise<{ ttl: number; granted: number }> {
  const res = await client.leaseClient.leaseTimeToLive({ ID: id });
  return { ttl: Number(res.TTL), granted: Number(res.grantedTTL) };
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

/** Poll `check` every 50 ms until it returns true or `timeoutMs` passes. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
