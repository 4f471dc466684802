/**
 * A throw-away etcd for the lab and the tests: the Debian `etcd` binary on free loopback ports
 * and a unix socket, with a temporary data dir (on /dev/shm when present, so fsync is cheap),
 * killable and restartable for fault tests, removed by `stop()`.
 *
 * @example
 * ```ts
 * await using etcd = await startEtcd();
 * const client = etcd.client();
 * ```
 *
 * @module
 */
import { EtcdClient } from "../etcd/client.ts";

/** A running (or killed) test etcd. */
export interface EtcdFixture extends AsyncDisposable {
  /** Client URL, e.g. `http://127.0.0.1:41234`; with TLS `https://127.0.0.1:41234`. */
  readonly endpoint: string;
  /** The same server on a unix socket (plain, also with TLS): `unix:///dev/shm/…/localhost:41234`. */
  readonly unixEndpoint: string;
  readonly dataDir: string;
  /** A client shared by the test for seeding and inspecting; closed by `stop()`. */
  client(): EtcdClient;
  /** The store's current revision. */
  revision(): Promise<number>;
  /** Compact history up to `revision` (default: the current one); returns it. */
  compact(revision?: number): Promise<number>;
  /** SIGKILL the server (data dir kept). */
  kill(): Promise<void>;
  /** Start it again on the same ports and data dir, and wait until healthy. */
  restart(): Promise<void>;
  /** Kill the server, close the client, delete the data dir. Idempotent. */
  stop(): Promise<void>;
}

/** Server TLS for {@link startEtcd}: PEM file paths. */
export interface EtcdTls {
  readonly certFile: string;
  readonly keyFile: string;
  /** CA that signed the server cert (and client certs); the fixture's own client trusts it. */
  readonly caFile: string;
  /** Require client certificates signed by `caFile`; the fixture's client then uses these. */
  readonly client?: { readonly certFile: string; readonly keyFile: string };
}

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** Serve clients over https with this TLS setup. */
  readonly tls?: EtcdTls;
}

const START_TIMEOUT_MS = 15_000;
/** Starts tried when a port turns out to be taken (another process bound it after we picked it). */
const PORT_ATTEMPTS = 5;

/** etcd exited because one of its ports was taken. */
class PortTakenError extends Error {
  constructor(logTail: string) {
    super(`etcd: a port was taken:\n${logTail}`);
    this.name = "PortTakenError";
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function tempRoot(): Promise<string> {
  const shm = await Deno.stat("/dev/shm").then((s) => s.isDirectory, () => false);
  return await Deno.makeTempDir({ prefix: "tt-etcd-", ...(shm && { dir: "/dev/shm" }) });
}

async function healthy(metricsUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${metricsUrl}/health`, { signal: AbortSignal.timeout(1000) });
    const body = await res.text();
    return res.ok && body.includes('"health":"true"');
  } catch {
    return false;
  }
}

function tlsArgs(tls: EtcdTls | undefined): string[] {
  if (!tls) return [];
  const args = ["--cert-file", tls.certFile, "--key-file", tls.keyFile];
  return tls.client ? [...args, "--client-cert-auth", "--trusted-ca-file", tls.caFile] : args;
}

function clientFor(endpoint: string, tls: EtcdTls | undefined): EtcdClient {
  return new EtcdClient({
    endpoints: [endpoint],
    ...(tls && { caFile: tls.caFile }),
    ...(tls?.client && { certFile: tls.client.certFile, keyFile: tls.client.keyFile }),
  });
}

/**
 * Start an etcd and wait until it reports healthy (bounded). Health is read from a plain-http
 * metrics listener, so it works the same with TLS and client-certificate auth.
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdFixture> {
  const root = await tempRoot();
  const dataDir = `${root}/data`;
  const logFile = `${root}/etcd.log`;
  const name = `tt-${crypto.randomUUID().slice(0, 8)}`;
  // Ports are free when picked but may be taken by the time etcd binds them: see startOnFreePorts.
  let ports = [freePort(), freePort(), freePort()];
  const urls = () => {
    const [clientPort, peerPort, metricsPort] = ports;
    return {
      endpoint: `${options.tls ? "https" : "http"}://127.0.0.1:${clientPort}`,
      // etcd 3.4 wants host:port here and creates the socket `localhost:PORT` in its cwd.
      unix: `unix://localhost:${clientPort}`,
      metrics: `http://127.0.0.1:${metricsPort}`,
      peer: `http://127.0.0.1:${peerPort}`,
    };
  };
  const args = () => {
    const u = urls();
    return [
      "--name",
      name,
      "--data-dir",
      dataDir,
      "--listen-client-urls",
      `${u.endpoint},${u.unix}`,
      "--advertise-client-urls",
      u.endpoint,
      "--listen-peer-urls",
      u.peer,
      "--initial-advertise-peer-urls",
      u.peer,
      "--initial-cluster",
      `${name}=${u.peer}`,
      "--listen-metrics-urls",
      u.metrics,
      "--log-level",
      "warn",
      ...tlsArgs(options.tls),
    ];
  };
  let child: Deno.ChildProcess | undefined;
  let client: EtcdClient | undefined;
  let stopped = false;

