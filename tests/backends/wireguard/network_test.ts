/**
 * The wireguard network against a fake device behind the control seam both implementations
 * (kernel, wireguard-go) sit behind: peers added, re-keyed, removed, refused, and drift (a lost
 * peer, a stray one, a restarted device) repaired on resync.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { wireguardDevices } from "../../../backends/wireguard/config.ts";
import type { WireguardControl } from "../../../backends/wireguard/network.ts";
import { wireguardNetwork } from "../../../backends/wireguard/network.ts";
import type { PeerPlan } from "../../../backends/wireguard/peers.ts";
import type { WgPeerState } from "../../../ffi/netlink/wireguard.ts";
import type { LeaseWatchUpdate } from "../../../subnet/manager.ts";
import { captureLog, waitFor } from "../../helpers/leases.ts";
import { DEFAULTS, summary, v4Peer, wgLease } from "./fixtures.ts";

/**
 * A fake `flannel-wg` that keeps the peers it is given, records every change and refuses peers
 * whose key starts with `refuse`.
 */
function fakeDevice(refuse: number) {
  const held = new Map<string, WgPeerState>();
  const calls: string[][] = [];
  let refreshes = 0;
  let restarts = 0;
  let closed = false;
  let onRestart = () => {};
  const control: WireguardControl = {
    implementation: "wireguard-go",
    apply(changes) {
      calls.push(changes.map(summary));
      return Promise.resolve(changes.map(({ peer }) => {
        const key = Buffer.from(peer.publicKey).toString("hex");
        if (peer.remove) return void held.delete(key);
        if (peer.publicKey[0] === refuse) return new Error("EINVAL (refused)");
        held.set(key, {
          publicKey: peer.publicKey,
          ...(peer.endpoint && { endpoint: peer.endpoint }),
          persistentKeepaliveInterval: peer.persistentKeepaliveInterval ?? 0,
          allowedIps: [...peer.allowedIps ?? []],
        });
      }));
    },
    read: () => Promise.resolve(new Map([["flannel-wg", [...held.values()]]])),
    repairDevices: () => Promise.resolve(restarts ? (restarts = 0, 1) : 0),
    onDeviceRestart: (listener) => void (onRestart = listener),
    refreshRoutes: () => Promise.resolve(void refreshes++),
    close: () => Promise.resolve(void (closed = true)),
  };
  return {
    control,
    held,
    calls,
    refreshes: () => refreshes,
    closed: () => closed,
    /** As a restarted wireguard-go: the device comes back empty. */
    restart: () => (held.clear(), restarts++, onRestart()),
  };
}

const PLAN: PeerPlan = {
  mode: "separate",
  devices: wireguardDevices(DEFAULTS, [4]),
  persistentKeepaliveInterval: 0,
};
const OWN = v4Peer("10.244.7.0/24", "198.18.0.11", 7);

async function runAll(network: ReturnType<typeof wireguardNetwork>, updates: LeaseWatchUpdate[]) {
  await network.run(
    (async function* () {
      yield* updates;
    })(),
    new AbortController().signal,
  );
}

Deno.test("wireguard network: peers added, re-keyed and removed by key; health per peer", async () => {
  const dev = fakeDevice(3);
  const { log } = captureLog();
  const network = wireguardNetwork(OWN, 1420, PLAN, dev.control, { resyncMs: 60_000, log });
  await runAll(network, [
    {
      type: "snapshot",
      leases: [
        OWN,
        v4Peer("10.244.8.0/24", "198.18.0.12", 1),
        v4Peer("10.244.9.0/24", "198.18.0.13", 9, "vxlan"),
        v4Peer("10.244.10.0/24", "198.18.0.14", 2),
      ],
    },
    {
      type: "events",
      events: [
        { type: "added", lease: v4Peer("10.244.8.0/24", "198.18.0.12", 4) },
        { type: "removed", lease: v4Peer("10.244.10.0/24", "198.18.0.14", 2) },
        { type: "added", lease: wgLease({ v4: "10.244.11.0/24" }, { backendData: {} }) },
      ],
    },
  ]);
  assert.deepEqual(dev.calls, [
    ["flannel-wg key=1 198.18.0.12:51820 10.244.8.0/24"],
    ["flannel-wg key=2 198.18.0.14:51820 10.244.10.0/24"],
    ["flannel-wg key=1 remove", "flannel-wg key=4 198.18.0.12:51820 10.244.8.0/24"],
    ["flannel-wg key=2 remove"],
  ], "the snapshot's resync finds every peer in place and changes nothing more");
  assert.equal(dev.refreshes(), 3, "the Network route is re-replaced after each add");
  assert.deepEqual([...dev.held.values()].map((p) => p.publicKey[0]), [4]);
  const health = network.health();
  assert.equal(health.type, "wireguard");
  assert.equal(health.implementation, "wireguard-go");
  assert.equal(health.ready, true);
  assert.deepEqual(health.peers, [
    { subnet: "10.244.8.0/24", publicIP: "198.18.0.12", inSync: true },
    {
      subnet: "10.244.11.0/24",
      publicIP: "0.0.0.0",
      inSync: false,
      error: "wireguard: BackendData has no PublicKey",
    },
  ]);
  await network.close();
  assert.ok(dev.closed(), "devices deleted on shutdown");
});

