/**
 * One lab node's daemon: `tartan run` inside the node namespace, with its own subnet file,
 * etcd reached through a forwarder on the node's 127.0.0.1:2379 (kube mode: the API server on
 * its 127.0.0.1:6443), and its admin API made reachable on a host loopback port.
 *
 * @module
 */
import { WIREGUARD_SOCKET_DIR } from "../backends/wireguard/uapi_client.ts";
import { type Forwarder, forwardTcp } from "./forward.ts";
import { tartanArgv } from "./self.ts";

/** The admin port inside every node namespace. */
export const NODE_ADMIN_PORT = 9101;
/** flannel's default etcd client port, served inside each node by a forwarder. */
export const NODE_ETCD_PORT = 2379;
/** kube-apiserver's usual port, served inside each node by a forwarder (kube mode). */
export const NODE_KUBE_API_PORT = 6443;

/** A node daemon's files and process. */
export interface NodeDaemon {
  readonly ns: string;
  readonly dir: string;
  readonly subnetFile: string;
  readonly logFile: string;
  /**
   * The node's own WireGuard socket directory: the daemon runs in a private mount namespace with
   * it bind-mounted on /var/run/wireguard (wireguard-go's fixed path), so nodes do not collide.
   */
  readonly wireguardDir: string;
  /** The daemon's process id (to enter its namespaces), while it runs. */
  pid(): number | undefined;
  /** Host loopback URL of the node's admin API. */
  readonly adminUrl: string;
  /** Whether the daemon process is running. */
  running(): boolean;
  /** Start (or restart) the daemon. */
  start(): Promise<void>;
  /** SIGTERM and wait (SIGKILL after `graceMs`); resolves to the exit status. */
  stop(graceMs?: number): Promise<number | undefined>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Stop the daemon and the forwarders. */
  close(): Promise<void>;
}

/** How a node reaches the lab's lease store: etcd, or (kube mode) a Kubernetes API. */
export type NodeStoreOptions =
  | {
    /** Host port of the lab's etcd. */
    readonly etcdPort: number;
  }
  | {
    readonly kube: {
      /** Host port of the API server. */
      readonly apiPort: number;
      /** The node's Kubernetes name, given to the daemon as NODE_NAME. */
      readonly nodeName: string;
      /** The net-conf file (`--net-config-path`). */
      readonly netConfigPath: string;
    };
  };

/** Options of {@link startNodeDaemon}. */
export type NodeDaemonOptions = NodeStoreOptions & {
  readonly ns: string;
  readonly dir: string;
  /** Extra `tartan run` flags (e.g. `--ip-masq`). */
  readonly flags?: readonly string[];
  /** Extra environment of the daemon (e.g. `NOTIFY_SOCKET`). */
  readonly env?: Readonly<Record<string, string>>;
};

/** The forwarder, flags and environment that connect a node to its lease store. */
function storeWiring(
  ns: string,
  store: NodeStoreOptions,
): { forwarder: Forwarder; args: string[]; env: Record<string, string> } {
  if ("kube" in store) {
    return {
      forwarder: forwardTcp({ netns: ns, port: NODE_KUBE_API_PORT }, { port: store.kube.apiPort }),
      args: [
        "--kube-subnet-mgr",
        `--kube-api-url=http://127.0.0.1:${NODE_KUBE_API_PORT}`,
        `--net-config-path=${store.kube.netConfigPath}`,
      ],
      env: { NODE_NAME: store.kube.nodeName },
    };
  }
  return {
    forwarder: forwardTcp({ netns: ns, port: NODE_ETCD_PORT }, { port: store.etcdPort }),
    args: [`--etcd-endpoints=http://127.0.0.1:${NODE_ETCD_PORT}`],
    env: {},
  };
}

/**
 * Copy a stream into a file as it arrives. (`FsFile.writable` holds writes until the stream
 * closes, so a live daemon's log would stay empty.)
 */
async function appendTo(file: Deno.FsFile, stream: ReadableStream<Uint8Array>): Promise<void> {
  try {
    for await (const chunk of stream) {
      for (let done = 0; done < chunk.length;) done += await file.write(chunk.subarray(done));
    }
  } finally {
    file.close();
  }
}

/** Prepare a node's forwarders and start its daemon. */
export async function startNodeDaemon(options: NodeDaemonOptions): Promise<NodeDaemon> {
  const { ns, dir } = options;
  await Deno.mkdir(dir, { recursive: true });
  const subnetFile = `${dir}/subnet.env`;
  const logFile = `${dir}/tartan.log`;
  const wireguardDir = `${dir}/wireguard`;
  await Deno.mkdir(wireguardDir, { recursive: true });
  await Deno.mkdir(WIREGUARD_SOCKET_DIR, { recursive: true });
  const store = storeWiring(ns, options);
  const forwarders: Forwarder[] = [store.forwarder];
  const admin = forwardTcp({ port: 0 }, { netns: ns, port: NODE_ADMIN_PORT });
  forwarders.push(admin);
  let child: Deno.ChildProcess | undefined;
  let exited: Promise<Deno.CommandStatus> | undefined;

  const argv = tartanArgv([
    "run",
    ...store.args,
    `--subnet-file=${subnetFile}`,
    "--iface=ul0",
    "--healthz-ip=127.0.0.1",
    `--healthz-port=${NODE_ADMIN_PORT}`,
    ...(options.flags ?? []),
  ]);

  async function waitExit(graceMs: number): Promise<number | undefined> {
    if (!child || !exited) return undefined;
    const timer = setTimeout(() => {
      try {
        child?.kill("SIGKILL");
      } catch { /* gone */ }
    }, graceMs);
    const status = await exited;
    clearTimeout(timer);
    child = undefined;
    exited = undefined;
    return status.code;
  }

  const daemon: NodeDaemon = {
    ns,
    dir,
    subnetFile,
    logFile,
    wireguardDir,
    pid: () => child?.pid,
    adminUrl: `http://127.0.0.1:${admin.port}`,
    running: () => child !== undefined,
    async start() {
      if (child) return;
      const log = await Deno.open(logFile, { append: true, create: true, write: true });
      child = new Deno.Command("ip", {
        args: [
          ...["netns", "exec", ns, "unshare", "--mount", "sh", "-c"],
          `mount --bind "$0" ${WIREGUARD_SOCKET_DIR} && exec "$@"`,
          wireguardDir,
          ...argv,
        ],
        stdin: "null",
        stdout: "null",
        stderr: "piped",
        env: {
          NO_COLOR: "1",
          WIREGUARD_KEY_FILE: `${dir}/wgkey`, // each node its own key, not the host's
          ...store.env,
          ...options.env,
        },
      }).spawn();
      appendTo(log, child.stderr).catch(() => {});
      exited = child.status;
    },
    async stop(graceMs = 5000) {
      try {
        child?.kill("SIGTERM");
      } catch { /* gone */ }
      return await waitExit(graceMs);
    },
    async kill() {
      try {
        child?.kill("SIGKILL");
      } catch { /* gone */ }
      await waitExit(0);
    },
    async close() {
      await daemon.stop();
      for (const f of forwarders) f.close();
    },
  };
  await daemon.start();
  return daemon;
}
