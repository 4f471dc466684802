/**
 * Watching and keeping leases against a real etcd: events, malformed input, compaction, etcd
 * restarts, renewal and lease loss.
 */
import assert from "node:assert/strict";
import { prefixEnd, text, type WatchEvent } from "../../etcd/codec.ts";
import { formatAddr, parseAddr } from "../../ip/mod.ts";
import { formatLeaseKey, type Lease } from "../../subnet/lease.ts";
import { LeaseLostError } from "../../subnet/manager.ts";
import type { EtcdClient } from "../../etcd/client.ts";
import { type EtcdEnv, withEtcdEnv } from "../helpers/etcd_env.ts";
import {
  allocValue,
  captureLog,
  leaseTtl,
  putConfig,
  putLease,
  readKey,
  readSubnets,
  uniquePrefix,
  vxlanValue,
  waitFor,
} from "../helpers/leases.ts";
import { watchInBackground } from "../helpers/lease_watch.ts";
import { startTcpProxy } from "../helpers/tcp_proxy.ts";

const CONFIG = '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}';

/** What each case gets: a fresh prefix holding CONFIG, a client, a signal and a task list. */
interface Scope {
  readonly prefix: string;
  readonly client: EtcdClient;
  readonly signal: AbortSignal;
  /** Background work awaited (settled) after the case, once the signal is aborted. */
  readonly tasks: Promise<unknown>[];
}

/** Run `body` in a fresh {@link Scope}; the signal is always aborted afterwards. */
async function scoped(env: EtcdEnv, body: (scope: Scope) => Promise<void>) {
  const abort = new AbortController();
  const tasks: Promise<unknown>[] = [];
  const prefix = uniquePrefix();
  const client = env.etcd.client();
  await putConfig(client, prefix, CONFIG);
  try {
    await body({ prefix, client, signal: abort.signal, tasks });
  } finally {
    abort.abort();
    await Promise.allSettled(tasks);
  }
}

/**
 * Every event etcd records under `dir` from `startRevision` on, read by a raw watch (not the
 * manager's), until `signal` aborts.
 */
function recordEvents(client: EtcdClient, dir: string, startRevision: number, signal: AbortSignal) {
  const events: WatchEvent[] = [];
  const done = (async () => {
    const req = { key: dir, rangeEnd: prefixEnd(dir), startRevision };
    for await (const res of client.watch(req, signal)) events.push(...res.events);
  })();
  return { events, done };
}

