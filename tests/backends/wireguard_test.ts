/**
 * The wireguard backend (spec §6.6, §12 item 24; quirk 21). This kernel has no wireguard module,
 * and peer programming (generic netlink) is not implemented: what is tested is option parsing,
 * device layout per Mode, the published lease data, the keys (RFC 7748 test vector, key file),
 * the peer report, and the start-up error on a kernel without the module.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { BackendError } from "../../backends/backend.ts";
import {
  loadOrCreateKeys,
  PEERS_UNSUPPORTED,
  publicKeyOf,
  publishedData,
  readWireguardConfig,
  wireguardBackend,
  type WireguardConfig,
  wireguardDevices,
  wireguardNetwork,
} from "../../backends/wireguard.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import { parseAddr, parseNet } from "../../subnet/ip/mod.ts";
import { encodeLeaseAttrs, type Lease } from "../../subnet/lease.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";
import { ipJson, rootTest, withNetns } from "../helpers/netns.ts";
import { backendContext, networkConfig } from "./backend_context.ts";

const DEFAULTS: WireguardConfig = {
  listenPort: 51820,
  listenPortV6: 51821,
  mtu: 0,
  persistentKeepaliveInterval: 0,
  mode: "separate",
};

const KEY = Buffer.alloc(32, 7).toString("base64");

Deno.test("wireguard options: flannel's defaults, names and checks", () => {
  assert.deepEqual(readWireguardConfig({}), DEFAULTS);
  assert.deepEqual(
    readWireguardConfig({
      listenport: 4000,
      listenportv6: 4001,
      mtu: 9000,
      psk: KEY,
      persistentkeepaliveinterval: 25,
      mode: "auto",
    }),
    {
      listenPort: 4000,
      listenPortV6: 4001,
      mtu: 9000,
      psk: KEY,
      persistentKeepaliveInterval: 25,
      mode: "auto",
    },
  );
  for (const mode of ["separate", "auto", "ipv4", "ipv6"]) {
    assert.equal(readWireguardConfig({ mode }).mode, mode);
  }
  assert.throws(() => readWireguardConfig({ mode: "Auto" }), /no valid Mode configured/);
  assert.throws(() => readWireguardConfig({ psk: "c2hvcnQ=" }), /PSK must be the base64/);
  assert.throws(() => readWireguardConfig({ listenport: 70000 }), /outside 0\.\.65535/);
  assert.throws(() => readWireguardConfig({ persistentkeepaliveinterval: -1 }), BackendError);
});

Deno.test("wireguard options: garbage gives a BackendError, never a crash", () => {
  const keys = ["listenport", "listenportv6", "mtu", "psk", "persistentkeepaliveinterval", "mode"];
  fc.assert(fc.property(fc.dictionary(fc.constantFrom(...keys), fc.jsonValue()), (options) => {
    try {
      readWireguardConfig(options);
    } catch (err) {
      if (!(err instanceof BackendError)) throw err;
    }
  }));
});

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

function lease(subnet: string, publicIP: string, backendType: string): Lease {
  return { subnet: parseNet(subnet), attrs: { publicIP: parseAddr(publicIP), backendType } };
}

Deno.test("wireguard peers: each wireguard peer is reported out of sync with the reason", async () => {
  const own = lease("10.244.7.0/24", "198.18.0.11", "wireguard");
  let closed = false;
  const network = wireguardNetwork(own, 1420, () => closed = true);
  const updates: LeaseWatchUpdate[] = [
    {
      type: "snapshot",
      leases: [
        own,
        lease("10.244.8.0/24", "198.18.0.12", "wireguard"),
        lease("10.244.9.0/24", "198.18.0.13", "vxlan"),
      ],
    },
    {
      type: "events",
      events: [
        { type: "added", lease: lease("10.244.10.0/24", "198.18.0.14", "wireguard") },
        { type: "removed", lease: lease("10.244.8.0/24", "198.18.0.12", "wireguard") },
      ],
    },
  ];
  await network.run(
    (async function* () {
      yield* updates;
    })(),
    new AbortController().signal,
  );
  const health = network.health();
  assert.equal(health.type, "wireguard");
  assert.deepEqual(health.peers, [
    { subnet: "10.244.10.0/24", publicIP: "198.18.0.14", inSync: false, error: PEERS_UNSUPPORTED },
  ]);
  assert.equal(health.lastError, PEERS_UNSUPPORTED);
  await network.close();
  assert.ok(closed, "devices deleted on shutdown");
});

rootTest(
  "wireguard start-up: the kernel's missing module is named, nothing else happens",
  () =>
    withNetns(async (ns) => {
      const root = await Deno.makeTempDir({ prefix: "tt-wgkey-" });
      const keyFile = `${root}/wgkey`;
      const previous = Deno.env.get("WIREGUARD_KEY_FILE");
      Deno.env.set("WIREGUARD_KEY_FILE", keyFile);
      try {
        await withNetlink({ netns: ns }, async (h) => {
          const ctx = backendContext(h, networkConfig("wireguard"));
          try {
            const network = await wireguardBackend.register(ctx);
            // UNVERIFIED branch: only where the kernel has wireguard (spec §12 item 24).
            const [dev] = await ipJson<{ mtu: number; linkinfo: { info_kind: string } }[]>(
              ns,
              ["-d", "link", "show", "flannel-wg"],
            );
            assert.equal(dev.linkinfo.info_kind, "wireguard");
            assert.equal(dev.mtu, 1420);
            await network.close();
            return;
          } catch (err) {
            assert.ok(err instanceof BackendError, String(err));
            assert.match(
              err.message,
              /the kernel has no wireguard module: creating flannel-wg .*EOPNOTSUPP/,
            );
          }
          assert.deepEqual(ctx.manager.published, [], "no lease acquired");
          await assert.rejects(Deno.stat(keyFile), Deno.errors.NotFound, "no key file written");
        });
      } finally {
        if (previous === undefined) Deno.env.delete("WIREGUARD_KEY_FILE");
        else Deno.env.set("WIREGUARD_KEY_FILE", previous);
        await Deno.remove(root, { recursive: true });
      }
    }),
);
