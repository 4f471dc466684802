/**
 * TLS and password auth between the subnet manager and a real etcd.
 */
import assert from "node:assert/strict";
import { EtcdOptionsError } from "../../subnet/etcd_client.ts";
import { type EtcdManagerOptions, EtcdSubnetManager } from "../../subnet/etcd.ts";
import { parseAddr } from "../../ip/mod.ts";
import { makeTestPki } from "../helpers/certs.ts";
import { type EtcdFixture, startEtcd } from "../helpers/etcd.ts";
import { captureLog, putConfig, readSubnets, uniquePrefix } from "../helpers/leases.ts";

const CONFIG = '{"Network":"10.5.0.0/16"}';

/** Whether a manager with these options can read the config within `ms`. */
async function canReadConfig(options: EtcdManagerOptions, ms = 1500): Promise<boolean> {
  const manager = new EtcdSubnetManager({ ...options, log: captureLog().log });
  try {
    await manager.getNetworkConfig(AbortSignal.timeout(ms));
    return true;
  } catch {
    return false;
  } finally {
    await manager.close();
  }
}

async function etcdctl(etcd: EtcdFixture, caFile: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("etcdctl", {
    args: [`--endpoints=${etcd.endpoint}`, `--cacert=${caFile}`, ...args],
    env: { ETCDCTL_API: "3" },
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
}

Deno.test("etcd over TLS, with and without client certificates, and password auth", async (t) => {
  await using pki = await makeTestPki();

  await t.step("server TLS: the CA alone is honoured (quirk 19); auth works", async () => {
    await using etcd = await startEtcd({
      tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caFile },
    });
    const prefix = uniquePrefix();
    await putConfig(etcd.client(), prefix, CONFIG);
    const base = { endpoints: [etcd.endpoint], prefix };
    assert.ok(await canReadConfig({ ...base, caFile: pki.caFile }));
    assert.ok(!await canReadConfig(base)); // system roots do not trust our CA

    await etcdctl(etcd, pki.caFile, "user", "add", "root:s3cret");
    await etcdctl(etcd, pki.caFile, "user", "grant-role", "root", "root");
    await etcdctl(etcd, pki.caFile, "auth", "enable");
    const authed = { ...base, caFile: pki.caFile, username: "root", password: "s3cret" };
    assert.ok(await canReadConfig(authed));
    assert.ok(!await canReadConfig({ ...authed, password: "wrong" }));
    assert.ok(!await canReadConfig({ ...base, caFile: pki.caFile }));
    const manager = new EtcdSubnetManager({ ...authed, log: captureLog().log });
    try {
      const lease = await manager.acquireLease(
        { publicIP: parseAddr("198.18.0.1") },
        AbortSignal.timeout(5000),
      );
      assert.ok(lease.subnet);
    } finally {
      await manager.close();
    }
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
    assert.ok(!await canReadConfig(base));
    const full = { ...base, certFile: pki.clientCert, keyFile: pki.clientKey };
    const manager = new EtcdSubnetManager({ ...full, log: captureLog().log });
    try {
      await manager.acquireLease({ publicIP: parseAddr("198.18.0.1") }, AbortSignal.timeout(5000));
    } finally {
      await manager.close();
    }
    assert.equal((await readSubnets(etcd.client(), prefix)).size, 1);
  });
});

Deno.test("unusable connection options fail at construction with EtcdOptionsError", () => {
  const endpoints = ["https://etcd.example:2379"];
  for (
    const options of [
      { endpoints: [] },
      { endpoints: ["https://127.0.0.1:2379"] },
      { endpoints: ["https://[fd00::1]:2379"] },
      { endpoints: ["127.0.0.1:2379"] },
      { endpoints: ["unix:///run/etcd.sock"] },
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
