/**
 * How the subnet manager reaches a real etcd: TLS by IP address (IP-SAN-only certificates, as
 * kubeadm issues them) and by name, client certificates, password auth, plain `host:port` and
 * unix sockets; and the connection options that are refused up front.
 */
import assert from "node:assert/strict";
import { EtcdClient, EtcdOptionsError } from "../../etcd/client.ts";
import { type EtcdManagerOptions, EtcdSubnetManager } from "../../subnet/etcd.ts";
import { formatNet, parseAddr } from "../../ip/mod.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { type EtcdFixture, startEtcd } from "../helpers/etcd.ts";
import { captureLog, putConfig, readSubnets, uniquePrefix, waitFor } from "../helpers/leases.ts";

const CONFIG = '{"Network":"10.5.0.0/16"}';

/** A manager with `options` reads the network config (bounded wait; the log on failure). */
async function assertReads(options: EtcdManagerOptions): Promise<void> {
  const { log, lines } = captureLog();
  const manager = new EtcdSubnetManager({ ...options, log });
  try {
    const config = await manager.getNetworkConfig(AbortSignal.timeout(15_000)).catch((error) => {
      throw new Error(`config not read: ${error}; logged:\n${lines.join("\n")}`);
    });
    assert.equal(formatNet(config.ipv4!.network), "10.5.0.0/16");
  } finally {
    await manager.close();
  }
}

/**
 * A manager with `options` is refused for the reason `reason` matches: the manager keeps
 * retrying and logs why each read failed, so this waits (bounded) for a logged failure with that
 * reason. A read that succeeds, a manager that hangs or fails for another reason all fail.
 */
async function assertRefused(options: EtcdManagerOptions, reason: RegExp): Promise<void> {
  const { log, lines } = captureLog();
  const manager = new EtcdSubnetManager({ ...options, log });
  const stop = new AbortController();
  let read = false;
  const pending = manager.getNetworkConfig(stop.signal).then(() => read = true, () => {});
  const refused = () =>
    lines.some((line) => /cannot read .*\/config: /.test(line) && reason.test(line));
  try {
    await waitFor(`a refusal matching ${reason}`, () => read || refused(), 15_000)
      .catch((error) => {
        throw new Error(`${error.message}; logged:\n${lines.join("\n")}`);
      });
    assert.ok(!read, "the config was read although this access must be refused");
  } finally {
    stop.abort();
    await pending;
    await manager.close();
  }
}

