import assert from "node:assert/strict";
import type { NetworkConfig } from "../../config/network_config.ts";
import { parseAddr, parseNet } from "../../ip/mod.ts";
import type { Lease } from "../../subnet/lease.ts";
import { CommandFailedError, CommandNotFoundError, type CommandRunner } from "../../exec.ts";
import { createTrafficManager, type TrafficOptions } from "../../traffic/manager.ts";
import { waitFor } from "../helpers/leases.ts";

// The manager's own logic (engine choice, order of steps, health, the loop) against a scripted
// runner; the real tools are exercised in netns_test.ts.

const config = (enableNFTables: boolean): NetworkConfig => ({
  ipv4: {
    network: parseNet("10.244.0.0/16"),
    subnetLen: 24,
    subnetMin: parseAddr("10.244.1.0"),
    subnetMax: parseAddr("10.244.255.0"),
  },
  enableNFTables,
  backend: { type: "vxlan", options: {} },
});
const lease: Lease = {
  subnet: parseNet("10.244.1.0/24"),
  attrs: { publicIP: parseAddr("198.18.0.1") },
};

interface Call {
  readonly argv: readonly string[];
  readonly stdin?: string;
}

/**
 * A runner that records calls and answers from `reply` (throwing what it throws). The scripted
 * host has only plain `iptables*` commands, no `-legacy`/`-nft` variants to choose from.
 */
function scripted(
  reply: (argv: readonly string[]) => string,
): { run: CommandRunner; calls: Call[] } {
  const calls: Call[] = [];
  return {
    calls,
    run: (argv, stdin) => {
      calls.push({ argv, stdin });
      if (/^ip6?tables-(legacy|nft)/.test(argv[0])) {
        return Promise.reject(new CommandNotFoundError(argv[0]));
      }
      return Promise.resolve().then(() => reply(argv));
    },
  };
}

const options = (run: CommandRunner, extra: Partial<TrafficOptions> = {}): TrafficOptions => ({
  ipMasq: true,
  forwardRules: true,
  fullyRandomDisabled: false,
  resyncSeconds: 1,
  run,
  ...extra,
});

const modern = (
  argv: readonly string[],
) => (argv[1] === "--version" ? "iptables v1.8.9 (nf_tables)" : "");

Deno.test("apply (iptables mode): nft tables removed first, then one restore per family with rules", async () => {
  const { run, calls } = scripted(modern);
  const traffic = await createTrafficManager(config(false), lease, options(run));
  await traffic.apply();
  const writes = calls.filter((c) => c.stdin !== undefined && !c.argv.includes("-c"));
  assert.deepEqual(writes.map((c) => c.argv.join(" ")), [
    "nft -f -",
    "iptables-restore --noflush --wait",
  ]);
  assert.match(writes[0].stdin!, /delete table ip flannel-ipv4/);
  assert.match(writes[1].stdin!, /--random-fully/);
  assert.equal(traffic.health().lastResult, "repaired");
  assert.equal(traffic.health().repairs, 0, "the first install is not a repair");
});

Deno.test("options: fully-random off by flag, or unsupported by an old iptables (also no --wait)", async () => {
  const disabled = scripted(modern);
  await (await createTrafficManager(
    config(false),
    lease,
    options(disabled.run, { fullyRandomDisabled: true }),
  ))
    .apply();
  const restore = disabled.calls.find((c) => c.argv[0] === "iptables-restore")!;
  assert.doesNotMatch(restore.stdin!, /random-fully/);

  const old = scripted((argv) => (argv[1] === "--version" ? "iptables v1.4.21" : ""));
  await (await createTrafficManager(config(false), lease, options(old.run))).apply();
  const oldRestore = old.calls.find((c) => c.argv[0] === "iptables-restore")!;
  assert.deepEqual(oldRestore.argv, ["iptables-restore", "--noflush"]);
  assert.doesNotMatch(oldRestore.stdin!, /random-fully/);
});

Deno.test("apply (nftables mode): iptables state removed first (quirk 25 order), one nft transaction", async () => {
  // The node still has flannel's iptables chains from a previous run.
  const previous = [
    "*nat",
    ":POSTROUTING ACCEPT [0:0]",
    ":FLANNEL-POSTRTG - [0:0]",
    `-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`,
    "COMMIT",
    "*filter",
    ":FORWARD ACCEPT [0:0]",
    ":FLANNEL-FWD - [0:0]",
    `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`,
    "COMMIT",
  ].join("\n");
  const { run, calls } = scripted((argv) => {
    if (argv[0] === "iptables-save") return previous;
    if (argv[0] === "nft" && argv[2] === "list") {
      throw new CommandFailedError(argv, 1, "Error: No such file or directory");
    }
    return modern(argv);
  });
  const traffic = await createTrafficManager(config(true), lease, options(run));
  assert.equal(traffic.engine, "nftables");
  await traffic.apply();
  const restore = calls.find((c) => c.argv[0] === "iptables-restore")!;
  assert.deepEqual(restore.stdin!.split("\n").filter(Boolean), [
    "*nat",
    `-D POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG`,
    "-F FLANNEL-POSTRTG",
    "-X FLANNEL-POSTRTG",
    "COMMIT",
    "*filter",
    `-D FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`,
    "-F FLANNEL-FWD",
    "-X FLANNEL-FWD",
    "COMMIT",
  ]);
  const nftWrites = calls.filter((c) => c.argv.join(" ") === "nft -f -");
  assert.equal(nftWrites.length, 1);
  assert.match(nftWrites[0].stdin!, /masquerade fully-random/);
  assert.ok(calls.indexOf(restore) < calls.indexOf(nftWrites[0]), "old engine cleaned first");
});

Deno.test("resync: failures are counted and logged, the loop keeps going and stops on abort", async () => {
  let failSaves = false;
  const { run } = scripted((argv) => {
    if (argv[0] === "iptables-save" && failSaves) {
      throw new CommandFailedError(argv, 4, "lock held");
    }
    return modern(argv);
  });
  const logged: string[] = [];
  const traffic = await createTrafficManager(config(false), lease, {
    ...options(run),
    log: (line) => logged.push(line),
  });
  await traffic.apply();
  failSaves = true;
  const stop = new AbortController();
  const loop = traffic.startResync(stop.signal);
  await waitFor("two failed checks", () => traffic.health().failures >= 2, 5000);
  stop.abort();
  await loop;
  const health = traffic.health();
  assert.ok(health.failures >= 2);
  assert.equal(health.lastResult, "failed");
  assert.match(health.lastError ?? "", /lock held/);
  assert.equal(logged.length, health.failures);
  assert.match(logged[0], /^iptables: rule check failed/);
});

Deno.test("resync: abort ends the wait at once, not after the period", async () => {
  const { run } = scripted(modern);
  const traffic = await createTrafficManager(
    config(false),
    lease,
    options(run, { resyncSeconds: 3600 }),
  );
  await traffic.apply();
  const stop = new AbortController();
  const loop = traffic.startResync(stop.signal);
  stop.abort();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const bound = new Promise<false>((resolve) => timer = setTimeout(resolve, 30_000, false));
  const ended = await Promise.race([loop.then(() => true), bound]);
  clearTimeout(timer);
  assert.ok(ended, "after abort the loop still waits out its 3600 s period");
});
