/**
 * The prober through its `openSocket` port, without the network: no permission turns probing
 * off for good; a source address that cannot be bound yet (an IPv6 tunnel address still in
 * duplicate address detection) is retried until it can, and then probing starts; a dual-stack
 * node probes each peer in each family on that family's sockets, at that family's full size.
 */
import assert from "node:assert/strict";
import { SyscallError } from "../../ffi/libc.ts";
import {
  IcmpPermissionError,
  type IcmpSocket,
  type IcmpSocketOptions,
} from "../../probe/icmp_socket.ts";
import { createPeerProber, type ProberOptions, smallProbeBytes } from "../../probe/prober.ts";
import type { ProbeTarget } from "../../probe/targets.ts";
import { formatAddr, parseAddr, parseNet } from "../../ip/mod.ts";
import { captureLog, waitFor } from "../helpers/leases.ts";

/** EADDRNOTAVAIL, as bind(2) reports a tentative IPv6 address. */
const ADDRESS_NOT_AVAILABLE = 99;

/** A socket that sends nothing and never hears back. */
function silentSocket(): IcmpSocket {
  return {
    kind: "raw",
    id: 1,
    family: 6,
    send: () => undefined,
    receive: (ms) => new Promise((resolve) => setTimeout(() => resolve([]), Math.min(ms, 50))),
    close: () => {},
  };
}

function options(openSocket: (o: IcmpSocketOptions) => IcmpSocket): ProberOptions {
  return {
    intervalMs: 1000,
    maxPerSecond: 50,
    families: [{
      underlaySource: parseAddr("2001:db8::11"),
      overlaySource: parseAddr("2001:db8:244:1::"),
      fullSizeBytes: 1430,
    }],
    targets: () => [],
    log: captureLog().log,
    openSocket,
  };
}

Deno.test("prober: no permission to open ICMP sockets turns probing off at once", async () => {
  const prober = createPeerProber(options(() => {
    throw new IcmpPermissionError("cannot send ICMPv6 echo: raw socket EPERM");
  }));
  await prober.run(AbortSignal.timeout(10_000));
  const report = prober.report();
  assert.equal(report.enabled, false);
  assert.equal(report.off, "permission");
  assert.match(report.disabledReason ?? "", /EPERM/);
});

Deno.test("prober: a source address not bindable yet is retried, then probing starts", async () => {
  let opens = 0;
  let failuresLeft = 1;
  const prober = createPeerProber(options((o) => {
    opens++;
    if (o.source?.value === parseAddr("2001:db8:244:1::").value && failuresLeft-- > 0) {
      throw new SyscallError("bind", ADDRESS_NOT_AVAILABLE, "icmp 2001:db8:244:1::");
    }
    return silentSocket();
  }));
  const stop = new AbortController();
  const running = prober.run(AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
  try {
    await waitFor("the first attempt", () => prober.report().disabledReason !== undefined);
    const waiting = prober.report();
    assert.equal(waiting.enabled, false);
    assert.equal(waiting.off, undefined, "not off: waiting for the address");
    assert.match(waiting.disabledReason!, /EADDRNOTAVAIL/);
    await waitFor("probing to start", () => prober.report().enabled, 5000);
    assert.equal(prober.report().disabledReason, undefined);
    assert.equal(opens, 4, "two attempts, two sockets each (the first closed)");
  } finally {
    stop.abort();
    await running;
  }
});

/** One echo a fake socket was asked to send: `from → to, bytes`. */
type Sent = string;

Deno.test("prober: a dual-stack node probes each peer in both families, each at its own size", async () => {
  const sent: Sent[] = [];
  const openSocket = (o: IcmpSocketOptions): IcmpSocket => ({
    ...silentSocket(),
    family: o.source!.family,
    send: (to, _seq, bytes) =>
      void sent.push(`${formatAddr(o.source!)} → ${formatAddr(to)}, ${bytes}`),
  });
  const target = (subnet: string, publicIP: string, overlay: string): ProbeTarget => ({
    key: "10.244.2.0-24&2001:db8:244:2::-64",
    subnet: parseNet(subnet),
    publicIP: parseAddr(publicIP),
    overlay: parseAddr(overlay),
  });
  const prober = createPeerProber({
    ...options(openSocket),
    families: [
      {
        underlaySource: parseAddr("198.18.0.1"),
        overlaySource: parseAddr("10.244.1.0"),
        fullSizeBytes: 1450,
      },
      {
        underlaySource: parseAddr("2001:db8::1"),
        overlaySource: parseAddr("2001:db8:244:1::"),
        fullSizeBytes: 1430,
      },
    ],
    targets: () => [
      target("10.244.2.0/24", "198.18.0.2", "10.244.2.0"),
      target("2001:db8:244:2::/64", "2001:db8::2", "2001:db8:244:2::"),
    ],
  });
  const stop = new AbortController();
  const running = prober.run(AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
  try {
    await waitFor("both families' echoes", () => sent.length >= 6);
  } finally {
    stop.abort();
    await running;
  }
  assert.deepEqual(
    sent.slice(0, 6).sort(),
    [
      `10.244.1.0 → 10.244.2.0, ${smallProbeBytes(4)}`,
      "10.244.1.0 → 10.244.2.0, 1450",
      `198.18.0.1 → 198.18.0.2, ${smallProbeBytes(4)}`,
      `2001:db8:244:1:: → 2001:db8:244:2::, ${smallProbeBytes(6)}`,
      "2001:db8:244:1:: → 2001:db8:244:2::, 1430",
      `2001:db8::1 → 2001:db8::2, ${smallProbeBytes(6)}`,
    ].sort(),
  );
  const report = prober.report();
  assert.deepEqual(report.peers.map((p) => p.target.key), [
    "10.244.2.0-24&2001:db8:244:2::-64",
    "10.244.2.0-24&2001:db8:244:2::-64",
  ], "one history per family of the one lease");
  assert.deepEqual(report.fullSizeBytes, { 4: 1450, 6: 1430 });
});

Deno.test("prober: targets in a family the node does not probe are left out", async () => {
  let rounds = 0;
  const prober = createPeerProber({
    ...options(() => silentSocket()),
    targets: () => {
      rounds++;
      return [{
        key: "10.244.2.0-24",
        subnet: parseNet("10.244.2.0/24"),
        publicIP: parseAddr("198.18.0.2"),
      }];
    },
  });
  const stop = new AbortController();
  const running = prober.run(AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]));
  try {
    await waitFor("a round to read the targets", () => rounds > 0);
    assert.deepEqual(prober.report().peers, [], "an IPv4 target on an IPv6-only prober");
  } finally {
    stop.abort();
    await running;
  }
});