/** etcdctl over the fixture's unix socket (plain even when the TCP port has TLS). */
async function etcdctl(etcd: EtcdFixture, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("etcdctl", {
    args: [`--endpoints=${etcd.unixEndpoint}`, ...args],
    env: { ETCDCTL_API: "3" },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

/** A manager with `options` acquires a lease; returns its subnet. */
async function acquires(options: EtcdManagerOptions): Promise<string> {
  const manager = new EtcdSubnetManager({ ...options, log: captureLog().log });
  try {
    const lease = await manager.acquireLease(
      { publicIP: parseAddr("198.18.0.1") },
      AbortSignal.timeout(5000),
    );
    assert.ok(lease.subnet);
    return String(lease.subnet.base);
  } finally {
    await manager.close();
  }
}

Deno.test("etcd over TLS by IP address, with and without client certificates, and password auth", async (t) => {
  await using pki = await makeTestPki();

  await t.step("server TLS: the CA alone is honoured (quirk 19); auth works", async () => {
    await using etcd = await startEtcd({
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caFile },
    });
    assert.match(etcd.endpoint, /^https:\/\/127\.0\.0\.1:\d+$/);
    const prefix = uniquePrefix();
    await putConfig(etcd.client(), prefix, CONFIG);
    const base = { endpoints: [etcd.endpoint], prefix };
    await assertReads({ ...base, caFile: pki.caFile });
    // The bundled roots do not trust our CA.
    await assertRefused(base, /invalid peer certificate: UnknownIssuer/);

    await etcdctl(etcd, "user", "add", "root:s3cret");
    await etcdctl(etcd, "user", "grant-role", "root", "root");
    await etcdctl(etcd, "auth", "enable");
    const authed = { ...base, caFile: pki.caFile, username: "root", password: "s3cret" };
    await assertReads(authed);
    await assertRefused(
      { ...authed, password: "wrong" },
      /etcdserver: authentication failed, invalid user ID or password/,
    );
    // No credentials: etcd refuses the anonymous request.
    await assertRefused({ ...base, caFile: pki.caFile }, /etcdserver: user name is empty/);
    await acquires(authed);
    // The same user over the unix socket.
    await acquires({ ...authed, endpoints: [etcd.unixEndpoint] });
  });

  await t.step(
    "an IP-SAN-only certificate verifies against the IP; https and host:port",
    async () => {
      await using etcd = await startEtcd({
        tls: { certFile: pki.ipOnlyCert, keyFile: pki.ipOnlyKey, caFile: pki.caFile },
      });
      const prefix = uniquePrefix();
      await putConfig(etcd.client(), prefix, CONFIG);
      const hostPort = etcd.endpoint.replace("https://", "");
      await acquires({ endpoints: [etcd.endpoint], prefix, caFile: pki.caFile });
      // host:port with TLS files means https, as etcd's own client decides.
      await acquires({ endpoints: [hostPort], prefix, caFile: pki.caFile });
      // The certificate names no host: reaching it by name fails verification.
      const byName = new EtcdClient({
        endpoints: [etcd.endpoint.replace("127.0.0.1", "localhost")],
        caFile: pki.caFile,
      });
      try {
        await assert.rejects(byName.status(), /not valid for name "localhost"/);
      } finally {
        byName.close();
      }
    },
  );

  await t.step("a certificate for another IP is refused with a clear error", async () => {
    await using etcd = await startEtcd({
      tls: { certFile: pki.wrongIpCert, keyFile: pki.wrongIpKey, caFile: pki.caFile },
    });
    // (logfmt escapes the quotes)
    await assertRefused(
      { endpoints: [etcd.endpoint], prefix: uniquePrefix(), caFile: pki.caFile },
      /not valid for name \\"127\.0\.0\.1\\"; .*only valid for IpAddress\(127\.0\.0\.2\)/,
    );
  });

  await t.step("client certificate auth: cert and key are presented", async () => {
    await using etcd = await startEtcd({
      tls: {
        certFile: pki.serverCert,
        keyFile: pki.serverKey,
        caFile: pki.caFile,
        client: { certFile: pki.clientCert, keyFile: pki.clientKey },
      },
    });
    const prefix = uniquePrefix();
    await putConfig(etcd.client(), prefix, CONFIG);
    const base = { endpoints: [etcd.endpoint], prefix, caFile: pki.caFile };
    // The server refuses the handshake without a certificate, or with one from another CA.
    await assertRefused(base, /received fatal alert: BadCertificate/);
    await using otherPki = await makeTestPki();
    await assertRefused(
      { ...base, certFile: otherPki.clientCert, keyFile: otherPki.clientKey },
      /received fatal alert: BadCertificate/,
    );
    await assertReads({ ...base, certFile: pki.clientCert, keyFile: pki.clientKey });
    await acquires({ ...base, certFile: pki.clientCert, keyFile: pki.clientKey });
    assert.equal((await readSubnets(etcd.client(), prefix)).size, 1);
  });
});

Deno.test("etcd by plain host:port and by unix socket; failover past a dead endpoint", async () => {
  await using etcd = await startEtcd();
  const prefix = uniquePrefix();
  await putConfig(etcd.client(), prefix, CONFIG);
  const hostPort = etcd.endpoint.replace("http://", "");
  assert.match(hostPort, /^127\.0\.0\.1:\d+$/);
  const viaHostPort = await acquires({ endpoints: [hostPort], prefix });
  // The same node (public IP) through the socket finds the same lease.
  assert.equal(await acquires({ endpoints: [etcd.unixEndpoint], prefix }), viaHostPort);
  // A closed port first: the next endpoint answers.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const endpoints = [`http://127.0.0.1:${closedPort}`, etcd.unixEndpoint];
  assert.equal(await acquires({ endpoints, prefix }), viaHostPort);
  assert.equal((await readSubnets(etcd.client(), prefix)).size, 1);
});

Deno.test("a token etcd no longer knows is renewed, for requests and for a watch", async () => {
  await using etcd = await startEtcd();
  const prefix = uniquePrefix();
  await putConfig(etcd.client(), prefix, CONFIG);
  await etcdctl(etcd, "user", "add", "root:s3cret");
  await etcdctl(etcd, "user", "grant-role", "root", "root");
  await etcdctl(etcd, "auth", "enable");
  // Turning auth off and on drops every token etcd handed out, as expiry does (5 min idle).
  const forgetTokens = async () => {
    await etcdctl(etcd, "--user=root:s3cret", "auth", "disable");
    await etcdctl(etcd, "auth", "enable");
  };
  const client = new EtcdClient({
    endpoints: [etcd.endpoint],
    username: "root",
    password: "s3cret",
  });
  try {
    const { revision } = await client.put({ key: `${prefix}/a`, value: "1" });
    await forgetTokens();
    assert.equal((await client.range({ key: `${prefix}/a` })).kvs.length, 1);
    await forgetTokens();
    // etcd cancels a watch opened with a stale token at once; the client renews it and reopens.
    const watch = client.watch({ key: `${prefix}/a`, startRevision: revision }, signalFor(5000));
    const created = (await watch.next()).value;
    assert.equal(created?.canceled, false, created?.cancelReason);
    assert.equal(created?.created, true);
    const event = (await watch.next()).value;
    assert.equal(event?.events.length, 1);
    await watch.return(undefined);
  } finally {
    client.close();
  }
});

/** Aborts after `ms`: a bound on a step that would otherwise hang if the code under test broke. */
function signalFor(ms: number): AbortSignal {
  return AbortSignal.timeout(ms);
}

Deno.test("unusable connection options fail at construction with EtcdOptionsError", () => {
  const endpoints = ["https://etcd.example:2379"];
  for (
    const options of [
      { endpoints: [] },
      { endpoints: ["ftp://127.0.0.1:2379"] },
      { endpoints: ["unix://"] },
      { endpoints: ["unixs:///run/etcd.sock"] },
      { endpoints: ["http://127.0.0.1:2379/v3"] },
      { endpoints: ["http://"] },
      { endpoints, certFile: "/nonexistent.crt" },
      { endpoints, certFile: "/a.crt", keyFile: "/nonexistent.key", caFile: "/nonexistent.ca" },
      { endpoints, caFile: "/nonexistent/ca.crt" },
      { endpoints, username: "root" },
      { endpoints, renewMarginMinutes: 24 * 60 },
      { endpoints, renewMarginMinutes: 0 },
    ]
  ) {
    assert.throws(() => new EtcdSubnetManager(options), EtcdOptionsError, JSON.stringify(options));
  }
});
