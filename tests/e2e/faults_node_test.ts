/**
 * Node-side faults (issue 11): a second daemon with a node's public IP, a daemon SIGKILLed while
 * it programs 2 000 peers, and a flood of malformed lease writes. Expectations come from etcd
 * and from the kernel's own listings (`ip -j`, `bridge -j`), never from the daemon's reports.
 */
import assert from "node:assert/strict";
import { defaultNetConf, type LabCluster } from "../../lab/cluster.ts";
import { forwardTcp } from "../../lab/forward.ts";
import { NODE_ETCD_PORT } from "../../lab/node.ts";
import { allConnected, connectivityMatrix, formatMatrix } from "../../lab/pods.ts";
import { tartanArgv } from "../../lab/self.ts";
import { createNode, labNames, nodeUnderlayIP } from "../../lab/topology.ts";
import { commandRunner } from "../../exec.ts";
import { getLink } from "../../ffi/netlink/link.ts";
import { listFdb, listNeighs } from "../../ffi/netlink/neigh.ts";
import { listRoutes } from "../../ffi/netlink/route.ts";
import { closeNetlink, openNetlink } from "../../ffi/netlink/socket.ts";
import { readKey, vxlanValue, waitFor } from "../helpers/leases.ts";
import { deletePeers, nodeStatus, probe, seedPeers, syntheticPeer, withLab } from "./faults_kit.ts";
import {
  expectedVxlanEntries,
  freeSubnet,
  ownLeaseName,
  peerEntries,
  putRawLease,
  readLeases,
  rootSuite,
  SUBNETS_DIR,
  waitForExactState,
} from "./overlay_kernel.ts";

async function assertAllConnected(lab: LabCluster): Promise<void> {
  const matrix = await connectivityMatrix(lab.pods);
  assert.ok(allConnected(matrix), `not every pod reaches every other:\n${formatMatrix(matrix)}`);
}

/**
 * Run `tartan run` in a fresh lab namespace (node `index`) with extra flags until it exits on its
 * own; returns its exit status and stderr. Killed after `timeoutMs`.
 */
async function runUntilExit(lab: LabCluster, index: number, flags: string[], timeoutMs: number) {
  const ns = labNames(lab.prefix).node(index);
  await createNode(commandRunner(), labNames(lab.prefix).underlay, ns, index);
  const etcd = forwardTcp({ netns: ns, port: NODE_ETCD_PORT }, {
    port: Number(new URL(lab.etcd.endpoint).port),
  });
  const dir = await Deno.makeTempDir({ dir: lab.workDir, prefix: "impostor-" });
  try {
    const child = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        ns,
        ...tartanArgv([
          "run",
          `--etcd-endpoints=http://127.0.0.1:${NODE_ETCD_PORT}`,
          `--subnet-file=${dir}/subnet.env`,
          "--iface=ul0",
          ...flags,
        ]),
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const { code, stderr } = await child.output();
    clearTimeout(timer);
    const wroteSubnetEnv = await Deno.stat(`${dir}/subnet.env`).then(() => true, () => false);
    return { code, stderr: new TextDecoder().decode(stderr), wroteSubnetEnv };
  } finally {
    etcd.close();
  }
}

