/**
 * How the prober opens its sockets, through its `openSocket` port: no permission turns probing
 * off for good; a source address that cannot be bound yet (an IPv6 tunnel address still in
 * duplicate address detection) is retried until it can, and then probing starts.
 */
import assert from "node:assert/strict";
import { SyscallError } from "../../ffi/libc.ts";
import { parseAddr } from "../../ip/mod.ts";
import {
  IcmpPermissionError,
  type IcmpSocket,
  type IcmpSocketOptions,
} from "../../probe/icmp_socket.ts";
import { createPeerProber, type ProberOptions } from "../../probe/prober.ts";
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
    fullSizeBytes: 1430,
    underlaySource: parseAddr("2001:db8::11"),
    overlaySource: parseAddr("2001:db8:244:1::"),
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
