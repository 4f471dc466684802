/**
 * Shared by the fault tests: a lab with this run's namespace prefix, a background pinger that
 * counts lost pings while faults happen, the nodes' admin API, and synthetic flannel leases
 * seeded in bulk.
 *
 * @module
 */
import assert from "node:assert/strict";
import type { EtcdClient } from "../../etcd/client.ts";
import {
  type PeerProbeBody,
  type PeersBody,
  PeersSchema,
  type StatusBody,
  StatusSchema,
} from "../../api/schemas.ts";
import { errorText } from "../../log.ts";
import { type LabCluster, type LabOptions, startLab } from "../../lab/cluster.ts";
import type { NodeDaemon } from "../../lab/node.ts";
import { type LabPod, ping } from "../../lab/pods.ts";
import { nsExec, removeLeftovers, RUN_PREFIX } from "../helpers/netns.ts";
import { SUBNETS_DIR } from "./overlay_kernel.ts";
import { vxlanValue, waitFor } from "../helpers/leases.ts";

/** Build a lab under this run's prefix, run `fn`, and always tear the lab down. */
export async function withLab(
  options: Omit<LabOptions, "prefix">,
  fn: (lab: LabCluster) => Promise<void>,
): Promise<void> {
  await removeLeftovers();
  const lab = await startLab({ prefix: RUN_PREFIX, ...options });
  try {
    await fn(lab);
  } finally {
    await lab.stop();
  }
}

/** A node's `/v1/status`, validated. */
export async function nodeStatus(node: NodeDaemon): Promise<StatusBody> {
  const res = await fetch(`${node.adminUrl}/v1/status`, { signal: AbortSignal.timeout(2000) });
  assert.equal(res.status, 200, `${node.ns}: /v1/status answered ${res.status}`);
  return StatusSchema.parse(await res.json());
}

/**
 * Make the host firewall of namespace `ns` drop VXLAN (UDP 8472) from `peerIP` (IPv4 or IPv6), as
 * a security group that forgot the overlay port does; returns the undo.
 */
export async function dropVxlanFrom(ns: string, peerIP: string): Promise<() => Promise<void>> {
  const table = ["inet", "tartan_test_vxlan_drop"];
  const match = peerIP.includes(":") ? "ip6" : "ip";
  await nsExec(ns, ["nft", "-f", "-"], {
    stdin: `table ${table.join(" ")} {\n chain input {\n` +
      "  type filter hook input priority 0; policy accept;\n" +
      `  ${match} saddr ${peerIP} udp dport 8472 drop\n }\n}\n`,
  });
  return async () => void await nsExec(ns, ["nft", "delete", "table", ...table]);
}

/** A node's `/v1/peers`, validated. */
export async function nodePeers(node: NodeDaemon): Promise<PeersBody> {
  const res = await fetch(`${node.adminUrl}/v1/peers`, { signal: AbortSignal.timeout(2000) });
  assert.equal(res.status, 200, `${node.ns}: /v1/peers answered ${res.status}`);
  return PeersSchema.parse(await res.json());
}

/** Probes run every second in these tests; a verdict needs two echoes of a path. */
const VERDICT_WITHIN_MS = 30_000;

/**
 * Wait until `node` has the verdict `verdict` for the peer at `publicIP` (the probe of that
 * address's family); returns that peer's entry.
 */
export async function verdictOf(
  node: NodeDaemon,
  publicIP: string,
  verdict: PeerProbeBody["verdict"],
): Promise<PeerProbeBody> {
  let seen: PeersBody | undefined;
  const peer = () => seen?.peers.find((p) => p.publicIP === publicIP);
  try {
    await waitFor(`${node.ns}'s verdict ${verdict} for ${publicIP}`, async () => {
      seen = await nodePeers(node);
      return peer()?.verdict === verdict;
    }, VERDICT_WITHIN_MS);
  } catch (err) {
    throw new Error(`${errorText(err)}; last seen: ${JSON.stringify(seen)}`);
  }
  return peer()!;
}

