/**
 * Control-plane and TUN micro-benchmark, inside a throw-away namespace:
 *
 * 1. Route add and delete rate through our netlink (pipelined `executeBatch`, and one request
 *    per call), against `ip -batch` doing the same routes in the same run.
 * 2. TUN packets per second on one core: kernel -> TUN (UDP sent into a route that points at the
 *    TUN, read back with batch reads) and TUN -> kernel (batch writes of UDP packets to a socket
 *    in the namespace, which drains and counts them).
 * 3. Wake-up cost of the two ways to wait for a packet: a synchronous `poll` (what a data-path
 *    Worker does) versus a `nonblocking` FFI poll awaited on the event loop.
 *
 * Run: `deno run -A bench/netlink_bench.ts` (root). Prints a table, writes
 * bench/results/netlink.json, and exports {@link main} for a bench runner.
 *
 * @module
 */
import { check, closeFd, lastErrno, libc, sockaddrIn } from "../ffi/libc.ts";
import { inNetns } from "../ffi/netns.ts";
import {
  AF_INET,
  MSG_DONTWAIT,
  SO_RCVBUFFORCE,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOL_SOCKET,
} from "../ffi/unix.ts";
import { addAddr } from "../ffi/netlink/addr.ts";
import { addLink, getLink, setLinkUp } from "../ffi/netlink/link.ts";
import { replaceRoute, routeRequest, type RouteSpec } from "../ffi/netlink/route.ts";
import { type NetlinkHandle, withNetlink } from "../ffi/netlink/socket.ts";
import {
  closeTun,
  createPacketBatch,
  openTun,
  pollAndReadPackets,
  readPackets,
  type TunDevice,
  waitReadable,
  writePackets,
} from "../ffi/tun.ts";
import { formatNet, type IPNet, parseAddr } from "../ip/mod.ts";
import { ipJson, run, withNetns } from "../lab/netns.ts";
import { addr4, icmpEcho, udp } from "../lab/packets.ts";
import { saveResult } from "./results.ts";
import { executeBatch } from "../ffi/netlink/batch.ts";

/** What {@link main} measures. */
export interface NetlinkBenchResult {
  routes: number;
  routesPerSecond: {
    oursPipelinedAdd: number;
    oursPipelinedDelete: number;
    oursOneByOneAdd: number;
    ipBatchAdd: number;
    ipBatchDelete: number;
    /** ours pipelined / ip -batch, add and delete averaged (median over rounds). */
    ratioVsIpBatch: number;
  };
  tun: {
    packets: number;
    readPps: number;
    writePps: number;
    writeDelivered: number;
    /** Kernel -> TUN including the kernel-side sendmmsg, i.e. the whole loop on one core. */
    loopPps: number;
  };
  wakeUpMicros: { syncPoll: number; nonblockingPoll: number };
}

function subnet(i: number): IPNet {
  return {
    family: 4,
    base: (10n << 24n) | (BigInt(64 + (i >> 8)) << 16n) | (BigInt(i & 255) << 8n),
    prefix: 24,
  };
}

function rate(count: number, ms: number): number {
  return Math.round(count / (ms / 1000));
}

