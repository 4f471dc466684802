/**
 * etcd v3's JSON gRPC-gateway format ↔ typed values, with no I/O: protobuf JSON as etcd 3.4's
 * gateway writes it (bytes as base64, int64 as decimal strings, enums as names, fields at their
 * zero value left out).
 *
 * Decoders check every field they use and throw {@link EtcdDecodeError} on anything else, so a
 * garbled response fails one request instead of turning into wrong keys or revisions.
 *
 * @module
 */
import { isRecord } from "../json.ts";

/** A key or value: bytes, or text taken as UTF-8. */
export type Bytes = Uint8Array | string;

/** One stored key. */
export interface KeyValue {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  /** Number of writes since creation; 0 for a key deleted (in watch events). */
  readonly version: number;
  /** The etcd lease the key is attached to, "0" for none. */
  readonly lease: string;
}

/** Read `key`, or `[key, rangeEnd)`. */
export interface RangeRequest {
  readonly key: Bytes;
  readonly rangeEnd?: Bytes;
  /** Most keys returned; 0 or absent: all. */
  readonly limit?: number;
  /** Read at this store revision; absent: the newest. */
  readonly revision?: number;
}

export interface RangeResponse {
  /** The store revision the read saw. */
  readonly revision: number;
  readonly kvs: readonly KeyValue[];
  /** More keys lie in the range past `limit`. */
  readonly more: boolean;
}

export interface PutRequest {
  readonly key: Bytes;
  readonly value: Bytes;
  /** Attach to this etcd lease. */
  readonly lease?: string;
}

export interface DeleteRangeRequest {
  readonly key: Bytes;
  readonly rangeEnd?: Bytes;
}

/** How a {@link Compare} relates the stored field to the given one. */
export type CompareResult = "EQUAL" | "GREATER" | "LESS" | "NOT_EQUAL";

/** One condition of a transaction, on `key` (or every key of `[key, rangeEnd)`). */
export type Compare =
  & { readonly key: Bytes; readonly rangeEnd?: Bytes; readonly result: CompareResult }
  & (
    | { readonly target: "VERSION"; readonly version: number }
    | { readonly target: "CREATE"; readonly createRevision: number }
    | { readonly target: "MOD"; readonly modRevision: number }
    | { readonly target: "VALUE"; readonly value: Bytes }
    | { readonly target: "LEASE"; readonly lease: string }
  );

/** One write of a transaction. */
export type TxnOp = { readonly put: PutRequest } | { readonly deleteRange: DeleteRangeRequest };

export interface TxnRequest {
  readonly compare: readonly Compare[];
  readonly success: readonly TxnOp[];
  readonly failure?: readonly TxnOp[];
}

export interface TxnResponse {
  readonly revision: number;
  readonly succeeded: boolean;
}

/** A write's answer: the store revision after it. */
export interface WriteResponse {
  readonly revision: number;
}

export interface DeleteRangeResponse extends WriteResponse {
  readonly deleted: number;
}

export interface LeaseGrantResponse {
  readonly id: string;
  /** Seconds granted. */
  readonly ttl: number;
}

export interface LeaseKeepAliveResponse {
  readonly id: string;
  /** Seconds left after the refresh; 0 when etcd no longer knows the lease. */
  readonly ttl: number;
}

export interface LeaseTimeToLiveResponse {
  readonly id: string;
  /** Whole seconds left (truncated); -1 when etcd no longer knows the lease. */
  readonly ttl: number;
  readonly grantedTtl: number;
}

export interface StatusResponse {
  readonly revision: number;
  /** The server's etcd version, e.g. `3.4.23`. */
  readonly version: string;
  readonly leader: string;
}

/** Watch `key`, or `[key, rangeEnd)`. */
export interface WatchCreateRequest {
  readonly key: Bytes;
  readonly rangeEnd?: Bytes;
  /** First revision to deliver; absent: from now on. */
  readonly startRevision?: number;
  /** Ask for empty responses that report the revision while nothing changes. */
  readonly progressNotify?: boolean;
}

export interface WatchEvent {
  readonly type: "put" | "delete";
  /** The key after the event; for a delete, key and mod revision only. */
  readonly kv: KeyValue;
}

/** One message of a watch stream. */
export interface WatchResponse {
  /** The store revision when the message was sent. */
  readonly revision: number;
  /** The answer to the create request. */
  readonly created: boolean;
  /** The watch ended (see `cancelReason`, `compactRevision`); no message follows. */
  readonly canceled: boolean;
  /** Non-zero: the start revision was compacted; history begins after this one. */
  readonly compactRevision: number;
  readonly cancelReason: string;
  readonly events: readonly WatchEvent[];
}

/** An etcd error as the gateway reports it: gRPC code and message. */
export interface GatewayError {
  /** gRPC status code (e.g. 11 OUT_OF_RANGE for compaction, 16 UNAUTHENTICATED). */
  readonly code: number;
  readonly message: string;
}

