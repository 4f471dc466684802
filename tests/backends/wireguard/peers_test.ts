/**
 * The peers a wireguard lease needs per Mode (spec §6.6), shared by the kernel and wireguard-go
 * paths, and the drift between a device's peers and the wanted ones.
 */
import assert from "node:assert/strict";
import { BackendError } from "../../../backends/backend.ts";
import { wireguardDevices } from "../../../backends/wireguard/config.ts";
import { peerDrift, wireguardPeers } from "../../../backends/wireguard/peers.ts";
import { parseAddr, parseNet } from "../../../ip/mod.ts";
import { type JsonValue, type Lease } from "../../../subnet/lease.ts";
import { DEFAULTS, dualPeer, keyOf, OWN, summary, wgLease } from "./fixtures.ts";

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

Deno.test("wireguard drift: strays removed; missing or different peers re-applied; roaming kept", () => {
  const devices = wireguardDevices(DEFAULTS, [4]);
  const none = { persistentKeepaliveInterval: 0 };
  const peerFor = (subnet: string, key: number) =>
    wireguardPeers(
      wgLease({ v4: subnet }, {
        publicIP: parseAddr(`198.18.0.${key}`),
        backendData: { PublicKey: keyOf(key), Port: 51820 },
      }),
      OWN,
      "separate",
      devices,
      none,
    )[0];
  const wanted = [
    peerFor("10.244.1.0/24", 1),
    peerFor("10.244.2.0/24", 2),
    peerFor("10.244.3.0/24", 3),
  ];
  const state = (key: number, allowed: string[], endpoint = true) => ({
    publicKey: new Uint8Array(32).fill(key),
    ...(endpoint && { endpoint: { address: parseAddr("203.0.113.9"), port: 4000 } }),
    persistentKeepaliveInterval: 0,
    allowedIps: allowed.map(parseNet),
  });
  const actual = new Map([["flannel-wg", [
    state(1, ["10.244.1.0/24"]), // in place (its endpoint roamed: kept)
    state(2, ["10.244.2.0/24", "10.244.9.0/24"]), // an allowed IP too many
    state(7, ["10.244.7.0/24"]), // no lease wants it
  ]]]);
  assert.deepEqual(peerDrift(wanted, actual).map(summary), [
    "flannel-wg key=7 remove",
    "flannel-wg key=2 198.18.0.2:51820 10.244.2.0/24",
    "flannel-wg key=3 198.18.0.3:51820 10.244.3.0/24",
  ]);
  const settled = new Map([["flannel-wg", [1, 2, 3].map((k) => state(k, [`10.244.${k}.0/24`]))]]);
  assert.deepEqual(peerDrift(wanted, settled), [], "nothing to do when every peer is in place");
  const noEndpoint = new Map([["flannel-wg", [state(1, ["10.244.1.0/24"], false)]]]);
  assert.deepEqual(peerDrift(wanted.slice(0, 1), noEndpoint).map(summary), [
    "flannel-wg key=1 198.18.0.1:51820 10.244.1.0/24",
  ], "a peer that lost its endpoint gets it back");
});
