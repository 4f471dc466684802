/**
 * Run synchronous code with the calling thread inside another network namespace.
 *
 * `setns(2)` moves only the calling OS thread, and a synchronous FFI call never yields to the
 * event loop, so between entering and leaving no other JavaScript runs on this thread. Sockets
 * and TUN devices keep the namespace they were created in after we switch back, which is how a
 * netlink handle or a TUN fd gets bound to a namespace while the process stays in its own.
 *
 * @module
 */
import { check, closeFd, libc, openPath } from "./libc.ts";
import { O_RDONLY } from "./unix.ts";

const CLONE_NEWNET = 0x40000000;

/** The file of a namespace: a name under `/run/netns` (as `ip netns add` makes), or a path. */
export function netnsPath(netns: string): string {
  if (netns.includes("/")) return netns;
  if (netns === "" || netns === "." || netns === "..") {
    throw new RangeError(`invalid network namespace name ${JSON.stringify(netns)}`);
  }
  return `/run/netns/${netns}`;
}

/** Open a namespace file (caller closes the fd), e.g. for `IFLA_NET_NS_FD`. */
export function openNetns(netns: string): number {
  return openPath(netnsPath(netns), O_RDONLY);
}

/**
 * Call `fn` with this thread in the namespace `netns`, then switch back, also on throw.
 * `fn` must be synchronous: after an `await` the thread would already be back home.
 * Without `netns` it just calls `fn`.
 *
 * @example
 * ```ts
 * const fd = inNetns("tt-abc123-a", () => libc().socket(16, 3, 0));
 * ```
 */
export function inNetns<T>(netns: string | undefined, fn: () => T): T {
  if (netns === undefined) return fn();
  const target = openNetns(netns);
  let home = -1;
  try {
    home = openPath("/proc/thread-self/ns/net", O_RDONLY);
    check("setns", libc().setns(target, CLONE_NEWNET), netnsPath(netns));
    try {
      const result = fn();
      if (result instanceof Promise) throw new TypeError("inNetns: fn must be synchronous");
      return result;
    } finally {
      // Failing to return would leave this thread in a foreign namespace: never continue then.
      check("setns", libc().setns(home, CLONE_NEWNET), "(back to the original namespace)");
    }
  } finally {
    if (home >= 0) closeFd(home);
    closeFd(target);
  }
}
