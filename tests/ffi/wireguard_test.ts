/**
 * The WireGuard generic netlink encoding: constants against the installed UAPI header
 * (linux/wireguard.h), WG_CMD_SET_DEVICE against hand-computed bytes, and WG_CMD_GET_DEVICE
 * decoding (split dumps, garbage). No kernel here has the wireguard module: nothing in this
 * file talks to WireGuard itself.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeMessages,
  encodeMessage,
  NetlinkDecodeError,
  type NetlinkMessage,
  strAttr,
} from "../../ffi/netlink/codec.ts";
import { NETLINK_GENERIC } from "../../ffi/netlink/constants.ts";
import * as wg from "../../ffi/netlink/wireguard.ts";
import {
  deviceFromMessages,
  encodeSockaddr,
  setDeviceRequest,
  WG_CMD_GET_DEVICE,
  WGDEVICE_A_IFNAME,
  type WgPeerChange,
} from "../../ffi/netlink/wireguard.ts";
import { formatNet, makeNet, parseAddr, parseNet } from "../../ip/mod.ts";
import { testNeeding } from "../helpers/netns.ts";

const HEADER = "/usr/include/linux/wireguard.h";
const FAMILY_ID = 0x1b;

/** `NAME = value` of every enum member and `#define WG*` number in a C header. */
function headerConstants(text: string): Map<string, number> {
  const out = new Map<string, number>();
  const code = text.replace(/\/\*[\s\S]*?\*\//g, "");
  for (const [, name, value] of code.matchAll(/#define\s+(WG\w+)\s+(\d+)\s*$/gm)) {
    out.set(name, Number(value));
  }
  for (const [, body] of code.matchAll(/enum\s+\w+\s*\{([^}]*)\}/g)) {
    let next = 0;
    for (const entry of body.split(",").map((e) => e.trim()).filter(Boolean)) {
      const [name, expr] = entry.split("=").map((p) => p.trim());
      const shift = expr?.match(/^1U?\s*<<\s*(\d+)$/);
      const value = expr === undefined ? next : shift ? 1 << Number(shift[1]) : Number(expr);
      if (!name.startsWith("__")) out.set(name, value);
      next = value + 1;
    }
  }
  return out;
}

const headerText = await Deno.readTextFile(HEADER).catch(() => undefined);

testNeeding(
  `wireguard uapi: every exported constant matches ${HEADER}`,
  headerText === undefined ? "the kernel UAPI headers (Debian linux-libc-dev)" : undefined,
  () => {
    const header = headerConstants(headerText!);
    const ours = Object.entries(wg).filter(([name, v]) =>
      /^WG/.test(name) && typeof v === "number"
    );
    for (const [name, value] of ours) assert.equal(value, header.get(name), name);
    const names = new Set(ours.map(([name]) => name));
    const missing = [...header.keys()].filter((n) => !n.endsWith("_UNSPEC") && !names.has(n));
    assert.deepStrictEqual(missing, [], "header constants without an export");
    assert.match(headerText!, new RegExp(`#define WG_GENL_NAME "${wg.WG_GENL_NAME}"`));
  },
);

const key = (byte: number) => new Uint8Array(32).fill(byte);
const repeat = (byte: number, n = 32) => Array<number>(n).fill(byte);

// deno-fmt-ignore
const SET_DEVICE_BYTES = [
  0x04, 0x01, 0, 0, 0x1b, 0, 0x05, 0, 9, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: 260 bytes, REQUEST|ACK
  0x01, 0x01, 0, 0, // genlmsghdr: WG_CMD_SET_DEVICE, version 1
  0x08, 0, 0x01, 0, 7, 0, 0, 0, // WGDEVICE_A_IFINDEX 7
  0x24, 0, 0x03, 0, ...repeat(0x11), // WGDEVICE_A_PRIVATE_KEY
  0x06, 0, 0x06, 0, 0x6c, 0xca, 0, 0, // WGDEVICE_A_LISTEN_PORT 51820 (host order) + pad
  0xbc, 0, 0x08, 0x80, // WGDEVICE_A_PEERS | NLA_F_NESTED, 188 bytes
  0xb8, 0, 0x00, 0x80, // peer #0 | NLA_F_NESTED, 184 bytes
  0x24, 0, 0x01, 0, ...repeat(0x22), // WGPEER_A_PUBLIC_KEY
  0x08, 0, 0x03, 0, 0x02, 0, 0, 0, // WGPEER_A_FLAGS = WGPEER_F_REPLACE_ALLOWEDIPS
  0x24, 0, 0x02, 0, ...repeat(0x33), // WGPEER_A_PRESHARED_KEY
  0x14, 0, 0x04, 0, // WGPEER_A_ENDPOINT: sockaddr_in
  0x02, 0, 0xca, 0x6c, 198, 18, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, // AF_INET, port 51820 (network order)
  0x06, 0, 0x05, 0, 25, 0, 0, 0, // WGPEER_A_PERSISTENT_KEEPALIVE_INTERVAL 25 + pad
  0x48, 0, 0x09, 0x80, // WGPEER_A_ALLOWEDIPS | NLA_F_NESTED, 72 bytes
  0x1c, 0, 0x00, 0x80, // allowed IP #0, 28 bytes
  0x06, 0, 0x01, 0, 0x02, 0, 0, 0, // WGALLOWEDIP_A_FAMILY AF_INET + pad
  0x08, 0, 0x02, 0, 10, 244, 8, 0, // WGALLOWEDIP_A_IPADDR
  0x05, 0, 0x03, 0, 24, 0, 0, 0, // WGALLOWEDIP_A_CIDR_MASK /24 + pad
  0x28, 0, 0x00, 0x80, // allowed IP #1, 40 bytes
  0x06, 0, 0x01, 0, 0x0a, 0, 0, 0, // WGALLOWEDIP_A_FAMILY AF_INET6 + pad
  0x14, 0, 0x02, 0, 0xfd, 0, 0, 8, ...repeat(0, 12), // WGALLOWEDIP_A_IPADDR fd00:8::
  0x05, 0, 0x03, 0, 64, 0, 0, 0, // WGALLOWEDIP_A_CIDR_MASK /64 + pad
];

function message(req: ReturnType<typeof setDeviceRequest>, seq = 9): NetlinkMessage {
  return { header: { type: req.type, flags: 0x05, seq, pid: 0 }, body: req.body };
}

Deno.test("wireguard SET_DEVICE: key, port and one peer, byte for byte", () => {
  const req = setDeviceRequest(FAMILY_ID, {
    index: 7,
    privateKey: key(0x11),
    listenPort: 51820,
    peers: [{
      publicKey: key(0x22),
      replaceAllowedIps: true,
      presharedKey: key(0x33),
      endpoint: { address: parseAddr("198.18.0.12"), port: 51820 },
      persistentKeepaliveInterval: 25,
      allowedIps: [parseNet("10.244.8.0/24"), parseNet("fd00:8::/64")],
    }],
  });
  assert.deepStrictEqual([...encodeMessage(message(req), NETLINK_GENERIC)], SET_DEVICE_BYTES);
});

Deno.test("wireguard SET_DEVICE: removing a peer sends its key and REMOVE_ME only", () => {
  const req = setDeviceRequest(FAMILY_ID, {
    index: 7,
    peers: [{ publicKey: key(0x22), remove: true, allowedIps: [parseNet("10.0.0.0/8")] }],
  });
  // deno-fmt-ignore
  const expected = [
    0x50, 0, 0, 0, 0x1b, 0, 0x05, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x01, 0, 0,
    0x08, 0, 0x01, 0, 7, 0, 0, 0, // WGDEVICE_A_IFINDEX
    0x34, 0, 0x08, 0x80, 0x30, 0, 0x00, 0x80, // PEERS, peer #0
    0x24, 0, 0x01, 0, ...repeat(0x22), // WGPEER_A_PUBLIC_KEY
    0x08, 0, 0x03, 0, 0x01, 0, 0, 0, // WGPEER_A_FLAGS = WGPEER_F_REMOVE_ME
  ];
  assert.deepStrictEqual([...encodeMessage(message(req), NETLINK_GENERIC)], expected);
});

Deno.test("wireguard endpoints: sockaddr_in6 layout; bad keys and ports are RangeErrors", () => {
  // deno-fmt-ignore
  assert.deepStrictEqual([...encodeSockaddr({ address: parseAddr("fd00::1"), port: 51821 })], [
    0x0a, 0, 0xca, 0x6d, 0, 0, 0, 0, // AF_INET6, port (network order), flow info
    0xfd, 0, ...repeat(0, 13), 1, 0, 0, 0, 0, // address, scope id
  ]);
  assert.throws(
    () => setDeviceRequest(1, { index: 1, privateKey: key(1).subarray(1) }),
    RangeError,
  );
  assert.throws(() => setDeviceRequest(1, { index: 1, listenPort: 65536 }), RangeError);
  assert.throws(
    () => encodeSockaddr({ address: parseAddr("198.18.0.1"), port: -1 }),
    RangeError,
  );
});

/** A kernel-style GET_DEVICE reply: the device attributes plus SET-style peer nests. */
function getReply(peers: WgPeerChange[], withDevice: boolean): NetlinkMessage {
  const req = setDeviceRequest(FAMILY_ID, {
    index: 7,
    listenPort: withDevice ? 51820 : undefined,
    peers,
  });
  if (req.body.kind !== "genl") throw new Error("not genl");
  const attrs = withDevice
    ? [...req.body.attrs, strAttr(WGDEVICE_A_IFNAME, "flannel-wg")]
    : req.body.attrs.filter((a) => a.type === wg.WGDEVICE_A_PEERS);
  return {
    header: { type: FAMILY_ID, flags: 2, seq: 1, pid: 0 },
    body: { kind: "genl", msg: { cmd: WG_CMD_GET_DEVICE, version: 1 }, attrs },
  };
}

const arbNet = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }))
    .map(([v, p]) => makeNet({ family: 4, value: BigInt(v) }, p)),
  fc.tuple(fc.bigInt({ min: 0n, max: (1n << 128n) - 1n }), fc.integer({ min: 0, max: 128 }))
    .map(([v, p]) => makeNet({ family: 6, value: v }, p)),
);

