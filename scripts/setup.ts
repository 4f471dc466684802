/**
 * Installs what the demo and the tests need on a fresh Debian machine, when it is missing:
 * the Debian packages below (as root, through apt-get). Run by `deno task demo` and
 * `deno task test` before anything else, so that those two commands are the whole set-up.
 */
const PACKAGES: Record<string, string> = {
  etcd: "etcd-server",
  etcdctl: "etcd-client",
  ip: "iproute2",
  iptables: "iptables",
  nft: "nftables",
  ping: "iputils-ping",
  iperf3: "iperf3",
  tcpdump: "tcpdump",
  // Traces the system calls of durable writes (fsync before rename).
  strace: "strace",
  // Debian's kubectl; the manifests test uses it for a client-side dry run.
  kubectl: "kubernetes-client",
  // A real container runtime and a real scraper for the e2e tests.
  podman: "podman",
  runc: "runc",
  prometheus: "prometheus",
  promtool: "prometheus",
  // Userspace WireGuard: the wireguard backend falls back to it where the kernel has no module
  // (as here), and the interop test configures a hand-made node with wg.
  "wireguard-go": "wireguard-go",
  wg: "wireguard-tools",
  // Building the image offline (Debian packages, no registry) and reading it back.
  mmdebstrap: "mmdebstrap",
  skopeo: "skopeo",
};
const CNI_PLUGIN = "/usr/lib/cni/bridge";
// Checked by dpkg status: busybox-static has no command of its own (plain busybox has a
// dynamic /bin/busybox, useless as a container root filesystem); linux-libc-dev holds the kernel
// UAPI headers that the WireGuard netlink constants are checked against.
const STATUS_CHECKED_PACKAGES = ["busybox-static", "linux-libc-dev"];

async function has(command: string): Promise<boolean> {
  const { code } = await new Deno.Command("sh", {
    args: ["-c", `command -v ${command}`],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
}

async function isInstalled(pkg: string): Promise<boolean> {
  const { code, stdout } = await new Deno.Command("dpkg-query", {
    args: ["-W", "-f=${db:Status-Status}", pkg],
    stdout: "piped",
    stderr: "null",
  }).output();
  return code === 0 && new TextDecoder().decode(stdout) === "installed";
}

const missing = new Set<string>();
for (const [command, pkg] of Object.entries(PACKAGES)) {
  if (!await has(command)) missing.add(pkg);
}
if (!await Deno.stat(CNI_PLUGIN).then(() => true, () => false)) {
  missing.add("containernetworking-plugins");
}
for (const pkg of STATUS_CHECKED_PACKAGES) {
  if (!await isInstalled(pkg)) missing.add(pkg);
}
if (missing.size > 0) {
  const list = [...missing].sort();
  if (Deno.uid() !== 0) {
    console.error(`setup: missing Debian packages ${list.join(" ")}; install them as root`);
    Deno.exit(1);
  }
  console.error(`setup: installing ${list.join(" ")}`);
  const env = { DEBIAN_FRONTEND: "noninteractive" };
  for (
    const args of [["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", ...list]]
  ) {
    const { code } = await new Deno.Command("apt-get", { args, env, stdout: "null" }).output();
    if (code !== 0) {
      console.error(`setup: apt-get ${args[0]} failed`);
      Deno.exit(1);
    }
  }
}
