/**
 * The flags of `tartan run`: every flanneld flag with flanneld's name, type and default, parsed
 * with Go `flag` semantics, then the `FLANNELD_*` environment rule (spec §1).
 *
 * One table ({@link FLAGS}) drives parsing, the environment rule, {@link usage} and the
 * {@link RunOptions} type, so a flag is described in exactly one place.
 *
 * Differences from flanneld, chosen on purpose:
 * - An unknown flag or a malformed command-line value throws {@link FlagError} naming the flag
 *   (the CLI exits 2); flanneld prints usage and exits 0.
 * - `--iptables-resync` below 1 is rejected (quirk 27: flanneld busy-loops), and so is one above
 *   2 147 483 s, the longest delay a timer holds;
 *   `--subnet-lease-renew-margin` must be 1..1439 and `--healthz-port` 0..65535.
 * - `--public-ip`, `--public-ipv6` and `--iface-can-reach` must be addresses of the right family
 *   already at parse time (flanneld fails later, at interface selection).
 * - A `--etcd-certfile` without `--etcd-keyfile` (or the reverse) is an error instead of
 *   silently using plain HTTP; see {@link etcdTlsFiles} for the CA-alone fix (quirk 19).
 * - Environment values that do not parse, or are out of range, are ignored with a warning
 *   (as flanneld does for unparsable ones); so are `FLANNELD_*` variables that match no flag.
 * - Arguments after the first non-flag argument are ignored as in Go, but reported as a warning.
 *
 * @module
 */
import { type Family, tryParseAddr } from "../ip/mod.ts";
import { errorText } from "../log.ts";
import { MAX_TIMER_MS } from "../sleep.ts";

