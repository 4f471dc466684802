/**
 * etcd faults under a running vxlan cluster (issue 11; spec §10.3, quirks 8, 9): three
 * `tartan run` nodes with one CNI pod each.
 *
 * To reach renewal time in seconds, the daemons run with the test-only lease TTL hook
 * (`TARTAN_TEST_LEASE_TTL_SECONDS`, daemon.ts) at 65 s and `--subnet-lease-renew-margin=1`: a
 * renewal is due 5 s after every put, and an outage longer than the margin runs past the
 * expiry each daemon computed for its lease.
 *
 * etcd 3.4 refreshes every lease when it starts (a new leader extends them all by their TTL), so
 * keys survive a kill-and-restart outage however long it was: a lease that ran out while etcd
 * was down expires one TTL after the restart. An etcd started on an empty data dir has lost
 * everything, and the nodes must put their leases back.
 */
import assert from "node:assert/strict";
import { TEST_LEASE_TTL_ENV } from "../../daemon.ts";
import { defaultNetConf, LAB_ETCD_PREFIX, type LabCluster } from "../../lab/cluster.ts";
import { allConnected, connectivityMatrix, formatMatrix } from "../../lab/pods.ts";
import { leaseTtl, readKey, vxlanValue, waitFor } from "../helpers/leases.ts";
import { nodeStatus, probe, startPinger, withLab } from "./faults_kit.ts";
import {
  expectedVxlanEntries,
  freeSubnet,
  ownLeaseName,
  parseStoredLease,
  peerEntries,
  putRawLease,
  readLeases,
  rootSuite,
  SUBNETS_DIR,
  waitForExactState,
} from "./overlay_kernel.ts";

const LEASE_TTL_SECONDS = 65;
/** Longer than `--subnet-lease-renew-margin=1`. */
const OUTAGE_MS = 62_000;
/** A peer lease short enough to run out while etcd is down. */
const GHOST_TTL_SECONDS = 5;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Run `spawn` (which starts daemons) with the test-only TTL in the environment, which children
 * inherit. It is set only while spawning, so that daemons of other test modules (should they
 * ever run in parallel in this process) do not see it.
 */
async function withShortTtl<T>(spawn: () => Promise<T>): Promise<T> {
  Deno.env.set(TEST_LEASE_TTL_ENV, String(LEASE_TTL_SECONDS));
  try {
    return await spawn();
  } finally {
    Deno.env.delete(TEST_LEASE_TTL_ENV);
  }
}

/** Each node's lease name, subnet.env and renewal count. */
async function snapshot(lab: LabCluster) {
  return await Promise.all(lab.nodes.map(async (node) => ({
    lease: await ownLeaseName(node.subnetFile),
    subnetEnv: await Deno.readTextFile(node.subnetFile),
    renewals: (await nodeStatus(node)).counters.renewals,
  })));
}

/** Wait until the fixture's client talks to etcd again. */
async function etcdBack(lab: LabCluster): Promise<void> {
  const client = lab.etcd.client();
  await waitFor(
    "etcd to answer",
    () => client.status().then(() => true, () => false),
    20_000,
    200,
  );
}

async function assertAllConnected(lab: LabCluster): Promise<void> {
  const matrix = await connectivityMatrix(lab.pods);
  assert.ok(allConnected(matrix), `not every pod reaches every other:\n${formatMatrix(matrix)}`);
}

/**
 * etcd killed for longer than the renew margin while one daemon is SIGKILLed and restarted and a
 * peer's lease runs out: pods never stop reaching each other, renewals fail and then resume
 * within seconds, every node keeps its subnet, and the expired peer disappears.
 */
