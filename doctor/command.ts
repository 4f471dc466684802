/**
 * `tartan doctor`: find why pods on different nodes cannot talk, and say how to fix it.
 *
 * It asks the node's daemon (admin API: status, leases, peer probes), measures the path MTU to
 * peers whose full-size probes vanish, checks etcd reachability, and reads the host (sysctls,
 * subnet.env, cni0, routes, the FORWARD path). Without a reachable daemon it checks the host
 * alone and says so. Exit status: 0 healthy, 1 problems found, 2 bad usage.
 *
 * @module
 */
import {
  ADMIN_FLAGS,
  adminUrlFrom,
  CONSOLE_IO,
  fetchPeers,
  fetchStatusAndLeases,
  readFlags,
  type StatusIO,
  StatusUsageError,
  tokenFileFrom,
} from "../api/status_cli.ts";
import { readAdminToken } from "../api/server.ts";
import { parseRunFlags } from "../config/flags.ts";
import { errorText } from "../log.ts";
import { parseAddr, parseNet } from "../ip/mod.ts";
import { blackHolePeers, daemonChecks, type DaemonView } from "./daemon_checks.ts";
import { etcdReachabilityCheck } from "./datastore.ts";
import { assembleReport, type CheckResult, type DoctorReport, renderReport } from "./finding.ts";
import { gatherHostFacts } from "./host_facts.ts";
import { hostChecks, subnetEnvValues } from "./host_checks.ts";
import { underlayPathMtu } from "./path_mtu.ts";

export const DOCTOR_USAGE =
  "tartan doctor [--url http://127.0.0.1:PORT | --healthz-ip IP --healthz-port PORT] " +
  "[--admin-token-file FILE] [--subnet-file FILE] [--etcd-endpoints URLS] [--json]";

/** Black-hole peers whose path MTU is measured in one run (each takes a few seconds). */
const PATH_MTU_PEERS = 3;

/** Where doctor writes and what environment it sees: as `tartan status`. */
export type DoctorIO = StatusIO;

/** Parsed `tartan doctor` arguments. */
export interface DoctorArgs {
  /** The admin API, when any flag or variable names it. */
  readonly url?: string;
  readonly tokenFile?: string;
  readonly subnetFile: string;
  /** From `--etcd-endpoints` or `FLANNELD_ETCD_ENDPOINTS`; else the daemon's is used. */
  readonly etcdEndpoints?: readonly string[];
  /** flannel's default endpoints, for when neither the flags nor the daemon say. */
  readonly defaultEtcdEndpoints: readonly string[];
  readonly json: boolean;
}

/** Parse the arguments; the daemon's own flags and `FLANNELD_*` variables give the defaults. */
export function parseDoctorArgs(
  args: readonly string[],
  env: (name: string) => string | undefined,
): DoctorArgs {
  const flags = readFlags(args, new Set([...ADMIN_FLAGS, "subnet-file", "etcd-endpoints"]));
  const daemonEnv: Record<string, string> = {};
  for (const name of ["FLANNELD_SUBNET_FILE", "FLANNELD_ETCD_ENDPOINTS"]) {
    const value = env(name);
    if (value !== undefined) daemonEnv[name] = value;
  }
  const runFlags = ["subnet-file", "etcd-endpoints"].flatMap((name) =>
    flags.has(name) ? [`--${name}=${flags.get(name)}`] : []
  );
  const { options } = parseRunFlags(runFlags, daemonEnv);
  return {
    url: adminUrlFrom(flags, env),
    tokenFile: tokenFileFrom(flags, env),
    subnetFile: options.subnetFile,
    etcdEndpoints: flags.has("etcd-endpoints") || env("FLANNELD_ETCD_ENDPOINTS") !== undefined
      ? options.etcdEndpoints
      : undefined,
    defaultEtcdEndpoints: options.etcdEndpoints,
    json: flags.get("json") === "true",
  };
}

/** Ask the daemon, or say why it could not be asked. */
async function fetchDaemon(
  args: DoctorArgs,
): Promise<{ view?: DaemonView; result?: CheckResult }> {
  if (!args.url) {
    return {
      result: {
        check: "daemon",
        findings: [],
        notes: [
          "no admin API address (--url, --healthz-port, TARTAN_ADMIN_URL): checked the host only",
        ],
      },
    };
  }
  try {
    const token = args.tokenFile ? await readAdminToken(args.tokenFile) : undefined;
    const [daemon, peers] = await Promise.all([
      fetchStatusAndLeases(args.url, token),
      fetchPeers(args.url, token, true),
    ]);
    return { view: { url: args.url, ...daemon, peers } };
  } catch (err) {
    // An unreachable API and an unreadable token file alike leave only the host to check.
    return {
      result: {
        check: "daemon",
        findings: [{
          check: "daemon-unreachable",
          title: "the tartan daemon's admin API does not answer",
          detail: "Without it the peer probes, the leases and the daemon's readiness cannot " +
            "be checked; only the host was.",
          evidence: { url: args.url, error: errorText(err) },
          fix: "Start tartan (with --healthz-port), or point tartan doctor at it with --url " +
            "or --healthz-port.",
        }],
      },
    };
  }
}

/** Run every check and build the report. */
export async function diagnose(args: DoctorArgs): Promise<DoctorReport> {
  const [daemon, facts] = await Promise.all([fetchDaemon(args), gatherHostFacts(args.subnetFile)]);
  const view = daemon.view;
  const results: CheckResult[] = daemon.result ? [daemon.result] : [];
  const blackHoles = view ? blackHolePeers(view, PATH_MTU_PEERS) : [];
  const [mtus, datastore] = await Promise.all([
    Promise.all(blackHoles.map((ip) => underlayPathMtu(parseAddr(ip)).catch(() => undefined))),
    view?.status.mode === "kube" ? undefined : etcdReachabilityCheck(
      args.etcdEndpoints ?? view?.status.etcdEndpoints ?? args.defaultEtcdEndpoints,
    ),
  ]);
  const env = { path: args.subnetFile, ...subnetEnvValues(facts) };
  if (view) {
    const pathMtu = new Map(blackHoles.map((ip, i) => [ip, mtus[i]]));
    results.push(...daemonChecks({ view, subnetEnv: env, pathMtu }));
  }
  results.push(
    datastore ?? {
      check: "datastore",
      findings: [],
      notes: ["kube mode: the API server's reachability shows in the daemon's readiness (watch)"],
    },
  );
  const peerSubnets = (view?.leases.leases ?? [])
    .filter((lease) => !lease.own && !lease.skipped && lease.subnet)
    .map((lease) => parseNet(lease.subnet!));
  results.push(...hostChecks({
    facts,
    engine: view?.status.network?.enableNFTables ? "nftables" : "iptables",
    peerSubnets,
  }));
  const node = view
    ? `${view.status.node} (${view.status.network?.backend.type ?? "?"}, ${
      view.status.lease?.subnet ?? "no lease"
    })`
    : null;
  return assembleReport(node, results);
}

/** Run `tartan doctor`; resolves to the exit status. */
export async function doctorCommand(args: string[], io: DoctorIO = CONSOLE_IO): Promise<number> {
  let parsed: DoctorArgs;
  try {
    parsed = parseDoctorArgs(args, io.env);
  } catch (err) {
    if (!(err instanceof StatusUsageError)) throw err;
    io.err(`tartan doctor: ${err.message}\nusage: ${DOCTOR_USAGE}`);
    return 2;
  }
  const report = await diagnose(parsed);
  io.out(parsed.json ? JSON.stringify(report, null, 2) : renderReport(report));
  return report.healthy ? 0 : 1;
}
