/**
 * One daemon per public IP (subnet/etcd_owner.ts) against a real etcd: managers play daemons on
 * two "machines" (the `machine` test knob) with a 3 s claim TTL; a TCP proxy that a test cuts
 * plays a SIGKILL (the daemon stops talking to etcd without revoking anything).
 */
import assert from "node:assert/strict";
import type { EtcdClient } from "../../etcd/client.ts";
import { text } from "../../etcd/codec.ts";
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
        const kv = await readKey(etcd.client(), `${prefix}/tartan/owners/${IP}`);
        return kv && { record: JSON.parse(text(kv.value)), lease: kv.lease };
      },
    };
    try {
      await fn(env);
    } finally {
      abort.abort();
      for (const p of proxies) p.restore();
      await Promise.all(managers.map((m) => m.close()));
      await Promise.all(proxies.map((p) => p.close()));
      await Deno.remove(tmp, { recursive: true });
    }
  });
}

/** Time `promise` takes, in ms. */
async function timed<T>(promise: Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const value = await promise;
  return [value, performance.now() - started];
}

ownerTest(
  "a second daemon with the same public IP is refused while the first lives",
  async (env) => {
    const first = env.daemon("machine-a");
    const lease = await first.acquireLease(attrs, env.signal);
    const keep = first.maintainLease(lease, env.signal);
    const before = await env.claim();
    assert.equal(before?.record.machine, "machine-a");
    const [error, ms] = await timed(
      env.daemon("machine-b").acquireLease(attrs, env.signal).then(() => undefined, (e) => e),
    );
    assert.ok(error instanceof PublicIPInUseError, String(error));
    assert.match(
      error.message,
      /public IP 198\.18\.0\.1 is already in use by another tartan daemon/,
    );
    assert.match(error.message, new RegExp(`pid ${Deno.pid}`));
    // Refused as soon as a keep-alive shows the holder lives (every TTL/3), well before expiry.
    assert.ok(ms < (TTL / 3 + 1.5) * 1000, `refused after ${ms} ms`);
    assert.deepEqual(await env.claim(), before, "the claim is untouched");
    const stored = await readSubnets(env.client, env.prefix);
    assert.deepEqual([...stored.keys()], [formatLeaseKey(lease)], "no second key");
    const settled = await Promise.race([keep.then(() => "ended", (e) => e), "running"]);
    assert.equal(settled, "running");
  },
);

ownerTest("a restart on the same machine takes over at once and reuses the lease", async (env) => {
  const proxy = env.proxy();
  const crashed = env.daemon("machine-a", proxy);
  const lease = await crashed.acquireLease(attrs, env.signal);
  let outcome: unknown = "running";
  const keep = crashed.maintainLease(lease, env.signal).then(
    () => outcome = "ended",
    (e) => outcome = e,
  );
  const old = await env.claim();
  proxy.cut(); // SIGKILL: the claim stays alive in etcd until its TTL
  const [again, ms] = await timed(env.daemon("machine-a").acquireLease(attrs, env.signal));
  assert.ok(ms < 1000, `took ${ms} ms`);
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
  proxy.cut();
  const [again, ms] = await timed(env.daemon("machine-b").acquireLease(attrs, env.signal));
  assert.ok(ms > 1000 && ms < (TTL + 3) * 1000, `started after ${ms} ms`);
  assert.equal(formatLeaseKey(again), formatLeaseKey(lease), "same public IP, same lease");
  assert.equal((await env.claim())?.record.machine, "machine-b");
});

ownerTest("a clean shutdown releases the claim: another machine starts at once", async (env) => {
  const first = env.daemon("machine-a");
  await first.acquireLease(attrs, env.signal);
  await first.close();
  assert.equal(await env.claim(), undefined);
  const [, ms] = await timed(env.daemon("machine-b").acquireLease(attrs, env.signal));
  assert.ok(ms < 1000, `took ${ms} ms`);
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
