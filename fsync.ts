/**
 * Durable writes: fsync a file or a directory by path, for write-temp-then-rename updates that
 * must leave the old file or the new one after a crash, never an empty or torn one.
 *
 * @module
 */

/** The directory a path is in (`/etc/x` → `/etc`, `x` → `.`), as node:path's dirname. */
export function parentDir(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, "") : path;
  const slash = trimmed.lastIndexOf("/");
  return slash < 0 ? "." : slash === 0 ? "/" : trimmed.slice(0, slash);
}

/** fsync `path` (a file, or a directory to persist a rename in it). */
export async function syncPath(path: string): Promise<void> {
  const handle = await Deno.open(path, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}
