/**
 * Kernel change notifications (RTNLGRP_* multicast groups) as an async stream.
 *
 * The wait runs as a `nonblocking` poll on a libc pool thread (~26 µs per wake-up), so the event
 * loop stays free; reading the queued messages is synchronous. A finite poll timeout lets the
 * loop notice `signal` within half a second. ENOBUFS from the socket means events were lost:
 * it is thrown, and the caller should re-list and diff.
 *
 * @module
 */
import { pollFdAsync } from "../libc.ts";
import type { NetlinkMessage } from "./codec.ts";
import { closeNetlink, type NetlinkHandle, openNetlink, readEvents } from "./socket.ts";
import { POLLIN } from "../unix.ts";

const WAKE_UP_MS = 500;

/**
 * Yield batches of notifications for `groups` (e.g. `[RTNLGRP_LINK]`) until `signal` aborts.
 *
 * @example
 * ```ts
 * for await (const batch of watchEvents({ groups: [RTNLGRP_LINK] }, signal)) {
 *   for (const m of batch) if (m.header.type === RTM_DELLINK) recreate(linkFromMessage(m));
 * }
 * ```
 */
export async function* watchEvents(
  opts: { groups: readonly number[]; netns?: string },
  signal: AbortSignal,
): AsyncGenerator<NetlinkMessage[]> {
  const h: NetlinkHandle = openNetlink(opts);
  try {
    while (!signal.aborted) {
      if (await pollFdAsync(h.fd, POLLIN, WAKE_UP_MS) === 0) continue;
      const batch = readEvents(h, 0);
      if (batch.length > 0) yield batch;
    }
  } finally {
    closeNetlink(h);
  }
}
