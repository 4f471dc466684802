/**
 * The extension network with a recording command: SubnetAddCommand / SubnetRemoveCommand run per
 * remote extension lease with SUBNET, PUBLIC_IP and the BackendData on stdin; other backends'
 * leases and our own are left alone; a failing command is logged with its output, reported,
 * retried every resync, and never stops the loop.
 */
import assert from "node:assert/strict";
import { extensionNetwork } from "../../../backends/extension/backend.ts";
import { parseAddr, parseNet } from "../../../ip/mod.ts";
import type { JsonValue, Lease } from "../../../subnet/lease.ts";
import type { LeaseWatchUpdate } from "../../../subnet/manager.ts";
import { captureLog, waitFor } from "../../helpers/leases.ts";

function extLease(subnet: string, ip: string, data?: JsonValue, type = "extension"): Lease {
  return {
    subnet: parseNet(subnet),
    attrs: {
      publicIP: parseAddr(ip),
      backendType: type,
      ...(data !== undefined && { backendData: data }),
    },
  };
}

/** A script that appends `<action> $SUBNET $PUBLIC_IP <stdin>` to `log`, or fails while `fail` exists. */
async function recorder(dir: string): Promise<string> {
  const path = `${dir}/record`;
  await Deno.writeTextFile(
    path,
    `#!/bin/sh
d=$(dirname "$0")
if [ -e "$d/fail" ]; then echo "refusing $SUBNET" >&2; exit 3; fi
echo "$1 $SUBNET $PUBLIC_IP $(cat)" >> "$d/log"
`,
    { mode: 0o755 },
  );
  return path;
}

Deno.test("extension network: commands per remote lease, failures retried at resync", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tt-ext-" });
  const stop = new AbortController();
  try {
    const record = await recorder(dir);
    const log = () => Deno.readTextFile(`${dir}/log`).then((t) => t.trim().split("\n"), () => []);
    const own = extLease("10.244.7.0/24", "198.18.0.11");
    const { log: logger, lines } = captureLog();
    const network = extensionNetwork(own, 1500, {
      subnetAddCommand: `${record} add`,
      subnetRemoveCommand: `${record} remove`,
    }, { resyncMs: 50, log: logger });
    const updates: LeaseWatchUpdate[] = [
      {
        type: "snapshot",
        leases: [
          own,
          extLease("10.244.8.0/24", "198.18.0.12", "data of 8"),
          extLease("10.244.9.0/24", "198.18.0.13", { VNI: 1 }, "vxlan"),
          extLease("10.244.10.0/24", "198.18.0.14", { not: "a string" }),
        ],
      },
      {
        type: "events",
        events: [{ type: "removed", lease: extLease("10.244.8.0/24", "198.18.0.12", "data of 8") }],
      },
    ];
    let release!: () => void;
    const more = new Promise<void>((resolve) => release = resolve);
    const running = network.run(
      (async function* () {
        yield* updates;
        await more;
        yield {
          type: "events",
          events: [{ type: "added", lease: extLease("10.244.11.0/24", "198.18.0.15") }],
        } satisfies LeaseWatchUpdate;
        await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
      })(),
      stop.signal,
    );
    await waitFor("add and remove of 10.244.8.0/24", async () => (await log()).length === 2);
    assert.deepEqual(await log(), [
      "add 10.244.8.0/24 198.18.0.12 data of 8",
      "remove 10.244.8.0/24 198.18.0.12 data of 8",
    ], "own and vxlan leases run nothing");
    const bad = network.health().peers.find((p) => p.subnet === "10.244.10.0/24");
    assert.deepEqual(bad, {
      subnet: "10.244.10.0/24",
      publicIP: "198.18.0.14",
      inSync: false,
      error: "BackendData is not a JSON string",
    });

    await Deno.writeTextFile(`${dir}/fail`, "");
    release();
    await waitFor(
      "the failure reported",
      () => network.health().peers.some((p) => p.subnet === "10.244.11.0/24" && !p.inSync),
    );
    const failed = network.health().peers.find((p) => p.subnet === "10.244.11.0/24")!;
    assert.match(failed.error!, /SubnetAddCommand failed \(exit status 3\): refusing 10\.244\.11/);
    assert.ok(lines.some((l) => l.includes("refusing 10.244.11.0/24")), "logged with its output");
    await Deno.remove(`${dir}/fail`);
    await waitFor("the retry at resync", async () => (await log()).length === 3);
    assert.equal(
      (await log())[2],
      "add 10.244.11.0/24 198.18.0.15",
      "no BackendData: empty input",
    );
    await waitFor(
      "in sync",
      () => network.health().peers.some((p) => p.subnet === "10.244.11.0/24" && p.inSync),
    );
    stop.abort();
    await running;
  } finally {
    stop.abort();
    await Deno.remove(dir, { recursive: true });
  }
});
