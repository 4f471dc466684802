/**
 * The kube client's configuration in every form flannel accepts: kubeconfig files (block YAML,
 * flow YAML, JSON; contexts, clusters, users; tokens, token files, basic auth, client
 * certificates as files or inline data, CAs as files or data; relative paths), `--kube-api-url`,
 * the in-cluster service account with token rotation, and the errors for what is not supported.
 * Requests go to the fake API server, over HTTPS where TLS is involved, and client certificates
 * to a loopback server that requires one.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { fakeNode, startFakeKubeApi } from "../../lab/kube_api.ts";
import {
  createKubeClient,
  KubeApiError,
  KubeConfigError,
  loadKubeConfig,
} from "../../subnet/kube_client.ts";
import { makeTestPki, type TestPki } from "../helpers/certs.ts";

const b64 = (text: string) => btoa(text);

async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: "tt-kubeconfig-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

/** The fake API over HTTPS with the test PKI's server certificate, holding node n1. */
async function httpsApi(pki: TestPki) {
  const api = startFakeKubeApi({
    tls: {
      cert: await Deno.readTextFile(pki.serverCert),
      key: await Deno.readTextFile(pki.serverKey),
    },
  });
  api.setNode(fakeNode("n1"));
  return api;
}

/** A kubeconfig in kubectl's block style with one cluster, one user and one context. */
function blockKubeconfig(cluster: string[], user: string[]): string {
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: other",
    "  cluster:",
    "    server: https://192.0.2.1:6443",
    "- name: main",
    "  cluster:",
    ...cluster.map((line) => `    ${line}`),
    "users:",
    "- name: node",
    "  user:",
    ...(user.length ? user.map((line) => `    ${line}`) : ["    {}"]),
    "contexts:",
    "- name: other",
    "  context: {cluster: other, user: node}",
    "- name: main",
    "  context:",
    "    cluster: main",
    "    user: node",
    "current-context: main",
    "",
  ].join("\n");
}

/** The Authorization header the fake API received for one GET configured by `file`. */
async function authorizationSent(file: string, apiUrl?: string): Promise<string | null> {
  await using api = startFakeKubeApi();
  api.setNode(fakeNode("n1"));
  const client = createKubeClient(
    await loadKubeConfig({ kubeconfigFile: file, apiUrl: apiUrl ?? api.url }),
  );
  try {
    await client.getNode("n1", AbortSignal.timeout(5000));
  } finally {
    client.close();
  }
  return api.requests.at(-1)!.authorization;
}

Deno.test("kubeconfig: the current context picks its cluster and user; --kube-api-url wins", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  await using api = startFakeKubeApi({ token: "t0ken" });
  api.setNode(fakeNode("n1"));
  const file = `${dir}/config`;
  await Deno.writeTextFile(file, blockKubeconfig([`server: ${api.url}`], ["token: t0ken"]));
  const connection = await loadKubeConfig({ kubeconfigFile: file });
  assert.equal(connection.server, api.url);
  const client = createKubeClient(connection);
  try {
    const node = await client.getNode("n1", AbortSignal.timeout(5000)) as {
      metadata: { name: string };
    };
    assert.equal(node.metadata.name, "n1");
  } finally {
    client.close();
  }
  const overridden = await loadKubeConfig({ kubeconfigFile: file, apiUrl: "http://127.0.0.1:9/" });
  assert.equal(overridden.server, "http://127.0.0.1:9");
});

Deno.test("kubeconfig: token, token file (relative, re-read as it rotates), basic auth", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const file = `${dir}/config`;
  await Deno.writeTextFile(file, blockKubeconfig(["server: http://127.0.0.1:1"], ["token: abc"]));
  assert.equal(await authorizationSent(file), "Bearer abc");

  await Deno.mkdir(`${dir}/secrets`);
  await Deno.writeTextFile(`${dir}/secrets/token`, "first\n");
  await Deno.writeTextFile(
    file,
    blockKubeconfig(["server: http://127.0.0.1:1"], ["tokenFile: secrets/token"]),
  );
  await using api = startFakeKubeApi();
  api.setNode(fakeNode("n1"));
  const client = createKubeClient(await loadKubeConfig({ kubeconfigFile: file, apiUrl: api.url }));
  try {
    await client.getNode("n1", AbortSignal.timeout(5000));
    await Deno.writeTextFile(`${dir}/secrets/token`, "second\n");
    await client.getNode("n1", AbortSignal.timeout(5000));
  } finally {
    client.close();
  }
  assert.deepEqual(api.requests.map((r) => r.authorization), ["Bearer first", "Bearer second"]);

  await Deno.writeTextFile(
    file,
    blockKubeconfig(["server: http://127.0.0.1:1"], ["username: admin", "password: pä55"]),
  );
  const basic = await authorizationSent(file);
  const decoded = new TextDecoder().decode(
    Uint8Array.from(atob(basic!.replace(/^Basic /, "")), (c) => c.charCodeAt(0)),
  );
  assert.equal(decoded, "admin:pä55");

  await Deno.writeTextFile(file, blockKubeconfig(["server: http://127.0.0.1:1"], []));
  assert.equal(await authorizationSent(file), null);
});

