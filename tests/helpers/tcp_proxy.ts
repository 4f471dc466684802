/**
 * A loopback TCP forwarder that a test can cut and restore, to put a client out of reach of a
 * server that keeps running (e.g. so etcd compacts history while our watch is disconnected).
 *
 * @module
 */

/** A running forwarder. */
export interface TcpProxy extends AsyncDisposable {
  /** `127.0.0.1:<port>` to connect to instead of the target. */
  readonly address: string;
  /** Drop every open connection and refuse new ones until `restore()`. */
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

/** Forward a fresh loopback port to `targetPort` on 127.0.0.1. */
export function startTcpProxy(targetPort: number): TcpProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  const pipes = new Set<Promise<void>>();
  let cut = false;

  const track = (promise: Promise<void>) => {
    pipes.add(promise);
    promise.finally(() => pipes.delete(promise));
  };

  const closeConn = (conn: Deno.Conn) => {
    open.delete(conn);
    try {
      conn.close();
    } catch {
      // already closed
    }
  };

  async function forward(client: Deno.Conn): Promise<void> {
    let server: Deno.Conn;
    try {
      server = await Deno.connect({ hostname: "127.0.0.1", port: targetPort });
    } catch {
      closeConn(client);
      return;
    }
    open.add(server);
    const pipe = async (from: Deno.Conn, to: Deno.Conn) => {
      const buf = new Uint8Array(64 * 1024);
      try {
        for (;;) {
          const n = await from.read(buf);
          if (n === null) break;
          let written = 0;
          while (written < n) written += await to.write(buf.subarray(written, n));
        }
      } catch {
        // either side went away
      }
      closeConn(from);
      closeConn(to);
    };
    await Promise.all([pipe(client, server), pipe(server, client)]);
  }

  const accepting = (async () => {
    for await (const conn of listener) {
      if (cut) {
        conn.close();
        continue;
      }
      open.add(conn);
      track(forward(conn));
    }
  })().catch(() => {});

  const proxy: TcpProxy = {
    address: `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    cut() {
      cut = true;
      for (const conn of [...open]) closeConn(conn);
    },
    restore() {
      cut = false;
    },
    async close() {
      proxy.cut();
      try {
        listener.close();
      } catch {
        // already closed
      }
      await accepting;
      await Promise.all([...pipes]);
    },
    [Symbol.asyncDispose]: () => proxy.close(),
  };
  return proxy;
}