async function outageLongerThanMargin(lab: LabCluster): Promise<void> {
  const client = lab.etcd.client();
  const [n1, n2, n3] = lab.nodes;
  const ghostName = freeSubnet(await readLeases(client));
  const ghostValue = vxlanValue("198.18.0.70", "0e:00:00:00:00:70");
  const ghost = parseStoredLease(ghostName, ghostValue);
  await putRawLease(client, ghostName, ghostValue, GHOST_TTL_SECONDS);
  await waitForExactState(lab, expectedVxlanEntries, 5000);
  const before = await snapshot(lab);
  const pinger = startPinger(lab.pods);
  let report;
  const down = performance.now();
  try {
    await lab.etcd.kill();
    await sleep(5000);
    await n3.kill(); // a daemon crash in the middle of the outage
    await withShortTtl(() => n3.start());
    while (performance.now() - down < OUTAGE_MS) {
      for (const node of lab.nodes) {
        // (n3's admin API is back within a second or two of its restart.)
        await waitFor(
          `${node.ns} /healthz`,
          async () => await probe(node, "/healthz") === 200,
          15_000,
          200,
        );
      }
      // Nobody can know the ghost ran out: its entries stay, so do every other peer's.
      assert.ok((await peerEntries(n1.ns)).routes.some((r) => r.startsWith(ghost.subnet)));
      await sleep(Math.min(5000, OUTAGE_MS - (performance.now() - down)));
    }
    const during = await Promise.all([n1, n2].map(nodeStatus));
    for (const [i, status] of during.entries()) {
      assert.ok(status.counters.renewFailures > 0, `n${i + 1} failed no renewal`);
    }
    await lab.etcd.restart();
    const up = performance.now();
    console.log(`etcd down for ${Math.round((up - down) / 1000)} s`);
    await etcdBack(lab);
    // Renewals resume within seconds of etcd's return (flannel: up to a minute later).
    await waitFor(
      "renewals to resume",
      async () => {
        const now = await Promise.all([n1, n2].map(nodeStatus));
        return now.every((s, i) => s.counters.renewals > during[i].counters.renewals);
      },
      30_000,
      250,
    );
    const resumed = performance.now() - up;
    console.log(`renewals resumed ${Math.round(resumed)} ms after etcd restarted`);
    assert.ok(resumed < 20_000, `renewals resumed after ${resumed} ms`);
    await lab.waitConverged(30_000);
    // The ghost's lease, refreshed by etcd's restart, runs out one TTL later; then it goes.
    await waitFor(
      "the expired peer to leave etcd",
      async () => !(await readLeases(client)).some((l) => l.name === ghostName),
      (GHOST_TTL_SECONDS + 10) * 1000,
    );
    await waitForExactState(lab, expectedVxlanEntries, 5000);
  } finally {
    report = await pinger.stop();
  }
  console.log(`pings during the outage: ${report.sent} sent, ${report.lost} lost`);
  assert.equal(report.lost, 0, `lost pings:\n${report.losses.join("\n")}`);
  const after = await snapshot(lab);
  for (const [i, node] of lab.nodes.entries()) {
    assert.equal(after[i].lease, before[i].lease, `${node.ns}: same subnet`);
    assert.equal(after[i].subnetEnv, before[i].subnetEnv, `${node.ns}: same subnet.env`);
    const stored = await readKey(client, SUBNETS_DIR + after[i].lease);
    const granted = stored && (await leaseTtl(client, stored.lease)).granted;
    assert.equal(granted, LEASE_TTL_SECONDS, `${node.ns}: key on a lease the daemon granted`);
    // Ready again: the daemon's copy of its lease follows the renewals.
    assert.equal(await probe(node, "/readyz"), 200, `${node.ns}: ready`);
  }
}

/**
 * etcd restarted on an empty data dir: running nodes put their leases back from memory (without
 * even a config), a node started afterwards takes its subnet back from subnet.env, peers are
 * programmed again and every pod reaches every other.
 */
async function restoredEmpty(lab: LabCluster): Promise<void> {
  const [n1, n2, n3] = lab.nodes;
  const before = await snapshot(lab);
  await n2.stop();
  await lab.etcd.kill();
  await Deno.remove(lab.etcd.dataDir, { recursive: true });
  await lab.etcd.restart();
  await etcdBack(lab);
  const client = lab.etcd.client();
  assert.equal((await readLeases(client)).length, 0, "an empty store");
  const back = await waitFor(
    "running nodes to put their leases back",
    async () => {
      const names = (await readLeases(client)).map((l) => l.name);
      return [before[0].lease, before[2].lease].every((n) => names.includes(n));
    },
    20_000,
    200,
  );
  console.log(`leases re-created ${Math.round(back)} ms after the empty etcd came up`);
  await client.put({
    key: `${LAB_ETCD_PREFIX}/config`,
    value: JSON.stringify(defaultNetConf("vxlan")),
  });
  await withShortTtl(() => n2.start());
  await lab.waitConverged(30_000);
  await waitForExactState(lab, expectedVxlanEntries, 5000);
  const after = await snapshot(lab);
  for (const [i, node] of lab.nodes.entries()) {
    assert.equal(after[i].lease, before[i].lease, `${node.ns}: same subnet`);
    assert.equal(after[i].subnetEnv, before[i].subnetEnv, `${node.ns}: same subnet.env`);
  }
  for (const node of [n1, n3]) {
    assert.ok((await nodeStatus(node)).counters.reacquisitions >= 1, `${node.ns} re-acquired`);
  }
  await assertAllConnected(lab);
}

rootSuite("faults: etcd outages under a 3-node vxlan cluster", async (t) => {
  const netConf = defaultNetConf("vxlan");
  const flags = ["--subnet-lease-renew-margin=1"];
  await withLab({ nodes: 0, netConf, flags }, async (lab) => {
    await withShortTtl(async () => {
      for (let i = 0; i < 3; i++) await lab.addNode();
    });
    await lab.waitConverged();
    for (let i = 0; i < 3; i++) await lab.addPods(i, 1);
    await assertAllConnected(lab);
    await t.step(
      "etcd down longer than the renew margin, a daemon crash and a peer expiring meanwhile",
      () => outageLongerThanMargin(lab),
    );
    await t.step("etcd restored from an empty data dir", () => restoredEmpty(lab));
  });
});
