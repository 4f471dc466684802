/**
 * A small etcd v3 client on Deno's `fetch`, speaking etcd's JSON gRPC-gateway (served under `/v3/`
 * since etcd 3.4). It costs no dependency, verifies TLS by host name or IP address,
 * reaches unix sockets, and fails over between endpoints per request, with no circuit breaker:
 * a request is sent as soon as it is made.
 *
 * @example
 * ```ts
 * const client = new EtcdClient({ endpoints: ["https://10.0.0.1:2379"], caFile: "/etc/etcd/ca.crt" });
 * await client.put({ key: "/a", value: "1" });
 * const { kvs } = await client.range({ key: "/a" });
 * client.close();
 * ```
 *
 * @module
 */
import {
  decodeAuthenticate,
  decodeDeleteRange,
  decodeGatewayError,
  decodeLeaseGrant,
  decodeLeaseKeepAlive,
  decodeLeaseTimeToLive,
  decodeRange,
  decodeStatus,
  decodeStreamLine,
  decodeTxn,
  decodeWatchResponse,
  decodeWrite,
  type DeleteRangeRequest,
  type DeleteRangeResponse,
  encodeDeleteRange,
  encodePut,
  encodeRange,
  encodeTxn,
  encodeWatchCreate,
  EtcdDecodeError,
  keyAfter,
  type KeyValue,
  type LeaseGrantResponse,
  type LeaseTimeToLiveResponse,
  prefixEnd,
  type PutRequest,
  type RangeRequest,
  type RangeResponse,
  type StatusResponse,
  toBytes,
  type TxnRequest,
  type TxnResponse,
  type WatchCreateRequest,
  type WatchResponse,
  type WriteResponse,
} from "./codec.ts";
import {
  type Endpoint,
  EtcdOptionsError,
  httpClientFor,
  parseEndpoint,
  type TlsFiles,
  tlsMaterial,
} from "./endpoint.ts";
import { describe, EtcdError, GrpcCode, tokenRefused } from "./errors.ts";
import { responseLines } from "./stream.ts";

export { EtcdOptionsError };

/** How to reach etcd (flanneld's `--etcd-*` flags). */
export interface EtcdConnection extends TlsFiles {
  /** Client URLs (see endpoint.ts for the forms); flannel's default is `http://127.0.0.1:2379`. */
  readonly endpoints: readonly string[];
  readonly username?: string;
  readonly password?: string;
  /** Deadline of each request; a watch has none once open. Default 10 s. */
  readonly requestTimeoutMs?: number;
  /**
   * After this long without a message, a watch checks that its server still answers, and ends
   * if it does not: a server gone without closing the connection is noticed. Default 15 s.
   */
  readonly watchProbeMs?: number;
}

/** Keys read at one store revision. */
export interface RangeSnapshot {
  readonly kvs: KeyValue[];
  /** The store revision the read saw. */
  readonly revision: number;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_WATCH_PROBE_MS = 15_000;

/** One endpoint with its HTTP client and auth token. */
interface Target {
  readonly endpoint: Endpoint;
  readonly http: Deno.HttpClient;
  token?: string;
}

/**
 * The client. Each request goes to the endpoint that last answered and moves on to the next
 * one while an endpoint cannot be reached or has no leader; etcd's own answers are final.
 */
export class EtcdClient {
  readonly #targets: Target[];
  readonly #auth?: { readonly name: string; readonly password: string };
  readonly #timeoutMs: number;
  readonly #probeMs: number;
  /** We present a client certificate. */
  readonly #clientCert: boolean;
  /** Aborted by close(): ends every request and watch. */
  readonly #closed = new AbortController();
  #current = 0;

