/**
 * A TCP forwarder whose listening socket lives inside a network namespace.
 *
 * The lab runs one etcd on the host loopback, as a test fixture would, but node namespaces
 * cannot reach the host's loopback. So each node gets a listener on its *own* 127.0.0.1:2379
 * (flannel's default endpoint) that pipes connections to the host etcd. The listener is created
 * with the thread switched into the node's namespace (a socket keeps the namespace it was made
 * in), so nothing is added to the host's network configuration.
 *
 * @module
 */
import { inNetns } from "../ffi/netns.ts";

/** A running forwarder. */
export interface Forwarder {
  close(): void;
}

async function pipePair(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  const closeBoth = () => {
    for (const conn of [a, b]) {
      try {
        conn.close();
      } catch { /* already closed */ }
    }
  };
  await Promise.allSettled([
    a.readable.pipeTo(b.writable).finally(closeBoth),
    b.readable.pipeTo(a.writable).finally(closeBoth),
  ]);
}

/**
 * Listen on `127.0.0.1:listenPort` inside `netns` and forward each connection to
 * `127.0.0.1:targetPort` in the calling process's namespace.
 */
export function forwardIntoNetns(netns: string, listenPort: number, targetPort: number): Forwarder {
  const listener = inNetns(netns, () => Deno.listen({ hostname: "127.0.0.1", port: listenPort }));
  const open = new Set<Deno.Conn>();
  (async () => {
    for await (const inbound of listener) {
      open.add(inbound);
      Deno.connect({ hostname: "127.0.0.1", port: targetPort })
        .then((outbound) => {
          open.add(outbound);
          return pipePair(inbound, outbound).finally(() => {
            open.delete(inbound);
            open.delete(outbound);
          });
        })
        .catch(() => {
          inbound.close();
          open.delete(inbound);
        });
    }
  })().catch(() => {/* listener closed */});
  return {
    close() {
      listener.close();
      for (const conn of open) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      open.clear();
    },
  };
}
