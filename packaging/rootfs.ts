/**
 * The image's base: a Debian root file system from Debian's packages alone (mmdebstrap, no
 * container registry), with what the daemon and flannel's DaemonSet run: sh, cp, mv (essential
 * packages), iptables in both variants with ip6tables, nft, ip, CA certificates, and wireguard-go
 * (the wireguard backend on kernels without the module). It depends only on the package list, so
 * it is built once and kept in the build cache.
 *
 * @module
 */
import { sha256Hex } from "./digest.ts";

const SUITE = "bookworm";
const MIRRORS = [
  `deb http://deb.debian.org/debian ${SUITE} main`,
  `deb http://deb.debian.org/debian ${SUITE}-updates main`,
  `deb http://deb.debian.org/debian-security ${SUITE}-security main`,
];
/** Beyond the essential set (dash, coreutils, …). */
export const IMAGE_PACKAGES = [
  "ca-certificates",
  "iproute2",
  "iptables",
  "nftables",
  "wireguard-go",
];

const MMDEBSTRAP_ARGS = [
  // Essential packages only (no apt, no perl modules), merged /usr without the usrmerge package.
  "--variant=essential",
  "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
  `--include=${IMAGE_PACKAGES.join(",")}`,
  ...["doc", "man", "info", "locale"].map((d) => `--dpkgopt=path-exclude=/usr/share/${d}/*`),
  "--quiet",
  SUITE,
];

/** Where builds keep what depends only on their inputs (`$TARTAN_BUILD_CACHE` overrides). */
export function buildCacheDir(): string {
  const explicit = Deno.env.get("TARTAN_BUILD_CACHE");
  if (explicit) return explicit;
  const xdg = Deno.env.get("XDG_CACHE_HOME") ?? `${Deno.env.get("HOME") ?? "/var/tmp"}/.cache`;
  return `${xdg}/tartan-build`;
}

/** The base root file system as a tar file, built by mmdebstrap unless cached. */
export async function debianRootfs(): Promise<string> {
  const dir = buildCacheDir();
  const args = [...MMDEBSTRAP_ARGS, "-", ...MIRRORS];
  const file = `${dir}/rootfs-${sha256Hex(JSON.stringify(args)).slice(0, 16)}.tar`;
  if (await Deno.stat(file).then(() => true, () => false)) return file;
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${file}.${Deno.pid}.tmp`;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("mmdebstrap", { args, stdout: "piped", stderr: "inherit" }).spawn();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error("mmdebstrap is not installed (apt-get install mmdebstrap)");
    }
    throw error;
  }
  const out = await Deno.open(tmp, { write: true, create: true, truncate: true });
  await child.stdout.pipeTo(out.writable);
  if (!(await child.status).success) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error("mmdebstrap failed: see its messages above");
  }
  await Deno.rename(tmp, file);
  return file;
}
