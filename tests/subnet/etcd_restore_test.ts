/**
 * etcd restored from an empty data dir under a running manager: the store's revision goes back
 * to 1, and etcd accepts watches from "future" revisions, so without care every watch would sit
 * blind until the new store's revision caught up. The watch must re-list, and our lease and our
 * public IP claim must come back with the same subnet.
 */
import assert from "node:assert/strict";
import { EtcdSubnetManager } from "../../subnet/etcd.ts";
import { parseAddr } from "../../ip/mod.ts";
import { formatLeaseKey, type Lease } from "../../subnet/lease.ts";
import { startEtcd } from "../helpers/etcd.ts";
import {
  allocValue,
  captureLog,
  putConfig,
  putLease,
  readKey,
  readSubnets,
  uniquePrefix,
  waitFor,
} from "../helpers/leases.ts";

const CONFIG = '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}';

Deno.test("etcd restored from an empty data dir: re-list, our lease and claim re-created", async () => {
  await using etcd = await startEtcd();
  const tmp = await Deno.makeTempDir({ prefix: "tt-restore-" });
  const abort = new AbortController();
  const { log, lines } = captureLog();
  const prefix = uniquePrefix();
  const manager = new EtcdSubnetManager({
    endpoints: [etcd.endpoint],
    prefix,
    subnetFile: `${tmp}/subnet.env`,
    log,
    publicIPClaim: { ttlSeconds: 3 },
  });
  const tasks: Promise<unknown>[] = [];
  try {
    await putConfig(etcd.client(), prefix, CONFIG);
    // History the new store will not have: our resume point ends up well above its revision.
    for (let i = 0; i < 20; i++) await putConfig(etcd.client(), prefix, CONFIG);
    await putLease(etcd.client(), prefix, "10.5.200.0-24", allocValue("198.18.0.200"));
    const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, abort.signal);
    const name = formatLeaseKey(lease);
    tasks.push(manager.maintainLease(lease, abort.signal));
    let peers: Lease[] = [];
    tasks.push((async () => {
      for await (const update of manager.watchLeases(abort.signal)) {
        if (update.type === "snapshot") peers = [...update.leases];
        else {
          for (const e of update.events) {
            peers = peers.filter((p) => formatLeaseKey(p) !== formatLeaseKey(e.lease));
            if (e.type === "added") peers.push(e.lease);
          }
        }
      }
    })());
    const names = () => peers.map(formatLeaseKey).sort();
    await waitFor("the first snapshot", () => names().includes("10.5.200.0-24"));

    await etcd.kill();
    await Deno.remove(etcd.dataDir, { recursive: true });
    await etcd.restart();
    const client = etcd.client();
    assert.ok(await etcd.revision() < 5, "a new, empty store");
    // A peer that registers in the new store must be seen (on a subnet that is not ours: ours
    // was picked at random among the free ones)...
    const peerName = name === "10.5.201.0-24" ? "10.5.202.0-24" : "10.5.201.0-24";
    await putLease(client, prefix, peerName, allocValue("198.18.0.201"));
    await waitFor(
      "the new store's leases",
      () => names().join() === [peerName, name].sort().join(),
      10_000,
    );
    // ...and our own lease and claim are back, same subnet, without any restart.
    const stored = await readSubnets(client, prefix);
    assert.equal(stored.get(name)?.value, allocValue("198.18.0.1"));
    assert.equal(manager.stats.reacquisitions, 1);
    assert.ok(manager.stats.relists >= 1);
    assert.ok(lines.some((l) => l.includes("store revision went back")), lines.join("\n"));
    const claimKey = `${prefix}/tartan/owners/198.18.0.1`;
    await waitFor(
      "the claim back",
      async () => (await readKey(client, claimKey)) !== undefined,
      5000,
    );
  } finally {
    abort.abort();
    await Promise.allSettled(tasks);
    await manager.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
