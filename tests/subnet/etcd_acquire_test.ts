/**
 * Lease acquisition against a real etcd, with leases written by hand in flannel's format.
 */
import assert from "node:assert/strict";
import { text } from "../../etcd/codec.ts";
import { formatNet, netContainsNet, parseAddr, parseNet } from "../../ip/mod.ts";
import { formatLeaseKey, type LeaseAttrs, parseLeaseKey } from "../../subnet/lease.ts";
import { OutOfSubnetsError } from "../../subnet/manager.ts";
import { writeSubnetEnv } from "../../subnet/subnet_env.ts";
import { withEtcdEnv } from "../helpers/etcd_env.ts";
import {
  allocValue,
  captureLog,
  leaseTtl,
  putConfig,
  putLease,
  readKey,
  readSubnets,
  uniquePrefix,
  vxlanValue,
  waitFor,
} from "../helpers/leases.ts";

const SMALL = '{"Network":"10.6.0.0/24","SubnetLen":28,"Backend":{"Type":"alloc"}}';
/** The 15 candidates of {@link SMALL}: 10.6.0.16/28 … 10.6.0.240/28. */
const SMALL_NAMES = Array.from({ length: 15 }, (_, i) => `10.6.0.${(i + 1) * 16}-28`);

function alloc(ip: string): LeaseAttrs {
  return { publicIP: parseAddr(ip) };
}