Deno.test("etcd lease watch and upkeep", async (t) => {
  await withEtcdEnv(t, {
    "snapshot, then adds, deletes and expiries carrying the lease (spec §3.5)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        await putLease(
          client,
          prefix,
          "10.5.2.0-24",
          vxlanValue("198.18.0.2", "c6:d2:32:6f:8f:44"),
        );
        await putLease(client, prefix, "10.5.3.0-24", allocValue("198.18.0.3"), 0);
        const w = watchInBackground(env.manager(prefix), signal);
        tasks.push(w.done);
        await waitFor("snapshot", () => w.updates.length > 0);
        const first = w.updates[0];
        assert.equal(first.type, "snapshot");
        assert.deepEqual(w.names(), ["10.5.2.0-24", "10.5.3.0-24"]);
        const reserved = w.peers.leases.find((l) => formatLeaseKey(l) === "10.5.3.0-24")!;
        assert.equal(reserved.reserved, true);

        await putLease(client, prefix, "10.5.4.0-24", allocValue("198.18.0.4"), 2);
        await waitFor("added", () => w.names().includes("10.5.4.0-24"));
        await client.deleteRange({ key: `${prefix}/subnets/10.5.2.0-24` });
        await waitFor("deleted", () => !w.names().includes("10.5.2.0-24"));
        const removed = w.events.find((e) => e.type === "removed")!;
        // The removal carries what the lease published, not just its subnet.
        assert.deepEqual(removed.lease.attrs.backendData, { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" });
        await waitFor("expired", () => !w.names().includes("10.5.4.0-24"), 8000);
        assert.deepEqual(w.summary(), [
          "added 10.5.2.0-24 198.18.0.2",
          "added 10.5.3.0-24 198.18.0.3",
          "added 10.5.4.0-24 198.18.0.4",
          "removed 10.5.2.0-24 198.18.0.2",
          "removed 10.5.4.0-24 198.18.0.4",
        ]);
        // Every raw batch from the manager carried whole leases too.
        for (const update of w.updates.slice(1)) {
          assert.equal(update.type, "events");
          for (const e of update.type === "events" ? update.events : []) {
            assert.notEqual(formatAddr(e.lease.attrs.publicIP), "0.0.0.0");
          }
        }
      }),

    "malformed keys and values are skipped and counted, never removals (quirks 1, 31)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        await putLease(client, prefix, "10.5.2.0-24", allocValue("198.18.0.2"));
        await putLease(client, prefix, "10.5.66.0-24", "{bad"); // malformed from the start
        const manager = env.manager(prefix);
        const w = watchInBackground(manager, signal);
        tasks.push(w.done);
        await waitFor("snapshot", () => w.updates.length > 0);
        assert.equal(manager.stats.malformedSkipped, 1);
        await putLease(client, prefix, "garbage", allocValue("198.18.0.9"));
        await putLease(client, prefix, "10.5.9.0-24", "not json");
        await putLease(client, prefix, "10.5.2.0-24", '{"PublicIP":null}'); // a valid key turns bad
        await putLease(client, prefix, "10.5.10.0-24/x", allocValue("198.18.0.9"));
        await client.put({
          key: `${prefix}/subnets-old/10.5.8.0-24`,
          value: allocValue("198.18.0.8"),
        });
        await putLease(client, prefix, "10.5.11.0-24", allocValue("198.18.0.11"));
        await waitFor("the valid lease", () => w.names().includes("10.5.11.0-24"));
        await client.deleteRange({ key: `${prefix}/subnets/garbage` });
        await putLease(client, prefix, "10.5.12.0-24", allocValue("198.18.0.12"));
        await waitFor("the next valid lease", () => w.names().includes("10.5.12.0-24"));
        assert.deepEqual(w.names(), ["10.5.11.0-24", "10.5.12.0-24", "10.5.2.0-24"]);
        assert.ok(!w.events.some((e) => e.type === "removed"));
        assert.equal(manager.stats.malformedSkipped, 1 + 5); // + the delete of "garbage"
      }),

    "compaction past the watch revision: re-list, diff and resume (quirk 6)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        await putLease(client, prefix, "10.5.2.0-24", allocValue("198.18.0.2"));
        await using proxy = startTcpProxy(Number(new URL(env.etcd.endpoint).port));
        const { log, lines } = captureLog();
        const manager = env.manager(prefix, { endpoints: [`http://${proxy.address}`], log });
        const w = watchInBackground(manager, signal);
        tasks.push(w.done);
        await waitFor("snapshot", () => w.names().length === 1);
        proxy.cut();
        await putLease(client, prefix, "10.5.3.0-24", allocValue("198.18.0.3"));
        await client.deleteRange({ key: `${prefix}/subnets/10.5.2.0-24` });
        await env.etcd.compact();
        proxy.restore();
        await waitFor("re-list", () => w.names().join() === "10.5.3.0-24", 15_000);
        assert.ok(manager.stats.relists >= 1);
        assert.ok(manager.stats.watchErrors >= 1);
        assert.ok(lines.some((l) => l.includes("compacted=true")), lines.join("\n"));
        assert.deepEqual(w.summary(), [
          "added 10.5.2.0-24 198.18.0.2",
          "removed 10.5.2.0-24 198.18.0.2",
          "added 10.5.3.0-24 198.18.0.3",
        ]);
        await putLease(client, prefix, "10.5.4.0-24", allocValue("198.18.0.4"));
        await waitFor("a later event", () => w.names().includes("10.5.4.0-24"));
      }),

    "etcd killed and restarted: the lease is kept and the watch resumes (spec §10.3)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        const manager = env.manager(prefix);
        const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
        const keep = manager.maintainLease(lease, signal);
        tasks.push(keep);
        const w = watchInBackground(manager, signal);
        tasks.push(w.done);
        await waitFor("snapshot", () => w.updates.length > 0);
        const before = (await readSubnets(client, prefix)).get(formatLeaseKey(lease))!;
        await env.etcd.kill();
        await waitFor("the manager to notice etcd gone", () => manager.stats.watchErrors >= 1);
        await env.etcd.restart();
        await putLease(env.etcd.client(), prefix, "10.5.200.0-24", allocValue("198.18.0.200"));
        await waitFor("the watch to resume", () => w.names().includes("10.5.200.0-24"), 15_000);
        const after = (await readSubnets(env.etcd.client(), prefix)).get(formatLeaseKey(lease))!;
        assert.deepEqual(after, before);
        assert.equal(manager.stats.reacquisitions, 0);
        const settled = await Promise.race([keep.then(() => "ended", () => "failed"), "running"]);
        assert.equal(settled, "running");
      }),

    "a key deleted by an operator is re-acquired; a key taken by another node is lost (quirk 9)": (
      env,
    ) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        const manager = env.manager(prefix);
        const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
        const name = formatLeaseKey(lease);
        const state: { outcome: unknown } = { outcome: "running" };
        const outcome = () => state.outcome;
        const keep = manager.maintainLease(lease, signal).then(
          () => state.outcome = "ended",
          (error) => state.outcome = error,
        );
        tasks.push(keep);
        // No need to wait for the upkeep's watch: it lists the key and watches from that
        // listing's revision, so the delete is seen whether it lands before or after.
        await client.deleteRange({ key: `${prefix}/subnets/${name}` });
        await waitFor("re-acquisition", () => manager.stats.reacquisitions === 1);
        const stored = (await readSubnets(client, prefix)).get(name)!;
        assert.equal(stored.value, allocValue("198.18.0.1"));
        assert.equal((await leaseTtl(client, stored.lease)).granted, 86_400);
        assert.equal(outcome(), "running");
        // A value nobody can read is taken back.
        await putLease(client, prefix, name, "{garbage");
        await waitFor("our value back", async () =>
          (await readSubnets(client, prefix)).get(name)?.value === allocValue("198.18.0.1"));
        assert.equal(outcome(), "running");
        // Another node now holds our subnet: we must not fight over it.
        await putLease(client, prefix, name, allocValue("198.18.0.66"));
        await waitFor("the loss", () =>
          outcome() !== "running");
        assert.ok(outcome() instanceof LeaseLostError, String(outcome()));
        assert.equal(
          (await readSubnets(client, prefix)).get(name)!.value,
          allocValue("198.18.0.66"),
        );
      }),

    "renewal re-puts with a fresh lease and revokes the old one (conformance 7, quirk 5)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        // TTL 4 s, renew 2.5 s before expiry: a renewal every ~1.5 s.
        const manager = env.manager(prefix, { leaseTtlSeconds: 4, renewMarginMinutes: 2.5 / 60 });
        const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
        const name = formatLeaseKey(lease);
        const first = (await readSubnets(client, prefix)).get(name)!.lease;
        tasks.push(manager.maintainLease(lease, signal));
        await waitFor("two renewals", () => manager.stats.renewals >= 2, 6000);
        const current = (await readSubnets(client, prefix)).get(name)!.lease;
        assert.notEqual(current, first);
        assert.equal((await leaseTtl(client, first)).ttl, -1); // revoked, not orphaned
        assert.equal((await leaseTtl(client, current)).granted, 4);
        assert.equal(manager.stats.renewFailures, 0);
        // The daemon's copy moved with the renewals.
        assert.ok(manager.ownLease!.expiration! > lease.expiration!);
      }),

    "a renewal is a put with a new lease, never a delete: peers see no removal (no flap)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        // TTL 4 s, renew 2.5 s before expiry: a renewal every ~1.5 s.
        const a = env.manager(prefix, { leaseTtlSeconds: 4, renewMarginMinutes: 2.5 / 60 });
        const lease = await a.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
        const key = a.leaseKey(lease);
        const acquired = (await readKey(client, key))!;
        const raw = recordEvents(client, `${prefix}/subnets/`, acquired.modRevision + 1, signal);
        const b = watchInBackground(env.manager(prefix), signal);
        tasks.push(raw.done, b.done);
        // B's snapshot comes before A's upkeep starts, so B watches every renewal.
        await waitFor("B's snapshot", () => b.updates.length > 0);
        assert.deepEqual(b.names(), [formatLeaseKey(lease)]);
        tasks.push(a.maintainLease(lease, signal));
        await waitFor("two renewals", () => a.stats.renewals >= 2);
        // A later write: once B and the raw watch have it, they have seen the renewals before it.
        const marker = "10.5.250.0-24";
        await putLease(client, prefix, marker, allocValue("198.18.0.250"));
        await waitFor("the marker at B", () => b.names().includes(marker));
        await waitFor(
          "the marker in the raw watch",
          () => raw.events.some((e) => text(e.kv.key).endsWith(marker)),
        );
        const ours = raw.events.filter((e) => text(e.kv.key) === key);
        assert.ok(ours.length >= 2, `${ours.length} writes of our key`);
        assert.deepEqual(ours.map((e) => e.type), ours.map(() => "put"), "never a delete");
        // Each renewal moved the key to a new etcd lease (and kept its value).
        const leases = [acquired.lease, ...ours.map((e) => e.kv.lease)];
        assert.equal(new Set(leases).size, leases.length, leases.join());
        for (const e of ours) assert.equal(text(e.kv.value), allocValue("198.18.0.1"));
        // B: our key was added by the snapshot and never removed or re-added.
        assert.deepEqual(b.summary(), [
          `added ${formatLeaseKey(lease)} 198.18.0.1`,
          `added ${marker} 198.18.0.250`,
        ]);
        assert.deepEqual(b.names(), [formatLeaseKey(lease), marker].sort());
      }),

    "a failed renewal is retried until it succeeds": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        await using proxy = startTcpProxy(Number(new URL(env.etcd.endpoint).port));
        const manager = env.manager(prefix, {
          endpoints: [`http://${proxy.address}`],
          leaseTtlSeconds: 20,
          renewMarginMinutes: 19 / 60, // first renewal 1 s after the put
          renewRetryMs: 300,
        });
        const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
        tasks.push(manager.maintainLease(lease, signal));
        proxy.cut();
        await waitFor("failed renewals", () => manager.stats.renewFailures >= 2, 8000);
        proxy.restore();
        await waitFor("a renewal", () => manager.stats.renewals >= 1, 15_000);
        const stored = (await readSubnets(client, prefix)).get(formatLeaseKey(lease))!;
        assert.equal((await leaseTtl(client, stored.lease)).granted, 20);
      }),

    "close() ends running watches and upkeep even without an abort": (env) =>
      scoped(env, async ({ prefix, signal, tasks }) => {
        const manager = env.manager(prefix);
        const lease = await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, signal);
        const keep = manager.maintainLease(lease, new AbortController().signal);
        const w = watchInBackground(manager, new AbortController().signal);
        tasks.push(keep, w.done);
        await waitFor("snapshot", () => w.updates.length > 0);
        let ended = false;
        Promise.all([keep, w.done]).then(() => ended = true);
        await manager.close();
        await waitFor("the watch and the upkeep to end", () => ended);
      }),

    "a reservation we hold is never renewed (quirk 4)": (env) =>
      scoped(env, async ({ prefix, client, signal, tasks }) => {
        await putLease(client, prefix, "10.5.9.0-24", allocValue("198.18.0.1"), 0);
        const key = `${prefix}/subnets/10.5.9.0-24`;
        const written = (await readKey(client, key))!.modRevision;
        // TTL 3 s, renew 2 s before expiry: a lease would be renewed 1 s after it was written.
        const options = { leaseTtlSeconds: 3, renewMarginMinutes: 2 / 60 };
        const manager = env.manager(prefix, options);
        const lease: Lease = await manager.acquireLease(
          { publicIP: parseAddr("198.18.0.1") },
          signal,
        );
        assert.equal(lease.reserved, true);
        tasks.push(manager.maintainLease(lease, signal));
        // A control: a node with a real lease and the same timers, started after ours. Once it
        // has renewed twice, ours would have been due too, had it been treated as a lease.
        const control = env.manager(prefix, options);
        const controlled = await control.acquireLease(
          { publicIP: parseAddr("198.18.0.2") },
          signal,
        );
        tasks.push(control.maintainLease(controlled, signal));
        await waitFor("the control's renewals", () => control.stats.renewals >= 2);
        assert.equal(manager.stats.renewals, 0);
        const stored = (await readKey(client, key))!;
        assert.equal(stored.lease, "0");
        assert.equal(stored.modRevision, written, "the reservation was not written again");
      }),
  });
});
