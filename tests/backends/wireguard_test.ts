/**
 * The wireguard backend (spec §6.6, §12 item 24; quirk 21). This kernel has no wireguard module:
 * what is tested is option parsing, device layout per Mode, the published lease data, the keys
 * (RFC 7748 test vector, key file), the peers derived from leases per Mode, the network's peer
 * programming against a recording kernel seam (not WireGuard itself), and the start-up error on
 * a kernel without the module.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { BackendError } from "../../backends/backend.ts";
import type { WireguardOptions } from "../../config/backend_options.ts";
import {
  type DevicePeer,
  loadOrCreateKeys,
  type PeerPlan,
  publicKeyOf,
  publishedData,
  wireguardBackend,
  wireguardDevices,
  type WireguardKernel,
  wireguardNetwork,
  wireguardPeers,
} from "../../backends/wireguard.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import { formatAddr, formatNet, parseAddr, parseNet } from "../../ip/mod.ts";
import {
  encodeLeaseAttrs,
  type JsonValue,
  type Lease,
  type LeaseAttrs,
} from "../../subnet/lease.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";
import { ipJson, rootTest, withNetns } from "../helpers/netns.ts";
import { backendContext, networkConfig } from "./backend_context.ts";

const DEFAULTS: WireguardOptions = {
  listenPort: 51820,
  listenPortV6: 51821,
  mtu: 0,
  persistentKeepaliveInterval: 0,
  mode: "separate",
};

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

const keyOf = (byte: number) => Buffer.alloc(32, byte).toString("base64");

function wgLease(
  subnets: { v4?: string; v6?: string },
  attrs: Partial<LeaseAttrs>,
  backendType = "wireguard",
): Lease {
  return {
    ...(subnets.v4 && { subnet: parseNet(subnets.v4) }),
    ...(subnets.v6 && { ipv6Subnet: parseNet(subnets.v6) }),
    attrs: { publicIP: parseAddr("0.0.0.0"), backendType, ...attrs },
  };
}

/** `device key=<first byte> endpoint allowed-ips [remove]` for compact assertions. */
function summary({ device, peer }: DevicePeer): string {
  const endpoint = peer.endpoint &&
    (peer.endpoint.address.family === 4
      ? `${formatAddr(peer.endpoint.address)}:${peer.endpoint.port}`
      : `[${formatAddr(peer.endpoint.address)}]:${peer.endpoint.port}`);
  return [
    device,
    `key=${peer.publicKey[0]}`,
    ...(peer.remove
      ? ["remove"]
      : [endpoint ?? "no-endpoint", ...(peer.allowedIps ?? []).map(formatNet)]),
  ].join(" ");
}

const OWN = wgLease({ v4: "10.244.7.0/24", v6: "fd00:7::/64" }, {
  publicIP: parseAddr("198.18.0.11"),
  publicIPv6: parseAddr("2001:db8::11"),
});

function dualPeer(publicIP: string, publicIPv6: string | undefined, v6Port = 4001): Lease {
  return wgLease({ v4: "10.244.8.0/24", v6: "fd00:8::/64" }, {
    publicIP: parseAddr(publicIP),
    ...(publicIPv6 && { publicIPv6: parseAddr(publicIPv6) }),
    backendData: { PublicKey: keyOf(8), Port: 0 },
    backendV6Data: { PublicKey: keyOf(8), Port: v6Port },
  });
}