/** The HTTP status of `GET <node admin>/<path>` (0 when nothing answers). */
export async function probe(node: NodeDaemon, path: string): Promise<number> {
  try {
    const res = await fetch(`${node.adminUrl}${path}`, { signal: AbortSignal.timeout(2000) });
    await res.body?.cancel();
    return res.status;
  } catch {
    return 0;
  }
}

/** What a {@link Pinger} saw. */
export interface PingReport {
  readonly rounds: number;
  readonly sent: number;
  readonly lost: number;
  /** `from → to` of every lost ping, with its time since the pinger started. */
  readonly losses: readonly string[];
}

/** Pings between pods in the background while a test does harm. */
export interface Pinger {
  stop(): Promise<PingReport>;
}

/**
 * Every `intervalMs`, each pod pings each other pod once (in parallel, one second timeout), until
 * `stop()`; bounded by `maxRounds`.
 */
export function startPinger(pods: readonly LabPod[], intervalMs = 1000, maxRounds = 600): Pinger {
  const started = performance.now();
  const losses: string[] = [];
  let rounds = 0;
  let sent = 0;
  let stopped = false;
  const pairs = pods.flatMap((from) => pods.filter((to) => to !== from).map((to) => [from, to]));
  const loop = (async () => {
    while (!stopped && rounds < maxRounds) {
      const due = performance.now() + intervalMs;
      const results = await Promise.all(pairs.map(([from, to]) => ping(from.ns, to.ip)));
      rounds++;
      sent += pairs.length;
      results.forEach((ok, i) => {
        if (ok) return;
        const [from, to] = pairs[i];
        const at = ((performance.now() - started) / 1000).toFixed(1);
        losses.push(`${from.ip} → ${to.ip} at ${at}s`);
      });
      await new Promise((r) => setTimeout(r, Math.max(0, due - performance.now())));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return { rounds, sent, lost: losses.length, losses };
    },
  };
}

/** A synthetic vxlan peer: lease key name, public IP and VTEP MAC, derived from an index. */
export interface SyntheticPeer {
  readonly name: string;
  readonly publicIP: string;
  readonly mac: string;
}

const hex = (n: number) => n.toString(16).padStart(2, "0");

/**
 * Peer `i` (1..4095) of 10.244.0.0/16 cut into /28s: subnet `10.244.<i/16>.<(i%16)*16>/28`,
 * public IP from 198.19.0.0/16, MAC `0e:00:00:<generation>:<i>`.
 */
export function syntheticPeer(i: number, generation = 0): SyntheticPeer {
  if (!Number.isInteger(i) || i < 1 || i > 4095) throw new RangeError(`peer ${i} outside 1..4095`);
  return {
    name: `10.244.${i >> 4}.${(i & 15) * 16}-28`,
    publicIP: `198.19.${i >> 8}.${i & 255}`,
    mac: `0e:00:00:${hex(generation)}:${hex(i >> 8)}:${hex(i & 255)}`,
  };
}

/** Write peers as flannel's vxlan backend would, all on one etcd lease, 500 at a time. */
export async function seedPeers(
  client: EtcdClient,
  peers: readonly SyntheticPeer[],
): Promise<void> {
  const { id } = await client.leaseGrant(3600);
  for (let start = 0; start < peers.length; start += 500) {
    await Promise.all(
      peers.slice(start, start + 500).map((p) =>
        client.put({
          key: SUBNETS_DIR + p.name,
          value: vxlanValue(p.publicIP, p.mac),
          lease: id,
        })
      ),
    );
  }
}

/** Delete lease keys by name, 500 at a time. */
export async function deletePeers(client: EtcdClient, names: readonly string[]): Promise<void> {
  for (let start = 0; start < names.length; start += 500) {
    await Promise.all(
      names.slice(start, start + 500).map((name) =>
        client.deleteRange({ key: SUBNETS_DIR + name })
      ),
    );
  }
}