/** The longest `--iptables-resync` (about 24.8 days): the longest delay a timer can hold. */
export const MAX_RESYNC_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/** An unknown flag, a malformed value or inconsistent flags; `flag` names the culprit. */
export class FlagError extends Error {
  constructor(readonly flag: string, message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/** Minimum log level of the daemon (Tartan's `--log-level`). */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** `-v` at or above this verbosity means `debug` when `--log-level` is not given. */
export const DEBUG_VERBOSITY = 1;

/** Prefix of the environment variables that stand in for flags. */
const ENV_PREFIX = "FLANNELD_";

/** How one flag is written, parsed and documented. */
interface FlagSpec<T> {
  /** flanneld's flag name, without dashes. */
  readonly name: string;
  /** Value type as shown by {@link usage}. */
  readonly type: string;
  readonly default: T;
  /** One line: what the flag means (flanneld's meaning). */
  readonly help: string;
  /** A boolean: the value is optional (`-name` means true) and never taken from the next arg. */
  readonly isBool?: boolean;
  /** Each occurrence adds to the previous ones instead of replacing them. */
  readonly merge?: (previous: T, next: T) => T;
  /** False when the flag is never read from the environment (`version`). */
  readonly fromEnv?: boolean;
  /** Value hidden by {@link redactedOptions}. */
  readonly secret?: boolean;
  /** Accepted for compatibility but not acted on: {@link unimplementedFlags} reports it. */
  readonly unimplemented?: boolean;
  /** Text to value; throws an Error whose message says why the text is not acceptable. */
  readonly parse: (text: string) => T;
}

const GO_BOOLS: Record<string, boolean> = {
  "1": true,
  t: true,
  T: true,
  true: true,
  TRUE: true,
  True: true,
  "0": false,
  f: false,
  F: false,
  false: false,
  FALSE: false,
  False: false,
};

function parseBool(text: string): boolean {
  const value = GO_BOOLS[text];
  if (value === undefined) throw new Error("not a boolean (use true or false)");
  return value;
}

/** Go's `strconv.ParseInt(s, 0, 64)` syntax: sign, 0x/0o/0b or leading-0 octal, `_` separators. */
const GO_INT =
  /^[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO](_?[0-7])+|0(_?[0-7])*|[1-9](_?[0-9])*)$/;

function parseGoInt(text: string): number {
  if (!GO_INT.test(text)) throw new Error("not an integer");
  const negative = text.startsWith("-");
  let digits = text.replace(/^[+-]/, "").replaceAll("_", "");
  if (/^0[0-7]+$/.test(digits)) digits = `0o${digits.slice(1)}`;
  const value = BigInt(digits);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("out of range");
  return Number(negative ? -value : value);
}

function text(name: string, defaultValue: string, help: string): FlagSpec<string> {
  return { name, type: "string", default: defaultValue, help, parse: (value) => value };
}

function secret(name: string, help: string): FlagSpec<string> {
  return { ...text(name, "", help), secret: true };
}

function bool(name: string, defaultValue: boolean, help: string): FlagSpec<boolean> {
  return { name, type: "bool", default: defaultValue, help, isBool: true, parse: parseBool };
}

function int(
  name: string,
  defaultValue: number,
  help: string,
  min: number,
  max: number,
): FlagSpec<number> {
  const parse = (value: string) => {
    const n = parseGoInt(value);
    if (n < min || n > max) throw new Error(`must be between ${min} and ${max}`);
    return n;
  };
  return { name, type: "int", default: defaultValue, help, parse };
}

/** An address flag; `""` (the default) means unset. */
function address(name: string, family: Family | undefined, help: string): FlagSpec<string> {
  const type = family ? `IPv${family}` : "IP";
  const parse = (value: string) => {
    if (value === "") return "";
    const addr = tryParseAddr(value);
    if (!addr || (family && addr.family !== family)) throw new Error(`not an ${type} address`);
    return value;
  };
  return { name, type, default: "", help, parse };
}

/** A comma-separated list in one value (`etcd-endpoints`). */
function commaList(name: string, defaultText: string, help: string): FlagSpec<readonly string[]> {
  return { name, type: "list", default: splitCommas(defaultText), help, parse: splitCommas };
}

/**
 * A flag that may be given many times; every occurrence adds one element. Its environment
 * variable is one element, the whole value, as in flanneld: a comma in `eth{0,1}` belongs to
 * the regex.
 */
function repeated(name: string, help: string): FlagSpec<readonly string[]> {
  return {
    name,
    type: "string (repeatable)",
    default: [],
    help,
    merge: (previous, next) => [...previous, ...next],
    parse: (value) => [value],
  };
}

/** A flag whose value must satisfy `check` (which throws with the reason); `""` means unset. */
function checked(name: string, help: string, check: (value: string) => void): FlagSpec<string> {
  const parse = (value: string) => {
    if (value !== "") check(value);
    return value;
  };
  return { name, type: "string", default: "", help, parse };
}

function oneOf<const T extends string>(
  name: string,
  values: readonly T[],
  defaultValue: T,
  help: string,
): FlagSpec<T> {
  const parse = (value: string) => {
    const found = values.find((v) => v === value);
    if (found === undefined) throw new Error(`must be one of ${values.join(", ")}`);
    return found;
  };
  return { name, type: values.join("|"), default: defaultValue, help, parse };
}

function splitCommas(value: string): string[] {
  return value.split(",").map((part) => part.trim()).filter((part) => part !== "");
}

/** klog's `-vmodule` syntax: comma-separated `pattern=N`. */
function checkVmodule(value: string): void {
  for (const item of value.split(",")) {
    if (item === "") continue;
    const [pattern, level, extra] = item.split("=");
    if (!pattern || extra !== undefined || !/^[+-]?[0-9]+$/.test(level ?? "")) {
      throw new Error("expected a comma-separated list of pattern=N");
    }
  }
}

/** klog's `-log_backtrace_at` syntax: `file.go:N`. */
function checkBacktraceAt(value: string): void {
  if (!/^[^:]*\.[^:]*:[0-9]+$/.test(value) || Number(value.split(":")[1]) <= 0) {
    throw new Error("expected file.go:N");
  }
}

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/**
 * Every flag of `tartan run`, in the order of flanneld's table (spec §1.2), plus `log-level`.
 * The keys are the {@link RunOptions} field names.
 */
const FLAGS = {
  etcdEndpoints: commaList(
    "etcd-endpoints",
    "http://127.0.0.1:4001,http://127.0.0.1:2379",
    "comma-separated etcd v3 endpoints",
  ),
  etcdPrefix: text("etcd-prefix", "/coreos.com/network", "etcd key prefix of the network"),
  etcdKeyfile: text("etcd-keyfile", "", "TLS client key for etcd"),
  etcdCertfile: text("etcd-certfile", "", "TLS client certificate for etcd"),
  etcdCafile: text("etcd-cafile", "", "CA bundle that verifies the etcd servers"),
  etcdUsername: text("etcd-username", "", "etcd user name"),
  etcdPassword: secret("etcd-password", "etcd password (never logged)"),
  subnetLeaseRenewMargin: int(
    "subnet-lease-renew-margin",
    60,
    "renew the lease this many minutes before it expires (1..1439)",
    1,
    1439,
  ),
  kubeSubnetMgr: bool(
    "kube-subnet-mgr",
    false,
    "take subnets from the Kubernetes API instead of etcd",
  ),
  kubeApiUrl: text("kube-api-url", "", "Kubernetes API server URL (empty: in-cluster)"),
  kubeconfigFile: text("kubeconfig-file", "", "kubeconfig file (empty: in-cluster)"),
  kubeAnnotationPrefix: text(
    "kube-annotation-prefix",
    "flannel.alpha.coreos.com",
    "prefix of the node annotations flannel reads and writes",
  ),
  netConfigPath: text(
    "net-config-path",
    "/etc/kube-flannel/net-conf.json",
    "network config file (kube mode)",
  ),
  setNodeNetworkUnavailable: bool(
    "set-node-network-unavailable",
    true,
    "set the node condition NetworkUnavailable=False once the network is up (kube mode)",
  ),
  iface: repeated(
    "iface",
    "interface name or IP for inter-node traffic; repeat to try several in order",
  ),
  ifaceRegex: repeated(
    "iface-regex",
    "regex over interface IPs, then names; repeat to try several, after every --iface",
  ),
  ifaceCanReach: address(
    "iface-can-reach",
    undefined,
    "use the interface of the route towards this IP (tried last)",
  ),
  publicIp: address("public-ip", 4, "IPv4 address other nodes use to reach this node"),
  publicIpv6: address("public-ipv6", 6, "IPv6 address other nodes use to reach this node"),
  subnetFile: text(
    "subnet-file",
    "/run/flannel/subnet.env",
    "file the subnet, MTU and masquerade setting are written to",
  ),
  ipMasq: bool("ip-masq", false, "masquerade traffic leaving the overlay network"),
  ipMasqFullyRandomDisable: bool(
    "ip-masq-fully-random-disable",
    false,
    "do not use fully random source ports for MASQUERADE",
  ),
  iptablesResync: int(
    "iptables-resync",
    5,
    `seconds between checks of the iptables rules and blackhole route (1..${MAX_RESYNC_SECONDS})`,
    1,
    MAX_RESYNC_SECONDS,
  ),
  iptablesForwardRules: bool(
    "iptables-forward-rules",
    true,
    "accept overlay traffic in the FORWARD chain",
  ),
  ipBlackholeRoute: bool(
    "ip-blackhole-route",
    false,
    "keep a blackhole route for this node's own subnet(s)",
  ),
  // flannel's 0.0.0.0, so that kubelet probes on the pod IP work under host networking.
  healthzIp: text("healthz-ip", "0.0.0.0", "address the admin/health server listens on"),
  healthzPort: int("healthz-port", 0, "port of the health server (0 disables it)", 0, 65535),
  version: { ...bool("version", false, "print the version and exit"), fromEnv: false },
  v: int(
    "v",
    0,
    `log verbosity (>= ${DEBUG_VERBOSITY} implies --log-level=debug)`,
    INT32_MIN,
    INT32_MAX,
  ),
  vmodule: {
    ...checked("vmodule", "per-file verbosity: comma-separated pattern=N", checkVmodule),
    unimplemented: true,
  },
  logBacktraceAt: {
    ...checked("log_backtrace_at", "log a stack trace when logging at file:N", checkBacktraceAt),
    unimplemented: true,
  },
  logLevel: oneOf(
    "log-level",
    ["debug", "info", "warn", "error"],
    "info",
    "minimum level of log messages (Tartan)",
  ),
  adminTokenFile: text(
    "admin-token-file",
    "",
    "file holding a bearer token that /v1/* and /metrics then require (Tartan)",
  ),
  peerProbeInterval: int(
    "peer-probe-interval",
    60,
    "least seconds between two probes of one peer; 0 disables peer probing (Tartan)",
    0,
    86_400,
  ),
  peerProbeRate: int(
    "peer-probe-rate",
    50,
    "most peers probed per second, all peers together (Tartan)",
    1,
    10_000,
  ),
} as const;

type Flags = typeof FLAGS;
type FlagKey = keyof Flags;
type ValueOf<S> = S extends FlagSpec<infer T> ? T : never;

/** The effective options of `tartan run`: one field per flag, named in camelCase. */
export type RunOptions = { readonly [K in FlagKey]: ValueOf<Flags[K]> };

const SPECS = Object.entries(FLAGS) as [FlagKey, FlagSpec<unknown>][];
const BY_NAME = new Map(SPECS.map(([key, spec]) => [spec.name, { key, spec }]));

/**
 * Every flag's default (flanneld's), by {@link RunOptions} field: the one home of defaults such
 * as the etcd prefix, subnet file, net-config path and annotation prefix.
 */
export const DEFAULTS: RunOptions = Object.freeze(
  Object.fromEntries(SPECS.map(([key, spec]) => [key, spec.default])),
) as RunOptions;

/** The environment variable that stands in for a flag: `iface-regex` → `FLANNELD_IFACE_REGEX`. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.replaceAll("-", "_").toUpperCase();
}

/** The result of {@link parseRunFlags}. */
export interface ParsedRunFlags {
  readonly options: RunOptions;
  /** flanneld names of the flags set on the command line or through the environment. */
  readonly given: Set<string>;
  /** Problems that did not stop parsing (bad environment values, ignored arguments). */
  readonly warnings: string[];
  /** `-h`/`-help`/`--help` was given: the caller prints {@link usage} and exits 0. */
  readonly help: boolean;
}

/**
 * Parse `tartan run` arguments (without the `run` word) and apply the `FLANNELD_*` environment.
 * With `-h` or `--version` the environment is not applied (the caller prints and exits 0).
 *
 * @throws {FlagError} for an unknown flag, a missing or malformed command-line value, or a
 * client certificate without its key.
 * @example
 * ```ts
 * const { options } = parseRunFlags(["--ip-masq", "-iface", "eth1"], { FLANNELD_V: "2" });
 * options.ipMasq; // true
 * options.iface; // ["eth1"]
 * options.logLevel; // "debug" (from -v 2)
 * ```
 */
export function parseRunFlags(
  argv: readonly string[],
  env: Record<string, string | undefined>,
): ParsedRunFlags {
  const values = new Map<FlagKey, unknown>(SPECS.map(([key, spec]) => [key, spec.default]));
  const given = new Set<string>();
  const warnings: string[] = [];
  const help = parseArgs(argv, values, given, warnings);
  // flanneld acts on --version before it reads the environment; -h stops parsing.
  if (help || values.get("version") === true) {
    return { options: toOptions(values), given, warnings, help };
  }
  applyEnvironment(env, values, given, warnings);
  if (!given.has(FLAGS.logLevel.name) && (values.get("v") as number) >= DEBUG_VERBOSITY) {
    values.set("logLevel", "debug");
  }
  const options = toOptions(values);
  checkEtcdTlsPair(options);
  return { options, given, warnings, help: false };
}

function toOptions(values: Map<FlagKey, unknown>): RunOptions {
  return Object.fromEntries(values) as RunOptions;
}

/** Store occurrences of a flag, replacing or (repeatable flags) extending the value. */
function store<T>(
  key: FlagKey,
  spec: FlagSpec<T>,
  texts: readonly string[],
  values: Map<FlagKey, unknown>,
): void {
  let value = values.get(key) as T;
  for (const part of texts) {
    const parsed = spec.parse(part);
    value = spec.merge ? spec.merge(value, parsed) : parsed;
  }
  values.set(key, value);
}

/** Go `flag.Parse`: stops at the first non-flag argument or after `--`; true for `-h`. */
function parseArgs(
  argv: readonly string[],
  values: Map<FlagKey, unknown>,
  given: Set<string>,
  warnings: string[],
): boolean {
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i];
    if (arg.length < 2 || arg[0] !== "-") break;
    i++;
    if (arg === "--") break;
    const body = arg.slice(arg[1] === "-" ? 2 : 1);
    if (body === "" || body[0] === "-" || body[0] === "=") {
      throw new FlagError(arg, `bad flag syntax: ${arg}`);
    }
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    let value = eq < 0 ? undefined : body.slice(eq + 1);
    const entry = BY_NAME.get(name);
    if (!entry) {
      if (name === "h" || name === "help") return true;
      throw new FlagError(name, `flag provided but not defined: -${name}`);
    }
    if (value === undefined && !entry.spec.isBool) {
      if (i >= argv.length) throw new FlagError(name, `flag needs an argument: -${name}`);
      value = argv[i++];
    }
    const texts = [value ?? "true"];
    try {
      store(entry.key, entry.spec, texts, values);
    } catch (err) {
      throw new FlagError(
        name,
        `invalid value ${JSON.stringify(value)} for flag -${name}: ${errorText(err)}`,
      );
    }
    given.add(name);
  }
  if (i < argv.length) {
    warnings.push(`ignoring arguments after the flags: ${argv.slice(i).join(" ")}`);
  }
  return false;
}

