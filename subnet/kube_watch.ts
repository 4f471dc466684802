/**
 * List-then-watch over all Nodes that never stalls and never misses a change: a full listing,
 * then watch events from the listing's resourceVersion; a stream that ends or breaks is re-opened
 * from the last resourceVersion seen (bookmarks included), and an expired one (410 Gone, as an
 * ERROR event or as the HTTP status) is answered with a fresh listing, which consumers diff
 * against what they know. The Kubernetes counterpart of `etcd_watch.ts`.
 *
 * @module
 */
import { member, stringOr } from "../json.ts";
import { Backoff } from "../backoff.ts";
import { sleep } from "../sleep.ts";
import { KubeApiError, type KubeClient, type NodeSelection } from "./kube_client.ts";
import {
  type KubeNode,
  nameOf,
  NodeShapeError,
  parseKubeNode,
  resourceVersionOf,
} from "./kube_node.ts";

/** What {@link listWatchNodes} yields. */
export type NodeWatchItem =
  | { readonly type: "snapshot"; readonly nodes: readonly KubeNode[] }
  | {
    readonly type: "event";
    readonly event: "ADDED" | "MODIFIED" | "DELETED";
    readonly node: KubeNode;
  };

/** One failed list or watch attempt, reported before the retry. */
export interface NodeWatchFailure {
  readonly stage: "list" | "watch";
  /** The watch's resourceVersion expired (410 Gone); a new listing follows. */
  readonly expired: boolean;
  readonly error: string;
}

/** Tunables and observers of {@link listWatchNodes}. */
export interface NodeWatchOptions {
  /** Which nodes: all by default, or one by name. */
  readonly selection?: NodeSelection;
  /** Delay after a failure: starts at `initialMs`, doubles up to `maxMs` (default 100 ms, 5 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Told about each failure, for counters and logs. */
  readonly onFailure?: (failure: NodeWatchFailure) => void;
  /** Told about each object that is not a Node as the API serves them (it is skipped). */
  readonly onMalformed?: (error: NodeShapeError) => void;
}

const GONE = 410;

/** A watch stream that returns shortly after opening without any event is treated as failed. */
const MIN_HEALTHY_STREAM_MS = 1000;

function isGone(error: unknown): boolean {
  return error instanceof KubeApiError && error.status === GONE;
}

/**
 * A snapshot of every Node, then their changes, until `signal` aborts. A new snapshot follows
 * whenever the watch could not be resumed.
 *
 * @example
 * ```ts
 * for await (const item of listWatchNodes(client, {}, signal)) {
 *   if (item.type === "snapshot") reset(item.nodes); else apply(item.event, item.node);
 * }
 * ```
 */
export async function* listWatchNodes(
  client: KubeClient,
  options: NodeWatchOptions,
  signal: AbortSignal,
): AsyncGenerator<NodeWatchItem> {
  const backoff = new Backoff(options.backoff?.initialMs ?? 100, options.backoff?.maxMs ?? 5000);
  const parse = (raw: unknown): KubeNode | undefined => {
    try {
      return parseKubeNode(raw);
    } catch (error) {
      if (!(error instanceof NodeShapeError)) throw error;
      options.onMalformed?.(error);
      return undefined;
    }
  };
  let resume: string | undefined; // undefined: a listing is needed first
  while (!signal.aborted) {
    if (resume === undefined) {
      try {
        const listing = await client.listNodes(signal, options.selection);
        resume = listing.resourceVersion;
        backoff.reset();
        const nodes = listing.items.map(parse).filter((n): n is KubeNode => n !== undefined);
        yield { type: "snapshot", nodes };
      } catch (error) {
        if (signal.aborted) return;
        options.onFailure?.({ stage: "list", expired: false, error: String(error) });
        await sleep(backoff.next(), signal);
      }
      continue;
    }
    const opened = Date.now();
    let delivered = false;
    try {
      for await (const { type, object } of client.watchNodes(resume, signal, options.selection)) {
        if (type === "ERROR") {
          // A Status object: its code (410 when expired) and message.
          const code = member(object, "code");
          const message = typeof code === "number"
            ? stringOr(member(object, "message"))
            : undefined;
          throw new KubeApiError(
            typeof code === "number" ? code : undefined,
            `watch error: ${message ?? "no status"}`,
          );
        }
        if (type === "ADDED" || type === "MODIFIED" || type === "DELETED") {
          const node = parse(object);
          if (node) yield { type: "event", event: type, node };
        } else if (type !== "BOOKMARK") {
          options.onMalformed?.(new NodeShapeError(nameOf(object) ?? "?", `in a ${type} event`));
        }
        resume = resourceVersionOf(object) ?? resume;
        delivered = true;
        backoff.reset();
      }
      if (!delivered && Date.now() - opened < MIN_HEALTHY_STREAM_MS) {
        await sleep(backoff.next(), signal); // a server that closes at once must not spin us
      }
    } catch (error) {
      if (signal.aborted) return;
      const expired = isGone(error);
      options.onFailure?.({ stage: "watch", expired, error: String(error) });
      if (expired) resume = undefined;
      else await sleep(backoff.next(), signal);
    }
  }
}
