/**
 * The plugin against the real Debian bridge and host-local plugins, driven as a runtime does:
 * a throw-away node namespace (where cni0 is created) and two pod namespaces, the plugin run
 * as a process inside the node namespace, pods pinging each other over the bridge.
 */
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { netContains, parseAddr, parseNet } from "../../ip/mod.ts";
import {
  deleteNetns,
  ipJson,
  nsExec,
  removeLeftovers,
  rootTest,
  withNetnsSet,
} from "../helpers/netns.ts";
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

/** A node's files and the plugin called in it, as each scenario uses them. */
interface NodeFixture {
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly ipamDir: string;
  /** The flannel network config; `cniVersion` undefined leaves the member out. */
  conf(cniVersion: string | undefined, extra?: Record<string, unknown>): string;
  call(command: string, pod: string, container: string, stdin: string): ReturnType<typeof plugin>;
  /** Whether host-local holds a reservation for `ip`. */
  reserved(ip: string): Promise<boolean>;
}

const ok = { code: 0, stdout: "" };

/** Register a test with a node namespace, `pods` pod namespaces and subnet 10.244.1.0/24. */
function netnsTest(
  name: string,
  pods: number,
  scenario: (fx: NodeFixture, node: string, pods: string[]) => Promise<void>,
): void {
  rootTest(name, async () => {
    await removeLeftovers();
    const dir = await Deno.makeTempDir({ prefix: "tt-cni-" });
    try {
      await withNetnsSet(pods + 1, async ([node, ...podNames]) => {
        const fx = nodeFixture(dir, node);
        await Deno.writeTextFile(
          fx.subnetFile,
          "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.1.1/24\nFLANNEL_MTU=1450\n" +
            "FLANNEL_IPMASQ=true\n",
        );
        await scenario(fx, node, podNames);
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
      assert.deepEqual(await removeLeftovers(), [], "namespaces left behind");
    }
  });
}

function nodeFixture(dir: string, node: string): NodeFixture {
  const [subnetFile, dataDir, ipamDir] = [`${dir}/subnet.env`, `${dir}/flannel`, `${dir}/ipam`];
  return {
    subnetFile,
    dataDir,
    ipamDir,
    conf: (cniVersion, extra = {}) =>
      JSON.stringify({
        name: "cbr0",
        type: "flannel",
        cniVersion,
        subnetFile,
        dataDir,
        delegate: { hairpinMode: true, isDefaultGateway: true },
        ipam: { dataDir: ipamDir }, // host-local keeps its reservations in the temp dir
        ...extra,
      }),
    call: (command, pod, container, stdin) => plugin(node, { command, pod, container }, stdin),
    reserved: (ip) => exists(`${ipamDir}/cbr0/${ip}`),
  };
}

netnsTest(
  "plugin netns: ADD/CHECK/DEL with the real bridge and host-local, pods ping",
  2,
  async ({ subnetFile, dataDir, ipamDir, conf, call, reserved }, node, [podA, podB]) => {
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
    assert.deepEqual(
      await call("CHECK", podA, "ctr-a", conf("1.0.0", { prevResult: resultA })),
      ok,
    );
    const unknown = await call("CHECK", podA, "ctr-x", conf("1.0.0", { prevResult: {} }));
    assert.equal(JSON.parse(unknown.stdout).code, 3);
    const old = await call("CHECK", podB, "ctr-b", conf("0.3.1", { prevResult: resultB }));
    assert.equal(JSON.parse(old.stdout).code, 1);
    const version = await call("VERSION", podA, "ctr-a", '{"cniVersion":"1.0.0"}');
    assert.deepEqual(JSON.parse(version.stdout), {
      cniVersion: "1.0.0",
      supportedVersions: ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
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
  },
);

/** The parts of a 0.1.0/0.2.0 ADD result the test looks at: `ip4` instead of `ips`. */
interface LegacyResult {
  cniVersion: string;
  ips?: unknown;
  ip4: { ip: string; gateway: string; routes: Array<{ dst: string; gw?: string }> };
}

netnsTest(
  "plugin netns: 0.2.0 and version-less configs, the longest IDs, DEL after the netns is gone",
  3,
  async ({ dataDir, conf, call, reserved }, node, [podA, podB, podC]) => {
    // The longest ID a file name allows, and one byte more.
    const [idA, idB, tooLong] = ["a".repeat(255), "b".repeat(64), "c".repeat(256)];
    const addA = await call("ADD", podA, idA, conf("0.2.0"));
    assert.equal(addA.code, 0, addA.stdout);
    const addB = await call("ADD", podB, idB, conf(undefined));
    assert.equal(addB.code, 0, addB.stdout);
    // Each result is in the requested version's format (none requested: 0.1.0).
    const [resultA, resultB] = [addA, addB].map((a) => JSON.parse(a.stdout) as LegacyResult);
    assert.equal(resultA.cniVersion, "0.2.0");
    assert.equal(resultB.cniVersion, "0.1.0");
    for (const result of [resultA, resultB]) {
      assert.equal(result.ips, undefined);
      assert.ok(netContains(parseNet("10.244.1.0/24"), parseAddr(result.ip4.ip.split("/")[0])));
      assert.equal(result.ip4.gateway, "10.244.1.1");
      // flannel's cluster route, and the default route the manifest's isDefaultGateway adds
      assert.deepEqual(result.ip4.routes, [
        { dst: "10.244.0.0/16" },
        { dst: "0.0.0.0/0", gw: "10.244.1.1" },
      ]);
    }
    const [ipA, ipB] = [resultA, resultB].map((r) => r.ip4.ip.split("/")[0]);
    assert.ok(await reserved(ipA) && await reserved(ipB));
    assert.ok(!("cniVersion" in JSON.parse(await Deno.readTextFile(`${dataDir}/${idB}`))));
    await nsExec(podA, ["ping", "-c", "1", "-W", "1", ipB]);

    // An ID that cannot be a file name: a CNI error before anything is attached.
    const refused = await call("ADD", podC, tooLong, conf("1.0.0"));
    assert.equal(refused.code, 1);
    assert.equal(JSON.parse(refused.stdout).code, 4, refused.stdout);
    assert.deepEqual(await ipJson<Link[]>(podC, ["link", "show", "type", "veth"]), []);
    assert.deepEqual(await call("DEL", podC, tooLong, conf("1.0.0")), ok);

    // Pod A's namespace is destroyed before its DEL (the runtime cleaned it up first): the
    // kernel removes the veth pair, DEL still frees the address and the record.
    await deleteNetns(podA);
    assert.deepEqual(await call("DEL", podA, idA, conf("0.2.0")), ok);
    assert.equal(await reserved(ipA), false, `${ipA} still reserved`);
    assert.equal(await exists(`${dataDir}/${idA}`), false);
    assert.deepEqual(await call("DEL", podA, idA, conf("0.2.0")), ok);

    // The version-less pod is deleted with its record; DEL of an ID never seen succeeds.
    assert.deepEqual(await call("DEL", podB, idB, conf(undefined)), ok);
    assert.equal(await reserved(ipB), false);
    assert.deepEqual(await call("DEL", podB, "never-added", conf(undefined)), ok);
    assert.deepEqual([...Deno.readDirSync(dataDir)], [], "saved configs left behind");
    const links = await ipJson<Link[]>(node, ["link", "show", "type", "veth"]);
    assert.deepEqual(links.map((l) => l.ifname), [], "veths left in the node");
  },
);