/** The second daemon with n1's public IP refuses; n1 is untouched and still restarts at once. */
async function samePublicIP(lab: LabCluster): Promise<void> {
  const client = lab.etcd.client();
  const [n1] = lab.nodes;
  const name = await ownLeaseName(n1.subnetFile);
  const before = await readKey(client, SUBNETS_DIR + name);
  const started = performance.now();
  const impostor = await runUntilExit(lab, 9, [`--public-ip=${nodeUnderlayIP(1)}`], 60_000);
  const ms = Math.round(performance.now() - started);
  console.log(`second daemon with ${nodeUnderlayIP(1)} refused after ${ms} ms`);
  assert.equal(impostor.code, 1, impostor.stderr);
  assert.match(
    impostor.stderr,
    /public IP 198\.18\.0\.11 is already in use by another tartan daemon \(pid \d+ on host/,
  );
  assert.equal(impostor.wroteSubnetEnv, false, "no subnet.env for the impostor");
  const after = await readKey(client, SUBNETS_DIR + name);
  assert.equal(after?.modRevision, before?.modRevision, "n1's lease untouched");
  assert.equal((await readLeases(client)).length, 2, "no lease for the impostor");
  await lab.waitConverged(5000);

  // n1 after SIGKILL: its claim is still alive in etcd, but it is n1's own (same machine).
  await n1.kill();
  const restart = performance.now();
  await n1.start();
  await lab.waitConverged(20_000);
  const back = Math.round(performance.now() - restart);
  console.log(`n1 back ${back} ms after SIGKILL and restart`);
  assert.ok(back < 15_000, `restart took ${back} ms: did it wait for the claim's TTL?`);
  assert.equal(await ownLeaseName(n1.subnetFile), name, "same lease (conformance 10)");
  await assertAllConnected(lab);
}

const PEERS = 2000;

interface KernelCounts {
  neighs: number;
  fdb: number;
  routes: number;
}

/** Count the entries on n1's flannel.1 through netlink (cheap enough to poll every few ms). */
function vxlanCounts(h: ReturnType<typeof openNetlink>): KernelCounts | undefined {
  const dev = getLink(h, "flannel.1");
  if (!dev) return undefined;
  return {
    neighs: listNeighs(h, { index: dev.index, family: 4 }).length,
    fdb: listFdb(h, { index: dev.index }).length,
    routes: listRoutes(h, { family: 4, oif: dev.index }).filter((r) => r.gateway).length,
  };
}

/**
 * SIGKILL as soon as the first of 2 000 peers reaches the kernel; change the lease set while the
 * daemon is down (300 peers gone, 200 new MACs, 100 new peers); restart: the kernel ends up
 * holding exactly one route, neighbour and FDB entry per current lease, nothing else.
 */
async function killDuringProgramming(lab: LabCluster): Promise<void> {
  const client = lab.etcd.client();
  await seedPeers(client, Array.from({ length: PEERS }, (_, i) => syntheticPeer(i + 1)));
  const node = await lab.addNode();
  const h = openNetlink({ netns: node.ns });
  let atKill: KernelCounts | undefined;
  try {
    await waitFor(
      "the first peer in the kernel",
      () => {
        const counts = vxlanCounts(h);
        return counts !== undefined && counts.neighs + counts.fdb + counts.routes > 0;
      },
      30_000,
      2,
    );
    await node.kill();
    atKill = vxlanCounts(h)!;
  } finally {
    closeNetlink(h);
  }
  console.log(`SIGKILL with ${JSON.stringify(atKill)} of ${PEERS} peers programmed`);
  // Programming 2 000 peers takes a few hundred ms, so on a loaded machine the kill can land
  // after it finished; the restart must converge exactly either way, so that is what we assert.
  const done = Math.min(atKill.neighs, atKill.fdb, atKill.routes);
  if (done === PEERS) console.log("the kill landed after programming had finished");

  const gone = Array.from({ length: 300 }, (_, i) => syntheticPeer(i + 1).name);
  await deletePeers(client, gone);
  await seedPeers(client, Array.from({ length: 200 }, (_, i) => syntheticPeer(i + 301, 1)));
  await seedPeers(client, Array.from({ length: 100 }, (_, i) => syntheticPeer(PEERS + i + 1)));
  await node.start();
  const ms = await waitForExactState(lab, expectedVxlanEntries, 30_000);
  console.log(`restart → exact kernel state for ${PEERS - 200} peers in ${Math.round(ms)} ms`);
  const entries = await peerEntries(node.ns);
  for (const kind of ["routes", "neighs", "fdb"] as const) {
    assert.equal(entries[kind].length, PEERS - 200, `${kind}: one per lease`);
    assert.equal(new Set(entries[kind]).size, entries[kind].length, `${kind}: no duplicates`);
  }
  const macs = new Set(entries.fdb.map((f) => f.split(" ")[0]));
  assert.ok(!macs.has(syntheticPeer(301).mac), "the FDB entry of a replaced MAC is gone");
  assert.ok(macs.has(syntheticPeer(301, 1).mac), "the new MAC is there");
}

/** One malformed write: a key name under `<prefix>/subnets/` and raw value bytes. */
function malformedWrite(i: number): [string, Uint8Array] {
  const text = (s: string) => new TextEncoder().encode(s);
  const valid = vxlanValue("198.18.0.99", "0e:00:00:00:00:99");
  const n = i >> 3; // 0..124: each (kind, n) is written once
  switch (i % 8) {
    case 0:
      return [`garbage-${i}`, text(valid)];
    case 1:
      return [`10.244.${n}.0-33`, text(valid)]; // prefix length out of range
    case 2:
      return [`10.244.7.0-24/${i}`, text(valid)]; // a path below a lease key
    case 3:
      return [`10.244.300.${n}-24`, text(valid)]; // not an address
    case 4:
      return [`10.99.${n}.0-24`, text("{garbage")];
    case 5:
      return [`10.98.${n}.0-24`, text("null")];
    case 6:
      return [`10.97.${n}.0-24`, text('{"PublicIP":"not-an-ip","BackendType":"vxlan"}')];
    default:
      return [`10.96.${n}.0-24`, new Uint8Array([0xff, 0xfe, 0x00, 0x7b])]; // not UTF-8
  }
}

/**
 * 1 000 malformed lease writes: both daemons stay live and ready, every valid entry stays exactly
 * as it was, the malformed counter shows them, and the watch still delivers later events.
 */
async function malformedFlood(lab: LabCluster): Promise<void> {
  const client = lab.etcd.client();
  await waitForExactState(lab, expectedVxlanEntries, 5000);
  const baseline = await Promise.all(lab.nodes.map((n) => peerEntries(n.ns)));
  const counted = async () =>
    await Promise.all(lab.nodes.map(async (n) => (await nodeStatus(n)).counters.malformedSkipped));
  const before = await counted();
  const writes = Array.from({ length: 1000 }, (_, i) => malformedWrite(i));
  const started = performance.now();
  for (let start = 0; start < writes.length; start += 100) {
    await Promise.all(
      writes.slice(start, start + 100).map(([name, value]) =>
        client.put({ key: SUBNETS_DIR + name, value })
      ),
    );
    for (const node of lab.nodes) {
      assert.equal(await probe(node, "/healthz"), 200, `${node.ns} alive during the flood`);
    }
  }
  const ms = await waitFor(
    "every malformed write counted",
    async () => {
      const now = await counted();
      return now.every((c, i) => c >= before[i] + writes.length);
    },
    15_000,
    100,
  );
  console.log(`1000 malformed writes counted by every node ${Math.round(ms)} ms after the last`);
  console.log(`(writes took ${Math.round(performance.now() - started - ms)} ms)`);
  for (const [i, node] of lab.nodes.entries()) {
    assert.equal(await probe(node, "/healthz"), 200);
    assert.equal(await probe(node, "/readyz"), 200, `${node.ns} ready`);
    assert.deepEqual(
      await peerEntries(node.ns),
      baseline[i],
      `${node.ns}: valid entries untouched`,
    );
    const metrics = await (await fetch(`${node.adminUrl}/metrics`)).text();
    const sample = metrics.match(/^tartan_malformed_leases_skipped_total (\d+)/m);
    assert.ok(sample && Number(sample[1]) >= writes.length, "the metric shows the flood");
  }
  await assertAllConnected(lab);

  // The watch is still alive: the flood cleaned up, a new peer is programmed everywhere.
  await deletePeers(client, writes.map(([name]) => name));
  const name = freeSubnet(await readLeases(client));
  await putRawLease(client, name, vxlanValue("198.18.0.98", "0e:00:00:00:00:98"));
  await waitForExactState(lab, expectedVxlanEntries, 5000);
}

rootSuite("faults: a second daemon with the same public IP", async () => {
  await withLab({ nodes: 2, netConf: defaultNetConf("vxlan") }, async (lab) => {
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);
    await samePublicIP(lab);
  });
});

rootSuite("faults: SIGKILL while programming 2 000 peers, then restart", async () => {
  const netConf = { Network: "10.244.0.0/16", SubnetLen: 28, Backend: { Type: "vxlan" } };
  await withLab({ nodes: 0, netConf }, killDuringProgramming);
});

rootSuite("faults: a flood of 1 000 malformed lease writes", async () => {
  await withLab({ nodes: 2, netConf: defaultNetConf("vxlan") }, async (lab) => {
    await lab.waitConverged();
    for (let i = 0; i < 2; i++) await lab.addPods(i, 1);
    await malformedFlood(lab);
  });
});
