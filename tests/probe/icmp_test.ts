/**
 * The echo codec without a socket, and echo sockets between two namespaces: replies are matched,
 * a DF probe larger than the device MTU is refused locally, and one larger than what the far end
 * accepts (a smaller MTU on the receiving veth, which drops without an ICMP error) is lost while a
 * small one passes: the black hole a path-MTU check must see.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { inNetns } from "../../ffi/netns.ts";
import { parseAddr } from "../../ip/mod.ts";
import {
  ECHO_TYPES,
  echoRequest,
  internetChecksum,
  parseEchoReply,
} from "../../probe/icmp_packet.ts";
import { type IcmpSocket, openIcmpSocket } from "../../probe/icmp_socket.ts";
import { smallProbeBytes } from "../../probe/prober.ts";
import { DAEMON_V8_FLAGS } from "../../v8_flags.ts";
import { nsExec, rootTest, run, withNetns, withNetnsSet } from "../helpers/netns.ts";
import { waitFor } from "../helpers/leases.ts";

Deno.test("echo request: checksum verifies, id and seq in network order", () => {
  const packet = echoRequest(4, 0x1234, 0xabcd, 64);
  assert.equal(packet.length, 64);
  assert.equal(packet[0], 8);
  assert.equal(internetChecksum(packet), 0, "a packet with its checksum sums to zero");
  assert.deepEqual([...packet.subarray(4, 8)], [0x12, 0x34, 0xab, 0xcd]);
  assert.throws(() => echoRequest(4, 1, 1, 7), RangeError);
  assert.equal(echoRequest(4, 1, 1, 65_515).length, 65_515, "the largest echo in one IPv4 packet");
  assert.throws(() => echoRequest(4, 1, 1, 65_516), RangeError);
});

Deno.test("ICMPv6 echo request: type 128, checksum left to the kernel, IPv6's size limit", () => {
  const packet = echoRequest(6, 0x1234, 0xabcd, 64);
  assert.deepEqual([...packet.subarray(0, 8)], [128, 0, 0, 0, 0x12, 0x34, 0xab, 0xcd]);
  assert.equal(echoRequest(6, 1, 1, 65_535).length, 65_535, "IPv6's length excludes its header");
  assert.throws(() => echoRequest(6, 1, 1, 65_536), RangeError);
});

Deno.test("echo reply parse: with and without an IPv4 header; garbage is undefined", () => {
  const reply = echoRequest(4, 7, 9, 16);
  reply[0] = ECHO_TYPES[4].reply;
  assert.deepEqual(parseEchoReply(4, reply, false), { id: 7, seq: 9 });
  const withHeader = new Uint8Array(24 + reply.length);
  withHeader[0] = 0x46; // IPv4, 24-byte header (one option word)
  withHeader.set(reply, 24);
  assert.deepEqual(parseEchoReply(4, withHeader, true), { id: 7, seq: 9 });
  assert.equal(parseEchoReply(4, echoRequest(4, 7, 9, 16), false), undefined, "no reply");
  assert.equal(parseEchoReply(6, reply, false), undefined, "an ICMPv4 reply is no ICMPv6 reply");
  const v6 = echoRequest(6, 7, 9, 16);
  v6[0] = ECHO_TYPES[6].reply;
  assert.deepEqual(parseEchoReply(6, v6, false), { id: 7, seq: 9 });
  assert.equal(parseEchoReply(6, v6, true), undefined, "no raw socket hands over an IPv6 header");
  fc.assert(fc.property(
    fc.constantFrom(4 as const, 6 as const),
    fc.uint8Array({ maxLength: 64 }),
    fc.boolean(),
    (family, bytes, header) => {
      const parsed = parseEchoReply(family, bytes, header);
      assert.ok(parsed === undefined || (parsed.id <= 0xffff && parsed.seq <= 0xffff));
    },
  ));
});

/** Wait (bounded) for the replies to `seqs`. */
async function repliesTo(socket: IcmpSocket, seqs: number[], rounds = 4): Promise<Set<number>> {
  const seen = new Set<number>();
  for (let i = 0; i < rounds && seqs.some((s) => !seen.has(s)); i++) {
    for (const reply of await socket.receive(250)) seen.add(reply.seq);
  }
  return seen;
}