/** A response that is not what etcd's gateway sends. */
export class EtcdDecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EtcdDecodeError";
  }
}

// --- bytes -----------------------------------------------------------------------------------

const UTF8 = new TextEncoder();

/** The bytes of `b` (text as UTF-8). */
export function toBytes(b: Bytes): Uint8Array {
  return typeof b === "string" ? UTF8.encode(b) : b;
}

/** Bytes as UTF-8 text; invalid sequences become U+FFFD. */
export function text(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

function b64(b: Bytes): string {
  return toBytes(b).toBase64();
}

/** End of the range holding every key that starts with `prefix`. */
export function prefixEnd(prefix: Bytes): Uint8Array {
  const end = toBytes(prefix).slice();
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] < 0xff) {
      end[i]++;
      return end.subarray(0, i + 1);
    }
  }
  return new Uint8Array([0]); // all 0xff: up to the end of the keyspace
}

/** The smallest key after `key`: `key` followed by a zero byte. */
export function keyAfter(key: Uint8Array): Uint8Array {
  const next = new Uint8Array(key.length + 1);
  next.set(key);
  return next;
}

// --- requests ------------------------------------------------------------------------------

type Json = Record<string, unknown>;

/** Leave out fields that are undefined, as protobuf JSON leaves out unset ones. */
function fields(entries: Record<string, unknown>): Json {
  return Object.fromEntries(Object.entries(entries).filter(([, v]) => v !== undefined));
}

const int64 = (n: number | undefined) => (n === undefined ? undefined : String(n));
const optBytes = (b: Bytes | undefined) => (b === undefined ? undefined : b64(b));

export function encodeRange(req: RangeRequest): Json {
  return fields({
    key: b64(req.key),
    range_end: optBytes(req.rangeEnd),
    limit: int64(req.limit),
    revision: int64(req.revision),
  });
}

export function encodePut(req: PutRequest): Json {
  return fields({ key: b64(req.key), value: b64(req.value), lease: req.lease });
}

export function encodeDeleteRange(req: DeleteRangeRequest): Json {
  return fields({ key: b64(req.key), range_end: optBytes(req.rangeEnd) });
}

function encodeCompare(c: Compare): Json {
  const common = { key: b64(c.key), range_end: optBytes(c.rangeEnd), result: c.result };
  switch (c.target) {
    case "VERSION":
      return fields({ ...common, target: c.target, version: int64(c.version) });
    case "CREATE":
      return fields({ ...common, target: c.target, create_revision: int64(c.createRevision) });
    case "MOD":
      return fields({ ...common, target: c.target, mod_revision: int64(c.modRevision) });
    case "VALUE":
      return fields({ ...common, target: c.target, value: b64(c.value) });
    case "LEASE":
      return fields({ ...common, target: c.target, lease: c.lease });
  }
}

function encodeOp(op: TxnOp): Json {
  return "put" in op
    ? { request_put: encodePut(op.put) }
    : { request_delete_range: encodeDeleteRange(op.deleteRange) };
}

export function encodeTxn(req: TxnRequest): Json {
  return {
    compare: req.compare.map(encodeCompare),
    success: req.success.map(encodeOp),
    failure: (req.failure ?? []).map(encodeOp),
  };
}

export function encodeWatchCreate(req: WatchCreateRequest): Json {
  return {
    create_request: fields({
      key: b64(req.key),
      range_end: optBytes(req.rangeEnd),
      start_revision: int64(req.startRevision),
      progress_notify: req.progressNotify || undefined,
    }),
  };
}

// --- responses -----------------------------------------------------------------------------

function object(value: unknown, what: string): Json {
  if (!isRecord(value)) throw new EtcdDecodeError(`${what} is not an object`);
  return value as Json;
}

/** An int64 field: a decimal string (or a JSON number), 0 when left out. */
function int(obj: Json, name: string): number {
  const raw = obj[name];
  if (raw === undefined) return 0;
  const n = typeof raw === "number"
    ? raw
    : typeof raw === "string" && /^-?\d+$/.test(raw)
    ? Number(raw)
    : NaN;
  if (!Number.isSafeInteger(n)) throw new EtcdDecodeError(`${name} is not an integer: ${raw}`);
  return n;
}

/** An int64 ID kept as its decimal text (IDs may pass 2^53), "0" when left out. */
function id(obj: Json, name: string): string {
  const raw = obj[name] ?? "0";
  const textual = typeof raw === "number" && Number.isSafeInteger(raw) ? String(raw) : raw;
  if (typeof textual !== "string" || !/^-?\d+$/.test(textual)) {
    throw new EtcdDecodeError(`${name} is not an int64: ${raw}`);
  }
  return textual;
}

function bool(obj: Json, name: string): boolean {
  const raw = obj[name] ?? false;
  if (typeof raw !== "boolean") throw new EtcdDecodeError(`${name} is not a boolean`);
  return raw;
}

function str(obj: Json, name: string): string {
  const raw = obj[name] ?? "";
  if (typeof raw !== "string") throw new EtcdDecodeError(`${name} is not a string`);
  return raw;
}

