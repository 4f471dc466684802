/**
 * The small readers that stand in for node:path and a schema library in the daemon: a path's
 * directory (fsync.ts) and JSON type guards (json.ts).
 */
import assert from "node:assert/strict";
import { dirname } from "node:path";
import { parentDir } from "../fsync.ts";
import { isRecord, jsonKind, member, parseJsonOrUndefined, stringOr } from "../json.ts";

Deno.test("parentDir is node:path's dirname for the paths the daemon writes", () => {
  for (const path of ["/run/flannel/subnet.env", "/x", "/", "subnet.env", "a/b", "/a/b/", "./k"]) {
    assert.equal(parentDir(path), dirname(path), path);
  }
});

Deno.test("JSON guards read only what has the right type", () => {
  assert.ok(isRecord({}) && !isRecord([]) && !isRecord(null) && !isRecord("x"));
  assert.equal(member({ a: 1 }, "a"), 1);
  assert.equal(member([1], "0"), undefined);
  assert.equal(stringOr(member(parseJsonOrUndefined('{"message":"gone"}'), "message")), "gone");
  assert.equal(stringOr(member(parseJsonOrUndefined('{"message":7}'), "message")), undefined);
  assert.equal(parseJsonOrUndefined("{"), undefined);
  assert.deepEqual([null, [], {}, 1, "s"].map(jsonKind), [
    "null",
    "array",
    "object",
    "number",
    "string",
  ]);
});