/** Wait (bounded) until a fresh veth has its carrier: packets sent before that are dropped. */
async function carrierUp(ns: string, dev: string): Promise<void> {
  await waitFor(
    `${dev} in ${ns} to come up`,
    async () => {
      const [link] = JSON.parse((await run(["ip", "-n", ns, "-j", "link", "show", dev])).stdout);
      return link.operstate === "UP";
    },
    2000,
    20,
  );
}

/** Each family's addresses for the two ends of the veth, and its small probe. */
const ECHO_ENDS = {
  4: { a: "198.18.7.1", b: "198.18.7.2", prefix: 24 },
  6: { a: "2001:db8:7::1", b: "2001:db8:7::2", prefix: 64 },
} as const;

for (const family of [4, 6] as const) {
  rootTest(
    `IPv${family} echo socket: replies, local EMSGSIZE, and a receive-side MTU black hole`,
    () =>
      withNetnsSet(2, async ([a, b]) => {
        const ends = ECHO_ENDS[family];
        await run(["ip", "-n", a, "link", "add", "va", "type", "veth", "peer", "name", "vb"]);
        await run(["ip", "-n", a, "link", "set", "vb", "netns", b]);
        // nodad: an IPv6 address is usable at once rather than after duplicate detection.
        const extra = family === 6 ? ["nodad"] : [];
        for (const [ns, dev, address] of [[a, "va", ends.a], [b, "vb", ends.b]]) {
          await run([
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            `${address}/${ends.prefix}`,
            "dev",
            dev,
            ...extra,
          ]);
          await run(["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        await carrierUp(a, "va");
        const socket = inNetns(a, () => openIcmpSocket({ source: parseAddr(ends.a) }));
        try {
          assert.equal(socket.family, family);
          const peer = parseAddr(ends.b);
          assert.equal(socket.send(peer, 1, smallProbeBytes(family)), undefined);
          assert.equal(socket.send(peer, 2, 1500), undefined);
          assert.deepEqual(await repliesTo(socket, [1, 2]), new Set([1, 2]));
          assert.equal(socket.send(peer, 3, 1501), "EMSGSIZE", "unfragmented: over va's MTU");

          // The far end takes at most 1400 bytes and says nothing about bigger frames.
          await run(["ip", "-n", b, "link", "set", "vb", "mtu", "1400"]);
          // The veth reports its peer's drop to an IPv6 sender (ENOBUFS); a wire would not.
          const lost = socket.send(peer, 4, 1500);
          assert.ok(lost === undefined || (family === 6 && lost === "ENOBUFS"), lost);
          assert.equal(socket.send(peer, 5, 1400), undefined);
          assert.deepEqual(await repliesTo(socket, [4, 5]), new Set([5]));
        } finally {
          socket.close();
        }
      }),
  );
}

/**
 * Run ping_socket_child.ts in `ns` without CAP_NET_RAW (root keeps its group, gid 0), with the
 * daemon's V8 flags: the errno names in its answer must be the syscalls' own.
 */
async function withoutNetRaw(ns: string, family: 4 | 6): Promise<Record<string, unknown>> {
  const child = new URL("./ping_socket_child.ts", import.meta.url).pathname;
  const { stdout } = await nsExec(ns, [
    "setpriv",
    "--bounding-set=-net_raw",
    "--inh-caps=-net_raw",
    Deno.execPath(),
    "run",
    "-A",
    `--v8-flags=${DAEMON_V8_FLAGS}`,
    child,
    String(family),
  ]);
  return JSON.parse(stdout);
}

rootTest(
  "without CAP_NET_RAW: a ping socket where ping_group_range allows, else a clear error",
  () =>
    withNetns(async (ns) => {
      await nsExec(ns, ["ip", "link", "set", "lo", "up"]);
      // A new namespace starts with "1 0": no group may open ping sockets, of either family.
      for (const family of [4, 6] as const) {
        const denied = await withoutNetRaw(ns, family);
        assert.match(
          String(denied.error),
          new RegExp(`ICMPv${family} .*raw socket EPERM .*ping socket EACCES .*range 1-0`),
        );
      }
      await nsExec(ns, ["sysctl", "-qw", "net.ipv4.ping_group_range=0 0"]);
      assert.deepEqual(await withoutNetRaw(ns, 4), { kind: "ping", answered: true });
      assert.deepEqual(await withoutNetRaw(ns, 6), { kind: "ping", answered: true });
    }),
);
