/**
 * `dist/tartan-image.tar`: the OCI image `tartan:<version>`, shaped like flannel's images so
 * that upstream's kube-flannel.yml runs it with only its `image:` lines changed.
 *
 * Layer 1 is the Debian base (rootfs.ts). Layer 2 holds Tartan:
 * - `/usr/local/bin/tartan`: dist/tartan; `/flannel` is the same file (a hard link: stored once),
 *   the CNI plugin that flannel's init container copies to the host with `cp -f /flannel …`;
 * - `/opt/bin/flanneld` → tartan (the daemon by that name), `/opt/bin/install-conf SRC DST`
 *   (atomic copy), `/opt/bin/mk-docker-opts.sh`;
 * - the iptables wrapper: the Debian alternatives of iptables and ip6tables (and their -save and
 *   -restore) point to it until its first call picks the host's variant.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { VERSION } from "../version.ts";
import { OciLayout } from "./oci.ts";
import { debianRootfs, IMAGE_PACKAGES } from "./rootfs.ts";
import { reproducibleTar, run } from "./shell.ts";

/** The image's name; its tag is the version. */
export const IMAGE_NAME = "tartan";
/** `tartan:<version>`. */
export const IMAGE_REFERENCE = `${IMAGE_NAME}:${VERSION}`;

const FILES = fileURLToPath(new URL("./image/", import.meta.url));
const WRAPPED = ["iptables", "ip6tables"].flatMap((c) => [c, `${c}-save`, `${c}-restore`]);

/** Lay out layer 2's files under `stage`. */
async function stageTartanFiles(binary: string, stage: string): Promise<void> {
  await run(["cp", "-a", `${FILES}.`, stage]);
  await Deno.mkdir(`${stage}/usr/local/bin`, { recursive: true });
  await Deno.copyFile(binary, `${stage}/usr/local/bin/tartan`);
  await Deno.chmod(`${stage}/usr/local/bin/tartan`, 0o755);
  await Deno.link(`${stage}/usr/local/bin/tartan`, `${stage}/flannel`);
  await Deno.symlink("/usr/local/bin/tartan", `${stage}/opt/bin/flanneld`);
  await Deno.mkdir(`${stage}/etc/alternatives`, { recursive: true });
  for (const name of WRAPPED) {
    await Deno.symlink("/usr/sbin/iptables-wrapper", `${stage}/etc/alternatives/${name}`);
  }
}

/** Build the image archive from `binary` (dist/tartan) into `output`. */
export async function buildImage(binary: string, output: string): Promise<void> {
  const rootfs = await debianRootfs();
  const work = await Deno.makeTempDir({ prefix: "tartan-image-" });
  try {
    const stage = `${work}/stage`;
    await Deno.mkdir(stage);
    await stageTartanFiles(binary, stage);
    const tartanTar = `${work}/tartan.tar`;
    await reproducibleTar(stage, tartanTar);
    const layout = new OciLayout(`${work}/layout`);
    const layers = [
      await layout.addLayer(rootfs, `mmdebstrap --variant=essential: ${IMAGE_PACKAGES.join(" ")}`),
      await layout.addLayer(tartanTar, `tartan ${VERSION}`),
    ];
    await layout.finish(IMAGE_NAME, VERSION, layers, {
      Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
      Entrypoint: ["/opt/bin/flanneld"], // as flannel's image
      Labels: {
        "org.opencontainers.image.title": "tartan",
        "org.opencontainers.image.version": VERSION,
        "org.opencontainers.image.description":
          "Flannel-compatible overlay network: flanneld, the flannel CNI plugin, tartan",
      },
    });
    const tmp = `${output}.tmp`;
    await layout.archive(tmp);
    await Deno.rename(tmp, output);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
