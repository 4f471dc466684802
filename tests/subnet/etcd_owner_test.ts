/**
 * One daemon per public IP (subnet/etcd_owner.ts) against a real etcd: managers play daemons on
 * two "machines" (the `machine` test knob) with a 3 s claim TTL; a TCP proxy that a test cuts
 * plays a SIGKILL (the daemon stops talking to etcd without revoking anything). The cases check
 * what happens in which order (the claim key's writes, the newcomer's log), never how long it
 * takes: `deno task bench owner_claim` measures that.
 */
import assert from "node:assert/strict";
import type { EtcdClient } from "../../etcd/client.ts";
import { prefixEnd, text } from "../../etcd/codec.ts";
import { type EtcdManagerOptions, EtcdSubnetManager } from "../../subnet/etcd.ts";
import { type OwnerRecord, PublicIPInUseError } from "../../subnet/etcd_owner.ts";
import { parseAddr } from "../../ip/mod.ts";
import { formatLeaseKey } from "../../subnet/lease.ts";
import { LeaseLostError } from "../../subnet/manager.ts";
import { startEtcd } from "../helpers/etcd.ts";
import {
  allocValue,
  captureLog,
  leaseTtl,
  putConfig,
  readKey,
  readSubnets,
  uniquePrefix,
  waitFor,
} from "../helpers/leases.ts";
import { startTcpProxy, type TcpProxy } from "../helpers/tcp_proxy.ts";

const CONFIG = '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}';
const IP = "198.18.0.1";
const TTL = 3;
const attrs = { publicIP: parseAddr(IP) };

interface Env {
  readonly client: EtcdClient;
  readonly prefix: string;
  readonly signal: AbortSignal;
  /** A daemon on `machine`; through `proxy` when given (so a test can "kill" it). */
  daemon(
    machine: string,
    proxy?: TcpProxy,
    options?: Partial<EtcdManagerOptions>,
  ): EtcdSubnetManager;
  proxy(): TcpProxy;
  /** The claim as stored: record and etcd lease, or undefined. */
  claim(): Promise<{ record: OwnerRecord; lease: string } | undefined>;
  /**
   * Record the claim key's writes from now on with a raw etcd watch; `read()` returns them up to
   * the moment it is called, in revision order: `put <machine>` or `delete` (revoke or expiry).
   */
  claimHistory(): Promise<{ read(): Promise<string[]> }>;
}

function ownerTest(name: string, fn: (env: Env) => Promise<void>): void {
  Deno.test(name, async () => {
    await using etcd = await startEtcd();
    const tmp = await Deno.makeTempDir({ prefix: "tt-owner-" });
    const abort = new AbortController();
    const managers: EtcdSubnetManager[] = [];
    const proxies: TcpProxy[] = [];
    const prefix = uniquePrefix();
    const port = Number(new URL(etcd.endpoint).port);
    await putConfig(etcd.client(), prefix, CONFIG);
    const subnetFile = `${tmp}/subnet.env`; // one node's file, shared by its incarnations
    const claimKey = `${prefix}/tartan/owners/${IP}`;
    const watches: Promise<void>[] = [];
    const env: Env = {
      client: etcd.client(),
      prefix,
      signal: abort.signal,
      daemon(machine, proxy, options = {}) {
        const manager = new EtcdSubnetManager({
          endpoints: [proxy ? `http://${proxy.address}` : etcd.endpoint],
          prefix,
          subnetFile,
          log: captureLog().log,
          publicIPClaim: { ttlSeconds: TTL, machine },
          ...options,
        });
        managers.push(manager);
        return manager;
      },
      proxy() {
        const proxy = startTcpProxy(port);
        proxies.push(proxy);
        return proxy;
      },
      async claim() {
        const kv = await readKey(etcd.client(), claimKey);
        return kv && { record: JSON.parse(text(kv.value)), lease: kv.lease };
      },
      async claimHistory() {
        const client = etcd.client();
        // Inside the watched range and read by nobody: once its write arrives, so has every
        // earlier write of the claim.
        const marker = `${claimKey}~sync`;
        const history: string[] = [];
        let synced = 0;
        const startRevision = (await client.range({ key: claimKey })).revision + 1;
        const req = { key: claimKey, rangeEnd: prefixEnd(claimKey), startRevision };
        watches.push((async () => {
          for await (const res of client.watch(req, abort.signal)) {
            for (const { type, kv } of res.events) {
              const key = text(kv.key);
              if (key === marker) synced = Number(text(kv.value));
              if (key !== claimKey) continue;
              history.push(type === "put" ? `put ${JSON.parse(text(kv.value)).machine}` : type);
            }
          }
        })());
        let marks = 0;
        return {
          async read() {
            const mark = ++marks;
            await client.put({ key: marker, value: String(mark) });
            await waitFor("the claim history to catch up", () => synced >= mark);
            return [...history];
          },
        };
      },
    };
    try {
      await fn(env);
    } finally {
      abort.abort();
      await Promise.allSettled(watches);
      for (const p of proxies) p.restore();
      await Promise.all(managers.map((m) => m.close()));
      await Promise.all(proxies.map((p) => p.close()));
      await Deno.remove(tmp, { recursive: true });
    }
  });
}

