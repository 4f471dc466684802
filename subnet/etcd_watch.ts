/**
 * List-then-watch over an etcd key or prefix that never stalls and never misses an event:
 * a consistent snapshot, then event batches from the snapshot's revision + 1; a broken stream
 * is re-opened from the last delivered revision, a compacted one is answered with a fresh
 * snapshot (spec §3.5, quirks 6 and 7).
 *
 * @module
 */
import type { EtcdClient } from "../etcd/client.ts";
import { type KeyValue, prefixEnd, type WatchEvent } from "../etcd/codec.ts";
import { errorText } from "../log.ts";
import { Backoff } from "../backoff.ts";
import { sleep } from "../sleep.ts";

/** What {@link listWatch} yields. */
export type ListWatchItem =
  | { readonly type: "snapshot"; readonly kvs: readonly KeyValue[]; readonly revision: number }
  | { readonly type: "events"; readonly events: readonly WatchEvent[]; readonly revision: number };

/** One failed list or watch attempt, reported before the retry. */
export interface WatchFailure {
  readonly stage: "list" | "watch";
  /**
   * The history needed to resume is gone: compacted, or the store went back in time (etcd
   * restored from a backup or an empty data dir). A new snapshot follows.
   */
  readonly compacted: boolean;
  readonly error: string;
}

/** Where and how to watch. */
export interface ListWatchOptions {
  readonly client: EtcdClient;
  /** The key, or the key prefix when `prefix` is true. */
  readonly key: string;
  readonly prefix: boolean;
  /** Delay after a failure: starts at `initialMs`, doubles up to `maxMs` (default 100 ms, 5 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Told about each failure, for counters and logs. */
  readonly onFailure?: (failure: WatchFailure) => void;
}

/**
 * A snapshot of the range, then its changes as they happen, until `signal` aborts. A new
 * snapshot is yielded whenever the event history needed to resume was compacted away;
 * consumers diff it against what they know. A broken or garbled stream is re-opened from the
 * last revision delivered.
 *
 * @example
 * ```ts
 * for await (const item of listWatch({ client, key: "/coreos.com/network/subnets/", prefix: true }, signal)) {
 *   if (item.type === "snapshot") reset(item.kvs); else apply(item.events);
 * }
 * ```
 */
export async function* listWatch(
  options: ListWatchOptions,
  signal: AbortSignal,
): AsyncGenerator<ListWatchItem> {
  const { client, key, prefix, onFailure } = options;
  const backoff = new Backoff(options.backoff?.initialMs ?? 100, options.backoff?.maxMs ?? 5000);
  let resume: number | undefined; // undefined: a snapshot is needed first
  while (!signal.aborted) {
    if (resume === undefined) {
      try {
        const snapshot = await client.rangeAll(key, prefix, signal);
        resume = snapshot.revision + 1;
        backoff.reset();
        yield { type: "snapshot", kvs: snapshot.kvs, revision: snapshot.revision };
      } catch (error) {
        if (signal.aborted) return;
        onFailure?.({ stage: "list", compacted: false, error: errorText(error) });
        await sleep(backoff.next(), signal);
      }
      continue;
    }
    const stream = new AbortController();
    const request = {
      key,
      ...(prefix && { rangeEnd: prefixEnd(key) }),
      startRevision: resume,
      progressNotify: true,
    };
    let end: StreamEnd | undefined;
    try {
      for await (const res of client.watch(request, AbortSignal.any([signal, stream.signal]))) {
        if (res.canceled) {
          end = {
            compacted: res.compactRevision !== 0 || compactedText(res.cancelReason),
            error: res.cancelReason || `watch canceled (compacted at ${res.compactRevision})`,
          };
          break;
        }
        if (res.created) {
          // etcd accepts a watch from a future revision and waits for it, so a store restored
          // from an older backup or an empty data dir would leave us waiting, blind, until its
          // revision caught up: a store behind what we have seen is treated like compaction.
          if (res.revision < resume - 1) {
            end = {
              compacted: true,
              error: `etcd store revision went back from ${resume - 1} to ${res.revision}`,
            };
            break;
          }
          // Otherwise the creation response's revision runs ahead of the catch-up events: it
          // is no resume point.
          continue;
        }
        // An event batch is complete up to its last event; an empty (progress) response up to
        // its header revision.
        const last = res.events.at(-1);
        resume = last ? last.kv.modRevision + 1 : res.revision + 1;
        backoff.reset();
        if (res.events.length > 0) {
          yield { type: "events", events: res.events, revision: res.revision };
        }
      }
    } catch (error) {
      end = { compacted: compactedText(errorText(error)), error: errorText(error) };
    } finally {
      stream.abort();
    }
    if (signal.aborted) return;
    end ??= { compacted: false, error: "watch stream ended" };
    onFailure?.({ stage: "watch", ...end });
    if (end.compacted) resume = undefined;
    await sleep(backoff.next(), signal);
  }
}

/** Why a watch stream ended. */
interface StreamEnd {
  readonly compacted: boolean;
  readonly error: string;
}

function compactedText(text: string | undefined): boolean {
  return /compacted/i.test(text ?? "");
}
