/**
 * Lease upkeep in kube mode: NetworkUnavailable=False set and re-asserted, annotations
 * repaired, lease loss when our pod CIDR changes; maintainLease watches our Node itself.
 */
import assert from "node:assert/strict";
import { fakeNode, type JsonObject } from "../../lab/kube_api.ts";
import { LeaseLostError } from "../../subnet/manager.ts";
import { watchInBackground } from "../helpers/lease_watch.ts";
import { waitFor } from "../helpers/leases.ts";
import {
  annotationsOf,
  AP,
  conditionOf,
  patchesOf,
  readsOf,
  TIMING,
  vxlanAttrs,
  withKubeEnv,
} from "../helpers/kube_env.ts";

Deno.test("maintainLease sets NetworkUnavailable=False and re-asserts it and our annotations", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    const m = manager();
    const stop = new AbortController();
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(20_000)]);
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    const watching = watchInBackground(m, signal);
    const maintaining = m.maintainLease(lease, signal);
    await waitFor(
      "the condition",
      () => conditionOf(api, "n1", "NetworkUnavailable") !== undefined,
    );
    const sent = patchesOf(api, "n1").at(-1)!;
    assert.match(
      sent.body,
      /^\{"status":\{"conditions":\[\{"type":"NetworkUnavailable","status":"False","lastHeartbeatTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","lastTransitionTime":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ","reason":"FlannelIsUp","message":"Flannel is running on this node"\}\]\}\}$/,
    );
    assert.equal(sent.contentType, "application/strategic-merge-patch+json");
    const condition = conditionOf(api, "n1", "NetworkUnavailable")!;
    assert.equal(condition.status, "False");
    assert.equal(condition.reason, "FlannelIsUp");
    assert.equal(conditionOf(api, "n1", "Ready")?.status, "True", "other conditions are kept");

    // Something sets the condition back to True (quirk 34) and drops an annotation.
    api.updateNode("n1", (n) => {
      const conditions = (n.status as JsonObject).conditions as JsonObject[];
      conditions.find((c) => c.type === "NetworkUnavailable")!.status = "True";
      delete ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}public-ip`];
    });
    await waitFor(
      "the repair",
      () =>
        conditionOf(api, "n1", "NetworkUnavailable")?.status === "False" &&
        annotationsOf(api, "n1")[`${AP}public-ip`] === "198.18.0.11",
    );
    assert.ok(m.stats.renewals >= 1);
    // Quiet again: two more looks at a healthy node (direct reads, every checkMs) patch nothing.
    const writes = () => api.requests.filter((r) => r.method === "PATCH").length;
    const settled = writes();
    const read = readsOf(api, "n1").length;
    await waitFor("two more reads of our node", () => readsOf(api, "n1").length >= read + 2);
    assert.equal(writes(), settled, "no patch storm");
    stop.abort();
    await maintaining;
    await watching.done;
  }));

Deno.test("maintainLease ends with LeaseLostError when our node's pod CIDR changes", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    const m = manager({ setNodeNetworkUnavailable: false });
    const signal = AbortSignal.timeout(10_000);
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    const maintaining = m.maintainLease(lease, signal);
    api.deleteNode("n1");
    api.setNode(fakeNode("n1", { podCIDR: "10.244.5.0/24" }));
    await assert.rejects(maintaining, LeaseLostError);
    assert.equal(
      conditionOf(api, "n1", "NetworkUnavailable"),
      undefined,
      "flag disables the condition",
    );
  }));

Deno.test("maintainLease watches our node itself: drift is repaired with no lease watch running", () =>
  withKubeEnv(async ({ api, manager }) => {
    api.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
    // An hour between direct reads: only a watch can bring the drift to our attention.
    const m = manager({ timing: { ...TIMING, checkMs: 3_600_000 } });
    const stop = new AbortController();
    const signal = AbortSignal.any([stop.signal, AbortSignal.timeout(20_000)]);
    const lease = await m.acquireLease(vxlanAttrs("198.18.0.11", "12:c6:65:89:b4:e3"), signal);
    const maintaining = m.maintainLease(lease, signal);
    await waitFor(
      "the condition",
      () => conditionOf(api, "n1", "NetworkUnavailable")?.status === "False",
    );
    await waitFor("the watch of our node", () => api.openWatches() === 1);
    const watch = api.requests.find((r) => r.query.watch === "true")!;
    assert.equal(watch.query.fieldSelector, "metadata.name=n1");

    api.updateNode("n1", (n) => {
      delete ((n.metadata as JsonObject).annotations as JsonObject)[`${AP}public-ip`];
    });
    await waitFor("the repair", () => annotationsOf(api, "n1")[`${AP}public-ip`] === "198.18.0.11");
    // Another node's changes do not reach this watch.
    const before = api.requests.length;
    api.setNode(fakeNode("n2", { podCIDR: "10.244.2.0/24" }));
    stop.abort();
    await maintaining;
    assert.equal(api.requests.length, before, "no read or patch for another node's change");
    await waitFor("the watch to close", () => api.openWatches() === 0);
  }));
