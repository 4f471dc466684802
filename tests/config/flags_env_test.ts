/**
 * The `FLANNELD_*` environment of the flag table: the variable names, which flags they fill,
 * what is ignored with a warning, and that a variable means exactly what its flag means.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { envName, parseRunFlags as parse } from "../../config/flags.ts";

Deno.test("flags: environment variable names follow flanneld's rule", () => {
  assert.equal(envName("etcd-endpoints"), "FLANNELD_ETCD_ENDPOINTS");
  assert.equal(envName("iface"), "FLANNELD_IFACE");
  assert.equal(envName("v"), "FLANNELD_V");
  assert.equal(envName("log_backtrace_at"), "FLANNELD_LOG_BACKTRACE_AT");
});

Deno.test("flags: conformance 32, FLANNELD_IP_MASQ and the command line", () => {
  const env = { FLANNELD_IP_MASQ: "true" };
  const fromEnv = parse([], env);
  assert.equal(fromEnv.options.ipMasq, true);
  assert.ok(fromEnv.given.has("ip-masq"));
  assert.equal(parse(["--ip-masq=false"], env).options.ipMasq, false);
});

Deno.test("flags: the environment fills every flag not on the command line", () => {
  const { options, given, warnings } = parse(["--etcd-prefix=/cli"], {
    FLANNELD_ETCD_PREFIX: "/env",
    FLANNELD_ETCD_ENDPOINTS: "http://198.18.0.1:2379,http://198.18.0.2:2379",
    FLANNELD_HEALTHZ_PORT: "8081",
    FLANNELD_IPTABLES_FORWARD_RULES: "false",
    FLANNELD_LOG_BACKTRACE_AT: "main.go:7",
    FLANNELD_SUBNET_FILE: "",
    PATH: "/usr/bin",
  });
  assert.equal(options.etcdPrefix, "/cli");
  assert.deepEqual(options.etcdEndpoints, ["http://198.18.0.1:2379", "http://198.18.0.2:2379"]);
  assert.equal(options.healthzPort, 8081);
  assert.equal(options.iptablesForwardRules, false);
  assert.equal(options.logBacktraceAt, "main.go:7");
  assert.equal(options.subnetFile, "/run/flannel/subnet.env", "an empty variable is unset");
  assert.deepEqual(
    [...given].sort(),
    [
      "etcd-endpoints",
      "etcd-prefix",
      "healthz-port",
      "iptables-forward-rules",
      "log_backtrace_at",
    ],
  );
  assert.deepEqual(warnings, []);
});

Deno.test("flags: unparsable environment values are ignored with a warning", () => {
  const { options, given, warnings } = parse([], {
    FLANNELD_IP_MASQ: "maybe",
    FLANNELD_HEALTHZ_PORT: "http",
    FLANNELD_IPTABLES_RESYNC: "0",
    FLANNELD_PUBLIC_IP: "2001:db8::1",
    FLANNELD_KUBE_SUBNET_MGR: "1",
    FLANNELD_VERSION: "true",
    FLANNELD_NO_SUCH_FLAG: "x",
  });
  assert.equal(options.ipMasq, false);
  assert.equal(options.healthzPort, 0);
  assert.equal(options.iptablesResync, 5);
  assert.equal(options.publicIp, "");
  assert.equal(options.kubeSubnetMgr, true, "other variables still apply");
  assert.equal(options.version, false, "FLANNELD_VERSION has no effect");
  assert.deepEqual([...given], ["kube-subnet-mgr"]);
  assert.equal(warnings.length, 6);
  for (
    const variable of [
      "FLANNELD_IP_MASQ",
      "FLANNELD_HEALTHZ_PORT",
      "FLANNELD_IPTABLES_RESYNC",
      "FLANNELD_PUBLIC_IP",
      "FLANNELD_VERSION",
      "FLANNELD_NO_SUCH_FLAG",
    ]
  ) {
    assert.ok(warnings.some((w) => w.startsWith(`ignoring ${variable}`)), variable);
  }
  assert.ok(warnings.some((w) => w.includes(`"maybe"`)));
});

Deno.test("flags: a repeatable flag's variable is one element, the whole value, as flanneld", () => {
  const { options, warnings } = parse([], {
    FLANNELD_IFACE: "eth0,eth1",
    FLANNELD_IFACE_REGEX: "eth{0,1}",
  });
  assert.deepEqual(options.iface, ["eth0,eth1"]);
  assert.deepEqual(options.ifaceRegex, ["eth{0,1}"], "the comma belongs to the regex");
  assert.deepEqual(warnings, []);
  // The command line wins over the whole variable.
  assert.deepEqual(parse(["--iface=eth9"], { FLANNELD_IFACE: "eth0" }).options.iface, ["eth9"]);
});

const FLAG_VALUES: [string, fc.Arbitrary<string>][] = [
  ["etcd-prefix", fc.string({ minLength: 1 })],
  ["ip-masq", fc.constantFrom("true", "false", "1", "0", "t", "F")],
  ["healthz-port", fc.integer({ min: 0, max: 65535 }).map(String)],
  ["subnet-lease-renew-margin", fc.integer({ min: 1, max: 1439 }).map(String)],
  ["iface", fc.stringMatching(/^[a-z][a-z0-9.]{0,14}$/)],
  ["public-ip", fc.ipV4()],
  ["public-ipv6", fc.ipV6()],
  ["log-level", fc.constantFrom("debug", "info", "warn", "error")],
];

Deno.test("flags: property: FLANNELD_X=v is the same as --x=v", () => {
  fc.assert(
    fc.property(
      fc.constantFrom(...FLAG_VALUES).chain(([flag, value]) => fc.tuple(fc.constant(flag), value)),
      ([flag, value]) => {
        const cli = parse([`--${flag}=${value}`], {});
        const env = parse([], { [envName(flag)]: value });
        assert.deepEqual(env.options, cli.options);
        assert.deepEqual([...env.given], [...cli.given]);
      },
    ),
  );
});