function bytes(obj: Json, name: string): Uint8Array {
  const raw = str(obj, name);
  try {
    return Uint8Array.fromBase64(raw);
  } catch {
    throw new EtcdDecodeError(`${name} is not base64`);
  }
}

function list(obj: Json, name: string): unknown[] {
  const raw = obj[name] ?? [];
  if (!Array.isArray(raw)) throw new EtcdDecodeError(`${name} is not a list`);
  return raw;
}

/** The store revision in a response's header. */
function headerRevision(obj: Json): number {
  return int(object(obj.header ?? {}, "header"), "revision");
}

export function decodeKeyValue(value: unknown): KeyValue {
  const kv = object(value, "kv");
  return {
    key: bytes(kv, "key"),
    value: bytes(kv, "value"),
    createRevision: int(kv, "create_revision"),
    modRevision: int(kv, "mod_revision"),
    version: int(kv, "version"),
    lease: id(kv, "lease"),
  };
}

export function decodeRange(value: unknown): RangeResponse {
  const res = object(value, "range response");
  return {
    revision: headerRevision(res),
    kvs: list(res, "kvs").map(decodeKeyValue),
    more: bool(res, "more"),
  };
}

export function decodeTxn(value: unknown): TxnResponse {
  const res = object(value, "txn response");
  return { revision: headerRevision(res), succeeded: bool(res, "succeeded") };
}

export function decodeWrite(value: unknown): WriteResponse {
  return { revision: headerRevision(object(value, "response")) };
}

export function decodeDeleteRange(value: unknown): DeleteRangeResponse {
  const res = object(value, "delete response");
  return { revision: headerRevision(res), deleted: int(res, "deleted") };
}

export function decodeLeaseGrant(value: unknown): LeaseGrantResponse {
  const res = object(value, "lease grant response");
  const error = str(res, "error");
  if (error) throw new EtcdDecodeError(`lease grant refused: ${error}`);
  return { id: id(res, "ID"), ttl: int(res, "TTL") };
}

export function decodeLeaseKeepAlive(value: unknown): LeaseKeepAliveResponse {
  const res = object(value, "keep-alive response");
  return { id: id(res, "ID"), ttl: int(res, "TTL") };
}

export function decodeLeaseTimeToLive(value: unknown): LeaseTimeToLiveResponse {
  const res = object(value, "time-to-live response");
  return { id: id(res, "ID"), ttl: int(res, "TTL"), grantedTtl: int(res, "grantedTTL") };
}

export function decodeStatus(value: unknown): StatusResponse {
  const res = object(value, "status response");
  return { revision: headerRevision(res), version: str(res, "version"), leader: id(res, "leader") };
}

export function decodeAuthenticate(value: unknown): string {
  const token = str(object(value, "authenticate response"), "token");
  if (!token) throw new EtcdDecodeError("authenticate response carries no token");
  return token;
}

function decodeEvent(value: unknown): WatchEvent {
  const event = object(value, "event");
  const type = event.type ?? "PUT";
  if (type !== "PUT" && type !== "DELETE") throw new EtcdDecodeError(`unknown event type ${type}`);
  return { type: type === "PUT" ? "put" : "delete", kv: decodeKeyValue(event.kv) };
}

export function decodeWatchResponse(value: unknown): WatchResponse {
  const res = object(value, "watch response");
  return {
    revision: headerRevision(res),
    created: bool(res, "created"),
    canceled: bool(res, "canceled"),
    compactRevision: int(res, "compact_revision"),
    cancelReason: str(res, "cancel_reason"),
    events: list(res, "events").map(decodeEvent),
  };
}

/**
 * The gateway's error body: `{"error","message","code"}` for unary calls, `{"grpc_code",
 * "http_code","message",…}` inside a stream's `{"error":…}`. Undefined when `value` is neither.
 */
export function decodeGatewayError(value: unknown): GatewayError | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const body = value as Json;
  const code = body.code ?? body.grpc_code;
  const message = body.message ?? body.error;
  if (typeof code !== "number" || typeof message !== "string") return undefined;
  return { code, message };
}

/**
 * One line of a gateway stream: `{"result": …}` decoded with `decode`, or the stream's error.
 * Throws {@link EtcdDecodeError} on anything else.
 */
export function decodeStreamLine<T>(
  line: string,
  decode: (value: unknown) => T,
): { readonly result: T } | { readonly error: GatewayError } {
  let message: Json;
  try {
    message = object(JSON.parse(line), "stream message");
  } catch (error) {
    if (error instanceof EtcdDecodeError) throw error;
    throw new EtcdDecodeError(`stream message is not JSON: ${line.slice(0, 80)}`);
  }
  if (message.result !== undefined) return { result: decode(message.result) };
  const error = decodeGatewayError(message.error);
  if (error) return { error };
  throw new EtcdDecodeError(`stream message has neither result nor error: ${line.slice(0, 80)}`);
}
