/**
 * One measured process of bench/etcd_client.ts: load an etcd client (`fetch`: ours; `etcd3`: the
 * npm package it replaced; `none`: nothing), read `<prefix>/subnets/` and watch it, as a node in
 * etcd mode does, then idle and print the resident set size in kB as JSON.
 *
 * Run by the bench: `deno run -A --no-lock bench/etcd_client_child.ts MODE ENDPOINT PREFIX IDLE_MS`.
 *
 * @module
 */
import { sleep } from "../sleep.ts";

const [mode, endpoint, prefix, idleMs] = Deno.args;
const dir = `${prefix}/subnets/`;
const done = new AbortController();

function rssKb(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)![1]);
}

let keys = 0;
if (mode === "fetch") {
  const { EtcdClient } = await import("../etcd/client.ts");
  const { prefixEnd } = await import("../etcd/codec.ts");
  const client = new EtcdClient({ endpoints: [endpoint] });
  const snapshot = await client.rangeAll(dir, true);
  keys = snapshot.kvs.length;
  (async () => {
    const req = { key: dir, rangeEnd: prefixEnd(dir), startRevision: snapshot.revision + 1 };
    for await (const _ of client.watch(req, done.signal));
  })();
} else if (mode === "etcd3") {
  // Not in deno.json any more: loaded by a computed specifier so that nothing else pulls it in.
  const { Etcd3 } = await import(["npm:etcd3", "1.1.2"].join("@"));
  const client = new Etcd3({ hosts: endpoint });
  keys = (await client.getAll().prefix(dir).keys()).length;
  await client.watch().prefix(dir).create();
} else if (mode !== "none") {
  throw new Error(`unknown mode ${mode}`);
}
await sleep(Number(idleMs), done.signal);
console.log(JSON.stringify({ mode, keys, rssKb: rssKb() }));
Deno.exit(0);