  /** Throws {@link EtcdOptionsError} for options that cannot work; connects lazily. */
  constructor(conn: EtcdConnection) {
    if (conn.endpoints.length === 0) throw new EtcdOptionsError("no etcd endpoints given");
    if (!!conn.username !== !!conn.password) {
      throw new EtcdOptionsError("etcd username and password must be given together");
    }
    const tlsConfigured = !!(conn.caFile || conn.certFile);
    const endpoints = conn.endpoints.map((e) => parseEndpoint(e, tlsConfigured));
    const tls = tlsMaterial(conn);
    this.#clientCert = !!tls.cert;
    this.#targets = endpoints.map((endpoint) => ({
      endpoint,
      http: httpClientFor(endpoint, tls),
    }));
    if (conn.username) this.#auth = { name: conn.username, password: conn.password ?? "" };
    this.#timeoutMs = conn.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#probeMs = conn.watchProbeMs ?? DEFAULT_WATCH_PROBE_MS;
  }

  // --- KV ------------------------------------------------------------------------------------

  range(req: RangeRequest, signal?: AbortSignal): Promise<RangeResponse> {
    return this.#call("/v3/kv/range", encodeRange(req), decodeRange, signal);
  }

  /**
   * Every key starting with `key` (or exactly `key` when `prefix` is false), in key order, read
   * page by page at a single revision so the result is one consistent snapshot.
   */
  async rangeAll(
    key: string,
    prefix: boolean,
    signal?: AbortSignal,
    pageSize = 2000,
  ): Promise<RangeSnapshot> {
    const rangeEnd = prefix ? prefixEnd(key) : undefined;
    const kvs: KeyValue[] = [];
    let start = toBytes(key);
    let revision: number | undefined;
    for (;;) {
      const res = await this.range(
        { key: start, ...(rangeEnd && { rangeEnd, limit: pageSize }), revision },
        signal,
      );
      revision ??= res.revision;
      kvs.push(...res.kvs);
      if (!res.more || res.kvs.length === 0) return { kvs, revision };
      start = keyAfter(res.kvs[res.kvs.length - 1].key);
    }
  }

  put(req: PutRequest, signal?: AbortSignal): Promise<WriteResponse> {
    return this.#call("/v3/kv/put", encodePut(req), decodeWrite, signal);
  }

  deleteRange(req: DeleteRangeRequest, signal?: AbortSignal): Promise<DeleteRangeResponse> {
    return this.#call("/v3/kv/deleterange", encodeDeleteRange(req), decodeDeleteRange, signal);
  }

  txn(req: TxnRequest, signal?: AbortSignal): Promise<TxnResponse> {
    return this.#call("/v3/kv/txn", encodeTxn(req), decodeTxn, signal);
  }

  /** Drop history up to `revision`, physically (waits until the space is freed). */
  compact(revision: number, signal?: AbortSignal): Promise<WriteResponse> {
    const body = { revision: String(revision), physical: true };
    return this.#call("/v3/kv/compaction", body, decodeWrite, signal);
  }

  // --- leases --------------------------------------------------------------------------------

  leaseGrant(ttlSeconds: number, signal?: AbortSignal): Promise<LeaseGrantResponse> {
    return this.#call("/v3/lease/grant", { TTL: String(ttlSeconds) }, decodeLeaseGrant, signal);
  }

  /** Revoke a lease, deleting its keys; fails with NOT_FOUND when etcd does not know it. */
  async leaseRevoke(id: string, signal?: AbortSignal): Promise<void> {
    await this.#call("/v3/lease/revoke", { ID: id }, decodeWrite, signal);
  }

  /** Refresh a lease once; resolves to its remaining TTL, 0 when etcd no longer knows it. */
  async leaseKeepAlive(id: string, signal?: AbortSignal): Promise<number> {
    // A keep-alive stream of one request: the gateway closes it after the answer.
    const decode = (text: unknown) => {
      const first = String(text).split("\n", 1)[0];
      const message = decodeStreamLine(first, decodeLeaseKeepAlive);
      if ("error" in message) throw new EtcdError(message.error.code, message.error.message);
      return message.result.ttl;
    };
    return await this.#call("/v3/lease/keepalive", { ID: id }, decode, signal, "text");
  }

  leaseTimeToLive(id: string, signal?: AbortSignal): Promise<LeaseTimeToLiveResponse> {
    return this.#call("/v3/lease/timetolive", { ID: id }, decodeLeaseTimeToLive, signal);
  }

  /** The answering member's status (version, revision, leader). */
  status(signal?: AbortSignal): Promise<StatusResponse> {
    return this.#call("/v3/maintenance/status", {}, decodeStatus, signal);
  }

  // --- watch ---------------------------------------------------------------------------------

  /**
   * Open a watch and yield its messages until etcd cancels it (the last message yielded has
   * `canceled`) or `signal` aborts (it returns). A broken stream, a garbled message or a server
   * that stopped answering throws {@link EtcdError} or {@link EtcdDecodeError}.
   */
  async *watch(req: WatchCreateRequest, signal: AbortSignal): AsyncGenerator<WatchResponse> {
    const body = encodeWatchCreate(req);
    for (let attempt = 0;; attempt++) {
      const stream = new AbortController();
      const done = AbortSignal.any([signal, stream.signal, this.#closed.signal]);
      try {
        const { target, response, settled } = await this.#open("/v3/watch", body, done);
        settled();
        let first = true;
        const probe = () => this.#probe(target, done);
        for await (const line of responseLines(response, this.#probeMs, probe, done)) {
          const message = decodeStreamLine(line, decodeWatchResponse);
          if ("error" in message) throw new EtcdError(message.error.code, message.error.message);
          const res = message.result;
          // An expired token shows as a watch canceled at once: authenticate and open again.
          const retry = first && res.canceled && !!this.#auth && attempt === 0 &&
            tokenRefused(0, res.cancelReason);
          if (retry) target.token = undefined;
          if (retry) break;
          first = false;
          yield res;
          if (res.canceled) return;
        }
        if (done.aborted) return;
        if (!first) {
          throw new EtcdError(GrpcCode.UNAVAILABLE, `etcd ${target.endpoint.name}: watch ended`);
        }
      } catch (error) {
        if (done.aborted) return;
        throw error;
      } finally {
        stream.abort();
      }
    }
  }

  /** Close every connection and end every request and watch. Idempotent. */
  close(): void {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    for (const target of this.#targets) target.http.close();
  }

  // --- transport -----------------------------------------------------------------------------

  /** Send a unary request, failing over between endpoints, and decode its answer. */
  async #call<T>(
    path: string,
    body: unknown,
    decode: (value: unknown) => T,
    signal?: AbortSignal,
    as: "json" | "text" = "json",
  ): Promise<T> {
    const done = AbortSignal.any([this.#closed.signal, ...(signal ? [signal] : [])]);
    const { target, response, settled } = await this.#open(path, body, done);
    let text: string;
    try {
      text = await response.text();
    } catch (error) {
      done.throwIfAborted();
      throw new EtcdError(
        GrpcCode.UNAVAILABLE,
        `etcd ${target.endpoint.name}: answer broke off: ${describe(error)}`,
      );
    } finally {
      settled();
    }
    if (as === "text") return decode(text);
    try {
      return decode(JSON.parse(text));
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
      throw new EtcdDecodeError(`etcd answer to ${path} is not JSON: ${text.slice(0, 80)}`);
    }
  }

  /**
   * POST `body` to the first endpoint that answers with success, starting at the current one;
   * returns the response with its body unread. Each endpoint has the request timeout until
   * `settled()` is called (once the body is read, or, for a stream, once it is open).
   */
  async #open(
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<{ target: Target; response: Response; settled: () => void }> {
    const json = JSON.stringify(body);
    let lastError: EtcdError | undefined;
    const first = this.#current;
    for (let i = 0; i < this.#targets.length; i++) {
      const index = (first + i) % this.#targets.length;
      const target = this.#targets[index];
      const deadline = timeout(this.#timeoutMs, signal);
      try {
        const response = await this.#post(target, path, json, deadline.signal);
        this.#current = index;
        return { target, response, settled: deadline.clear };
      } catch (error) {
        deadline.clear();
        signal.throwIfAborted();
        if (deadline.signal.aborted) {
          lastError = new EtcdError(
            GrpcCode.UNAVAILABLE,
            `etcd ${target.endpoint.name}: no answer within ${this.#timeoutMs} ms`,
          );
        } else if (error instanceof EtcdError && error.code === GrpcCode.UNAVAILABLE) {
          lastError = error;
        } else {
          throw error;
        }
        // The next request starts at the next endpoint.
        if (index === this.#current) this.#current = (index + 1) % this.#targets.length;
      }
    }
    throw lastError!;
  }

  /** POST to one endpoint; a successful response, or an EtcdError (UNAVAILABLE: try another). */
  async #post(target: Target, path: string, json: string, signal: AbortSignal): Promise<Response> {
    for (let attempt = 0;; attempt++) {
      if (this.#auth && !target.token) await this.#authenticate(target, signal);
      const response = await this.#fetch(target, path, json, signal, target.token);
      if (response.ok) return response;
      const error = await this.#errorOf(target, response);
      if (this.#auth && attempt === 0 && tokenRefused(error.code, error.message)) {
        target.token = undefined;
        continue;
      }
      throw error;
    }
  }

  async #authenticate(target: Target, signal: AbortSignal): Promise<void> {
    const json = JSON.stringify(this.#auth);
    const response = await this.#fetch(target, "/v3/auth/authenticate", json, signal);
    if (!response.ok) throw await this.#errorOf(target, response);
    target.token = decodeAuthenticate(await response.json());
  }

  async #fetch(
    target: Target,
    path: string,
    body: string,
    signal: AbortSignal,
    token?: string,
  ): Promise<Response> {
    try {
      return await fetch(target.endpoint.origin + path, {
        method: "POST",
        body,
        headers: { "content-type": "application/json", ...(token && { authorization: token }) },
        client: target.http,
        signal,
      });
    } catch (error) {
      if (signal.aborted) throw error;
      throw new EtcdError(
        GrpcCode.UNAVAILABLE,
        `etcd ${target.endpoint.name}: ${describe(error)}`,
      );
    }
  }

  /** The EtcdError an unsuccessful response carries. */
  async #errorOf(target: Target, response: Response): Promise<EtcdError> {
    const text = await response.text().catch(() => "");
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch { /* not the gateway's JSON */ }
    const error = decodeGatewayError(parsed);
    const where = `etcd ${target.endpoint.name}`;
    if (error && this.#clientCert && /connection closed|handshake failed/.test(error.message)) {
      return new EtcdError(
        error.code,
        `${where}: ${error.message} (etcd's JSON gateway reaches etcd with the server ` +
          "certificate: with --client-cert-auth it needs the clientAuth usage, as kubeadm's has)",
      );
    }
    if (error) return new EtcdError(error.code, `${where}: ${error.message}`);
    // Not etcd's answer (a proxy, another server): try another endpoint.
    return new EtcdError(
      GrpcCode.UNAVAILABLE,
      `${where}: HTTP ${response.status} ${text.slice(0, 80)}`,
    );
  }

  /** Throws when `target` does not answer a status request (any answer will do). */
  async #probe(target: Target, signal: AbortSignal): Promise<void> {
    const deadline = timeout(this.#timeoutMs, signal);
    try {
      const response = await this.#fetch(target, "/v3/maintenance/status", "{}", deadline.signal);
      await response.body?.cancel();
    } catch (error) {
      signal.throwIfAborted();
      throw new EtcdError(
        GrpcCode.UNAVAILABLE,
        `etcd ${target.endpoint.name} stopped answering: ${describe(error)}`,
      );
    } finally {
      deadline.clear();
    }
  }
}

/** A signal that aborts with `signal` or after `ms`, and a `clear` that stops the timer. */
function timeout(ms: number, signal: AbortSignal): { signal: AbortSignal; clear: () => void } {
  const expired = new AbortController();
  const timer = setTimeout(() => expired.abort(), ms);
  return { signal: AbortSignal.any([signal, expired.signal]), clear: () => clearTimeout(timer) };
}
