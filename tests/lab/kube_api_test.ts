import assert from "node:assert/strict";
import { FakeKubeStore, fakeNode, kubeApiApp, type KubeApiHooks } from "../../lab/kube_api.ts";

function setup(token?: string) {
  const store = new FakeKubeStore();
  const hooks: KubeApiHooks = { requests: [] };
  return { store, hooks, app: kubeApiApp(store, hooks, token) };
}

const PATCH = { "content-type": "application/strategic-merge-patch+json" };

Deno.test("fake kube API: get, list in pages, 404 Status for what is missing", async () => {
  const { store, app } = setup();
  for (const name of ["n1", "n2", "n3"]) store.setNode(fakeNode(name));
  const got = await app.request("/api/v1/nodes/n2");
  assert.equal(got.status, 200);
  assert.equal((await got.json()).metadata.name, "n2");
  const page = await (await app.request("/api/v1/nodes?limit=2")).json();
  assert.deepEqual(page.items.map((n: { metadata: { name: string } }) => n.metadata.name), [
    "n1",
    "n2",
  ]);
  assert.equal(page.metadata.continue, "2");
  const rest = await (await app.request("/api/v1/nodes?limit=2&continue=2")).json();
  assert.equal(rest.items.length, 1);
  assert.equal(rest.metadata.continue, undefined);
  const missing = await app.request("/api/v1/nodes/n9");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).reason, "NotFound");
  assert.equal((await app.request("/api/v1/pods")).status, 404);
});

Deno.test("fake kube API: status PATCH merges metadata and conditions, keeps spec", async () => {
  const { store, app } = setup();
  store.setNode(fakeNode("n1", { podCIDR: "10.244.1.0/24" }));
  const before = store.resourceVersion;
  const patch = {
    metadata: { annotations: { "flannel.alpha.coreos.com/public-ip": "198.18.0.1" } },
    spec: { podCIDR: "10.9.9.0/24" },
    status: { conditions: [{ type: "NetworkUnavailable", status: "False" }] },
  };
  const res = await app.request("/api/v1/nodes/n1/status", {
    method: "PATCH",
    headers: PATCH,
    body: JSON.stringify(patch),
  });
  assert.equal(res.status, 200);
  const node = store.node("n1")!;
  assert.deepEqual(node.spec, { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] });
  assert.equal(store.resourceVersion, before + 1);
  const types = (node.status as { conditions: { type: string }[] }).conditions.map((c) => c.type);
  assert.deepEqual(types, ["Ready", "NetworkUnavailable"]);
  const wrongType = await app.request("/api/v1/nodes/n1/status", {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  assert.equal(wrongType.status, 415);
  const notStatus = await app.request("/api/v1/nodes/n1", { method: "PATCH", headers: PATCH });
  assert.equal(notStatus.status, 405);
  const bad = await app.request("/api/v1/nodes/n1/status", {
    method: "PATCH",
    headers: PATCH,
    body: "{",
  });
  assert.equal(bad.status, 400);
});

Deno.test("fake kube API: token, interceptor and the request log", async () => {
  const { store, hooks, app } = setup("s3cret");
  store.setPod({ metadata: { namespace: "kube-system", name: "p" }, spec: { nodeName: "n1" } });
  assert.equal((await app.request("/api/v1/namespaces/kube-system/pods/p")).status, 401);
  const auth = { authorization: "Bearer s3cret" };
  const pod = await app.request("/api/v1/namespaces/kube-system/pods/p", { headers: auth });
  assert.equal((await pod.json()).spec.nodeName, "n1");
  hooks.interceptor = (r) => r.method === "GET" ? new Response("no", { status: 500 }) : undefined;
  assert.equal((await app.request("/api/v1/nodes", { headers: auth })).status, 500);
  assert.deepEqual(hooks.requests.map((r) => r.authorization), [
    null,
    "Bearer s3cret",
    "Bearer s3cret",
  ]);
});

Deno.test("fake kube API: a watch replays history from its resourceVersion, 410 once expired", async () => {
  const { store, app } = setup();
  store.setNode(fakeNode("n1"));
  const from = store.resourceVersion;
  store.setNode(fakeNode("n2"));
  store.deleteNode("n1");
  const res = await app.request(`/api/v1/nodes?watch=true&resourceVersion=${from}`);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (text.split("\n").length < 3) text += (await reader.read()).value;
  const events = text.trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(events.map((e) => `${e.type} ${e.object.metadata.name}`), [
    "ADDED n2",
    "DELETED n1",
  ]);
  assert.equal(store.openWatches(), 1);
  store.expire("http");
  assert.equal(store.openWatches(), 0);
  const gone = await app.request(`/api/v1/nodes?watch=true&resourceVersion=${from}`);
  assert.equal(gone.status, 410);
  assert.equal((await gone.json()).reason, "Expired");
  await reader.cancel();
});

Deno.test("fake kube API: fieldSelector=metadata.name lists and watches one node", async () => {
  const { store, app } = setup();
  store.setNode(fakeNode("n1"));
  store.setNode(fakeNode("n2"));
  const from = store.resourceVersion;
  const list = await (await app.request("/api/v1/nodes?fieldSelector=metadata.name%3Dn2")).json();
  assert.deepEqual(list.items.map((n: { metadata: { name: string } }) => n.metadata.name), ["n2"]);
  const res = await app.request(
    `/api/v1/nodes?watch=true&resourceVersion=${from}&fieldSelector=metadata.name%3Dn2`,
  );
  store.updateNode("n1", (node) => (node.metadata as Record<string, unknown>).labels = {});
  store.updateNode("n2", (node) => (node.metadata as Record<string, unknown>).labels = {});
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const line = (await reader.read()).value!;
  assert.deepEqual(
    line.trim().split("\n").map((l) => JSON.parse(l)).map((e) =>
      `${e.type} ${e.object.metadata.name}`
    ),
    ["MODIFIED n2"],
  );
  await reader.cancel();
  const other = await app.request("/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse");
  assert.equal(other.status, 400);
});
