/**
 * The largest packet that crosses the underlay to a peer, found by bisection with DF echo
 * requests: what turns "full-size probes vanish" into "this path carries at most 1400 bytes".
 *
 * @module
 */
import type { IPAddr } from "../ip/mod.ts";
import { openIcmpSocket } from "../probe/icmp_socket.ts";

/** The smallest packet every link must carry: IPv4 68 bytes (RFC 791), IPv6 1280 (RFC 8200). */
const MIN_MTU = { 4: 68, 6: 1280 } as const;
/** The largest size tried (jumbo frames); a send above the local device's MTU fails at once. */
const MAX_TRIED = 9000;
/** How long each size waits for its reply. */
const STEP_TIMEOUT_MS = 500;

/** Whether one DF echo of `bytes` to `to` is answered within the timeout. */
type Prober = (bytes: number) => Promise<boolean>;

/**
 * The largest size in `low..high` for which `passes` holds, assuming it holds up to some size
 * and not above (undefined when not even `low` passes). About log2(high − low) probes.
 */
export async function largestPassing(
  low: number,
  high: number,
  passes: Prober,
): Promise<number | undefined> {
  if (!(await passes(low))) return undefined;
  let ok = low;
  let bad = high + 1;
  while (bad - ok > 1) {
    const mid = Math.floor((ok + bad) / 2);
    if (await passes(mid)) ok = mid;
    else bad = mid;
  }
  return ok;
}

/** The path MTU to `to` over the underlay (undefined: not even a minimal echo comes back). */
export async function underlayPathMtu(to: IPAddr): Promise<number | undefined> {
  const socket = openIcmpSocket({ family: to.family });
  let seq = 0;
  try {
    return await largestPassing(MIN_MTU[to.family], MAX_TRIED, async (bytes) => {
      const mine = ++seq;
      if (socket.send(to, mine, bytes) !== undefined) return false; // EMSGSIZE: over our MTU
      const deadline = performance.now() + STEP_TIMEOUT_MS;
      for (let left = STEP_TIMEOUT_MS; left > 0; left = deadline - performance.now()) {
        if ((await socket.receive(left)).some((reply) => reply.seq === mine)) return true;
      }
      return false;
    });
  } finally {
    socket.close();
  }
}