Deno.test("wireguard GET_DEVICE: a dump split mid-peer merges back into one device", () => {
  fc.assert(fc.property(
    fc.array(fc.array(arbNet, { maxLength: 4 }), { minLength: 1, maxLength: 4 }),
    fc.integer({ min: 0, max: 65535 }),
    (ipLists, keepalive) => {
      const peers = ipLists.map((allowedIps, i) => ({
        publicKey: key(i + 1),
        endpoint: { address: parseAddr(`198.18.0.${i + 1}`), port: 51820 + i },
        persistentKeepaliveInterval: keepalive,
        allowedIps,
      }));
      const last = peers.at(-1)!;
      const half = Math.floor(last.allowedIps.length / 2);
      // The kernel repeats the last peer's key in the next message with the remaining IPs.
      const bytes = encodeMessage(
        getReply(
          [...peers.slice(0, -1), { ...last, allowedIps: last.allowedIps.slice(0, half) }],
          true,
        ),
        NETLINK_GENERIC,
      );
      const rest = encodeMessage(
        getReply([{ publicKey: last.publicKey, allowedIps: last.allowedIps.slice(half) }], false),
        NETLINK_GENERIC,
      );
      const messages = [
        ...decodeMessages(bytes, NETLINK_GENERIC),
        ...decodeMessages(rest, NETLINK_GENERIC),
      ];
      const device = deviceFromMessages(messages);
      assert.equal(device.index, 7);
      assert.equal(device.name, "flannel-wg");
      assert.equal(device.listenPort, 51820);
      assert.equal(device.peers.length, peers.length);
      device.peers.forEach((p, i) => {
        assert.deepStrictEqual(p.publicKey, peers[i].publicKey);
        assert.deepStrictEqual(p.endpoint, peers[i].endpoint);
        assert.equal(p.persistentKeepaliveInterval, keepalive);
        assert.deepStrictEqual(p.allowedIps.map(formatNet), peers[i].allowedIps.map(formatNet));
      });
    },
  ));
});

Deno.test("wireguard GET_DEVICE: garbage gives NetlinkDecodeError, never a crash", () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (payload) => {
    const wrapped = new Uint8Array(20 + payload.length);
    const view = new DataView(wrapped.buffer);
    view.setUint32(0, wrapped.length, true);
    view.setUint16(4, FAMILY_ID, true);
    wrapped.set(payload, 20);
    try {
      deviceFromMessages(decodeMessages(wrapped, NETLINK_GENERIC));
    } catch (err) {
      if (!(err instanceof NetlinkDecodeError)) throw err;
    }
  }));
});
