/**
 * The plugin against the real Debian bridge and host-local plugins, driven as a runtime does:
 * a throw-away node namespace (where cni0 is created) and two pod namespaces, the plugin run
 * as a process inside the node namespace, pods pinging each other over the bridge.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { netContains, parseAddr, parseNet } from "../../ip/mod.ts";
import { ipJson, nsExec, removeLeftovers, rootTest, withNetnsSet } from "../helpers/netns.ts";
import { exists } from "./fs_helpers.ts";

const CNI_BIN = "/usr/lib/cni";
const ENTRY = fileURLToPath(new URL("../../cni/bin.ts", import.meta.url));

/** The parts of an ADD result the test looks at. */
interface AddResult {
  cniVersion: string;
  interfaces: Array<{ name: string; mac?: string; sandbox?: string }>;
  ips: Array<{ version?: string; address: string; gateway?: string }>;
}

interface Link {
  ifname: string;
  mtu: number;
  master?: string;
  addr_info?: Array<{ local: string; prefixlen: number }>;
}

/** Our plugin as a process inside `node`, as a runtime there would run it. */
async function plugin(
  node: string,
  env: { command: string; pod: string; container: string },
  stdin: string,
): Promise<{ code: number; stdout: string }> {
  const { code, stdout } = await nsExec(node, [
    "env",
    `CNI_COMMAND=${env.command}`,
    `CNI_CONTAINERID=${env.container}`,
    `CNI_NETNS=/run/netns/${env.pod}`,
    "CNI_IFNAME=eth0",
    `CNI_PATH=${CNI_BIN}`,
    Deno.execPath(),
    "run",
    "-A",
    "--quiet",
    ENTRY,
  ], { stdin, allowFail: true });
  return { code, stdout };
}

rootTest("plugin netns: ADD/CHECK/DEL with the real bridge and host-local, pods ping", async () => {
  await removeLeftovers();
  const dir = await Deno.makeTempDir({ prefix: "tt-cni-" });
  try {
    await withNetnsSet(3, (names) => scenario(dir, names));
  } finally {
    await Deno.remove(dir, { recursive: true });
    assert.deepEqual(await removeLeftovers(), [], "namespaces left behind");
  }
});

