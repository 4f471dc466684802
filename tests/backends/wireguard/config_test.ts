/**
 * The wireguard backend's device layout per Mode, published lease data (spec §6.6, quirk 21) and
 * keys (RFC 7748 test vector, key file).
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { publishedData, wireguardDevices } from "../../../backends/wireguard/config.ts";
import { loadOrCreateKeys, publicKeyOf } from "../../../backends/wireguard/keys.ts";
import { parseAddr } from "../../../ip/mod.ts";
import { encodeLeaseAttrs } from "../../../subnet/lease.ts";
import { DEFAULTS } from "./fixtures.ts";

Deno.test("wireguard devices per Mode", () => {
  assert.deepEqual(wireguardDevices(DEFAULTS, [4]), [
    { name: "flannel-wg", port: 51820, families: [4] },
  ]);
  assert.deepEqual(wireguardDevices(DEFAULTS, [4, 6]), [
    { name: "flannel-wg", port: 51820, families: [4] },
    { name: "flannel-wg-v6", port: 51821, families: [6] },
  ]);
  assert.deepEqual(wireguardDevices(DEFAULTS, [6]), [
    { name: "flannel-wg-v6", port: 51821, families: [6] },
  ]);
  for (const mode of ["auto", "ipv4", "ipv6"] as const) {
    assert.deepEqual(wireguardDevices({ ...DEFAULTS, mode }, [4, 6]), [
      { name: "flannel-wg", port: 51820, families: [4, 6] },
    ]);
  }
});

Deno.test("wireguard lease: flannel's JSON; single-device modes advertise the real port (quirk 21)", () => {
  const publicKey = Buffer.alloc(32, 1).toString("base64");
  const attrs = {
    publicIP: parseAddr("198.18.0.11"),
    backendType: "wireguard",
    ...publishedData(wireguardDevices(DEFAULTS, [4]), publicKey),
  };
  assert.equal(
    encodeLeaseAttrs(attrs),
    `{"PublicIP":"198.18.0.11","PublicIPv6":null,"BackendType":"wireguard",` +
      `"BackendData":{"PublicKey":"${publicKey}","Port":51820}}`,
  );
  assert.deepEqual(publishedData(wireguardDevices(DEFAULTS, [4, 6]), publicKey), {
    backendData: { PublicKey: publicKey, Port: 51820 },
    backendV6Data: { PublicKey: publicKey, Port: 51821 },
  });
  assert.deepEqual(
    publishedData(wireguardDevices({ ...DEFAULTS, mode: "auto" }, [4, 6]), publicKey),
    {
      backendData: { PublicKey: publicKey, Port: 51820 },
      backendV6Data: { PublicKey: publicKey, Port: 51820 },
    },
  );
});

Deno.test("wireguard keys: X25519 public key (RFC 7748 §6.1 test vector)", async () => {
  const hex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));
  const alice = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const bob = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  assert.equal(
    Buffer.from(await publicKeyOf(alice)).toString("hex"),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  assert.equal(
    Buffer.from(await publicKeyOf(bob)).toString("hex"),
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
  );
});

Deno.test("wireguard keys: generated once into the key file (0400, dir 0755), then reused", async () => {
  const root = await Deno.makeTempDir({ prefix: "tt-wgkey-" });
  try {
    const path = `${root}/run/flannel/wgkey`;
    const first = await loadOrCreateKeys(path);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o400);
    assert.equal((await Deno.stat(`${root}/run/flannel`)).mode! & 0o777, 0o755);
    assert.equal(await Deno.readTextFile(path), first.privateKey);
    const key = Buffer.from(first.privateKey, "base64");
    assert.equal(key.length, 32);
    assert.equal(key[0] & 7, 0, "clamped low bits");
    assert.equal(key[31] & 0xc0, 0x40, "clamped high bits");
    assert.deepEqual(await loadOrCreateKeys(path), first);
    await Deno.chmod(path, 0o600);
    await Deno.writeTextFile(path, "not a key");
    await assert.rejects(loadOrCreateKeys(path), /must be the base64 encoding of 32 bytes/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
