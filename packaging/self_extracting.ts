/**
 * `dist/tartan` where `deno compile` cannot get its denort runtime: a POSIX sh launcher
 * (packaging/stub.sh) followed by a gzip'd tar of the Deno runtime and the bundled program.
 * It needs only sh, tail, sha256sum, gzip and tar on the node, which every Linux distribution
 * has (busybox's versions included).
 *
 * @module
 */
import { DAEMON_V8_FLAGS } from "../v8_flags.ts";
import { VERSION } from "../version.ts";
import { BUNDLE_ENTRY, bundleProgram } from "./bundle.ts";
import { sha256File } from "./digest.ts";
import { DENO_RUNTIME, denoRuntime } from "./runtime.ts";
import { REPRODUCIBLE_TAR_FLAGS, run } from "./shell.ts";

const STUB = new URL("./stub.sh", import.meta.url);

/** Fill the launcher's placeholders; the payload starts right after its last byte. */
export function launcher(template: string, payload: { bytes: number; sha256: string }): string {
  const fill = (start: number) =>
    template
      .replaceAll("@VERSION@", VERSION)
      .replaceAll("@DENO_VERSION@", DENO_RUNTIME.version)
      .replaceAll("@PAYLOAD_BYTES@", String(payload.bytes))
      .replaceAll("@PAYLOAD_SHA256@", payload.sha256)
      .replaceAll("@PAYLOAD_SHORT@", payload.sha256.slice(0, 12))
      .replaceAll("@V8_FLAGS@", DAEMON_V8_FLAGS)
      .replaceAll("@ENTRY@", `app/${BUNDLE_ENTRY}`)
      .replaceAll("@PAYLOAD_START@", String(start));
  // The start offset is part of the text it measures: settle it (two or three rounds).
  const size = (text: string) => new TextEncoder().encode(text).length;
  let start = 1;
  for (;;) {
    const text = fill(start);
    if (size(text) + 1 === start) return text;
    start = size(text) + 1;
  }
}

/** Build the self-extracting `output` (a temporary directory is used and removed). */
export async function buildSelfExtracting(output: string): Promise<void> {
  const work = await Deno.makeTempDir({ prefix: "tartan-dist-" });
  try {
    const stage = `${work}/stage`;
    await Deno.mkdir(stage);
    await Deno.copyFile(await denoRuntime(), `${stage}/deno`);
    await Deno.chmod(`${stage}/deno`, 0o755);
    await bundleProgram(`${stage}/app`);
    const payload = `${work}/payload.tar.gz`;
    // Fixed order, owner and times: the same inputs give the same payload and release name.
    const tar = `tar ${REPRODUCIBLE_TAR_FLAGS.join(" ")}`;
    await run(["sh", "-c", `${tar} -C "$1" -cf - . | gzip -n > "$2"`, "sh", stage, payload]);
    const stub = launcher(await Deno.readTextFile(STUB), {
      bytes: (await Deno.stat(payload)).size,
      sha256: await sha256File(payload),
    });
    const tmp = `${output}.tmp`;
    await Deno.writeTextFile(tmp, stub);
    await run(["sh", "-c", 'cat "$1" >> "$2"', "sh", payload, tmp]);
    await Deno.chmod(tmp, 0o755);
    await Deno.rename(tmp, output);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