async function timed(fn: () => unknown): Promise<number> {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

async function routeCount(ns: string): Promise<number> {
  return (await ipJson<unknown[]>(ns, ["route", "show", "via", "198.18.0.2"])).length;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

type Round = Awaited<ReturnType<typeof routeRound>>;

/** One round: add then delete `specs` with each method, checking the kernel's count each time. */
async function routeRound(ns: string, h: NetlinkHandle, specs: RouteSpec[], file: string) {
  const expect = async (want: number, what: string) => {
    const got = await routeCount(ns);
    if (got !== want) throw new Error(`${what}: ${got} routes, want ${want}`);
  };
  const pipelined = async (op: "add" | "delete") => {
    const ms = await timed(() => {
      const failed = executeBatch(h, specs.map((s) => routeRequest(op, s))).find(Boolean);
      if (failed) throw failed;
    });
    await expect(op === "add" ? specs.length : 0, `ours ${op}`);
    return rate(specs.length, ms);
  };
  const ipBatch = async (op: "add" | "del") => {
    const lines = specs.map((s) =>
      `route ${op} ${formatNet(s.dst)}${op === "add" ? " via 198.18.0.2" : ""}\n`
    );
    await Deno.writeTextFile(file, lines.join(""));
    const ms = await timed(() => run(["ip", "-n", ns, "-batch", file]));
    await expect(op === "add" ? specs.length : 0, `ip -batch ${op}`);
    return rate(specs.length, ms);
  };
  const oneByOne = specs.slice(0, Math.min(specs.length, 2000));
  const singleMs = await timed(() => oneByOne.forEach((s) => replaceRoute(h, s)));
  executeBatch(h, oneByOne.map((s) => routeRequest("delete", s)));
  return {
    oursAdd: await pipelined("add"),
    oursDelete: await pipelined("delete"),
    oursOneByOne: rate(oneByOne.length, singleMs),
    ipAdd: await ipBatch("add"),
    ipDelete: await ipBatch("del"),
  };
}

/** Median of `rounds` rounds, after one untimed warm-up round (the JIT's, not the kernel's). */
async function benchRoutes(ns: string, h: NetlinkHandle, n: number, rounds: number) {
  const specs: RouteSpec[] = Array.from({ length: n }, (_, i) => ({
    dst: subnet(i),
    gateway: parseAddr("198.18.0.2"),
  }));
  const file = await Deno.makeTempFile({ prefix: "tartan-bench-" });
  try {
    await routeRound(ns, h, specs.slice(0, 2000), file);
    const results: Round[] = [];
    for (let i = 0; i < rounds; i++) results.push(await routeRound(ns, h, specs, file));
    const m = (key: keyof Round) => median(results.map((r) => r[key]));
    return {
      oursPipelinedAdd: m("oursAdd"),
      oursPipelinedDelete: m("oursDelete"),
      oursOneByOneAdd: m("oursOneByOne"),
      ipBatchAdd: m("ipAdd"),
      ipBatchDelete: m("ipDelete"),
      ratioVsIpBatch: Number(
        median(results.map((r) => (r.oursAdd / r.ipAdd + r.oursDelete / r.ipDelete) / 2)).toFixed(
          2,
        ),
      ),
    };
  } finally {
    await Deno.remove(file);
  }
}

/** `count` mmsghdrs over `count` buffers of `bytes`, optionally all sent to `name`. */
function mmsgVector(count: number, bytes: number, name?: Uint8Array<ArrayBuffer>) {
  const data = new Uint8Array(count * bytes);
  const iov = new Uint8Array(count * 16);
  const hdr = new Uint8Array(count * 64);
  const iv = new DataView(iov.buffer);
  const hv = new DataView(hdr.buffer);
  const ptr = (b: Uint8Array<ArrayBuffer>) =>
    BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b)));
  for (let i = 0; i < count; i++) {
    iv.setBigUint64(i * 16, ptr(data) + BigInt(i * bytes), true);
    iv.setBigUint64(i * 16 + 8, BigInt(bytes), true);
    if (name) {
      hv.setBigUint64(i * 64, ptr(name), true);
      hv.setUint32(i * 64 + 8, name.length, true);
    }
    hv.setBigUint64(i * 64 + 16, ptr(iov) + BigInt(i * 16), true);
    hv.setBigUint64(i * 64 + 24, 1n, true);
  }
  return { data, iov, hdr, name };
}

function udpSocket(ns: string, bindTo?: Uint8Array<ArrayBuffer>): number {
  return inNetns(ns, () => {
    const fd = check("socket", libc().socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const size = new Uint8Array(4);
    new DataView(size.buffer).setInt32(0, 8 << 20, true);
    check("setsockopt", libc().setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, 4));
    if (bindTo) check("bind", libc().bind(fd, bindTo, bindTo.length));
    return fd;
  });
}

function benchTunRead(ns: string, tun: TunDevice, packets: number) {
  const BATCH = 64;
  const sender = udpSocket(ns);
  try {
    const out = mmsgVector(BATCH, 64, sockaddrIn(addr4("10.99.0.5"), 9999));
    const batch = createPacketBatch(BATCH, 2048);
    let readMs = 0;
    let got = 0;
    const start = performance.now();
    while (got < packets && performance.now() - start < 20_000) {
      check("sendmmsg", libc().sendmmsg(sender, out.hdr, BATCH, 0));
      let pending = BATCH;
      while (pending > 0) {
        const t = performance.now();
        const n = pollAndReadPackets(tun, batch, 1000);
        readMs += performance.now() - t;
        if (n === 0) throw new Error("TUN read timed out");
        for (let i = 0; i < n; i++) {
          if (batch.buffers[i][9] !== 17) continue; // only our UDP, not IPv6 chatter
          pending--;
          got++;
        }
      }
    }
    return {
      packets: got,
      readPps: rate(got, readMs),
      loopPps: rate(got, performance.now() - start),
    };
  } finally {
    closeFd(sender);
  }
}

function benchTunWrite(ns: string, tun: TunDevice, packets: number) {
  const BATCH = 64;
  const receiver = udpSocket(ns, sockaddrIn(addr4("10.99.0.1"), 9999));
  try {
    const batch = createPacketBatch(BATCH, 128);
    for (let i = 0; i < BATCH; i++) {
      const p = udp(
        { src: addr4("10.99.0.2"), dst: addr4("10.99.0.1") },
        40000 + i,
        9999,
        new Uint8Array(64),
      );
      batch.buffers[i].set(p);
      batch.lengths[i] = p.length;
    }
    const inbox = mmsgVector(BATCH, 2048);
    let writeMs = 0;
    let written = 0;
    let delivered = 0;
    const drain = () => {
      for (;;) {
        const n = libc().recvmmsg(receiver, inbox.hdr, BATCH, MSG_DONTWAIT, null);
        if (n <= 0) return;
        delivered += n;
      }
    };
    while (written < packets) {
      const t = performance.now();
      written += writePackets(tun, batch, BATCH);
      writeMs += performance.now() - t;
      drain();
    }
    drain();
    return { writePps: rate(written, writeMs), writeDelivered: delivered / written };
  } finally {
    closeFd(receiver);
  }
}

