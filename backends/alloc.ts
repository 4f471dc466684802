/**
 * `alloc`: acquire a lease and publish subnet.env, program nothing (spec §6.7). Routing is
 * someone else's job (a cloud route table, another CNI).
 *
 * @module
 */
import type { Backend, Network } from "./backend.ts";

/** The alloc backend. */
export const allocBackend: Backend = {
  type: "alloc",
  async register(ctx): Promise<Network> {
    const lease = await ctx.manager.acquireLease(
      { publicIP: ctx.ext.publicIP ?? { family: 4, value: 0n }, publicIPv6: ctx.ext.publicIPv6 },
      ctx.signal,
    );
    return {
      lease,
      mtu: ctx.ext.mtu,
      async run(updates, signal) {
        // Drain the watch so the daemon's view of the leases (API, metrics) stays current.
        for await (const _ of updates) {
          if (signal.aborted) break;
        }
      },
      health: () => ({ type: "alloc", ready: true, driftRepaired: 0, peers: [] }),
      close: () => Promise.resolve(),
    };
  },
};