const WAITING = "public IP claimed by another machine; waiting for that claim to expire";
const TOOK_OVER = "took over the public IP claim of a previous run on this machine";

/** Whether `lines` has one containing `text`. */
function logged(lines: string[], text: string): boolean {
  return lines.some((line) => line.includes(text));
}

ownerTest(
  "a second daemon with the same public IP is refused while the first lives",
  async (env) => {
    const first = env.daemon("machine-a");
    const lease = await first.acquireLease(attrs, env.signal);
    const keep = first.maintainLease(lease, env.signal);
    const before = await env.claim();
    assert.equal(before?.record.machine, "machine-a");
    const history = await env.claimHistory();
    // The newcomer's own wait limit (its claim TTL + 2 s) lies beyond this test's bound, so
    // only a keep-alive of the holder, seen moving the claim's expiry, can refuse it in time.
    const { log, lines } = captureLog();
    const second = env.daemon("machine-b", undefined, {
      log,
      publicIPClaim: { ttlSeconds: 60, machine: "machine-b" },
    });
    const error = await second.acquireLease(attrs, AbortSignal.timeout(30_000))
      .then(() => undefined, (e) => e);
    assert.ok(error instanceof PublicIPInUseError, String(error));
    assert.ok(logged(lines, WAITING), "it watched the claim before refusing");
    assert.match(
      error.message,
      /public IP 198\.18\.0\.1 is already in use by another tartan daemon/,
    );
    assert.match(error.message, new RegExp(`pid ${Deno.pid}`));
    assert.deepEqual(await env.claim(), before, "the claim is untouched");
    assert.deepEqual(await history.read(), [], "no write to the claim meanwhile");
    const stored = await readSubnets(env.client, env.prefix);
    assert.deepEqual([...stored.keys()], [formatLeaseKey(lease)], "no second key");
    const settled = await Promise.race([keep.then(() => "ended", (e) => e), "running"]);
    assert.equal(settled, "running");
  },
);

ownerTest("a restart on the same machine takes over at once and reuses the lease", async (env) => {
  const proxy = env.proxy();
  // A claim TTL well above the time a restart takes, so the old claim is alive when taken over.
  const crashed = env.daemon("machine-a", proxy, {
    publicIPClaim: { ttlSeconds: 3 * TTL, machine: "machine-a" },
  });
  const lease = await crashed.acquireLease(attrs, env.signal);
  let outcome: unknown = "running";
  const keep = crashed.maintainLease(lease, env.signal).then(
    () => outcome = "ended",
    (e) => outcome = e,
  );
  const old = await env.claim();
  const history = await env.claimHistory();
  proxy.cut(); // SIGKILL: the claim stays alive in etcd until its TTL
  const { log, lines } = captureLog();
  const again = await env.daemon("machine-a", undefined, { log }).acquireLease(attrs, env.signal);
  // Taken over while the old claim was alive: no waiting, and no expiry before our write.
  assert.ok(logged(lines, TOOK_OVER), lines.join("\n"));
  assert.ok(!logged(lines, WAITING), lines.join("\n"));
  assert.deepEqual(await history.read(), ["put machine-a"]);
  assert.equal(formatLeaseKey(again), formatLeaseKey(lease), "same subnet (conformance 10)");
  const now = await env.claim();
  assert.notEqual(now?.record.instance, old?.record.instance);
  assert.equal((await leaseTtl(env.client, old!.lease)).ttl, -1, "old claim revoked");
  // Were the old process still alive, it would find out and stop serving.
  proxy.restore();
  await waitFor("the old daemon to notice", () => outcome !== "running", 10_000);
  assert.ok(outcome instanceof LeaseLostError, String(outcome));
  assert.match((outcome as Error).message, /claimed by another tartan daemon/);
  await keep;
});