/** The `FLANNELD_*` rule: each flag not on the command line takes a non-empty variable. */
function applyEnvironment(
  env: Record<string, string | undefined>,
  values: Map<FlagKey, unknown>,
  given: Set<string>,
  warnings: string[],
): void {
  const known = new Set<string>();
  for (const [key, spec] of SPECS) {
    if (spec.fromEnv === false) continue;
    const variable = envName(spec.name);
    known.add(variable);
    const value = env[variable];
    if (given.has(spec.name) || !value) continue;
    try {
      store(key, spec, [value], values);
      given.add(spec.name);
    } catch (err) {
      warnings.push(`ignoring ${variable}=${JSON.stringify(value)}: ${errorText(err)}`);
    }
  }
  for (const [variable, value] of Object.entries(env)) {
    if (variable.startsWith(ENV_PREFIX) && value && !known.has(variable)) {
      warnings.push(`ignoring ${variable}: it matches no flag that is read from the environment`);
    }
  }
}

function checkEtcdTlsPair(options: RunOptions): void {
  const cert = FLAGS.etcdCertfile.name;
  const key = FLAGS.etcdKeyfile.name;
  if (options.etcdCertfile !== "" && options.etcdKeyfile === "") {
    throw new FlagError(key, `-${cert} needs -${key}`);
  }
  if (options.etcdKeyfile !== "" && options.etcdCertfile === "") {
    throw new FlagError(cert, `-${key} needs -${cert}`);
  }
}

