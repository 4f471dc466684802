/**
 * The etcd v3 client as the subnet manager uses it: connection options (endpoints, TLS, auth)
 * and consistent, paged range reads.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { Etcd3, type IKeyValue, type IOptions } from "etcd3";
import { tryParseAddr } from "../ip/mod.ts";

/** How to reach etcd (flanneld's `--etcd-*` flags). */
export interface EtcdConnection {
  /** Client URLs, `http://` or `https://` (flannel default `http://127.0.0.1:2379`). */
  readonly endpoints: readonly string[];
  /** CA bundle that verifies the server; honoured on its own too (flannel needs cert+key, quirk 19). */
  readonly caFile?: string;
  /** Client certificate; needs `keyFile`. */
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly username?: string;
  readonly password?: string;
  /** Deadline of each unary request; streams have none. Default 10 s. */
  readonly requestTimeoutMs?: number;
}

/** Raised for connection options that cannot work (missing files, half a client cert). */
export class EtcdOptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EtcdOptionsError";
  }
}

function readPem(path: string, what: string): Buffer {
  try {
    return Buffer.from(Deno.readFileSync(path));
  } catch (error) {
    throw new EtcdOptionsError(`cannot read etcd ${what} ${path}: ${(error as Error).message}`);
  }
}

function credentials(conn: EtcdConnection): IOptions["credentials"] {
  const { caFile, certFile, keyFile } = conn;
  if (!!certFile !== !!keyFile) {
    throw new EtcdOptionsError("etcd certfile and keyfile must be given together");
  }
  if (!caFile && !certFile) return undefined;
  return {
    // No CA: grpc falls back to the system roots when given undefined (the type insists on one).
    rootCertificate: (caFile ? readPem(caFile, "cafile") : undefined) as Buffer,
    ...(certFile && { certChain: readPem(certFile, "certfile") }),
    ...(keyFile && { privateKey: readPem(keyFile, "keyfile") }),
  };
}

/**
 * grpc-js always sends the endpoint host as TLS server name and Deno's TLS refuses IP server
 * names, so an https endpoint has to be named by host name (one its certificate carries).
 */
function checkEndpoint(endpoint: string): void {
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    throw new EtcdOptionsError(`invalid etcd endpoint ${endpoint}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new EtcdOptionsError(`etcd endpoint ${endpoint} must be http:// or https://`);
  }
  if (url.protocol === "https:" && tryParseAddr(url.hostname.replace(/^\[|\]$/g, ""))) {
    throw new EtcdOptionsError(
      `https etcd endpoint ${endpoint} must name the host, not its IP address ` +
        "(the Deno runtime refuses TLS to an IP server name)",
    );
  }
}

/** A client for `conn`; connects lazily, so this never blocks. */
export function createEtcdClient(conn: EtcdConnection): Etcd3 {
  if (conn.endpoints.length === 0) throw new EtcdOptionsError("no etcd endpoints given");
  conn.endpoints.forEach(checkEndpoint);
  if (!!conn.username !== !!conn.password) {
    throw new EtcdOptionsError("etcd username and password must be given together");
  }
  const timeout = conn.requestTimeoutMs ?? 10_000;
  return new Etcd3({
    hosts: [...conn.endpoints],
    credentials: credentials(conn),
    ...(conn.username && { auth: { username: conn.username, password: conn.password ?? "" } }),
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
    grpcOptions: {
      // Notice a silently dead server (no FIN) within seconds, not at the next TCP timeout.
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
    },
  });
}

/** UTF-8 bytes of a key. */
export function keyBytes(key: string): Buffer {
  return Buffer.from(key, "utf8");
}

/** End of the range holding every key that starts with `prefix`. */
export function prefixEnd(prefix: string): Buffer {
  const end = Buffer.from(keyBytes(prefix));
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return Buffer.from([0]); // all 0xff: up to the end of the keyspace
}

/** Keys read at one store revision. */
export interface RangeSnapshot {
  readonly kvs: IKeyValue[];
  /** The store revision the read saw. */
  readonly revision: number;
}

/**
 * Every key starting with `prefix` (or exactly `key` when `prefix` is false), in key order, read
 * page by page at a single revision so the result is one consistent snapshot.
 */
export async function readRange(
  client: Etcd3,
  key: string,
  prefix: boolean,
  pageSize = 2000,
): Promise<RangeSnapshot> {
  const end = prefix ? prefixEnd(key) : undefined;
  const kvs: IKeyValue[] = [];
  let start = keyBytes(key);
  let revision: number | undefined;
  for (;;) {
    const res = await client.kv.range({
      key: start,
      ...(end && { range_end: end, limit: pageSize }),
      ...(revision !== undefined && { revision }),
    });
    revision ??= Number(res.header.revision);
    kvs.push(...res.kvs);
    if (!res.more || res.kvs.length === 0) return { kvs, revision };
    start = Buffer.concat([res.kvs[res.kvs.length - 1].key, Buffer.from([0])]);
  }
}
