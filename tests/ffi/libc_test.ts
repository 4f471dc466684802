import assert from "node:assert/strict";
import fc from "fast-check";
import { errnoName, errnoText } from "../../ffi/errno.ts";
import { check, closeFd, libc, openPath, SyscallError } from "../../ffi/libc.ts";
import { formatMac, MacParseError, normalizeMac, parseMac } from "../../ffi/mac.ts";
import { inNetns, netnsPath } from "../../ffi/netns.ts";
import { rootTest, run, withNetns } from "../helpers/netns.ts";
import { O_RDONLY } from "../../ffi/unix.ts";

Deno.test("libc: a failed call becomes a SyscallError with the errno name", () => {
  assert.throws(
    () => openPath("/nonexistent/tartan", O_RDONLY),
    (e: unknown) =>
      e instanceof SyscallError && e.code === "ENOENT" && e.errno === 2 &&
      e.message.includes("/nonexistent/tartan"),
  );
  assert.throws(() => check("close", libc().close(-1)), { name: "SyscallError", code: "EBADF" });
  assert.throws(
    () => check("ioctl", libc().ioctl(0x7fff, 0x5401n, new Uint8Array(64))),
    { code: "EBADF" },
  );
});

Deno.test("libc: errno names and texts", () => {
  assert.equal(errnoName(17), "EEXIST");
  assert.equal(errnoName(19), "ENODEV");
  assert.equal(errnoName(1), "EPERM");
  assert.equal(errnoName(95), "EOPNOTSUPP");
  assert.equal(errnoText(110), "Connection timed out");
  assert.equal(errnoName(4000), "ERRNO_4000");
});

Deno.test("libc: read through an i32 result and a usize length", () => {
  const fd = openPath("/proc/self/stat", O_RDONLY);
  try {
    const buf = new Uint8Array(256);
    const n = check("read", libc().read(fd, buf, BigInt(buf.length)));
    assert.ok(n > 10 && n <= 256);
    assert.match(new TextDecoder().decode(buf.subarray(0, n)), new RegExp(`^${Deno.pid} `));
  } finally {
    closeFd(fd);
  }
});

Deno.test("mac: parse/format round trip (property) and strict parsing", () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (bytes) => {
      const text = formatMac(bytes);
      assert.match(text, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      assert.deepStrictEqual(parseMac(text), Uint8Array.from(bytes));
      assert.deepStrictEqual(parseMac(text.toUpperCase()), Uint8Array.from(bytes));
    }),
  );
  assert.equal(normalizeMac("0A:58:0A:F4:01:01"), "0a:58:0a:f4:01:01");
  for (
    const bad of [
      "",
      "0a:58:0a:f4:01",
      "0a:58:0a:f4:01:01:02",
      "0a-58-0a-f4-01-01",
      "g0:00:00:00:00:00",
    ]
  ) {
    assert.throws(() => parseMac(bad), MacParseError, bad);
  }
});

Deno.test("netns: names resolve under /run/netns, paths pass through, junk is refused", () => {
  assert.equal(netnsPath("tt-x"), "/run/netns/tt-x");
  assert.equal(netnsPath("/proc/1/ns/net"), "/proc/1/ns/net");
  assert.throws(() => netnsPath(".."), RangeError);
});

async function netnsInode(args: string[]): Promise<string> {
  return (await run(["stat", "-L", "-c", "%i", ...args])).stdout.trim();
}

rootTest("netns: inNetns enters the namespace and always comes back", async () => {
  await withNetns(async (ns) => {
    const home = await netnsInode(["/proc/thread-self/ns/net"]);
    const target = await netnsInode([`/run/netns/${ns}`]);
    const readLink = () => Deno.readLinkSync("/proc/thread-self/ns/net");
    const before = readLink();
    const inside = inNetns(ns, readLink);
    assert.equal(inside, `net:[${target}]`);
    assert.equal(readLink(), before);
    assert.equal(before, `net:[${home}]`);
    assert.throws(() =>
      inNetns(ns, () => {
        throw new Error("boom");
      }), /boom/);
    assert.equal(readLink(), before);
    assert.throws(() => inNetns("tt-does-not-exist-zz", readLink), { code: "ENOENT" });
    assert.equal(readLink(), before);
  });
});
