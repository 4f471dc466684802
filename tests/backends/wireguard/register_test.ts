/**
 * Registering the wireguard backend in a test namespace. This kernel has no wireguard module, so
 * what runs here is the fallback: wireguard-go runs `flannel-wg` (a TUN device), configured
 * through its UAPI socket with our key and ListenPort, supervised (killed ⇒ restarted and
 * configured again by the next resync), and stopped on close with its socket removed. The
 * kernel path's test is ignored here, with the reason. A wireguard-go left running by a killed
 * daemon is replaced, not fought.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import type { Network } from "../../../backends/backend.ts";
import { wireguardBackend } from "../../../backends/wireguard/backend.ts";
import { uapiGet, uapiSocketPath } from "../../../backends/wireguard/uapi_client.ts";
import { socketAnswers } from "../../../backends/wireguard/wireguard_go.ts";
import { withNetlink } from "../../../ffi/netlink/socket.ts";
import type { LeaseWatchUpdate } from "../../../subnet/manager.ts";
import { waitFor } from "../../helpers/leases.ts";
import { ipJson, linkKindTest, run, withNetns } from "../../helpers/netns.ts";
import { backendContext, networkConfig } from "../backend_context.ts";

interface IpLink {
  mtu: number;
  operstate: string;
  linkinfo?: { info_kind: string };
  addr_info?: { local: string; prefixlen: number }[];
}

type TestContext = ReturnType<typeof backendContext>;

/** Register with a fresh key file and `fn` the network; the env and files are restored. */
async function withRegistered(
  ns: string,
  fn: (network: Network, ctx: TestContext, keyFile: string) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "tt-wgkey-" });
  const keyFile = `${root}/wgkey`;
  const previous = Deno.env.get("WIREGUARD_KEY_FILE");
  Deno.env.set("WIREGUARD_KEY_FILE", keyFile);
  try {
    await withNetlink({ netns: ns }, async (h) => {
      // A resync timer longer than the test: a restart is repaired without waiting for it.
      const ctx: TestContext = {
        ...backendContext(h, networkConfig("wireguard")),
        resyncMs: 600_000,
      };
      const network = await wireguardBackend.register(ctx);
      try {
        await fn(network, ctx, keyFile);
      } finally {
        await network.close();
      }
    });
  } finally {
    if (previous === undefined) Deno.env.delete("WIREGUARD_KEY_FILE");
    else Deno.env.set("WIREGUARD_KEY_FILE", previous);
    await Deno.remove(root, { recursive: true });
  }
}

await linkKindTest(
  "wireguard",
  "missing",
  "wireguard without the kernel module: wireguard-go runs flannel-wg, supervised, removed on close",
  () =>
    withNetns(async (ns) => {
      // A wireguard-go left behind by a killed daemon still holds flannel-wg and its socket.
      const stray = new Deno.Command("nsenter", {
        args: [`--net=/run/netns/${ns}`, "wireguard-go", "-f", "flannel-wg"],
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitFor("the stray wireguard-go", () => socketAnswers("flannel-wg"));
      await withRegistered(ns, async (network, ctx, keyFile) => {
        assert.equal((await stray.status).success, true, "the stray exits with its device");
        assert.equal(network.health().implementation, "wireguard-go");
        assert.equal(network.mtu, 1420);
        const [dev] = await ipJson<IpLink[]>(ns, ["-d", "-4", "addr", "show", "flannel-wg"]);
        assert.equal(dev.linkinfo?.info_kind, "tun", "wireguard-go's device is a TUN");
        assert.equal(dev.mtu, 1420);
        assert.deepEqual(dev.addr_info?.map((a) => `${a.local}/${a.prefixlen}`), [
          "10.244.7.0/32",
        ]);
        const routes = await ipJson<{ dst: string; dev: string }[]>(ns, ["route", "show"]);
        assert.ok(routes.some((r) => r.dst === "10.244.0.0/16" && r.dev === "flannel-wg"));
        const device = await uapiGet("flannel-wg");
        assert.equal(device.listenPort, 51820, "ListenPort programmed");
        assert.ok(device.hasPrivateKey, "the key from the key file");
        const [published] = ctx.manager.published;
        const publicKey = (published.backendData as { PublicKey: string }).PublicKey;
        const wg = await run(["wg", "show", "flannel-wg", "public-key"]);
        assert.equal(wg.stdout.trim(), publicKey, "wg agrees: the lease's key is the device's");
        assert.equal(Buffer.from(await Deno.readTextFile(keyFile), "base64").length, 32);

        // Supervision: kill wireguard-go; it is restarted and configured again at once.
        const stop = new AbortController();
        const running = network.run(
          (async function* (): AsyncGenerator<LeaseWatchUpdate> {
            yield { type: "snapshot", leases: [] };
            await new Promise((resolve) => stop.signal.addEventListener("abort", resolve));
          })(),
          stop.signal,
        );
        try {
          const pids = (await run(["ip", "netns", "pids", ns])).stdout.trim().split("\n");
          const comm = await Promise.all(
            pids.map((pid) => Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "")),
          );
          const victim = pids.find((_, i) => comm[i].trim() === "wireguard-go");
          assert.ok(victim, "wireguard-go runs in the node's namespace");
          Deno.kill(Number(victim), "SIGKILL");
          await waitFor("the device restored", () => network.health().driftRepaired >= 1);
          assert.equal((await uapiGet("flannel-wg")).listenPort, 51820);
          const [again] = await ipJson<IpLink[]>(ns, ["addr", "show", "flannel-wg"]);
          assert.equal(again.addr_info?.[0]?.local, "10.244.7.0");
          assert.ok(ctx.lines.some((l) => l.includes("wireguard-go exited; restarting")));
        } finally {
          stop.abort();
          await running;
        }
      });
      const links = await ipJson<{ ifname: string }[]>(ns, ["link", "show"]);
      assert.ok(!links.some((l) => l.ifname === "flannel-wg"), "the device goes on close");
      await assert.rejects(Deno.stat(uapiSocketPath("flannel-wg")), Deno.errors.NotFound);
    }),
);

await linkKindTest(
  "wireguard",
  "present",
  "wireguard with the kernel module: a kernel device, MTU 1420, the kernel implementation",
  () =>
    withNetns(async (ns) => {
      await withRegistered(ns, async (network) => {
        assert.equal(network.health().implementation, "kernel");
        const [dev] = await ipJson<IpLink[]>(ns, ["-d", "link", "show", "flannel-wg"]);
        assert.equal(dev.linkinfo?.info_kind, "wireguard");
        assert.equal(dev.mtu, 1420);
      });
    }),
);