async function scenario(dir: string, [node, podA, podB]: string[]): Promise<void> {
  const subnetFile = `${dir}/subnet.env`;
  const dataDir = `${dir}/flannel`;
  const ipamDir = `${dir}/ipam`;
  const conf = (cniVersion: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      name: "cbr0",
      type: "flannel",
      cniVersion,
      subnetFile,
      dataDir,
      delegate: { hairpinMode: true, isDefaultGateway: true },
      ipam: { dataDir: ipamDir }, // host-local keeps its reservations in the temp dir
      ...extra,
    });
  const call = (command: string, pod: string, container: string, stdin: string) =>
    plugin(node, { command, pod, container }, stdin);
  const reserved = (ip: string) => exists(`${ipamDir}/cbr0/${ip}`);
  const ok = { code: 0, stdout: "" };
  await Deno.writeTextFile(
    subnetFile,
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n" +
      "FLANNEL_IPMASQ=true\n",
  );

  // ADD attaches both pods to cni0 in the node namespace (two result versions).
  const addA = await call("ADD", podA, "ctr-a", conf("1.0.0"));
  assert.equal(addA.code, 0, addA.stdout);
  const addB = await call("ADD", podB, "ctr-b", conf("0.3.1"));
  assert.equal(addB.code, 0, addB.stdout);
  const resultA = JSON.parse(addA.stdout) as AddResult;
  const resultB = JSON.parse(addB.stdout) as AddResult;
  assert.equal(resultA.cniVersion, "1.0.0");
  assert.equal(resultB.cniVersion, "0.3.1");
  assert.equal(resultB.ips[0].version, "4"); // the 0.3.x format, straight from the delegate
  const pod = parseNet("10.244.1.0/24");
  for (const [result, ns] of [[resultA, podA], [resultB, podB]] as const) {
    const [ip] = result.ips;
    const [address, len] = ip.address.split("/");
    assert.ok(netContains(pod, parseAddr(address)), ip.address);
    assert.equal(len, "24");
    assert.equal(ip.gateway, "10.244.1.1");
    assert.equal(result.interfaces[0].name, "cni0");
    assert.equal(result.interfaces[2].name, "eth0");
    assert.equal(result.interfaces[2].sandbox, `/run/netns/${ns}`);
  }
  const [ipA, ipB] = [resultA, resultB].map((r) => r.ips[0].address.split("/")[0]);
  const [vethA, vethB] = [resultA, resultB].map((r) => r.interfaces[1].name);
  assert.notEqual(ipA, ipB);
  // The records DEL will replay, with the test's ipam dataDir preserved.
  const saved = JSON.parse(await Deno.readTextFile(`${dataDir}/ctr-a`));
  assert.deepEqual(saved.ipam, {
    dataDir: ipamDir,
    ranges: [[{ subnet: "10.244.1.0/24" }]],
    routes: [{ dst: "10.244.0.0/16" }],
    type: "host-local",
  });
  assert.equal((await Deno.stat(`${dataDir}/ctr-b`)).mode! & 0o777, 0o600);
  assert.ok(await reserved(ipA) && await reserved(ipB));

  // The kernel has the bridge (gateway address, flannel's MTU), the veths and pod addresses.
  const [bridge] = await ipJson<Link[]>(node, ["addr", "show", "cni0"]);
  assert.equal(bridge.mtu, 1450);
  assert.ok(bridge.addr_info?.some((a) => a.local === "10.244.1.1" && a.prefixlen === 24));
  for (const veth of [vethA, vethB]) {
    const [link] = await ipJson<Link[]>(node, ["link", "show", veth]);
    assert.equal(link.master, "cni0");
    assert.equal(link.mtu, 1450);
  }
  const [eth0] = await ipJson<Link[]>(podA, ["addr", "show", "eth0"]);
  assert.equal(eth0.mtu, 1450);
  assert.ok(eth0.addr_info?.some((a) => a.local === ipA && a.prefixlen === 24));
  const routes = await ipJson<Array<{ dst: string; gateway?: string }>>(podA, ["route"]);
  assert.ok(routes.some((r) => r.dst === "default" && r.gateway === "10.244.1.1"));
  assert.ok(routes.some((r) => r.dst === "10.244.0.0/16" && r.gateway === "10.244.1.1"));

  // Pod A reaches pod B and its gateway.
  for (const target of [ipB, "10.244.1.1"]) {
    await nsExec(podA, ["ping", "-c", "1", "-W", "1", target]);
  }

  // CHECK passes for added pods and is refused for others; VERSION; STATUS.
  assert.deepEqual(await call("CHECK", podA, "ctr-a", conf("1.0.0", { prevResult: resultA })), ok);
  const unknown = await call("CHECK", podA, "ctr-x", conf("1.0.0", { prevResult: {} }));
  assert.equal(JSON.parse(unknown.stdout).code, 3);
  const old = await call("CHECK", podB, "ctr-b", conf("0.3.1", { prevResult: resultB }));
  assert.equal(JSON.parse(old.stdout).code, 1);
  const version = await call("VERSION", podA, "ctr-a", '{"cniVersion":"1.0.0"}');
  assert.deepEqual(JSON.parse(version.stdout), {
    cniVersion: "1.0.0",
    supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
  });
  assert.deepEqual(await call("STATUS", podA, "", conf("1.1.0")), ok);

  // DEL removes pod A's veth, reservation and record; a second DEL is a no-op.
  assert.deepEqual(await call("DEL", podA, "ctr-a", conf("1.0.0")), ok);
  let links = await ipJson<Link[]>(node, ["link", "show"]);
  assert.ok(!links.some((l) => l.ifname === vethA), `${vethA} still in ${node}`);
  assert.ok(links.some((l) => l.ifname === vethB));
  assert.equal(await exists(`${dataDir}/ctr-a`), false);
  assert.equal(await reserved(ipA), false);
  assert.deepEqual(await call("DEL", podA, "ctr-a", conf("1.0.0")), ok);
  const gone = await call("CHECK", podA, "ctr-a", conf("1.0.0", { prevResult: resultA }));
  assert.equal(JSON.parse(gone.stdout).code, 3);

  // subnet.env vanishes: STATUS and ADD fail, DEL of pod B still cleans up from the record.
  await Deno.remove(subnetFile);
  assert.equal(JSON.parse((await call("STATUS", podA, "", conf("1.1.0"))).stdout).code, 50);
  assert.equal(JSON.parse((await call("ADD", podA, "ctr-c", conf("1.0.0"))).stdout).code, 11);
  assert.deepEqual(await call("DEL", podB, "ctr-b", conf("0.3.1")), ok);
  links = await ipJson<Link[]>(node, ["link", "show"]);
  assert.ok(!links.some((l) => l.ifname === vethB), `${vethB} still in ${node}`);
  assert.deepEqual(await ipJson<Link[]>(podB, ["link", "show", "type", "veth"]), []);
  assert.equal(await exists(`${dataDir}/ctr-b`), false);
  assert.equal(await reserved(ipB), false);
}
