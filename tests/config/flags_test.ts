import assert from "node:assert/strict";
import fc from "fast-check";
import {
  envName,
  etcdTlsFiles,
  FlagError,
  flagNames,
  parseRunFlags,
  redactedOptions,
  type RunOptions,
  unimplementedFlags,
  usage,
} from "../../config/flags.ts";

/** Defaults exactly as in spec §1.2 (flag name → value), plus Tartan's log-level. */
const SPEC_DEFAULTS: Record<string, unknown> = {
  "etcd-endpoints": ["http://127.0.0.1:4001", "http://127.0.0.1:2379"],
  "etcd-prefix": "/coreos.com/network",
  "etcd-keyfile": "",
  "etcd-certfile": "",
  "etcd-cafile": "",
  "etcd-username": "",
  "etcd-password": "",
  "subnet-lease-renew-margin": 60,
  "kube-subnet-mgr": false,
  "kube-api-url": "",
  "kubeconfig-file": "",
  "kube-annotation-prefix": "flannel.alpha.coreos.com",
  "net-config-path": "/etc/kube-flannel/net-conf.json",
  "set-node-network-unavailable": true,
  "iface": [],
  "iface-regex": [],
  "iface-can-reach": "",
  "public-ip": "",
  "public-ipv6": "",
  "subnet-file": "/run/flannel/subnet.env",
  "ip-masq": false,
  "ip-masq-fully-random-disable": false,
  "iptables-resync": 5,
  "iptables-forward-rules": true,
  "ip-blackhole-route": false,
  "healthz-ip": "0.0.0.0",
  "healthz-port": 0,
  "version": false,
  "v": 0,
  "vmodule": "",
  "log_backtrace_at": "",
  "log-level": "info",
  "admin-token-file": "",
  "peer-probe-interval": 60,
  "peer-probe-rate": 50,
};

