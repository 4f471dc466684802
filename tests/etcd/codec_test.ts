/**
 * The etcd gateway codec as pure functions: requests as etcd 3.4's gateway reads them, responses
 * as it writes them (captured from a real etcd 3.4.23), and garbage that must fail cleanly.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeGatewayError,
  decodeKeyValue,
  decodeLeaseGrant,
  decodeLeaseKeepAlive,
  decodeLeaseTimeToLive,
  decodeRange,
  decodeStatus,
  decodeStreamLine,
  decodeTxn,
  decodeWatchResponse,
  encodeRange,
  encodeTxn,
  encodeWatchCreate,
  EtcdDecodeError,
  keyAfter,
  prefixEnd,
  text,
  toBytes,
} from "../../etcd/codec.ts";

const HEADER = {
  cluster_id: "15118495548433857066",
  member_id: "13668033151171901709",
  revision: "8",
  raft_term: "2",
};

Deno.test("codec: requests carry base64 bytes, int64 strings, enum names, no unset fields", () => {
  assert.deepEqual(encodeRange({ key: "/a" }), { key: "L2E=" });
  assert.deepEqual(
    encodeRange({ key: "/a/", rangeEnd: prefixEnd("/a/"), limit: 2000, revision: 12 }),
    { key: "L2Ev", range_end: "L2Ew", limit: "2000", revision: "12" },
  );
  assert.deepEqual(
    encodeTxn({
      compare: [
        { key: "k", target: "VERSION", result: "EQUAL", version: 0 },
        { key: "k", rangeEnd: "l", target: "MOD", result: "EQUAL", modRevision: 9 },
      ],
      success: [
        { put: { key: "k", value: "v", lease: "4111120481701576969" } },
        { deleteRange: { key: new Uint8Array([0xff]) } },
      ],
    }),
    {
      compare: [
        { key: "aw==", result: "EQUAL", target: "VERSION", version: "0" },
        { key: "aw==", range_end: "bA==", result: "EQUAL", target: "MOD", mod_revision: "9" },
      ],
      success: [
        { request_put: { key: "aw==", value: "dg==", lease: "4111120481701576969" } },
        { request_delete_range: { key: "/w==" } },
      ],
      failure: [],
    },
  );
  assert.deepEqual(
    encodeWatchCreate({ key: "/s/", rangeEnd: "/s0", startRevision: 5, progressNotify: true }),
    {
      create_request: {
        key: "L3Mv",
        range_end: "L3Mw",
        start_revision: "5",
        progress_notify: true,
      },
    },
  );
});

Deno.test("codec: responses as etcd 3.4's gateway writes them", () => {
  const range = decodeRange({
    header: HEADER,
    kvs: [{
      key: "L3gvYQ==",
      create_revision: "7",
      mod_revision: "7",
      version: "1",
      value: "aGVsbG8=",
      lease: "4111120481701576969",
    }, { key: "L3gvYg==", create_revision: "8", mod_revision: "8", version: "1" }],
    more: true,
    count: "3",
  });
  assert.equal(range.revision, 8);
  assert.equal(range.more, true);
  assert.deepEqual(range.kvs.map((kv) => [text(kv.key), text(kv.value), kv.lease]), [
    ["/x/a", "hello", "4111120481701576969"],
    ["/x/b", "", "0"], // empty value and no lease: fields left out
  ]);
  assert.deepEqual(decodeRange({ header: HEADER, count: "0" }), {
    revision: 8,
    kvs: [],
    more: false,
  });
  assert.deepEqual(decodeTxn({ header: HEADER }), { revision: 8, succeeded: false });
  assert.deepEqual(decodeTxn({ header: HEADER, succeeded: true, responses: [] }), {
    revision: 8,
    succeeded: true,
  });
  assert.deepEqual(decodeLeaseGrant({ header: HEADER, ID: "4111120481701576969", TTL: "30" }), {
    id: "4111120481701576969",
    ttl: 30,
  });
  // A revoked lease: keep-alive leaves TTL out, time-to-live says -1.
  assert.equal(decodeLeaseKeepAlive({ header: HEADER, ID: "7" }).ttl, 0);
  assert.deepEqual(decodeLeaseTimeToLive({ header: HEADER, ID: "7", TTL: "-1" }), {
    id: "7",
    ttl: -1,
    grantedTtl: 0,
  });
  assert.equal(
    decodeStatus({ header: HEADER, version: "3.4.23", leader: "1366" }).version,
    "3.4.23",
  );
});

Deno.test("codec: watch messages, events and cancellations", () => {
  const created = decodeStreamLine(
    `{"result":{"header":${JSON.stringify(HEADER)},"created":true}}`,
    decodeWatchResponse,
  );
  assert.ok("result" in created && created.result.created && !created.result.canceled);
  const events = decodeWatchResponse({
    header: HEADER,
    events: [
      { kv: { key: "d2I=", create_revision: "6", mod_revision: "6", version: "1" } },
      { type: "DELETE", kv: { key: "d2I=", mod_revision: "7" } },
    ],
  });
  assert.deepEqual(
    events.events.map((e) => [e.type, text(e.kv.key), e.kv.modRevision]),
    [["put", "wb", 6], ["delete", "wb", 7]],
  );
  const compacted = decodeWatchResponse({
    header: { raft_term: "2" },
    canceled: true,
    compact_revision: "3",
  });
  assert.deepEqual([compacted.canceled, compacted.compactRevision, compacted.revision], [
    true,
    3,
    0,
  ]);
  const refused = decodeWatchResponse({
    header: HEADER,
    watch_id: "-1",
    created: true,
    canceled: true,
    cancel_reason: "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token",
  });
  assert.match(refused.cancelReason, /invalid auth token/);
  const streamError = decodeStreamLine(
    '{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}}',
    decodeWatchResponse,
  );
  assert.deepEqual(streamError, { error: { code: 14, message: "etcdserver: no leader" } });
});

Deno.test("codec: gateway errors", () => {
  assert.deepEqual(
    decodeGatewayError({
      error: "etcdserver: mvcc: required revision has been compacted",
      message: "etcdserver: mvcc: required revision has been compacted",
      code: 11,
    }),
    { code: 11, message: "etcdserver: mvcc: required revision has been compacted" },
  );
  for (const garbage of [undefined, null, "text", 5, {}, { code: "11", message: "x" }]) {
    assert.equal(decodeGatewayError(garbage), undefined, JSON.stringify(garbage));
  }
});

Deno.test("codec: garbage fails with EtcdDecodeError, never with wrong values", () => {
  const badKvs: unknown[] = [
    null,
    "kv",
    [],
    { key: "!!not base64" },
    { key: 5 },
    { key: "YQ==", mod_revision: "12x" },
    { key: "YQ==", mod_revision: "1.5" },
    { key: "YQ==", mod_revision: "99999999999999999999" }, // past 2^53
    { key: "YQ==", mod_revision: true },
    { key: "YQ==", lease: "abc" },
    { key: "YQ==", lease: 1.5 },
    { key: "YQ==", value: ["x"] },
  ];
  for (const kv of badKvs) {
    assert.throws(() => decodeKeyValue(kv), EtcdDecodeError, JSON.stringify(kv));
  }
  const badResponses: [unknown, (value: unknown) => unknown][] = [
    [null, decodeRange],
    [{ header: "x" }, decodeRange],
    [{ header: HEADER, kvs: {} }, decodeRange],
    [{ header: HEADER, kvs: [null] }, decodeRange],
    [{ header: HEADER, more: "yes" }, decodeRange],
    [{ header: HEADER, succeeded: 1 }, decodeTxn],
    [{ header: HEADER, ID: "1", TTL: "5", error: "too many leases" }, decodeLeaseGrant],
    [{ header: HEADER, events: [{ type: "EXPLODE", kv: { key: "YQ==" } }] }, decodeWatchResponse],
    [{ header: HEADER, events: [{ type: "PUT" }] }, decodeWatchResponse],
    [{ header: HEADER, cancel_reason: 7 }, decodeWatchResponse],
  ];
  for (const [value, decode] of badResponses) {
    assert.throws(() => decode(value), EtcdDecodeError, JSON.stringify(value));
  }
  for (const line of ["", "{", "[1]", "null", '{"result":null}', '{"other":1}', '{"error":"x"}']) {
    assert.throws(() => decodeStreamLine(line, decodeWatchResponse), EtcdDecodeError, line);
  }
});

Deno.test("codec: any JSON either decodes or throws EtcdDecodeError (property)", () => {
  const decoders = [decodeRange, decodeTxn, decodeWatchResponse, decodeLeaseGrant, decodeStatus];
  fc.assert(
    fc.property(fc.jsonValue(), fc.constantFrom(...decoders), (value, decode) => {
      try {
        decode(value);
      } catch (error) {
        if (!(error instanceof EtcdDecodeError)) throw error;
      }
    }),
    { numRuns: 2000 },
  );
});

Deno.test("codec: bytes survive a round trip; prefix ends bound exactly the prefix", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), fc.uint8Array({ maxLength: 8 }), (key, tail) => {
      const encoded = encodeRange({ key, rangeEnd: key }) as { key: string };
      const [kv] = decodeRange({ kvs: [{ key: encoded.key, value: encoded.key }] }).kvs;
      assert.deepEqual(kv.key, key);
      assert.deepEqual(kv.value, key);
      // Every key that starts with `key` sorts below prefixEnd(key), and keyAfter(key) is the
      // next key: nothing sorts between them.
      const end = prefixEnd(key);
      const inside = new Uint8Array([...key, ...tail]);
      // Keys of only 0xff bytes (and the empty key) have no upper bound: etcd's "\0" end
      // means "to the end of the keyspace".
      const unbounded = key.every((b) => b === 0xff);
      if (unbounded) assert.deepEqual(end, new Uint8Array([0]));
      else assert.ok(compare(inside, end) < 0);
      assert.ok(compare(keyAfter(key), key) > 0);
    }),
  );
  assert.deepEqual(prefixEnd(new Uint8Array([0x61, 0xff])), new Uint8Array([0x62]));
  assert.deepEqual(prefixEnd(new Uint8Array([0xff, 0xff])), new Uint8Array([0]));
  assert.deepEqual(toBytes("é"), new Uint8Array([0xc3, 0xa9]));
});

function compare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] !== b[i]) return a[i] - b[i];
  }
  return a.length - b.length;
}
