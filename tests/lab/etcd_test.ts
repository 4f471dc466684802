import assert from "node:assert/strict";
import { dirname } from "node:path";
import { startEtcd } from "../../lab/etcd.ts";
import { waitFor } from "../helpers/leases.ts";

Deno.test("lab etcd: a restart whose port is taken waits for it and comes back", async () => {
  await using etcd = await startEtcd();
  const before = await etcd.revision();
  const port = Number(new URL(etcd.endpoint).port);
  await etcd.kill();
  const squatter = Deno.listen({ hostname: "127.0.0.1", port });
  const restarted = etcd.restart();
  restarted.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  try {
    const log = `${dirname(etcd.dataDir)}/etcd.log`;
    await waitFor(
      "etcd to find its client port taken",
      async () => /address already in use/.test(await Deno.readTextFile(log).catch(() => "")),
      30_000,
    );
  } finally {
    squatter.close();
  }
  await restarted;
  assert.equal(await etcd.revision(), before, "same member, same data, same port");
});
