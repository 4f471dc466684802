import { networkConfig } from "./helpers/network_config.ts";
import assert from "node:assert/strict";
import type { NetworkConfig } from "../config/network_config.ts";
import { parseAddr, parseNet } from "../ip/mod.ts";
import {
  CommandFailedError,
  CommandNotFoundError,
  commandRunner,
  resolveCommand,
} from "../exec.ts";
import { createIptablesEngine } from "../traffic/iptables.ts";
import {
  createTrafficManager,
  removeAllTrafficState,
  TrafficOptionError,
} from "../traffic/manager.ts";
import { createNftEngine } from "../traffic/nftables.ts";
import { buildRuleSet, EMPTY_RULE_SET } from "../traffic/rules.ts";

Deno.test("runner: stdout, stdin, exit status and missing programs are distinct outcomes", async () => {
  const run = commandRunner();
  assert.equal(await run(["echo", "hi"]), "hi\n");
  assert.equal(await run(["cat"], "from stdin"), "from stdin");
  const failed = await run(["sh", "-c", "echo oops >&2; exit 3"]).catch((e) => e);
  assert.ok(failed instanceof CommandFailedError);
  assert.equal(failed.code, 3);
  assert.equal(failed.stderr, "oops\n");
  await assert.rejects(run(["tartan-no-such-tool-xyz"]), CommandNotFoundError);
  await assert.rejects(resolveCommand("/nonexistent/bin/tool", "/usr/bin"), CommandNotFoundError);
});

Deno.test("runner: a command that hangs is killed after the timeout", async () => {
  const started = performance.now();
  await assert.rejects(commandRunner({ timeoutMs: 200 })(["sleep", "5"]), CommandFailedError);
  assert.ok(performance.now() - started < 3000);
});

Deno.test("quirk 37: without iptables/nft binaries there is nothing to clean, but rules still fail loudly", async () => {
  const emptyDir = await Deno.makeTempDir({ prefix: "tt-traffic-nobin-" });
  try {
    const run = commandRunner({ searchPath: emptyDir });
    const iptables = await createIptablesEngine(run);
    const nftables = await createNftEngine(run);
    assert.equal(iptables.fullyRandomSupported, false);
    assert.equal(nftables.fullyRandomSupported, false);
    await iptables.removeAll();
    await nftables.removeAll();
    await removeAllTrafficState(run);
    assert.equal(await iptables.reconcile(EMPTY_RULE_SET), false);
    const rules = buildRuleSet(
      networkConfig("vxlan"),
      { subnet: parseNet("10.244.1.0/24"), attrs: { publicIP: parseAddr("198.18.0.1") } },
      { ipMasq: true, forwardRules: true, fullyRandom: false },
    );
    await assert.rejects(iptables.reconcile(rules), CommandNotFoundError);
  } finally {
    await Deno.remove(emptyDir, { recursive: true });
  }
});

Deno.test("quirk 27: --iptables-resync below 1 second is rejected", async () => {
  const config: NetworkConfig = { enableNFTables: false, backend: { type: "vxlan", options: {} } };
  for (const resyncSeconds of [0, -5, 0.5, Number.NaN]) {
    await assert.rejects(
      createTrafficManager(config, { attrs: { publicIP: parseAddr("0.0.0.0") } }, {
        ipMasq: true,
        forwardRules: true,
        fullyRandomDisabled: false,
        resyncSeconds,
      }),
      TrafficOptionError,
    );
  }
});

Deno.test("runner: a program that ignores its stdin still reports its own exit status", async () => {
  const big = "x".repeat(1 << 20);
  const failed = await commandRunner()(["sh", "-c", "exit 4"], big).catch((e) => e);
  assert.ok(failed instanceof CommandFailedError);
  assert.equal(failed.code, 4);
});
