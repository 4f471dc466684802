/**
 * List-then-watch over an etcd key or prefix that never stalls and never misses an event:
 * a consistent snapshot, then event batches from the snapshot's revision + 1; a broken stream
 * is re-opened from the last delivered revision, a compacted one is answered with a fresh
 * snapshot (spec §3.5, quirks 6 and 7).
 *
 * @module
 */
import type { Etcd3, IEvent, IKeyValue, IWatchCreateRequest, IWatchResponse } from "etcd3";
import { Backoff } from "./backoff.ts";
import { sleep } from "../sleep.ts";
import { keyBytes, prefixEnd, readRange } from "./etcd_client.ts";

/** What {@link listWatch} yields. */
export type ListWatchItem =
  | { readonly type: "snapshot"; readonly kvs: readonly IKeyValue[]; readonly revision: number }
  | { readonly type: "events"; readonly events: readonly IEvent[]; readonly revision: number };

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
  readonly client: Etcd3;
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
 * consumers diff it against what they know.
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
        const snapshot = await readRange(client, key, prefix);
        resume = snapshot.revision + 1;
        backoff.reset();
        yield { type: "snapshot", kvs: snapshot.kvs, revision: snapshot.revision };
      } catch (error) {
        onFailure?.({ stage: "list", compacted: false, error: String(error) });
        await sleep(backoff.next(), signal);
      }
      continue;
    }
    const stream = new WatchStream(resume, client, {
      key: keyBytes(key),
      ...(prefix && { range_end: prefixEnd(key) }),
      start_revision: resume,
      progress_notify: true,
    });
    let end: StreamEnd | undefined;
    try {
      while (!end) {
        const message = await stream.next(signal);
        if (message === undefined) return; // aborted
        if (message.type === "end") {
          end = message;
        } else {
          resume = message.nextRevision;
          backoff.reset();
          if (message.events.length > 0) {
            yield { type: "events", events: message.events, revision: message.revision };
          }
        }
      }
    } finally {
      stream.close();
    }
    onFailure?.({ stage: "watch", compacted: end.compacted, error: end.error });
    if (end.compacted) resume = undefined;
    await sleep(backoff.next(), signal);
  }
}

interface StreamBatch {
  readonly type: "batch";
  readonly events: IEvent[];
  readonly revision: number;
  /** First revision not yet delivered. */
  readonly nextRevision: number;
}

interface StreamEnd {
  readonly type: "end";
  readonly compacted: boolean;
  readonly error: string;
}

type StreamMessage = StreamBatch | StreamEnd;

/** One gRPC watch stream carrying one watch, turned into a pull-based queue. */
class WatchStream {
  readonly #queue: StreamMessage[] = [];
  #wake: (() => void) | undefined;
  #close: (() => void) | undefined;
  #closed = false;

  /** The first revision wanted: the store must already be at `#resume - 1`. */
  readonly #resume: number;

  constructor(resume: number, client: Etcd3, request: IWatchCreateRequest) {
    this.#resume = resume;
    client.watchClient.watch().then((stream) => {
      // Ending before cancelling makes the client library see a closed stream, so our own
      // cancellation is not mistaken for a server failure.
      this.#close = () => {
        stream.end();
        stream.cancel();
      };
      stream.on("data", (res) => this.#onResponse(res));
      stream.on("error", (err) => this.#end(compactedText(err.message), err.message));
      stream.on("end", () => this.#end(false, "watch stream ended"));
      if (this.#closed) this.#close();
      else stream.write({ create_request: request });
    }, (err: Error) => this.#end(false, `cannot open watch stream: ${err.message}`));
  }

  #onResponse(res: IWatchResponse): void {
    if (res.canceled) {
      const compacted = (res.compact_revision ?? "0") !== "0" || compactedText(res.cancel_reason);
      this.#end(
        compacted,
        res.cancel_reason || `watch canceled (compacted at ${res.compact_revision})`,
      );
      return;
    }
    if (res.created) {
      // etcd accepts a watch from a future revision and waits for it, so a store restored from
      // an older backup or an empty data dir would leave us waiting, blind, until its revision
      // caught up: a store behind what we have seen is treated like compaction (re-list).
      const current = Number(res.header.revision);
      if (current < this.#resume - 1) {
        this.#end(true, `etcd store revision went back from ${this.#resume - 1} to ${current}`);
      }
      // Otherwise the creation response's revision runs ahead of the catch-up events: it is no
      // resume point.
      return;
    }
    const revision = Number(res.header.revision);
    const events = res.events ?? [];
    // An event batch is complete up to its last event; an empty (progress) response up to its
    // header revision.
    const nextRevision = events.length > 0
      ? Number(events[events.length - 1].kv.mod_revision) + 1
      : revision + 1;
    this.#push({ type: "batch", events, revision, nextRevision });
  }

  #end(compacted: boolean, error: string): void {
    this.#push({ type: "end", compacted, error });
  }

  #push(message: StreamMessage): void {
    if (this.#closed) return;
    this.#queue.push(message);
    this.#wake?.();
  }

  /** The next message, or undefined once `signal` aborts. */
  async next(signal: AbortSignal): Promise<StreamMessage | undefined> {
    while (this.#queue.length === 0) {
      if (signal.aborted) return undefined;
      const waiter = new AbortController();
      const onAbort = () => waiter.abort();
      signal.addEventListener("abort", onAbort, { once: true });
      this.#wake = () => waiter.abort();
      await sleep(Infinity, waiter.signal);
      signal.removeEventListener("abort", onAbort);
      this.#wake = undefined;
    }
    return this.#queue.shift();
  }

  close(): void {
    this.#closed = true;
    this.#close?.();
  }
}

function compactedText(text: string | undefined): boolean {
  return /compacted/i.test(text ?? "");
}