/** TLS material for the etcd client; `undefined` fields are not configured. */
export interface EtcdTlsFiles {
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
}

/**
 * The etcd TLS files to use, or `undefined` for none. Unlike flanneld, a CA file alone is
 * honoured for server verification (quirk 19).
 */
export function etcdTlsFiles(options: RunOptions): EtcdTlsFiles | undefined {
  const files = {
    caFile: options.etcdCafile || undefined,
    certFile: options.etcdCertfile || undefined,
    keyFile: options.etcdKeyfile || undefined,
  };
  return files.caFile || files.certFile ? files : undefined;
}

/** The options with secrets (the etcd password) replaced, for logging them (quirk 18). */
export function redactedOptions(options: RunOptions): RunOptions {
  const copy: Record<string, unknown> = { ...options };
  for (const [key, spec] of SPECS) {
    if (spec.secret && copy[key] !== "") copy[key] = "<redacted>";
  }
  return copy as RunOptions;
}

/**
 * The flanneld names of flags the user set (command line or environment) to a value other
 * than the default that Tartan accepts but does not act on (`unimplemented` in the table), in
 * table order, so that the daemon can say so at start-up. Setting a flag to its default asks
 * for nothing and is not reported.
 */
export function unimplementedFlags(options: RunOptions, given: ReadonlySet<string>): string[] {
  return SPECS
    .filter(([key, spec]) =>
      given.has(spec.name) && spec.unimplemented &&
      JSON.stringify(options[key]) !== JSON.stringify(spec.default)
    )
    .map(([, spec]) => spec.name);
}

