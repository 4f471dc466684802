import assert from "node:assert/strict";
import { BridgeNetfilterError, requireBridgeNetfilter } from "../../traffic/bridge_netfilter.ts";

const V4 = { nftables: false, ipv4: true, ipv6: false };
const DUAL = { nftables: false, ipv4: true, ipv6: true };

/** A stand-in for /proc/sys/net/bridge holding `names`. */
async function sysctlDir(names: string[]): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const name of names) await Deno.writeTextFile(`${dir}/${name}`, "1\n");
  return dir;
}

Deno.test("br_netfilter: iptables mode needs the sysctl of every family it uses", async () => {
  const none = await sysctlDir([]);
  const v4Only = await sysctlDir(["bridge-nf-call-iptables"]);
  try {
    const check = requireBridgeNetfilter;
    await assert.rejects(check(V4, none), (err: unknown) => {
      assert.ok(err instanceof BridgeNetfilterError);
      assert.match(err.message, /bridge-nf-call-iptables does not exist/);
      assert.match(err.message, /modprobe br_netfilter/);
      return true;
    });
    await check(V4, v4Only);
    await assert.rejects(check(DUAL, v4Only), /bridge-nf-call-ip6tables/);
    await check({ ...DUAL, nftables: true }, none); // nftables mode does not ask
  } finally {
    await Deno.remove(none, { recursive: true });
    await Deno.remove(v4Only, { recursive: true });
  }
});
