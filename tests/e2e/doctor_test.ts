/**
 * `tartan doctor` against a running three-node vxlan lab, one fault at a time (issue 20): for
 * each, doctor reports healthy first, names the fault with the peer (or device, sysctl) and the
 * fix once it is injected, and reports healthy again once it is removed. The faults are made the
 * way they happen on real machines: an nftables rule dropping VXLAN from one peer, forwarding
 * switched off, cni0 left with an old subnet's address, a switch port with a smaller MTU in the
 * middle of the underlay (it drops bigger frames without a word: a true black hole), and a lease
 * advertising another node's public IP. Probes run every second (--peer-probe-interval=1).
 */
import assert from "node:assert/strict";
import type { DoctorReport, Finding } from "../../doctor/finding.ts";
import { defaultNetConf, type LabCluster } from "../../lab/cluster.ts";
import { NODE_ADMIN_PORT } from "../../lab/node.ts";
import { tartanArgv } from "../../lab/self.ts";
import { labNames, nodeUnderlayIP } from "../../lab/topology.ts";
import { nsExec, run, withNetns } from "../helpers/netns.ts";
import { dropVxlanFrom, withLab } from "./faults_kit.ts";
import { freeSubnet, putRawLease, readLeases, rootSuite, SUBNETS_DIR } from "./overlay_kernel.ts";
import { vxlanValue } from "../helpers/leases.ts";

/** How long doctor may take to name a fault, or to see it gone (the bound). */
const NAMED_WITHIN_MS = 90_000;

/** One doctor run on node `index` (0-based), as JSON, with its exit status. */
async function doctor(lab: LabCluster, index: number): Promise<DoctorReport> {
  const node = lab.nodes[index];
  const argv = tartanArgv([
    "doctor",
    `--healthz-port=${NODE_ADMIN_PORT}`,
    `--subnet-file=${node.subnetFile}`,
    "--json",
  ]);
  const { code, stdout, stderr } = await nsExec(node.ns, argv, { allowFail: true });
  assert.ok(code === 0 || code === 1, `doctor exited ${code}: ${stderr}`);
  const report = JSON.parse(stdout) as DoctorReport;
  assert.equal(code === 0, report.healthy, "exit status 0 exactly when healthy");
  return report;
}

/** Run doctor until `accept` returns a value (bounded by {@link NAMED_WITHIN_MS}). */
async function doctorUntil<T>(
  lab: LabCluster,
  index: number,
  what: string,
  accept: (report: DoctorReport) => T | undefined,
): Promise<T> {
  const started = performance.now();
  let last: DoctorReport | undefined;
  while (performance.now() - started < NAMED_WITHIN_MS) {
    last = await doctor(lab, index);
    const found = accept(last);
    if (found !== undefined) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(`  n${index + 1}: ${what} after ${seconds} s`);
      return found;
    }
  }
  assert.fail(`doctor on n${index + 1} did not report ${what}: ${JSON.stringify(last, null, 1)}`);
}

function healthy(lab: LabCluster, index: number): Promise<true> {
  return doctorUntil(lab, index, "healthy", (report) => report.healthy || undefined);
}

/** The finding of `check` whose evidence has `key=value`. */
function finding(check: string, key: string, value: string) {
  return (report: DoctorReport): Finding | undefined =>
    report.findings.find((f) => f.check === check && f.evidence[key] === value);
}

/** Inject a fault, expect doctor to name it, remove it, expect healthy again. */
async function fault<T>(
  lab: LabCluster,
  index: number,
  what: string,
  inject: () => Promise<T>,
  named: (report: DoctorReport) => Finding | undefined,
  remove: (injected: T) => Promise<void>,
): Promise<Finding> {
  await healthy(lab, index);
  const injected = await inject();
  let found: Finding;
  try {
    found = await doctorUntil(lab, index, what, named);
  } finally {
    await remove(injected);
  }
  await healthy(lab, index);
  return found;
}

