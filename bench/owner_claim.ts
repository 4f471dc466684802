/**
 * How long the public-IP claim (subnet/etcd_owner.ts) makes a daemon's start take, against a
 * throw-away etcd, at the tests' claim TTL (3 s, 5 rounds) and the daemon's (30 s, 3 rounds):
 *
 * - `refused`: a second machine while the holder lives; expected within about TTL/3, the
 *   holder's keep-alive period, since a keep-alive moving the claim's expiry is the proof.
 * - `restart`: the same machine over a crashed run's live claim; expected no wait.
 * - `after crash`: another machine over a crashed run's claim, timed from the crash (the last
 *   keep-alive); expected about the TTL, as the claim must expire first.
 * - `after release`: another machine after a clean shutdown; expected no wait.
 *
 * The baseline, measured in the same run, is a first start with no claim at all. The tests
 * (tests/subnet/etcd_owner_test.ts) check only the order of these events, never their timing.
 *
 * Run: `deno task bench owner_claim`; prints a table per TTL and writes
 * bench/results/owner_claim.json.
 *
 * @module
 */
import type { EtcdClient } from "../etcd/client.ts";
import { parseAddr } from "../ip/mod.ts";
import { startEtcd } from "../lab/etcd.ts";
import { setLogLevel } from "../log.ts";
import { EtcdSubnetManager } from "../subnet/etcd.ts";
import { OWNER_TTL_SECONDS, type OwnerRecord, PublicIPInUseError } from "../subnet/etcd_owner.ts";
import { saveResult } from "./results.ts";
import { median, round } from "./stats.ts";

const CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"alloc"}}';

/** One case's start times over the rounds. */
export interface ClaimCase {
  readonly case: string;
  readonly expected: string;
  readonly medianMs: number;
  readonly minMs: number;
  readonly maxMs: number;
  /** Median over the baseline's median. */
  readonly ratioToBaseline: number;
  /** Median over the claim TTL. */
  readonly ratioToTtl: number;
}

/** Everything one round needs: a fresh prefix and public IP on the shared etcd. */
interface Round {
  readonly endpoint: string;
  readonly client: EtcdClient;
  readonly prefix: string;
  readonly ip: string;
  readonly ttl: number;
}

/** A daemon's subnet manager on `machine`, with the network config already read. */
async function daemon(round: Round, machine: string): Promise<EtcdSubnetManager> {
  const manager = new EtcdSubnetManager({
    endpoints: [round.endpoint],
    prefix: round.prefix,
    subnetFile: "/nonexistent/subnet.env",
    publicIPClaim: { ttlSeconds: round.ttl, machine },
  });
  await manager.getNetworkConfig(AbortSignal.timeout(10_000)); // connect outside the timing
  return manager;
}

/** Time `manager`'s lease acquisition from `since` (default: now), in ms; its outcome too. */
async function timeStart(
  manager: EtcdSubnetManager,
  round: Round,
  since: number = performance.now(),
): Promise<{ ms: number; outcome: "started" | "refused" }> {
  const outcome = await manager.acquireLease(
    { publicIP: parseAddr(round.ip) },
    AbortSignal.timeout((round.ttl + 10) * 1000),
  ).then(() => "started" as const, (error) => {
    if (error instanceof PublicIPInUseError) return "refused" as const;
    throw error;
  });
  return { ms: performance.now() - since, outcome };
}

/**
 * What a daemon killed on `machine` leaves behind: its claim on a lease nobody keeps alive any
 * more. Returns the moment of the crash (the claim's last refresh).
 */
async function crashedClaim(round: Round, machine: string): Promise<number> {
  const record: OwnerRecord = {
    machine,
    instance: crypto.randomUUID(),
    hostname: "crashed",
    pid: 1,
    since: new Date().toISOString(),
  };
  const crashedAt = performance.now(); // the lease's TTL runs from its grant
  const { id } = await round.client.leaseGrant(round.ttl);
  await round.client.put({
    key: `${round.prefix}/tartan/owners/${round.ip}`,
    value: JSON.stringify(record),
    lease: id,
  });
  return crashedAt;
}

/** Who collects a round's managers, to close them after it. */
type Close = (manager: EtcdSubnetManager) => void;

/** A daemon on `machine` that has started: it holds the claim and its lease. */
async function started(round: Round, close: Close, machine: string): Promise<EtcdSubnetManager> {
  const manager = await daemon(round, machine);
  close(manager);
  await manager.acquireLease({ publicIP: parseAddr(round.ip) }, AbortSignal.timeout(10_000));
  return manager;
}

