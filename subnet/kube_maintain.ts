/**
 * Keeping our Node as we published it (spec §4.5, quirk 34): NetworkUnavailable=False set once,
 * then it and our annotations re-asserted whenever they drift, and our lease ended when our
 * pod CIDR changes.
 *
 * News of our Node comes from a watch of that Node alone (`fieldSelector=metadata.name=…`, as
 * kubelet watches its own Node), which this module runs itself: it depends on no one consuming
 * the lease watch. When the watch brings nothing for `checkMs`, the Node is read directly.
 *
 * @module
 */
import { errorText, type Logger } from "../log.ts";
import { sleep } from "../sleep.ts";
import { Backoff } from "../backoff.ts";
import type { KubeClient } from "./kube_client.ts";
import { type KubeNode, networkAvailable, networkUpPatch, parseKubeNode } from "./kube_node.ts";
import type { OwnLease, OwnNode } from "./kube_own_node.ts";
import { listWatchNodes } from "./kube_watch.ts";
import { LeaseLostError, type LeaseStoreCounters } from "./manager.ts";

/** What {@link maintainOwnNode} needs. */
export interface MaintainContext {
  readonly client: KubeClient;
  readonly own: OwnNode;
  readonly log: Logger;
  readonly stats: LeaseStoreCounters;
  /** `--set-node-network-unavailable`. */
  readonly setNetworkUnavailable: boolean;
  /** Read our Node directly when the watch has brought no news of it this long. */
  readonly checkMs: number;
  /** Least time between two repairs. */
  readonly minRepairIntervalMs: number;
  readonly retry: { readonly initialMs: number; readonly maxMs: number };
  readonly watchBackoff: { readonly initialMs: number; readonly maxMs: number };
}

/**
 * The latest state of one Node from a list/watch of that Node alone, until `signal` aborts.
 */
export class OwnNodeWatch {
  #latest?: KubeNode;
  #wake?: () => void;
  readonly done: Promise<void>;

  constructor(client: KubeClient, name: string, ctx: MaintainContext, signal: AbortSignal) {
    this.done = this.#run(client, name, ctx, signal);
  }

  async #run(client: KubeClient, name: string, ctx: MaintainContext, signal: AbortSignal) {
    const items = listWatchNodes(client, {
      selection: { name },
      backoff: ctx.watchBackoff,
      onFailure: (failure) => ctx.log.debug("watch of our node failed; retrying", { ...failure }),
    }, signal);
    for await (const item of items) {
      const node = item.type === "snapshot"
        ? item.nodes.find((n) => n.name === name)
        : item.event !== "DELETED" && item.node.name === name
        ? item.node
        : undefined;
      if (!node) continue;
      this.#latest = node;
      this.#wake?.();
    }
  }

  /** Our Node as the watch next shows it, or undefined after `ms` (then it is read directly). */
  async next(ms: number, signal: AbortSignal): Promise<KubeNode | undefined> {
    if (!this.#latest) {
      const woken = new AbortController();
      this.#wake = () => woken.abort();
      await sleep(ms, AbortSignal.any([signal, woken.signal]));
      this.#wake = undefined;
    }
    const node = this.#latest;
    this.#latest = undefined;
    return node;
  }
}

/**
 * Keep our Node as we published it until `signal` aborts.
 *
 * @throws {LeaseLostError} when our Node's pod CIDR no longer matches our lease.
 */
export async function maintainOwnNode(
  ctx: MaintainContext,
  own: OwnLease,
  signal: AbortSignal,
): Promise<void> {
  const name = await ctx.own.name(signal);
  const scope = new AbortController();
  const watchSignal = AbortSignal.any([signal, scope.signal]);
  const watch = new OwnNodeWatch(ctx.client, name, ctx, watchSignal);
  const backoff = new Backoff(ctx.retry.initialMs, ctx.retry.maxMs);
  let conditionSent = !ctx.setNetworkUnavailable;
  let node: KubeNode | undefined;
  let fresh = false;
  try {
    while (!signal.aborted) {
      let wait = ctx.checkMs;
      try {
        if (!node) [node, fresh] = [parseKubeNode(await ctx.client.getNode(name, signal)), true];
        ctx.own.checkSubnets(node, own.lease);
        const annotationsDrifted = ctx.own.annotationsDrifted(node, own);
        const conditionDrifted = conditionSent && ctx.setNetworkUnavailable &&
          !networkAvailable(node);
        if ((annotationsDrifted || conditionDrifted) && !fresh) {
          node = undefined; // the watch may lag behind our own patches: confirm with a read
          continue;
        }
        if (annotationsDrifted) await ctx.own.repairAnnotations(node, own, signal);
        if (!conditionSent || conditionDrifted) {
          await ctx.client.patchNodeStatus(name, networkUpPatch(new Date()), signal);
          if (conditionSent) {
            ctx.log.warn("NetworkUnavailable was not False; set it back", { node: name });
          } else ctx.log.info("set NetworkUnavailable=False", { node: name });
          conditionSent = true;
        }
        if (annotationsDrifted || conditionDrifted) {
          ctx.stats.renewals++;
          await sleep(ctx.minRepairIntervalMs, signal);
        }
        backoff.reset();
      } catch (error) {
        if (error instanceof LeaseLostError) throw error;
        if (signal.aborted) break;
        ctx.stats.renewFailures++;
        wait = backoff.next();
        ctx.log.warn("could not check our node; will retry", {
          node: name,
          error: errorText(error),
          retryInMs: wait,
        });
      }
      node = await watch.next(wait, signal);
      fresh = false;
    }
  } finally {
    scope.abort();
    await watch.done.catch(() => {});
  }
}
