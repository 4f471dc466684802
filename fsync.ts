/**
 * Durable writes: fsync a file or a directory by path, for write-temp-then-rename updates that
 * must leave the old file or the new one after a crash, never an empty or torn one.
 *
 * @module
 */

/** fsync `path` (a file, or a directory to persist a rename in it). */
export async function syncPath(path: string): Promise<void> {
  const handle = await Deno.open(path, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}