Deno.test("wireguard peers: separate mode, one peer per family; port 0 is our own port", () => {
  const psk = new Uint8Array(32).fill(5);
  const peers = wireguardPeers(
    dualPeer("198.18.0.12", "2001:db8::12"),
    OWN,
    "separate",
    wireguardDevices(DEFAULTS, [4, 6]),
    { presharedKey: psk, persistentKeepaliveInterval: 25 },
  );
  assert.deepEqual(peers.map(summary), [
    "flannel-wg key=8 198.18.0.12:51820 10.244.8.0/24",
    "flannel-wg-v6 key=8 [2001:db8::12]:4001 fd00:8::/64",
  ]);
  for (const { peer } of peers) {
    assert.deepEqual(peer.presharedKey, psk);
    assert.equal(peer.persistentKeepaliveInterval, 25);
    assert.equal(peer.replaceAllowedIps, true, "allowed IPs are replaced, not appended");
  }
  assert.deepEqual(
    wireguardPeers(
      dualPeer("198.18.0.12", undefined),
      OWN,
      "separate",
      wireguardDevices(DEFAULTS, [4, 6]),
      { persistentKeepaliveInterval: 0 },
    ).map(summary),
    [
      "flannel-wg key=8 198.18.0.12:51820 10.244.8.0/24",
      "flannel-wg-v6 key=8 no-endpoint fd00:8::/64",
    ],
    "no public IPv6: the peer has no endpoint and waits for the other side",
  );
});

Deno.test("wireguard peers: single-device modes carry both subnets; auto picks the endpoint", () => {
  const devices = wireguardDevices({ ...DEFAULTS, mode: "auto" }, [4, 6]);
  const endpoint = (mode: "auto" | "ipv4" | "ipv6", peer: Lease, own = OWN) => {
    const [one, ...more] = wireguardPeers(peer, own, mode, devices, {
      persistentKeepaliveInterval: 0,
    });
    assert.equal(more.length, 0);
    assert.match(summary(one), / 10\.244\.8\.0\/24 fd00:8::\/64$/);
    return summary(one).split(" ")[2];
  };
  const v4 = "198.18.0.12:51820";
  const v6 = "[2001:db8::12]:4001";
  assert.equal(endpoint("auto", dualPeer("198.18.0.12", "2001:db8::12")), v4, "public IPv4");
  assert.equal(endpoint("auto", dualPeer("10.1.0.12", "2001:db8::12")), v6, "RFC 1918 IPv4");
  assert.equal(endpoint("auto", dualPeer("172.16.0.12", "fd00::12")), "172.16.0.12:51820", "ULA");
  assert.equal(endpoint("auto", dualPeer("10.1.0.12", undefined)), "10.1.0.12:51820", "no IPv6");
  const ownV6Only = wgLease({ v4: "10.244.7.0/24" }, { publicIPv6: parseAddr("2001:db8::11") });
  assert.equal(endpoint("auto", dualPeer("198.18.0.12", "2001:db8::12"), ownV6Only), v6);
  const ownUla = wgLease({ v4: "10.244.7.0/24" }, { publicIPv6: parseAddr("fd00::11") });
  assert.equal(endpoint("auto", dualPeer("10.1.0.12", "2001:db8::12"), ownUla), "10.1.0.12:51820");
  assert.equal(endpoint("ipv6", dualPeer("198.18.0.12", "2001:db8::12")), v6);
  assert.equal(endpoint("ipv4", dualPeer("10.1.0.12", "2001:db8::12")), "10.1.0.12:51820");
});

Deno.test("wireguard peers: other backends need none; malformed data is a BackendError", () => {
  const devices = wireguardDevices(DEFAULTS, [4]);
  const none = { persistentKeepaliveInterval: 0 };
  const vxlan = wgLease({ v4: "10.244.9.0/24" }, { backendData: { VNI: 1 } }, "vxlan");
  assert.deepEqual(wireguardPeers(vxlan, OWN, "separate", devices, none), []);
  const malformed: JsonValue[] = [
    { Port: 1 },
    { PublicKey: "c2hvcnQ=", Port: 1 },
    { PublicKey: keyOf(1), Port: 70000 },
    "text",
  ];
  for (const backendData of malformed) {
    const bad = wgLease({ v4: "10.244.9.0/24" }, { backendData });
    assert.throws(() => wireguardPeers(bad, OWN, "separate", devices, none), BackendError);
  }
});