  /** Start etcd once and wait until healthy; a port taken meanwhile is a PortTakenError. */
  async function launch(): Promise<void> {
    // etcd does not remove a socket left by a killed run; binding it again would fail.
    await Deno.remove(`${root}/${urls().unix.slice("unix://".length)}`).catch(() => {});
    const logStart = await Deno.stat(logFile).then((s) => s.size, () => 0);
    const log = await Deno.open(logFile, { append: true, create: true, write: true });
    let logged: Promise<void>;
    try {
      child = new Deno.Command("etcd", {
        args: args(),
        cwd: root,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      })
        .spawn();
      logged = child.stderr.pipeTo(log.writable).catch(() => {});
    } catch (error) {
      log.close();
      throw error;
    }
    const deadline = Date.now() + START_TIMEOUT_MS;
    const exited = child.status.then(() => true);
    while (Date.now() < deadline) {
      if (await Promise.race([exited, new Promise<false>((r) => setTimeout(r, 50, false))])) break;
      if (await healthy(urls().metrics)) return;
    }
    await kill();
    // The exit can be seen before its last words reach the log: read it only once they have.
    await logged;
    const output = (await Deno.readTextFile(logFile).catch(() => "")).slice(logStart);
    const tail = output.slice(-2000);
    if (/address already in use/.test(output)) throw new PortTakenError(tail);
    throw new Error(`etcd did not become healthy on ${urls().endpoint}:\n${tail}`);
  }

  /** Launch; while a port is taken when etcd binds it, `onPortTaken` and launch again. */
  async function launchRetrying(onPortTaken: (attempt: number) => unknown): Promise<void> {
    for (let attempt = 1;; attempt++) {
      try {
        return await launch();
      } catch (error) {
        if (!(error instanceof PortTakenError) || attempt === PORT_ATTEMPTS) throw error;
        await onPortTaken(attempt);
      }
    }
  }

  /** First start: a port taken between picking and binding is replaced by new ones. */
  const startOnFreePorts = () => launchRetrying(() => ports = [freePort(), freePort(), freePort()]);

  /** Restart: the ports are part of the member's identity, so wait for them to be free again. */
  const relaunch = () =>
    launchRetrying((attempt) => new Promise((r) => setTimeout(r, 200 * attempt)));

  async function kill(): Promise<void> {
    const running = child;
    child = undefined;
    if (!running) return;
    try {
      running.kill("SIGKILL");
    } catch {
      // already gone
    }
    await running.status;
  }

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    client?.close();
    await kill();
    await Deno.remove(root, { recursive: true }).catch(() => {});
  }

  try {
    await startOnFreePorts();
  } catch (error) {
    await stop();
    throw error;
  }
  const { endpoint, unix } = urls();
  const fixture: EtcdFixture = {
    endpoint,
    unixEndpoint: unix.replace("unix://", `unix://${root}/`),
    dataDir,
    client() {
      client ??= clientFor(endpoint, options.tls);
      return client;
    },
    async revision() {
      return (await fixture.client().range({ key: "\0" })).revision;
    },
    async compact(revision?: number) {
      const target = revision ?? await fixture.revision();
      await fixture.client().compact(target);
      return target;
    },
    kill,
    async restart() {
      await kill();
      await relaunch();
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
  return fixture;
}
