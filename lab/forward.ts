/**
 * TCP forwarders that cross network-namespace boundaries, for the lab.
 *
 * The lab runs one etcd on the host loopback, as a test fixture would, but node namespaces
 * cannot reach the host's loopback. So each node gets a listener on its *own* 127.0.0.1:2379
 * (flannel's default endpoint) that pipes connections to the host etcd; and the host gets a
 * loopback port per node that reaches the node's admin API. A socket keeps the namespace it
 * was created in, so each socket is created with the thread switched into the right namespace
 * (see ffi/netns.ts), and nothing is added to any namespace's network configuration.
 *
 * @module
 */
import { inNetns } from "../ffi/netns.ts";

/** A loopback TCP port, in a namespace or (netns undefined) in our own. */
export interface LoopbackEndpoint {
  readonly netns?: string;
  readonly port: number;
}

/** A running forwarder. */
export interface Forwarder {
  /** The listening port (useful when 0 was asked for). */
  readonly port: number;
  close(): void;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch { /* already closed */ }
}

async function pipePair(a: Deno.Conn, b: Deno.Conn): Promise<void> {
  const closeBoth = () => [a, b].forEach(closeQuietly);
  await Promise.allSettled([
    a.readable.pipeTo(b.writable).finally(closeBoth),
    b.readable.pipeTo(a.writable).finally(closeBoth),
  ]);
}

function connect(target: LoopbackEndpoint): Promise<Deno.TcpConn> {
  // The socket is created during the synchronous part of Deno.connect, so switching the
  // thread's namespace around the call is enough. Were that ever to change, the connection
  // would go to our own loopback, where nothing listens, and fail loudly.
  let pending: Promise<Deno.TcpConn> | undefined;
  inNetns(target.netns, () => {
    pending = Deno.connect({ hostname: "127.0.0.1", port: target.port });
  });
  return pending!;
}

/** Forward every connection accepted on `listen` to `target`. */
export function forwardTcp(listen: LoopbackEndpoint, target: LoopbackEndpoint): Forwarder {
  const listener = inNetns(
    listen.netns,
    () => Deno.listen({ hostname: "127.0.0.1", port: listen.port }),
  );
  const open = new Set<Deno.Conn>();
  (async () => {
    for await (const inbound of listener) {
      open.add(inbound);
      connect(target)
        .then((outbound) => {
          open.add(outbound);
          return pipePair(inbound, outbound).finally(() => {
            open.delete(inbound);
            open.delete(outbound);
          });
        })
        .catch(() => {
          closeQuietly(inbound);
          open.delete(inbound);
        });
    }
  })().catch(() => {/* listener closed */});
  return {
    port: listener.addr.port,
    close() {
      listener.close();
      open.forEach(closeQuietly);
      open.clear();
    },
  };
}