/**
 * Time a newcomer on `machine` from when it starts acquiring, or from the moment `before`
 * returns (run once the newcomer is connected); it must end `want`.
 */
async function timeNewcomer(
  round: Round,
  close: Close,
  machine: string,
  want: "started" | "refused",
  before: () => Promise<number | undefined> = () => Promise.resolve(undefined),
): Promise<number> {
  const manager = await daemon(round, machine);
  close(manager);
  const { ms, outcome } = await timeStart(manager, round, await before());
  if (outcome !== want) throw new Error(`the newcomer ${outcome}, expected it to be ${want}`);
  return ms;
}

/** One case: its expectation, and a round that returns the time it reports. */
interface Scenario {
  readonly expected: string;
  run(round: Round, close: Close): Promise<number>;
}

const SCENARIOS: Record<string, Scenario> = {
  "first start (baseline)": {
    expected: "no claim to wait for",
    run: (round, close) => timeNewcomer(round, close, "machine-a", "started"),
  },
  refused: {
    expected: "about TTL/3 (the holder's keep-alive period)",
    async run(round, close) {
      await started(round, close, "machine-a");
      return await timeNewcomer(round, close, "machine-b", "refused");
    },
  },
  restart: {
    expected: "no wait",
    async run(round, close) {
      await crashedClaim(round, "machine-a");
      return await timeNewcomer(round, close, "machine-a", "started");
    },
  },
  "after crash": {
    expected: "about the TTL, from the crash",
    run: (round, close) =>
      timeNewcomer(round, close, "machine-b", "started", () => crashedClaim(round, "machine-a")),
  },
  "after release": {
    expected: "no wait",
    async run(round, close) {
      await (await started(round, close, "machine-a")).close(); // revokes the claim
      return await timeNewcomer(round, close, "machine-b", "started");
    },
  },
};

/** Start an etcd, run every case `rounds` times, stop it. */
export async function runOwnerClaimBench(ttl = 3, rounds = 5): Promise<ClaimCase[]> {
  await using etcd = await startEtcd();
  const client = etcd.client();
  const samples = new Map<string, number[]>();
  let n = 0;
  for (let r = 0; r < rounds; r++) {
    for (const [name, scenario] of Object.entries(SCENARIOS)) {
      n++;
      const round: Round = {
        endpoint: etcd.endpoint,
        client,
        prefix: `/bench-owner-${n}/network`,
        ip: `198.18.${n >> 8}.${n & 0xff}`,
        ttl,
      };
      await client.put({ key: `${round.prefix}/config`, value: CONFIG });
      const managers: EtcdSubnetManager[] = [];
      try {
        const ms = await scenario.run(round, (m) => managers.push(m));
        samples.set(name, [...samples.get(name) ?? [], ms]);
      } finally {
        await Promise.all(managers.map((m) => m.close()));
      }
    }
  }
  const baseline = median(samples.get("first start (baseline)")!);
  return Object.entries(SCENARIOS).map(([name, { expected }]) => {
    const ms = samples.get(name)!;
    const mid = median(ms);
    return {
      case: name,
      expected,
      medianMs: round(mid, 1),
      minMs: round(Math.min(...ms), 1),
      maxMs: round(Math.max(...ms), 1),
      ratioToBaseline: round(mid / baseline, 1),
      ratioToTtl: round(mid / (ttl * 1000), 3),
    };
  });
}

/** Claim TTLs measured, seconds, with their rounds: the tests' and the daemon's default. */
const RUNS = [{ ttlSeconds: 3, rounds: 5 }, { ttlSeconds: OWNER_TTL_SECONDS, rounds: 3 }];

if (import.meta.main) {
  setLogLevel("error");
  const runs = [];
  for (const { ttlSeconds, rounds } of RUNS) {
    const cases = await runOwnerClaimBench(ttlSeconds, rounds);
    console.log(`public-IP claim: daemon start times, claim TTL ${ttlSeconds} s, ${rounds} rounds`);
    console.table(cases.map((c) => ({
      case: c.case,
      "p50 (ms)": c.medianMs,
      "min (ms)": c.minMs,
      "max (ms)": c.maxMs,
      "× baseline": c.ratioToBaseline,
      "× TTL": c.ratioToTtl,
      expected: c.expected,
    })));
    runs.push({ ttlSeconds, rounds, cases });
  }
  const out = await saveResult("owner_claim", {
    date: new Date().toISOString(),
    command: "deno task bench owner_claim",
    runs,
  });
  console.log(`wrote ${out}`);
}