/** A kernel seam that records every change and refuses peers whose key starts with `refuse`. */
function recordingKernel(refuse: number) {
  const calls: string[][] = [];
  let refreshes = 0;
  let closed = false;
  const kernel: WireguardKernel = {
    apply(changes) {
      calls.push(changes.map(summary));
      return changes.map((c) =>
        c.peer.publicKey[0] === refuse && !c.peer.remove ? new Error("EINVAL (refused)") : undefined
      );
    },
    refreshRoutes: () => void refreshes++,
    close: () => void (closed = true),
  };
  return { kernel, calls, refreshes: () => refreshes, closed: () => closed };
}

function v4Peer(subnet: string, ip: string, key: number, backendType = "wireguard"): Lease {
  return wgLease({ v4: subnet }, {
    publicIP: parseAddr(ip),
    backendData: { PublicKey: keyOf(key), Port: 51820 },
  }, backendType);
}

Deno.test("wireguard network: peers added, re-keyed and removed by key; health per peer", async () => {
  const own = v4Peer("10.244.7.0/24", "198.18.0.11", 7);
  const rec = recordingKernel(3);
  const plan: PeerPlan = {
    mode: "separate",
    devices: wireguardDevices(DEFAULTS, [4]),
    persistentKeepaliveInterval: 0,
  };
  const network = wireguardNetwork(own, 1420, plan, rec.kernel);
  const updates: LeaseWatchUpdate[] = [
    {
      type: "snapshot",
      leases: [
        own,
        v4Peer("10.244.8.0/24", "198.18.0.12", 1),
        v4Peer("10.244.9.0/24", "198.18.0.13", 9, "vxlan"),
        v4Peer("10.244.10.0/24", "198.18.0.14", 3),
      ],
    },
    {
      type: "events",
      events: [
        { type: "added", lease: v4Peer("10.244.8.0/24", "198.18.0.12", 4) },
        { type: "removed", lease: v4Peer("10.244.10.0/24", "198.18.0.14", 3) },
        { type: "added", lease: wgLease({ v4: "10.244.11.0/24" }, { backendData: {} }) },
      ],
    },
  ];
  await network.run(
    (async function* () {
      yield* updates;
    })(),
    new AbortController().signal,
  );
  assert.deepEqual(rec.calls, [
    ["flannel-wg key=1 198.18.0.12:51820 10.244.8.0/24"],
    ["flannel-wg key=3 198.18.0.14:51820 10.244.10.0/24"],
    ["flannel-wg key=1 remove", "flannel-wg key=4 198.18.0.12:51820 10.244.8.0/24"],
    ["flannel-wg key=3 remove"],
  ]);
  assert.equal(rec.refreshes(), 3, "the Network route is re-replaced after each add");
  const health = network.health();
  assert.equal(health.type, "wireguard");
  assert.deepEqual(health.peers, [
    { subnet: "10.244.8.0/24", publicIP: "198.18.0.12", inSync: true },
    {
      subnet: "10.244.11.0/24",
      publicIP: "0.0.0.0",
      inSync: false,
      error: "wireguard: BackendData has no PublicKey",
    },
  ]);
  assert.equal(health.lastError, "wireguard: BackendData has no PublicKey");
  await network.close();
  assert.ok(rec.closed(), "devices deleted on shutdown");
});

Deno.test("wireguard network: a refused peer is reported out of sync with the kernel's reason", async () => {
  const rec = recordingKernel(3);
  const plan: PeerPlan = {
    mode: "separate",
    devices: wireguardDevices(DEFAULTS, [4]),
    persistentKeepaliveInterval: 0,
  };
  const network = wireguardNetwork(
    v4Peer("10.244.7.0/24", "198.18.0.11", 7),
    1420,
    plan,
    rec.kernel,
  );
  await network.run(
    (async function* (): AsyncGenerator<LeaseWatchUpdate> {
      yield { type: "snapshot", leases: [v4Peer("10.244.10.0/24", "198.18.0.14", 3)] };
    })(),
    new AbortController().signal,
  );
  assert.deepEqual(network.health().peers, [
    { subnet: "10.244.10.0/24", publicIP: "198.18.0.14", inSync: false, error: "EINVAL (refused)" },
  ]);
  assert.equal(network.health().lastError, "EINVAL (refused)");
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