rootSuite("doctor names each fault in a running lab, healthy before and after", async (t) => {
  await withLab({
    nodes: 3,
    netConf: defaultNetConf("vxlan"),
    flags: ["--peer-probe-interval=1"],
  }, async (lab) => {
    await lab.waitConverged(30_000);
    await lab.addPods(0, 1); // the bridge plugin creates cni0 on n1
    const [n1, n2] = lab.nodes;
    const n2IP = nodeUnderlayIP(2);
    const n3IP = nodeUnderlayIP(3);

    await t.step("nftables drops VXLAN (UDP 8472) from one peer", async () => {
      const found = await fault(
        lab,
        0,
        "the blocked overlay to n2",
        () => dropVxlanFrom(n1.ns, n2IP),
        finding("peer-overlay", "publicIP", n2IP),
        (undo) => undo(),
      );
      assert.equal(found.evidence.port, "udp/8472");
      assert.match(found.fix, new RegExp(`UDP port 8472 \\(vxlan\\) between ${nodeUnderlayIP(1)}`));
    });

    await t.step("ip_forward=0 on one node", async () => {
      const sysctl = (value: number) =>
        nsExec(n2.ns, ["sysctl", "-qw", `net.ipv4.ip_forward=${value}`]);
      const found = await fault(
        lab,
        1,
        "forwarding off",
        () => sysctl(0),
        finding("ip-forward", "sysctl", "net.ipv4.ip_forward=0"),
        async () => void await sysctl(1),
      );
      assert.match(found.fix, /sysctl -w net\.ipv4\.ip_forward=1/);
    });

    await t.step("cni0 keeps an old subnet's address", async () => {
      const old = freeSubnet(await readLeases(lab.etcd.client())).replace(".0-24", ".1/24");
      const addrs = JSON.parse(
        (await run(["ip", "-n", n1.ns, "-j", "-4", "addr", "show", "dev", "cni0"])).stdout,
      ) as { addr_info: { local: string; prefixlen: number }[] }[];
      const original = addrs[0].addr_info.map((a) => `${a.local}/${a.prefixlen}`);
      const readdress = async (to: string[]) => {
        await run(["ip", "-n", n1.ns, "addr", "flush", "dev", "cni0"]);
        for (const cidr of to) await run(["ip", "-n", n1.ns, "addr", "add", cidr, "dev", "cni0"]);
      };
      const found = await fault(
        lab,
        0,
        `cni0 holding ${old}`,
        () => readdress([old]),
        finding("cni0-address", "address", old),
        () => readdress(original),
      );
      assert.equal(found.evidence.FLANNEL_SUBNET, original[0]);
      assert.match(found.fix, /ip link delete cni0/);
    });

    await t.step("an MTU black hole in the middle of the underlay", async () => {
      // n3's port on the underlay switch takes 1400-byte frames and drops bigger ones silently.
      const port = (mtu: number) =>
        run(["ip", "-n", labNames(lab.prefix).underlay, "link", "set", "n3", "mtu", String(mtu)]);
      const found = await fault(
        lab,
        0,
        "the black hole to n3",
        () => port(1400),
        finding("path-mtu", "publicIP", n3IP),
        async () => void await port(1500),
      );
      assert.equal(found.evidence.probeBytes, "1450", "probed at FLANNEL_MTU");
      assert.equal(found.evidence.underlayPathMtu, "1400", "the bisection finds the link's MTU");
      assert.match(found.fix, /lower the pods' MTU to 1350/);
    });

    await t.step("two nodes advertise the same public IP", async () => {
      const client = lab.etcd.client();
      const name = freeSubnet(await readLeases(client));
      const found = await fault(
        lab,
        0,
        `a second lease on ${n2IP}`,
        () => putRawLease(client, name, vxlanValue(n2IP, "0e:00:00:00:99:01")),
        finding("duplicate-public-ip", "publicIP", n2IP),
        async () => void await client.deleteRange({ key: SUBNETS_DIR + name }),
      );
      assert.match(found.evidence.subnets, new RegExp(name.replace("-", "/")));
      assert.match(found.fix, /--public-ip/);
    });
  });
});

rootSuite(
  "doctor without a daemon checks the host alone and says so",
  () =>
    withNetns(async (ns) => {
      await nsExec(ns, ["ip", "link", "set", "lo", "up"]);
      const argv = tartanArgv([
        "doctor",
        "--subnet-file=/nonexistent/subnet.env",
        "--etcd-endpoints=http://127.0.0.1:1",
        "--json",
      ]);
      const { code, stdout } = await nsExec(ns, argv, { allowFail: true });
      assert.equal(code, 1);
      const report = JSON.parse(stdout) as DoctorReport;
      assert.deepEqual(
        report.findings.map((f) => f.check).sort(),
        ["datastore", "ip-forward", "subnet-env"],
        "a fresh namespace forwards nothing, has no subnet.env and no etcd",
      );
      assert.ok(report.notes.some((note) => /checked the host only/.test(note)));
    }),
);
