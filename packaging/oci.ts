/**
 * An OCI image archive written directly (no registry, no daemon): gzip'd layer tars, the image
 * config and manifest as content-addressed blobs, `index.json` naming the tag, and Docker's
 * `manifest.json` beside it, so `podman load`, `skopeo` (oci-archive: and docker-archive:),
 * `docker load` and `ctr images import` all accept the same file.
 *
 * @module
 */
import { sha256File, sha256Hex } from "./digest.ts";
import { reproducibleTar, run } from "./shell.ts";

const MEDIA = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

/** A layer tar compressed into the layout's blobs. */
export interface Layer {
  /** sha256 of the gzip'd blob. */
  readonly digest: string;
  /** sha256 of the uncompressed tar (the config's diff_id). */
  readonly diffId: string;
  readonly size: number;
  /** What made it (the config's history). */
  readonly createdBy: string;
}

/** The runtime defaults of the image (the config's `config` object). */
export interface ImageRuntimeConfig {
  readonly Env: readonly string[];
  readonly Entrypoint: readonly string[];
  readonly Labels: Readonly<Record<string, string>>;
}

/** An OCI image layout being assembled in a directory. */
export class OciLayout {
  readonly #blobs: string;

  constructor(readonly dir: string) {
    this.#blobs = `${dir}/blobs/sha256`;
  }

  async #addJson(value: unknown): Promise<{ digest: string; size: number }> {
    const bytes = new TextEncoder().encode(JSON.stringify(value));
    const digest = sha256Hex(bytes);
    await Deno.mkdir(this.#blobs, { recursive: true });
    await Deno.writeFile(`${this.#blobs}/${digest}`, bytes);
    return { digest, size: bytes.length };
  }

  /** Compress a layer tar into the blobs (gzip -n: no name or time, same bytes every build). */
  async addLayer(tar: string, createdBy: string): Promise<Layer> {
    await Deno.mkdir(this.#blobs, { recursive: true });
    const tmp = `${this.#blobs}/.layer.tmp`;
    await run(["sh", "-c", 'gzip -n -c "$1" > "$2"', "sh", tar, tmp]);
    const digest = await sha256File(tmp);
    await Deno.rename(tmp, `${this.#blobs}/${digest}`);
    const size = (await Deno.stat(`${this.#blobs}/${digest}`)).size;
    return { digest, diffId: await sha256File(tar), size, createdBy };
  }

  /** Write config, manifest, index.json and manifest.json for `name:tag`. */
  async finish(
    name: string,
    tag: string,
    layers: readonly Layer[],
    runtime: ImageRuntimeConfig,
  ): Promise<void> {
    const created = "1970-01-01T00:00:00Z"; // reproducible: the build time is not content
    const config = await this.#addJson({
      created,
      architecture: "amd64",
      os: "linux",
      config: runtime,
      rootfs: { type: "layers", diff_ids: layers.map((l) => `sha256:${l.diffId}`) },
      history: layers.map((l) => ({ created, created_by: l.createdBy })),
    });
    const manifest = await this.#addJson({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: `sha256:${config.digest}`, size: config.size },
      layers: layers.map((l) => ({
        mediaType: MEDIA.layer,
        digest: `sha256:${l.digest}`,
        size: l.size,
      })),
    });
    const reference = `${name}:${tag}`;
    await Deno.writeTextFile(
      `${this.dir}/oci-layout`,
      JSON.stringify({ imageLayoutVersion: "1.0.0" }),
    );
    await Deno.writeTextFile(
      `${this.dir}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.index,
        manifests: [{
          mediaType: MEDIA.manifest,
          digest: `sha256:${manifest.digest}`,
          size: manifest.size,
          annotations: {
            // containerd's name for it, and the OCI tag (what skopeo's oci-archive:FILE:TAG means).
            "io.containerd.image.name": `docker.io/library/${reference}`,
            "org.opencontainers.image.ref.name": tag,
          },
        }],
      }),
    );
    await Deno.writeTextFile(
      `${this.dir}/manifest.json`,
      JSON.stringify([{
        Config: `blobs/sha256/${config.digest}`,
        RepoTags: [reference],
        Layers: layers.map((l) => `blobs/sha256/${l.digest}`),
      }]),
    );
  }

  /** Pack the layout into one tar file. */
  async archive(output: string): Promise<void> {
    await reproducibleTar(this.dir, output, ["oci-layout", "index.json", "manifest.json", "blobs"]);
  }
}
