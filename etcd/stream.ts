/**
 * The messages of a streamed gateway response (a watch): one JSON message a line, with a hook for
 * silence, so that a server gone without closing the connection is noticed.
 *
 * @module
 */
import { sleep } from "../sleep.ts";
import { EtcdDecodeError } from "./codec.ts";

/** Longest message read from a stream (the old gRPC client's receive limit). */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

/**
 * The non-empty lines of `response`'s body until it ends or `signal` aborts. After `idleMs`
 * without data, `onIdle` runs (it throws to give the stream up) and reading goes on.
 */
export async function* responseLines(
  response: Response,
  idleMs: number,
  onIdle: () => Promise<void>,
  signal: AbortSignal,
): AsyncGenerator<string> {
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  try {
    let read = reader.read();
    for (;;) {
      const waited = new AbortController();
      const timer = sleep(idleMs, AbortSignal.any([waited.signal, signal]));
      const next = await Promise.race([read, timer.then(() => "idle" as const)]);
      waited.abort();
      if (signal.aborted) return;
      if (next === "idle") {
        await onIdle();
        continue;
      }
      if (next.done) return;
      read = reader.read();
      buffered += next.value;
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      for (const line of lines) if (line.trim()) yield line;
      if (buffered.length > MAX_LINE_BYTES) {
        throw new EtcdDecodeError(`etcd stream message over ${MAX_LINE_BYTES} bytes`);
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