Deno.test("kubeconfig: flow-style YAML and JSON kubeconfigs read the same", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const flow = `${dir}/flow`;
  await Deno.writeTextFile(
    flow,
    [
      "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]",
      "users: [{name: u, user: {token: flow}}]",
      "contexts: [{name: x, context: {cluster: c, user: u}}]",
      "current-context: x",
    ].join("\n"),
  );
  assert.equal(await authorizationSent(flow), "Bearer flow");
  const json = `${dir}/json`;
  await Deno.writeTextFile(
    json,
    JSON.stringify({
      clusters: [{ name: "c", cluster: { server: "http://127.0.0.1:1" } }],
      users: [{ name: "u", user: { token: "json" } }],
      contexts: [{ name: "x", context: { cluster: "c", user: "u" } }],
      "current-context": "x",
    }),
  );
  assert.equal(await authorizationSent(json), "Bearer json");
});

Deno.test("kubeconfig: the cluster CA, as a file or as data, verifies an HTTPS server", async () => {
  await using pki = await makeTestPki();
  await using tmp = await tempDir();
  const dir = tmp.path;
  await using api = await httpsApi(pki);
  const file = `${dir}/config`;
  const get = async () => {
    const client = createKubeClient(await loadKubeConfig({ kubeconfigFile: file }));
    try {
      return await client.getNode("n1", AbortSignal.timeout(5000));
    } finally {
      client.close();
    }
  };
  await Deno.copyFile(pki.caFile, `${dir}/ca.crt`);
  await Deno.writeTextFile(
    file,
    blockKubeconfig([`server: ${api.url}`, "certificate-authority: ca.crt"], []),
  );
  assert.ok(await get());
  const caData = b64(await Deno.readTextFile(pki.caFile));
  await Deno.writeTextFile(
    file,
    blockKubeconfig([`server: ${api.url}`, `certificate-authority-data: ${caData}`], []),
  );
  assert.ok(await get());
  // Without the CA the server's certificate is not trusted.
  await Deno.writeTextFile(file, blockKubeconfig([`server: ${api.url}`], []));
  await assert.rejects(get(), (error: unknown) => error instanceof KubeApiError && !error.status);
});