Deno.test("etcd lease acquisition", async (t) => {
  await withEtcdEnv(t, {
    "a new lease is a flannel key, value and 24 h lease (conformance 2, 5, 6, 8)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}');
      const manager = env.manager(prefix);
      const lease = await manager.acquireLease(alloc("198.18.0.1"), env.signal);
      const name = formatLeaseKey(lease);
      assert.match(name, /^10\.5\.(\d+)\.0-24$/);
      const third = Number(name.split(".")[2]);
      assert.ok(third >= 1 && third <= 255, name);
      const stored = await readSubnets(client, prefix);
      assert.deepEqual([...stored.keys()], [name]);
      assert.equal(stored.get(name)!.value, '{"PublicIP":"198.18.0.1","PublicIPv6":null}');
      const ttl = await leaseTtl(client, stored.get(name)!.lease);
      assert.equal(ttl.granted, 86_400);
      assert.ok(ttl.ttl > 86_000);
      const expiresIn = lease.expiration!.getTime() - Date.now();
      assert.ok(expiresIn > 86_000_000 && expiresIn <= 86_400_000);
      assert.equal(lease.reserved, undefined);
    },

    "leases, reservations and malformed keys of others are avoided (quirk 2)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, SMALL);
      // 14 of the 15 candidates are taken in every way a key can take them.
      const [free, ...taken] = [...SMALL_NAMES].sort(() => Math.random() - 0.5);
      const ways = [
        (n: string) => putLease(client, prefix, n, allocValue("198.18.1.1")),
        (n: string) => putLease(client, prefix, n, vxlanValue("198.18.1.2", "c6:d2:32:6f:8f:44")),
        (n: string) => putLease(client, prefix, n, allocValue("198.18.1.3"), 0), // reservation
        (n: string) => putLease(client, prefix, n, "not json"), // bad value
        (n: string) => putLease(client, prefix, `${n}.bak`, allocValue("198.18.1.4")), // bad name
        (n: string) => putLease(client, prefix, `old-${n}`, allocValue("198.18.1.5")),
      ];
      await Promise.all(taken.map((n, i) => ways[i % ways.length](n)));
      await putLease(client, prefix, "garbage", allocValue("198.18.1.6"));
      const manager = env.manager(prefix);
      const lease = await manager.acquireLease(alloc("198.18.0.1"), env.signal);
      assert.equal(formatLeaseKey(lease), free);
      assert.ok(manager.stats.malformedSkipped >= 5);
      // Everything else is still there, untouched.
      assert.equal((await readSubnets(client, prefix)).size, 16);
    },

    "a full network fails fast with 'out of subnets'": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, SMALL);
      await Promise.all(
        SMALL_NAMES.map((n, i) => putLease(client, prefix, n, allocValue(`198.18.2.${i}`))),
      );
      const requests: string[] = [];
      const timeRequest = (op: string) => (requests.push(op), () => {});
      await assert.rejects(
        env.manager(prefix, { timeRequest }).acquireLease(alloc("198.18.0.1"), env.signal),
        (error: Error) =>
          error instanceof OutOfSubnetsError && /out of subnets/.test(error.message),
      );
      // Fast means no retry: the config and one listing were read, and nothing was granted.
      assert.deepEqual(requests, ["range", "range"]);
    },

    "our lease is reused by public IP; the old etcd lease is revoked (conformance 10, quirk 5)":
      async (env) => {
        const prefix = uniquePrefix();
        const client = env.etcd.client();
        await putConfig(client, prefix, '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}');
        await putLease(client, prefix, "10.5.3.0-24", allocValue("198.18.0.9"));
        const oldLease = await putLease(
          client,
          prefix,
          "10.5.77.0-24",
          vxlanValue("198.18.0.1", "c6:d2:32:6f:8f:44"),
        );
        const attrs: LeaseAttrs = {
          publicIP: parseAddr("198.18.0.1"),
          backendType: "vxlan",
          backendData: { VNI: 1, VtepMAC: "02:00:00:00:00:01" },
        };
        const lease = await env.manager(prefix).acquireLease(attrs, env.signal);
        assert.equal(formatLeaseKey(lease), "10.5.77.0-24");
        const stored = await readSubnets(client, prefix);
        assert.equal(stored.size, 2);
        const ours = stored.get("10.5.77.0-24")!;
        assert.equal(ours.value, vxlanValue("198.18.0.1", "02:00:00:00:00:01"));
        assert.notEqual(ours.lease, oldLease);
        assert.equal((await leaseTtl(client, ours.lease)).granted, 86_400);
        assert.equal((await leaseTtl(client, oldLease)).ttl, -1);
      },

    "our lease that no longer fits the config is deleted and replaced": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, '{"Network":"10.5.0.0/16","SubnetLen":25}');
      await putLease(client, prefix, "10.5.77.0-24", allocValue("198.18.0.1"));
      const lease = await env.manager(prefix).acquireLease(alloc("198.18.0.1"), env.signal);
      assert.equal(lease.subnet!.prefix, 25);
      const names = [...(await readSubnets(client, prefix)).keys()];
      assert.deepEqual(names, [formatLeaseKey(lease)]);
    },

    "the previous subnet from subnet.env is re-created when free (conformance 11)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, '{"Network":"10.5.0.0/16"}');
      const subnetFile = `${env.tmp}/prev.env`;
      await writeSubnetEnv(subnetFile, {
        ipv4: { network: parseNet("10.5.0.0/16"), subnet: parseNet("10.5.72.0/24") },
        mtu: 1450,
        ipMasq: true,
      });
      const first = await env.manager(prefix, { subnetFile }).acquireLease(
        alloc("198.18.0.1"),
        env.signal,
      );
      assert.equal(formatLeaseKey(first), "10.5.72.0-24");
      // Taken by someone else: a fresh subnet instead.
      const second = await env.manager(prefix, { subnetFile }).acquireLease(
        alloc("198.18.0.2"),
        env.signal,
      );
      assert.notEqual(formatLeaseKey(second), "10.5.72.0-24");
    },

    "a restarted node gets its subnet back (same public IP)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, '{"Network":"10.5.0.0/16"}');
      const first = env.manager(prefix);
      const lease = await first.acquireLease(alloc("198.18.0.1"), env.signal);
      await first.close();
      const again = await env.manager(prefix).acquireLease(alloc("198.18.0.1"), env.signal);
      assert.equal(formatLeaseKey(again), formatLeaseKey(lease));
      assert.equal((await readSubnets(client, prefix)).size, 1);
    },

    "a reservation for us is used and stays lease-less, also on renewal (quirk 4)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, SMALL);
      await putLease(client, prefix, "10.6.0.64-28", allocValue("198.18.0.1"), 0);
      const manager = env.manager(prefix);
      const lease = await manager.acquireLease(
        { publicIP: parseAddr("198.18.0.1"), backendType: "host-gw" },
        env.signal,
      );
      assert.equal(formatLeaseKey(lease), "10.6.0.64-28");
      assert.equal(lease.reserved, true);
      assert.equal(lease.expiration, undefined);
      const check = async () => {
        const stored = (await readSubnets(client, prefix)).get("10.6.0.64-28")!;
        assert.equal(stored.lease, "0");
        assert.equal(
          stored.value,
          '{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"host-gw"}',
        );
      };
      await check();
      const renewed = await manager.renewLease(lease, env.signal);
      assert.equal(renewed.reserved, true);
      await check();
    },

    "50 nodes racing for 63 subnets all get distinct ones (quirk 3)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(client, prefix, '{"Network":"10.9.0.0/22","SubnetLen":28}');
      const { log, lines } = captureLog();
      const nodes = Array.from({ length: 50 }, () => env.manager(prefix, { log }));
      await Promise.all(nodes.map((m) => m.getNetworkConfig(env.signal)));
      const leases = await Promise.all(
        nodes.map((m, i) => m.acquireLease(alloc(`198.18.3.${i + 1}`), env.signal)),
      );
      const names = leases.map(formatLeaseKey);
      // The nodes really raced: some lost and retried.
      assert.ok(lines.some((l) => l.includes("took the chosen subnet first")));
      assert.equal(new Set(names).size, 50);
      const stored = await readSubnets(client, prefix);
      assert.equal(stored.size, 50);
      names.forEach((name, i) => {
        assert.equal(stored.get(name)!.value, allocValue(`198.18.3.${i + 1}`));
      });
      await Promise.all(nodes.map((m) => m.close()));
    },

    "dual stack writes both subnets into one key": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(
        client,
        prefix,
        '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":64}',
      );
      const attrs: LeaseAttrs = {
        publicIP: parseAddr("198.18.0.1"),
        publicIPv6: parseAddr("fd00::1"),
        backendType: "host-gw",
      };
      const lease = await env.manager(prefix).acquireLease(attrs, env.signal);
      const name = formatLeaseKey(lease);
      assert.match(name, /^10\.5\.\d+\.0-24&fc00:[0-9a-f:]*-64$/);
      assert.ok(netContainsNet(parseNet("fc00::/48"), lease.ipv6Subnet!));
      assert.deepEqual(parseLeaseKey(name), { subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet });
      const stored = (await readSubnets(client, prefix)).get(name)!;
      assert.equal(
        stored.value,
        '{"PublicIP":"198.18.0.1","PublicIPv6":"fd00::1","BackendType":"host-gw"}',
      );
    },

    "IPv6-only nodes are told apart and find their lease by PublicIPv6 (quirk 20)": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      await putConfig(
        client,
        prefix,
        '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/56","IPv6SubnetLen":64}',
      );
      const attrs = (ip: string): LeaseAttrs => ({
        publicIP: parseAddr("0.0.0.0"),
        publicIPv6: parseAddr(ip),
      });
      const a = await env.manager(prefix).acquireLease(attrs("fd00::a"), env.signal);
      const b = await env.manager(prefix).acquireLease(attrs("fd00::b"), env.signal);
      assert.equal(a.subnet, undefined);
      assert.notEqual(formatNet(a.ipv6Subnet!), formatNet(b.ipv6Subnet!));
      assert.match(formatLeaseKey(a), /^0\.0\.0\.0-0&fc00:0:0:[0-9a-f]+::-64$/);
      const again = await env.manager(prefix).acquireLease(attrs("fd00::a"), env.signal);
      assert.equal(formatLeaseKey(again), formatLeaseKey(a));
      assert.equal((await readSubnets(client, prefix)).size, 2);
    },

    "the config is waited for, and an invalid one is logged and retried": async (env) => {
      const prefix = uniquePrefix();
      const client = env.etcd.client();
      const { log, lines } = captureLog();
      const manager = env.manager(prefix, { log });
      let read = false;
      const pending = manager.getNetworkConfig(env.signal).finally(() => read = true);
      const logged = (text: string) => () => lines.some((l) => l.includes(text));
      await waitFor("the missing config logged", logged("flannel config not found in etcd store"));
      await putConfig(client, prefix, '{"Network":"10.5.0.0/29"}');
      await waitFor("the invalid config logged", logged("network is too small"));
      assert.ok(!read, "an invalid config must not be returned");
      await putConfig(client, prefix, '{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}');
      const config = await pending;
      assert.equal(formatNet(config.ipv4!.network), "10.5.0.0/16");
      assert.equal(config.backend.type, "host-gw");
      // Aborting stops the wait.
      const abort = new AbortController();
      const waiting = env.manager(uniquePrefix()).getNetworkConfig(abort.signal);
      abort.abort();
      await assert.rejects(waiting);
    },

    "a custom prefix is honoured (conformance 1)": async (env) => {
      const client = env.etcd.client();
      await putConfig(client, "/x/net", '{"Network":"10.8.0.0/16"}');
      const manager = env.manager("/x/net/");
      const lease = await manager.acquireLease(alloc("198.18.0.1"), env.signal);
      const stored = await readKey(client, manager.leaseKey(lease));
      assert.equal(stored && text(stored.key), `/x/net/subnets/${formatLeaseKey(lease)}`);
    },
  });
});