/** Round trip: write one echo request to our own TUN address, wait, read the reply. */
async function benchWakeUp(tun: TunDevice, rounds: number) {
  const batch = createPacketBatch(8, 2048);
  const request = createPacketBatch(1, 128);
  const ping = icmpEcho({ src: addr4("10.99.0.2"), dst: addr4("10.99.0.1") }, 8, 0x7474, 1);
  request.buffers[0].set(ping);
  request.lengths[0] = ping.length;
  while (readPackets(tun, batch) > 0) { /* drop IPv6 chatter queued so far */ }
  const pollfd = tun.pollfd;
  const measure = async (wait: () => Promise<unknown> | unknown) => {
    const start = performance.now();
    for (let i = 0; i < rounds; i++) {
      writePackets(tun, request, 1);
      await wait();
      readPackets(tun, batch);
    }
    return Number((((performance.now() - start) / rounds) * 1000).toFixed(1));
  };
  const syncPoll = await measure(() => waitReadable(tun, 1000));
  const nonblockingPoll = await measure(async () => {
    const n = await libc().pollAsync(pollfd, 1n, 1000);
    if (n < 0) throw new Error(`poll failed (errno lost on the pool thread; ${lastErrno()})`);
  });
  return { syncPoll, nonblockingPoll };
}

/**
 * Run every measurement in a fresh namespace (removed afterwards) and return the numbers.
 */
export async function main(
  opts: { routes?: number; rounds?: number; packets?: number; wakeUps?: number } = {},
): Promise<NetlinkBenchResult> {
  const routes = opts.routes ?? 10_000;
  const packets = opts.packets ?? 200_000;
  return await withNetns(async (ns) => {
    return await withNetlink({ netns: ns }, async (h) => {
      const ve0 = addLink(h, { kind: "veth", name: "ve0", peer: { name: "ve1" }, up: true });
      addAddr(h, { index: ve0.index, address: parseAddr("198.18.0.1"), prefix: 24 });
      const routesPerSecond = await benchRoutes(ns, h, routes, opts.rounds ?? 3);
      const tun = openTun({ name: "bench%d", netns: ns });
      try {
        const link = getLink(h, tun.name)!;
        addAddr(h, { index: link.index, address: parseAddr("10.99.0.1"), prefix: 24 });
        setLinkUp(h, link.index);
        const read = benchTunRead(ns, tun, packets);
        const write = benchTunWrite(ns, tun, packets);
        const wakeUpMicros = await benchWakeUp(tun, opts.wakeUps ?? 2000);
        return {
          routes,
          routesPerSecond,
          tun: {
            packets: read.packets,
            readPps: read.readPps,
            writePps: write.writePps,
            writeDelivered: Number(write.writeDelivered.toFixed(4)),
            loopPps: read.loopPps,
          },
          wakeUpMicros,
        };
      } finally {
        closeTun(tun);
      }
    });
  }, "bench");
}

function printTable(r: NetlinkBenchResult): void {
  const rows: [string, string][] = [
    [`routes (${r.routes}) add/s, ours pipelined`, String(r.routesPerSecond.oursPipelinedAdd)],
    ["routes delete/s, ours pipelined", String(r.routesPerSecond.oursPipelinedDelete)],
    ["routes replace/s, ours one request per call", String(r.routesPerSecond.oursOneByOneAdd)],
    ["routes add/s, ip -batch", String(r.routesPerSecond.ipBatchAdd)],
    ["routes delete/s, ip -batch", String(r.routesPerSecond.ipBatchDelete)],
    ["ratio ours / ip -batch", `${r.routesPerSecond.ratioVsIpBatch}x`],
    ["TUN read pps (batch reads, 1 core)", String(r.tun.readPps)],
    ["TUN write pps (batch writes, 1 core)", String(r.tun.writePps)],
    ["TUN writes delivered to the socket", `${(r.tun.writeDelivered * 100).toFixed(2)} %`],
    ["kernel->TUN loop pps incl. sendmmsg", String(r.tun.loopPps)],
    ["wake-up µs, sync poll (Worker style)", String(r.wakeUpMicros.syncPoll)],
    ["wake-up µs, nonblocking FFI poll", String(r.wakeUpMicros.nonblockingPoll)],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v.padStart(10)}`);
}

if (import.meta.main) {
  const result = await main();
  printTable(result);
  await saveResult("netlink", { date: new Date().toISOString(), ...result });
}
