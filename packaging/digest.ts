/**
 * SHA-256 of files and byte strings, as lower-case hex (the form `sha256sum` and OCI digests use).
 *
 * @module
 */
import { createHash } from "node:crypto";

/** SHA-256 of bytes. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash("sha256").update(data).digest("hex");
}

/** SHA-256 of a file, read in chunks. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  const file = await Deno.open(path);
  for await (const chunk of file.readable) hash.update(chunk); // closes the file at the end
  return hash.digest("hex");
}