/** A loopback HTTPS server that requires a client certificate and answers GET node with it. */
async function mtlsServer(pki: TestPki) {
  const server = https.createServer({
    cert: await Deno.readTextFile(pki.serverCert),
    key: await Deno.readTextFile(pki.serverKey),
    ca: await Deno.readTextFile(pki.caFile),
    requestCert: true,
    rejectUnauthorized: true,
  }, (req, res) => {
    const peer = (req.socket as unknown as { getPeerCertificate(): { subject?: { CN?: string } } })
      .getPeerCertificate();
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ metadata: { name: peer.subject?.CN ?? "" } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    [Symbol.asyncDispose]: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

Deno.test("kubeconfig: client certificates, as files or as data, authenticate over mTLS", async () => {
  await using pki = await makeTestPki();
  await using tmp = await tempDir();
  const dir = tmp.path;
  await using server = await mtlsServer(pki);
  const file = `${dir}/config`;
  const cluster = [`server: ${server.url}`, `certificate-authority: ${pki.caFile}`];
  const clientCN = async () => {
    const client = createKubeClient(await loadKubeConfig({ kubeconfigFile: file }));
    try {
      const node = await client.getNode("x", AbortSignal.timeout(5000));
      return (node as { metadata: { name: string } }).metadata.name;
    } finally {
      client.close();
    }
  };
  await Deno.writeTextFile(
    file,
    blockKubeconfig(cluster, [
      `client-certificate: ${pki.clientCert}`,
      `client-key: ${pki.clientKey}`,
    ]),
  );
  assert.equal(await clientCN(), "root");
  await Deno.writeTextFile(
    file,
    blockKubeconfig(cluster, [
      `client-certificate-data: ${b64(await Deno.readTextFile(pki.clientCert))}`,
      `client-key-data: ${b64(await Deno.readTextFile(pki.clientKey))}`,
    ]),
  );
  assert.equal(await clientCN(), "root");
  // Without one the server refuses the handshake.
  await Deno.writeTextFile(file, blockKubeconfig(cluster, []));
  await assert.rejects(clientCN(), KubeApiError);
});

Deno.test("in-cluster: the service account's CA and token, re-read as the token rotates", async () => {
  await using pki = await makeTestPki();
  await using tmp = await tempDir();
  const root = tmp.path;
  await using api = await httpsApi(pki);
  const sa = `${root}/var/run/secrets/kubernetes.io/serviceaccount`;
  await Deno.mkdir(sa, { recursive: true });
  await Deno.copyFile(pki.caFile, `${sa}/ca.crt`);
  await Deno.writeTextFile(`${sa}/token`, "one");
  const saved = ["KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"].map((k) =>
    [k, Deno.env.get(k)] as const
  );
  try {
    Deno.env.set("KUBERNETES_SERVICE_HOST", "fd00::1");
    Deno.env.set("KUBERNETES_SERVICE_PORT", "443");
    const v6 = await loadKubeConfig({ serviceAccountRoot: root });
    assert.equal(v6.server, "https://[fd00::1]:443");

    Deno.env.set("KUBERNETES_SERVICE_HOST", "127.0.0.1");
    Deno.env.set("KUBERNETES_SERVICE_PORT", String(api.port));
    const client = createKubeClient(await loadKubeConfig({ serviceAccountRoot: root }));
    try {
      await client.getNode("n1", AbortSignal.timeout(5000));
      await Deno.writeTextFile(`${sa}/token`, "two");
      await client.getNode("n1", AbortSignal.timeout(5000));
    } finally {
      client.close();
    }
    assert.deepEqual(api.requests.map((r) => r.authorization), ["Bearer one", "Bearer two"]);

    await Deno.remove(`${sa}/token`);
    await assert.rejects(
      loadKubeConfig({ serviceAccountRoot: root }),
      /cannot read service account token/,
    );
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
});

Deno.test("kubeconfig errors name the problem; what is not supported is refused", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const file = `${dir}/config`;
  const rejects = async (text: string, pattern: RegExp) => {
    await Deno.writeTextFile(file, text);
    await assert.rejects(loadKubeConfig({ kubeconfigFile: file }), (error: unknown) => {
      assert.ok(error instanceof KubeConfigError, String(error));
      assert.match(error.message, pattern);
      return true;
    });
  };
  const server = "server: https://192.0.2.1:6443";
  await rejects("clusters: [", /cannot parse kubeconfig/);
  await rejects("- a list", /is not a mapping/);
  await rejects(
    blockKubeconfig([server], []).replace("current-context: main", ""),
    /no current-context/,
  );
  await rejects(
    blockKubeconfig([server], []).replace("    cluster: main", "    cluster: gone"),
    /no cluster "gone"/,
  );
  await rejects(blockKubeconfig(["certificate-authority: x"], []), /has no server/);
  await rejects(
    blockKubeconfig([server, "insecure-skip-tls-verify: true"], []),
    /insecure-skip-tls-verify is not supported/,
  );
  await rejects(
    blockKubeconfig([server, "proxy-url: http://proxy:3128"], []),
    /proxy-url is not supported/,
  );
  await rejects(
    blockKubeconfig([server], ["exec: {command: aws}"]),
    /exec is not supported; use a token/,
  );
  await rejects(blockKubeconfig([server], ["client-certificate-data: AAAA"]), /needs its key/);
  await rejects(
    blockKubeconfig([server], ["tokenFile: /nonexistent/token"]),
    /cannot read token file/,
  );
  await rejects(blockKubeconfig([server], ["token: 42"]), /token must be a string/);
  await rejects(
    blockKubeconfig([server, "certificate-authority: missing.crt"], []),
    /cannot read certificate-authority .*missing\.crt/,
  );
  await assert.rejects(
    loadKubeConfig({ kubeconfigFile: `${dir}/absent` }),
    /cannot read kubeconfig/,
  );
  await assert.rejects(loadKubeConfig({ apiUrl: "ftp://x" }), /must be http or https/);
  // insecure-skip-tls-verify means nothing over plain http, as client-go treats it.
  await Deno.writeTextFile(
    file,
    blockKubeconfig(["server: http://127.0.0.1:1", "insecure-skip-tls-verify: true"], []),
  );
  assert.equal((await loadKubeConfig({ kubeconfigFile: file })).server, "http://127.0.0.1:1");
});
