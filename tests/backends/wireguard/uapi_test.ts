/**
 * The wireguard-go UAPI codec (wireguard.com/xplatform): `set=1` requests line by line, `get=1`
 * answers as wireguard-go writes them, and garbage answers rejected with UapiDecodeError (never
 * a crash, never a half-read device).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import {
  decodeGetAnswer,
  decodeSetAnswer,
  encodeSet,
  UapiDecodeError,
} from "../../../backends/wireguard/uapi.ts";
import { formatNet, parseAddr, parseNet } from "../../../ip/mod.ts";

const key = (byte: number) => new Uint8Array(32).fill(byte);
const hexKey = (byte: number) => byte.toString(16).padStart(2, "0").repeat(32);

Deno.test("uapi set: device key and port, a peer with everything, a removal", () => {
  assert.equal(
    encodeSet({
      privateKey: key(1),
      listenPort: 51820,
      peers: [
        {
          publicKey: key(2),
          presharedKey: key(3),
          endpoint: { address: parseAddr("198.18.0.12"), port: 51820 },
          persistentKeepaliveInterval: 25,
          allowedIps: [parseNet("10.244.8.0/24")],
          replaceAllowedIps: true,
        },
        {
          publicKey: key(4),
          endpoint: { address: parseAddr("2001:db8::12"), port: 51821 },
          allowedIps: [parseNet("fd00:8::/64"), parseNet("10.244.9.0/24")],
        },
        { publicKey: key(5), remove: true, allowedIps: [parseNet("10.0.0.0/8")] },
      ],
    }),
    [
      "set=1",
      `private_key=${hexKey(1)}`,
      "listen_port=51820",
      `public_key=${hexKey(2)}`,
      `preshared_key=${hexKey(3)}`,
      "endpoint=198.18.0.12:51820",
      "persistent_keepalive_interval=25",
      "replace_allowed_ips=true",
      "allowed_ip=10.244.8.0/24",
      `public_key=${hexKey(4)}`,
      "endpoint=[2001:db8::12]:51821",
      "allowed_ip=fd00:8::/64",
      "allowed_ip=10.244.9.0/24",
      `public_key=${hexKey(5)}`,
      "remove=true",
      "",
      "",
    ].join("\n"),
  );
  assert.equal(encodeSet({}), "set=1\n\n");
  assert.throws(() => encodeSet({ privateKey: new Uint8Array(31) }), RangeError);
});

Deno.test("uapi get: wireguard-go's answer decodes to the device and its peers", () => {
  const answer = [
    `private_key=${hexKey(1)}`,
    "listen_port=51820",
    `public_key=${hexKey(2)}`,
    `preshared_key=${hexKey(0)}`,
    "protocol_version=1",
    "endpoint=[2001:db8::12]:51821",
    "last_handshake_time_sec=0",
    "last_handshake_time_nsec=0",
    "tx_bytes=0",
    "rx_bytes=148",
    "persistent_keepalive_interval=25",
    "allowed_ip=10.244.8.0/24",
    "allowed_ip=fd00:8::/64",
    `public_key=${hexKey(3)}`,
    "a_key_from_the_future=1",
    "errno=0",
    "",
    "",
  ].join("\n");
  const device = decodeGetAnswer(answer);
  assert.equal(device.hasPrivateKey, true);
  assert.equal(device.listenPort, 51820);
  assert.equal(device.peers.length, 2);
  const [first, second] = device.peers;
  assert.deepEqual(first.publicKey, key(2));
  assert.deepEqual(first.endpoint, { address: parseAddr("2001:db8::12"), port: 51821 });
  assert.equal(first.persistentKeepaliveInterval, 25);
  assert.deepEqual(first.allowedIps.map(formatNet), ["10.244.8.0/24", "fd00:8::/64"]);
  assert.deepEqual(second, { publicKey: key(3), persistentKeepaliveInterval: 0, allowedIps: [] });
  assert.deepEqual(decodeGetAnswer("listen_port=38290\nerrno=0\n\n"), {
    hasPrivateKey: false,
    listenPort: 38290,
    peers: [],
  }, "a fresh wireguard-go: no key, a random port");
  assert.equal(decodeSetAnswer("errno=0\n\n"), 0);
  assert.equal(decodeSetAnswer("errno=22\n\n"), 22);
});

Deno.test("uapi: garbage answers are UapiDecodeErrors", () => {
  const garbage = [
    "",
    "errno=0\n",
    "errno=0",
    "listen_port=1\n\n",
    "HTTP/1.1 400 Bad Request\r\n\r\n",
    "errno=-1\n\n",
    "listen_port=70000\nerrno=0\n\n",
    "public_key=zz\nerrno=0\n\n",
    `public_key=${hexKey(2)}\nendpoint=nowhere\nerrno=0\n\n`,
    `public_key=${hexKey(2)}\nendpoint=[::1]:99999\nerrno=0\n\n`,
    `public_key=${hexKey(2)}\nallowed_ip=10.0.0.0/33\nerrno=0\n\n`,
    "=1\nerrno=0\n\n",
    "errno=1\n\n",
  ];
  for (const text of garbage) {
    assert.throws(() => decodeGetAnswer(text), UapiDecodeError, JSON.stringify(text));
  }
  assert.throws(() => decodeSetAnswer("listen_port=1\nerrno=0\n\n"), UapiDecodeError);
  fc.assert(fc.property(fc.string({ maxLength: 200 }), (text) => {
    try {
      decodeGetAnswer(text);
    } catch (err) {
      if (!(err instanceof UapiDecodeError)) throw err;
    }
  }));
});