ownerTest("after a crash on another machine the newcomer waits out the TTL, then starts", async (
  env,
) => {
  const proxy = env.proxy();
  const crashed = env.daemon("machine-a", proxy);
  const lease = await crashed.acquireLease(attrs, env.signal);
  const old = await env.claim();
  const history = await env.claimHistory();
  proxy.cut();
  const { log, lines } = captureLog();
  // A wait limit (claim TTL + 2 s) well beyond the crashed claim's TTL: it is the expiry that
  // lets the newcomer in, not its own deadline.
  const newcomer = env.daemon("machine-b", undefined, {
    log,
    publicIPClaim: { ttlSeconds: 3 * TTL, machine: "machine-b" },
  });
  const again = await newcomer.acquireLease(attrs, env.signal);
  // It waited, and wrote its claim only after the crashed holder's claim had expired.
  assert.ok(logged(lines, WAITING), lines.join("\n"));
  assert.deepEqual(await history.read(), ["delete", "put machine-b"]);
  assert.equal((await leaseTtl(env.client, old!.lease)).ttl, -1);
  assert.equal(formatLeaseKey(again), formatLeaseKey(lease), "same public IP, same lease");
  assert.equal((await env.claim())?.record.machine, "machine-b");
});

ownerTest("a clean shutdown releases the claim: another machine starts at once", async (env) => {
  const first = env.daemon("machine-a");
  await first.acquireLease(attrs, env.signal);
  await first.close();
  assert.equal(await env.claim(), undefined);
  const history = await env.claimHistory();
  const { log, lines } = captureLog();
  await env.daemon("machine-b", undefined, { log }).acquireLease(attrs, env.signal);
  // Nothing to wait for: the first write after the release is the newcomer's claim.
  assert.ok(!logged(lines, WAITING), lines.join("\n"));
  assert.deepEqual(await history.read(), ["put machine-b"]);
});

ownerTest(
  "a claim that expired during an outage is re-created, and the lease kept",
  async (env) => {
    const proxy = env.proxy();
    const daemon = env.daemon("machine-a", proxy);
    const lease = await daemon.acquireLease(attrs, env.signal);
    let outcome: unknown = "running";
    daemon.maintainLease(lease, env.signal).then(() => outcome = "ended", (e) => outcome = e);
    proxy.cut();
    await waitFor("the claim to expire", async () => (await env.claim()) === undefined, 8000);
    proxy.restore();
    await waitFor("the claim back", async () => (await env.claim()) !== undefined, 8000);
    assert.equal((await env.claim())?.record.machine, "machine-a");
    assert.equal(outcome, "running");
    const stored = await readSubnets(env.client, env.prefix);
    assert.equal(stored.get(formatLeaseKey(lease))?.value, allocValue(IP));
  },
);

ownerTest(
  "a claim key that is not Tartan's (no lease, foreign value) refuses, naming no holder",
  async (env) => {
    const key = `${env.prefix}/tartan/owners/${IP}`;
    for (const value of ['{"machine":"m","pid":"not a number"}', "garbage", "null"]) {
      await env.client.put({ key, value });
      const error = await env.daemon("machine-b").acquireLease(attrs, env.signal).then(
        () => undefined,
        (e) => e,
      );
      assert.ok(error instanceof PublicIPInUseError, String(error));
      assert.equal(error.holder, undefined, value);
      assert.match(error.message, /holder unknown: the claim key is not Tartan's/);
    }
    assert.equal((await readSubnets(env.client, env.prefix)).size, 0, "no lease taken");
  },
);