/** Every flag's flanneld name, in table order. */
export function flagNames(): string[] {
  return SPECS.map(([, spec]) => spec.name);
}

function formatDefault(spec: FlagSpec<unknown>): string {
  const value = spec.default;
  if (Array.isArray(value)) return value.length ? JSON.stringify(value.join(",")) : "";
  if (typeof value === "string") return value === "" ? "" : JSON.stringify(value);
  return String(value);
}

/** Help text for `tartan run`: every flag with its type, default, variable and meaning. */
export function usage(): string {
  const lines = [
    "Usage: tartan run [FLAG]...",
    "",
    "Flags are flanneld's: -name or --name, with -name=value or -name value (booleans: -name or",
    "-name=false). A flag not on the command line is read from FLANNELD_<NAME> (upper case, '-'",
    "as '_'); for repeatable flags the variable may hold a comma-separated list.",
    "",
  ];
  for (const [, spec] of SPECS) {
    const env = spec.fromEnv === false ? "" : `  [${envName(spec.name)}]`;
    const shown = formatDefault(spec);
    const fallback = shown === "" ? "" : ` (default ${shown})`;
    lines.push(`  --${spec.name} ${spec.type}${env}`, `      ${spec.help}${fallback}`);
  }
  return lines.join("\n") + "\n";
}