/** `etcd-endpoints` → `etcdEndpoints`, `log_backtrace_at` → `logBacktraceAt`. */
function field(flag: string): keyof RunOptions {
  return flag.replace(/[-_]([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof RunOptions;
}

function parse(argv: string[], env: Record<string, string> = {}) {
  return parseRunFlags(argv, env);
}

function flagErrorOf(fn: () => unknown): FlagError {
  try {
    fn();
  } catch (err) {
    if (err instanceof FlagError) return err;
    throw err;
  }
  assert.fail("expected a FlagError");
}

Deno.test("flags: the table has exactly flanneld's 31 flags plus Tartan's own", () => {
  assert.deepEqual(new Set(flagNames()), new Set(Object.keys(SPEC_DEFAULTS)));
  // flanneld's 31, plus --log-level, --admin-token-file, --peer-probe-interval and -rate
  assert.equal(flagNames().length, 35);
});

Deno.test("flags: every default matches the spec", () => {
  const { options, given, warnings, help } = parse([]);
  for (const [flag, expected] of Object.entries(SPEC_DEFAULTS)) {
    assert.deepEqual(options[field(flag)], expected, flag);
  }
  assert.equal(Object.keys(options).length, flagNames().length);
  assert.equal(given.size, 0);
  assert.deepEqual(warnings, []);
  assert.equal(help, false);
});

Deno.test("flags: usage lists every flag with its type, default and variable", () => {
  const text = usage();
  for (const flag of flagNames()) {
    const line = text.split("\n").find((l) => l.startsWith(`  --${flag} `));
    assert.ok(line, `usage lacks --${flag}`);
    if (flag !== "version") assert.ok(line.includes(`[${envName(flag)}]`), line);
  }
  assert.match(text, /--etcd-endpoints list.*\n.*\(default "http:\/\/127\.0\.0\.1:4001,http/);
  assert.match(text, /--subnet-lease-renew-margin int.*\n.*\(default 60\)/);
  assert.match(text, /--set-node-network-unavailable bool.*\n.*\(default true\)/);
  assert.match(text, /--healthz-ip string.*\n.*\(default "0\.0\.0\.0"\)/);
  assert.ok(!text.includes("FLANNELD_VERSION"));
});

Deno.test("flags: -x, --x, -x=v and -x v forms", () => {
  for (
    const argv of [
      ["-etcd-prefix=/a"],
      ["--etcd-prefix=/a"],
      ["-etcd-prefix", "/a"],
      ["--etcd-prefix", "/a"],
    ]
  ) {
    const { options, given } = parse(argv);
    assert.equal(options.etcdPrefix, "/a", argv.join(" "));
    assert.deepEqual([...given], ["etcd-prefix"]);
  }
  // An `=` inside the value belongs to the value; an empty value is a value.
  assert.equal(parse(["--etcd-username=a=b"]).options.etcdUsername, "a=b");
  assert.equal(parse(["--etcd-prefix="]).options.etcdPrefix, "");
  // Like Go, a value-taking flag consumes the next argument even if it looks like a flag.
  const { options } = parse(["--etcd-prefix", "--ip-masq"]);
  assert.equal(options.etcdPrefix, "--ip-masq");
  assert.equal(options.ipMasq, false);
  // The last occurrence of a non-repeatable flag wins.
  assert.equal(parse(["-v=1", "-v", "3"]).options.v, 3);
});

Deno.test("flags: booleans bare, =true/=false, Go's spellings; a bare false is not consumed", () => {
  assert.equal(parse(["-ip-masq"]).options.ipMasq, true);
  assert.equal(parse(["--ip-masq=true"]).options.ipMasq, true);
  assert.equal(parse(["--iptables-forward-rules=false"]).options.iptablesForwardRules, false);
  for (const t of ["1", "t", "T", "TRUE", "true", "True"]) {
    assert.equal(parse([`--ip-masq=${t}`]).options.ipMasq, true, t);
  }
  for (const f of ["0", "f", "F", "FALSE", "false", "False"]) {
    assert.equal(parse([`--ip-masq=true`, `--ip-masq=${f}`]).options.ipMasq, false, f);
  }
  const { options, warnings } = parse(["--ip-masq", "false", "--kube-subnet-mgr"]);
  assert.equal(options.ipMasq, true);
  // Go stops at the first non-flag argument; we say what was skipped.
  assert.equal(options.kubeSubnetMgr, false);
  assert.deepEqual(warnings, ["ignoring arguments after the flags: false --kube-subnet-mgr"]);
});

Deno.test("flags: -- ends the flags", () => {
  const { options, warnings } = parse(["--ip-masq", "--", "--kube-subnet-mgr"]);
  assert.equal(options.ipMasq, true);
  assert.equal(options.kubeSubnetMgr, false);
  assert.equal(warnings.length, 1);
});

Deno.test("flags: iface and iface-regex are repeatable and keep their order", () => {
  const { options } = parse([
    "--iface",
    "eth0",
    "-iface=10.0.0.2",
    "--iface-regex",
    "^ens",
    "--iface=eth1",
    "--iface-regex=eth{1,2}",
  ]);
  assert.deepEqual(options.iface, ["eth0", "10.0.0.2", "eth1"]);
  assert.deepEqual(options.ifaceRegex, ["^ens", "eth{1,2}"]);
  // On the command line a comma is part of the value, as in flanneld.
  assert.deepEqual(parse(["--iface=a,b"]).options.iface, ["a,b"]);
});

Deno.test("flags: etcd-endpoints is split on commas", () => {
  const { options } = parse(["--etcd-endpoints=http://a:2379, http://b:2379,"]);
  assert.deepEqual(options.etcdEndpoints, ["http://a:2379", "http://b:2379"]);
});

Deno.test("flags: integers use Go's syntax", () => {
  assert.equal(parse(["--healthz-port=0x1f90"]).options.healthzPort, 8080);
  assert.equal(parse(["--healthz-port=017"]).options.healthzPort, 15);
  assert.equal(parse(["--healthz-port=0o17"]).options.healthzPort, 15);
  assert.equal(parse(["--healthz-port=0b101"]).options.healthzPort, 5);
  assert.equal(parse(["--healthz-port=8_081"]).options.healthzPort, 8081);
  assert.equal(parse(["--healthz-port=+80"]).options.healthzPort, 80);
  assert.equal(parse(["-v=-1"]).options.v, -1);
  for (const bad of ["08", "1_", "_1", "0x", "1.5", "", " 1", "1e3", "eighty", "1__0"]) {
    const err = flagErrorOf(() => parse([`--healthz-port=${bad}`]));
    assert.equal(err.flag, "healthz-port", bad);
  }
});

Deno.test("flags: unknown flags and bad values name the flag", () => {
  const unknown = flagErrorOf(() => parse(["--ip-masq", "--no-such-flag=1"]));
  assert.equal(unknown.flag, "no-such-flag");
  assert.equal(unknown.message, "flag provided but not defined: -no-such-flag");

  const bad = flagErrorOf(() => parse(["--ip-masq=maybe"]));
  assert.equal(bad.flag, "ip-masq");
  assert.match(bad.message, /^invalid value "maybe" for flag -ip-masq: /);

  const missing = flagErrorOf(() => parse(["--etcd-prefix"]));
  assert.equal(missing.flag, "etcd-prefix");
  assert.equal(missing.message, "flag needs an argument: -etcd-prefix");

  for (const syntax of ["---ip-masq", "-=1", "--=x"]) {
    const err = flagErrorOf(() => parse([syntax]));
    assert.equal(err.message, `bad flag syntax: ${syntax}`);
  }
  assert.equal(flagErrorOf(() => parse(["--log-level=trace"])).flag, "log-level");
  assert.equal(flagErrorOf(() => parse(["--vmodule=foo"])).flag, "vmodule");
  assert.equal(flagErrorOf(() => parse(["--vmodule=a=1=2"])).flag, "vmodule");
  assert.equal(parse(["--vmodule=gc=2,sub*=3,"]).options.vmodule, "gc=2,sub*=3,");
  assert.equal(flagErrorOf(() => parse(["--log_backtrace_at=main:3"])).flag, "log_backtrace_at");
  assert.equal(flagErrorOf(() => parse(["--log_backtrace_at=main.go:0"])).flag, "log_backtrace_at");
  assert.equal(parse(["--log_backtrace_at=main.go:42"]).options.logBacktraceAt, "main.go:42");
});

Deno.test("flags: addresses are checked for the right family", () => {
  assert.equal(parse(["--public-ip=198.18.0.1"]).options.publicIp, "198.18.0.1");
  assert.equal(parse(["--public-ipv6=2001:db8::1"]).options.publicIpv6, "2001:db8::1");
  assert.equal(parse(["--iface-can-reach=2001:db8::1"]).options.ifaceCanReach, "2001:db8::1");
  assert.equal(flagErrorOf(() => parse(["--public-ip=2001:db8::1"])).flag, "public-ip");
  assert.equal(flagErrorOf(() => parse(["--public-ipv6=198.18.0.1"])).flag, "public-ipv6");
  assert.equal(flagErrorOf(() => parse(["--public-ip=198.18.0.256"])).flag, "public-ip");
  assert.equal(flagErrorOf(() => parse(["--iface-can-reach=node1"])).flag, "iface-can-reach");
});

Deno.test("flags: ranges of renew margin, iptables-resync (quirk 27) and healthz-port", () => {
  const cases: [string, number, boolean][] = [
    ["subnet-lease-renew-margin", 0, false],
    ["subnet-lease-renew-margin", 1, true],
    ["subnet-lease-renew-margin", 1439, true],
    ["subnet-lease-renew-margin", 1440, false],
    ["subnet-lease-renew-margin", -5, false],
    ["iptables-resync", 0, false],
    ["iptables-resync", -1, false],
    ["iptables-resync", 1, true],
    ["iptables-resync", 2147483, true], // the longest delay a timer holds
    ["iptables-resync", 2147484, false],
    ["iptables-resync", 3000000, false], // spun at ~1000 wake-ups/s before the cap
    ["healthz-port", 65535, true],
    ["healthz-port", 65536, false],
    ["healthz-port", -1, false],
  ];
  for (const [flag, value, ok] of cases) {
    const argv = [`--${flag}=${value}`];
    if (ok) {
      assert.equal(parse(argv).options[field(flag)], value, argv[0]);
    } else {
      const err = flagErrorOf(() => parse(argv));
      assert.equal(err.flag, flag);
      assert.match(err.message, /must be between/);
    }
  }
  assert.match(
    flagErrorOf(() => parse(["--iptables-resync=3000000"])).message,
    /must be between 1 and 2147483/,
  );
});

Deno.test("flags: -h, -help and --help request the usage text", () => {
  for (const arg of ["-h", "--h", "-help", "--help"]) {
    assert.equal(parse(["--ip-masq", arg, "--no-such-flag"]).help, true, arg);
  }
});

Deno.test("flags: --version is acted on before the environment, as in flanneld", () => {
  const { options, given } = parse(["--version"], {
    FLANNELD_IP_MASQ: "true",
    FLANNELD_ETCD_KEYFILE: "/k.pem",
  });
  assert.equal(options.version, true);
  assert.equal(options.ipMasq, false);
  assert.deepEqual([...given], ["version"]);
});

Deno.test("flags: -v maps to the debug log level unless --log-level is given", () => {
  assert.equal(parse([]).options.logLevel, "info");
  assert.equal(parse(["-v", "1"]).options.logLevel, "debug");
  assert.equal(parse([], { FLANNELD_V: "4" }).options.logLevel, "debug");
  assert.equal(parse(["-v=4", "--log-level=warn"]).options.logLevel, "warn");
  assert.equal(parse(["-v=4"], { FLANNELD_LOG_LEVEL: "error" }).options.logLevel, "error");
  assert.equal(parse(["--log-level", "debug"]).options.logLevel, "debug");
});

Deno.test("flags: etcd TLS: a CA alone is honoured (quirk 19), a lone cert or key is an error", () => {
  assert.equal(etcdTlsFiles(parse([]).options), undefined);
  assert.deepEqual(etcdTlsFiles(parse(["--etcd-cafile=/ca.pem"]).options), {
    caFile: "/ca.pem",
    certFile: undefined,
    keyFile: undefined,
  });
  assert.deepEqual(
    etcdTlsFiles(parse(["--etcd-certfile=/c.pem", "--etcd-keyfile=/k.pem"]).options),
    { caFile: undefined, certFile: "/c.pem", keyFile: "/k.pem" },
  );
  assert.equal(flagErrorOf(() => parse(["--etcd-certfile=/c.pem"])).flag, "etcd-keyfile");
  assert.equal(
    flagErrorOf(() => parse([], { FLANNELD_ETCD_KEYFILE: "/k.pem" })).flag,
    "etcd-certfile",
  );
});

Deno.test("flags: redactedOptions hides the etcd password only (quirk 18)", () => {
  const { options } = parse(["--etcd-password=s3cret", "--etcd-username=admin"]);
  const shown = redactedOptions(options);
  assert.equal(shown.etcdPassword, "<redacted>");
  assert.equal(shown.etcdUsername, "admin");
  assert.equal(options.etcdPassword, "s3cret", "the options themselves are untouched");
  assert.ok(!JSON.stringify(shown).includes("s3cret"));
  assert.deepEqual({ ...shown, etcdPassword: "s3cret" }, options);
  assert.equal(redactedOptions(parse([]).options).etcdPassword, "", "unset stays visible");
});

Deno.test("flags: unimplementedFlags names set, non-default, unimplemented flags", () => {
  const { options, given } = parse(
    ["--vmodule=gc=2", "--ip-masq", "--iptables-forward-rules=true", "--iface=eth0"],
    { FLANNELD_IP_BLACKHOLE_ROUTE: "true" },
  );
  assert.deepEqual(unimplementedFlags(options, given), ["vmodule"]);
  const backtrace = parse(["--log_backtrace_at=main.go:3", "--vmodule="]);
  assert.deepEqual(unimplementedFlags(backtrace.options, backtrace.given), ["log_backtrace_at"]);
  assert.deepEqual(unimplementedFlags(parse([]).options, new Set()), []);
});

Deno.test("flags: fuzz: arbitrary argv and env only ever throw FlagError", () => {
  const token = fc.oneof(
    fc.string(),
    fc.constantFrom(...flagNames()).chain((name) =>
      fc.tuple(fc.constantFrom("-", "--"), fc.constantFrom("", "="), fc.string()).map(
        ([dashes, eq, value]) => `${dashes}${name}${eq}${value}`,
      )
    ),
  );
  const env = fc.dictionary(
    fc.constantFrom(...flagNames().map(envName), "FLANNELD_X"),
    fc.string(),
  );
  fc.assert(
    fc.property(fc.array(token, { maxLength: 8 }), env, (argv, vars) => {
      try {
        const { options } = parseRunFlags(argv, vars);
        assert.equal(typeof options.healthzPort, "number");
      } catch (err) {
        if (!(err instanceof FlagError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});
