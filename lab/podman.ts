/**
 * Debian's podman as a real container runtime on a lab node: every call runs inside the node's
 * network namespace, with storage, state, locks and configuration private to one directory, so
 * two nodes (or two tests) never share anything.
 *
 * What this machine needs (see the project's runtime notes): `nsenter --net=…` rather than
 * `ip netns exec` (which remounts /sys and hides the cgroup mounts runc needs), runc with
 * cgroupfs, explicit ulimits (podman's defaults exceed the hard limit and raising it is not
 * permitted), and the CNI network backend, which reads our conflist and runs our plugin.
 *
 * @module
 */
import { join } from "node:path";
import { commandRunner } from "../exec.ts";
import { CNI_BIN_DIR, type CniConflist } from "./pods.ts";
import { tartanArgv } from "./self.ts";

/** Where Debian's busybox-static puts its binary. */
export const BUSYBOX_STATIC = "/bin/busybox";

/** The applets a test container's root filesystem links to busybox. */
const APPLETS = ["sh", "ping", "ip", "sleep", "cat", "ls"];

/** Ulimits within this machine's hard limits; every container gets them explicitly. */
const ULIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"];

/** How long one podman call may take. */
const PODMAN_TIMEOUT_MS = 60_000;

/** Options of {@link startNodePodman}. */
export interface NodePodmanOptions {
  /** The node's network namespace (a name under /run/netns). */
  readonly ns: string;
  /** A directory of its own: storage, run state, configuration, root filesystem. */
  readonly dir: string;
  /** The CNI network its containers may join (`--network <name>`), if any. */
  readonly network?: CniConflist;
  /** The argv of our CNI plugin, installed as `flannel` (default: `tartan cni` from here). */
  readonly flannelArgv?: readonly string[];
}

/** podman on one node. */
export interface NodePodman {
  readonly ns: string;
  /** A busybox root filesystem for `--rootfs`, so no image or registry is needed. */
  readonly rootfs: string;
  /** Run `podman <args>` in the node namespace; resolves to its stdout. */
  podman(args: readonly string[]): Promise<string>;
  /** `podman run <args>` with the explicit ulimits; resolves to its stdout. */
  run(args: readonly string[]): Promise<string>;
  /** Remove every container (its CNI DEL runs), then the node's podman files. */
  close(): Promise<void>;
}

/** A shell word, quoted. */
function shellQuote(word: string): string {
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** A directory holding our CNI plugin as an executable named `flannel`. */
async function installFlannelPlugin(dir: string, argv: readonly string[]): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const script = `#!/bin/sh\nexec ${argv.map(shellQuote).join(" ")}\n`;
  await Deno.writeTextFile(join(dir, "flannel"), script, { mode: 0o755 });
  return dir;
}

/** A minimal root filesystem: the static busybox and links for the applets tests use. */
export async function busyboxRootfs(dir: string): Promise<string> {
  await Deno.mkdir(join(dir, "bin"), { recursive: true });
  await Deno.copyFile(BUSYBOX_STATIC, join(dir, "bin/busybox"));
  for (const applet of APPLETS) await Deno.symlink("busybox", join(dir, "bin", applet));
  return dir;
}

/** A TOML string (JSON's escapes are a subset of TOML's basic strings). */
const toml = (value: string | readonly string[]) => JSON.stringify(value);

function containersConf(dir: string, pluginDirs: readonly string[], networkDir: string): string {
  return [
    "[network]",
    `network_backend = "cni"`,
    `cni_plugin_dirs = ${toml(pluginDirs)}`,
    `network_config_dir = ${toml(networkDir)}`,
    "[engine]",
    `runtime = "runc"`,
    `cgroup_manager = "cgroupfs"`,
    `events_logger = "file"`,
    // File locks under the private tmp_dir: the default shared-memory locks are one segment
    // for every podman on the machine, which a fresh tmp_dir's "first run" would reset.
    `lock_type = "file"`,
    `tmp_dir = ${toml(join(dir, "tmp"))}`,
    "",
  ].join("\n");
}

/**
 * Prepare podman for a lab node: containers.conf (named by `CONTAINERS_CONF`), the network's
 * conflist, our plugin as `flannel` ahead of the standard plugins, and a busybox rootfs.
 */
export async function startNodePodman(options: NodePodmanOptions): Promise<NodePodman> {
  const { ns, dir } = options;
  const networkDir = join(dir, "cni-net");
  await Deno.mkdir(networkDir, { recursive: true });
  if (options.network) {
    const file = join(networkDir, `${options.network.name}.conflist`);
    await Deno.writeTextFile(file, JSON.stringify(options.network));
  }
  const pluginDir = await installFlannelPlugin(
    join(dir, "cni-bin"),
    options.flannelArgv ?? tartanArgv(["cni"]),
  );
  const conf = join(dir, "containers.conf");
  await Deno.writeTextFile(conf, containersConf(dir, [pluginDir, CNI_BIN_DIR], networkDir));
  const rootfs = await busyboxRootfs(join(dir, "rootfs"));
  const exec = commandRunner({ timeoutMs: PODMAN_TIMEOUT_MS });
  const podman = (args: readonly string[]) =>
    exec([
      "nsenter",
      `--net=/run/netns/${ns}`,
      "env",
      `CONTAINERS_CONF=${conf}`,
      "podman",
      `--root=${join(dir, "root")}`,
      `--runroot=${join(dir, "runroot")}`,
      "--runtime=runc",
      "--cgroup-manager=cgroupfs",
      ...args,
    ]);
  return {
    ns,
    rootfs,
    podman,
    run: (args) => podman(["run", ...ULIMITS, ...args]),
    async close() {
      try {
        await podman(["rm", "--all", "--force", "--time=0"]);
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}
