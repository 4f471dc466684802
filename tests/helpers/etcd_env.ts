/**
 * A test etcd with a temp directory and a factory of etcd subnet managers that are all closed,
 * with the etcd stopped and the directory removed, when the steps are done.
 *
 * @module
 */
import { type EtcdManagerOptions, EtcdSubnetManager } from "../../subnet/etcd.ts";
import { type EtcdFixture, startEtcd } from "./etcd.ts";
import { captureLog } from "./leases.ts";

/** What each step gets. */
export interface EtcdEnv {
  readonly etcd: EtcdFixture;
  readonly tmp: string;
  readonly managers: EtcdSubnetManager[];
  /** Aborted when the steps are done. */
  readonly signal: AbortSignal;
  /** A manager on `prefix` with its own subnet file, closed at the end. */
  manager(prefix: string, options?: Partial<EtcdManagerOptions>): EtcdSubnetManager;
}

/** Run each named step (as a test step of `t`) against one shared etcd. */
export async function withEtcdEnv(
  t: Deno.TestContext,
  steps: Record<string, (env: EtcdEnv) => Promise<void>>,
): Promise<void> {
  const etcd = await startEtcd();
  const tmp = await Deno.makeTempDir({ prefix: "tt-subnet-" });
  const abort = new AbortController();
  const managers: EtcdSubnetManager[] = [];
  const env: EtcdEnv = {
    etcd,
    tmp,
    managers,
    signal: abort.signal,
    manager(prefix, options = {}) {
      const manager = new EtcdSubnetManager({
        endpoints: [etcd.endpoint],
        prefix,
        subnetFile: `${tmp}/${crypto.randomUUID()}.env`,
        log: captureLog().log,
        ...options,
      });
      managers.push(manager);
      return manager;
    },
  };
  try {
    for (const [name, step] of Object.entries(steps)) await t.step(name, () => step(env));
  } finally {
    abort.abort();
    await Promise.all(managers.map((m) => m.close()));
    await etcd.stop();
    await Deno.remove(tmp, { recursive: true });
  }
}