Deno.test("wireguard network: a refused peer is out of sync with the reason, and retried", async () => {
  const dev = fakeDevice(3);
  const { log } = captureLog();
  const network = wireguardNetwork(OWN, 1420, PLAN, dev.control, { resyncMs: 60_000, log });
  await runAll(network, [{
    type: "snapshot",
    leases: [v4Peer("10.244.10.0/24", "198.18.0.14", 3)],
  }]);
  assert.deepEqual(network.health().peers, [
    { subnet: "10.244.10.0/24", publicIP: "198.18.0.14", inSync: false, error: "EINVAL (refused)" },
  ]);
  assert.equal(network.health().lastError, "EINVAL (refused)");
  assert.equal(network.health().lastReconcileOk, false);
  assert.equal(dev.calls.length, 2, "the snapshot's resync tried the refused peer again");
});

Deno.test("wireguard network: resync removes strays, restores lost peers and a restarted device", async () => {
  const dev = fakeDevice(0);
  const { log, lines } = captureLog();
  const network = wireguardNetwork(OWN, 1420, PLAN, dev.control, { resyncMs: 20, log });
  const stop = new AbortController();
  const running = network.run(
    (async function* (): AsyncGenerator<LeaseWatchUpdate> {
      yield {
        type: "snapshot",
        leases: [
          v4Peer("10.244.8.0/24", "198.18.0.12", 1),
          v4Peer("10.244.9.0/24", "198.18.0.13", 2),
        ],
      };
      await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
    })(),
    stop.signal,
  );
  try {
    await waitFor("both peers", () => dev.held.size === 2);
    assert.equal(network.health().driftRepaired, 0, "the first programming is no repair");
    const [first] = dev.held.keys();
    dev.held.delete(first);
    const stray = new Uint8Array(32).fill(9);
    dev.held.set(Buffer.from(stray).toString("hex"), {
      publicKey: stray,
      persistentKeepaliveInterval: 0,
      allowedIps: [],
    });
    await waitFor("two repairs", () => network.health().driftRepaired === 2);
    assert.deepEqual([...dev.held.values()].map((p) => p.publicKey[0]).sort(), [1, 2]);
    dev.restart();
    await waitFor("the restart repaired", () => network.health().driftRepaired === 5);
    assert.equal(dev.held.size, 2, "a restarted device gets every peer back");
    assert.ok(lines.some((l) => l.includes("wireguard peers reconciled")));
  } finally {
    stop.abort();
    await running;
  }
});

Deno.test("wireguard network: a restarted device is repaired at once, not at the next resync", async () => {
  const dev = fakeDevice(0);
  const { log } = captureLog();
  const network = wireguardNetwork(OWN, 1420, PLAN, dev.control, { resyncMs: 600_000, log });
  const stop = new AbortController();
  const running = network.run(
    (async function* (): AsyncGenerator<LeaseWatchUpdate> {
      yield { type: "snapshot", leases: [v4Peer("10.244.8.0/24", "198.18.0.12", 1)] };
      await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
    })(),
    stop.signal,
  );
  try {
    await waitFor("the peer", () => dev.held.size === 1);
    dev.restart();
    await waitFor("the device and its peer restored", () => network.health().driftRepaired === 2);
    assert.equal(dev.held.size, 1);
  } finally {
    stop.abort();
    await running;
  }
});
