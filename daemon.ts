/**
 * `tartan run`: the node daemon. Flannel's start-up order (spec §10.1): lease store → admin
 * server → network config → external interface → backend (devices + lease) → traffic rules →
 * subnet.env → peer watch → lease upkeep; and a clean stop on SIGTERM/SIGINT that leaves behind
 * what flannel leaves (devices, routes, rules, subnet.env, the etcd key until its TTL).
 *
 * @module
 */
import type { ParsedRunFlags, RunOptions } from "./config/flags.ts";
import {
  etcdTlsFiles,
  FlagError,
  parseRunFlags,
  redactedOptions,
  unimplementedFlags,
  usage,
} from "./config/flags.ts";
import { errorText, logger, setLogLevel } from "./log.ts";
import { createMetrics, type Metrics, probePathLabel } from "./api/metrics.ts";
import { type AdminServer, readAdminToken, serveAdmin } from "./api/server.ts";
import { type DaemonState, newDaemonState } from "./state.ts";
import { backendFor } from "./backends/registry.ts";
import type { Network } from "./backends/backend.ts";
import { type ExternalInterface, selectExternalInterface } from "./backends/external_interface.ts";
import { kernelInterfaceSource } from "./backends/interface_source.ts";
import { closeNetlink, type NetlinkHandle, openNetlink } from "./ffi/netlink/socket.ts";
import { formatLeaseKey, type Lease, leaseSubnets } from "./subnet/lease.ts";
import { LeaseGate } from "./subnet/lease_gate.ts";
import type { NetworkConfig } from "./config/network_config.ts";
import { listAddrs } from "./ffi/netlink/addr.ts";
import { getLink } from "./ffi/netlink/link.ts";
import type { LeaseWatchUpdate, SubnetManager } from "./subnet/manager.ts";
import { LeaseLostError } from "./subnet/manager.ts";
import { subnetEnvFor, writeSubnetEnv } from "./subnet/subnet_env.ts";
import { requireBridgeNetfilter } from "./traffic/bridge_netfilter.ts";
import { createTrafficManager } from "./traffic/manager.ts";
import { maintainBlackholeRoutes } from "./backends/blackhole_route.ts";
import { notifySystemd } from "./systemd_notify.ts";
import { VERSION } from "./version.ts";
import { addrEqual, formatAddr, formatNet, type IPAddr } from "./ip/mod.ts";
import { createPeerProber, type PeerProber, probingOffReport } from "./probe/prober.ts";
import { overlayAddress, probeTargets } from "./probe/targets.ts";

const log = logger("daemon");

/** flannel re-checks host-gw routes every 10 s; our reconcile runs at the same period. */
const KERNEL_RESYNC_MS = 10_000;

async function createManager(
  options: RunOptions,
  state: DaemonState,
  metrics: Metrics,
): Promise<SubnetManager> {
  if (options.kubeSubnetMgr) {
    // Loaded only in kube mode, as the etcd manager only in etcd mode.
    const { KubeSubnetManager } = await import("./subnet/kube.ts");
    const { createKubeClient, loadKubeConfig } = await import("./subnet/kube_client.ts");
    const env = (name: string) => Deno.env.get(name) ?? "";
    return new KubeSubnetManager({
      client: createKubeClient(
        await loadKubeConfig({
          apiUrl: options.kubeApiUrl,
          kubeconfigFile: options.kubeconfigFile,
        }),
      ),
      netConfigPath: options.netConfigPath,
      annotationPrefix: options.kubeAnnotationPrefix,
      nodeName: env("NODE_NAME"),
      pod: { name: env("POD_NAME"), namespace: env("POD_NAMESPACE") },
      setNodeNetworkUnavailable: options.setNodeNetworkUnavailable,
      counters: state.store,
      onNodeName: (name) => state.nodeName = name,
    });
  }
  const { EtcdSubnetManager } = await import("./subnet/etcd.ts");
  return new EtcdSubnetManager({
    endpoints: options.etcdEndpoints,
    ...etcdTlsFiles(options),
    username: options.etcdUsername || undefined,
    password: options.etcdPassword || undefined,
    prefix: options.etcdPrefix,
    subnetFile: options.subnetFile,
    renewMarginMinutes: options.subnetLeaseRenewMargin,
    leaseTtlSeconds: testLeaseTtlSeconds(),
    publicIPClaim: {},
    onOwnLease: (lease) => state.ownLease = lease,
    counters: state.store,
    timeRequest: (op) => metrics.etcdRequestSeconds.startTimer({ op }),
  });
}

/** Read only by {@link testLeaseTtlSeconds}. */
export const TEST_LEASE_TTL_ENV = "TARTAN_TEST_LEASE_TTL_SECONDS";

/**
 * Test-only hook: a lease TTL in seconds replacing flannel's 24 h, so fault tests reach renewal
 * time (TTL − `--subnet-lease-renew-margin`) in seconds. Never set in production.
 */
function testLeaseTtlSeconds(): number | undefined {
  const ttl = Number(Deno.env.get(TEST_LEASE_TTL_ENV));
  if (!Number.isInteger(ttl) || ttl <= 0) return undefined;
  log.warn("test-only lease TTL in effect", { env: TEST_LEASE_TTL_ENV, seconds: ttl });
  return ttl;
}

/** Keep the state's lease table in step with the watch, and pass every update on. */
async function* recordInState(
  state: DaemonState,
  updates: AsyncIterable<LeaseWatchUpdate>,
): AsyncIterable<LeaseWatchUpdate> {
  for await (const update of updates) {
    if (update.type === "snapshot") {
      state.leases.clear();
      for (const lease of update.leases) state.leases.set(formatLeaseKey(lease), lease);
    } else {
      for (const event of update.events) {
        const key = formatLeaseKey(event.lease);
        if (event.type === "added") state.leases.set(key, event.lease);
        else state.leases.delete(key);
      }
    }
    state.lastWatchUpdate = new Date();
    yield update;
  }
}

/**
 * The lease gate of this node (subnet/lease_gate.ts): every peer lease passes it before the
 * backend sees it. Skips are logged once, counted by reason, and readable from the state.
 */
function createLeaseGate(
  config: NetworkConfig,
  lease: Lease,
  ext: ExternalInterface,
  netlink: NetlinkHandle,
  state: DaemonState,
): LeaseGate {
  const gateLog = logger("lease-gate");
  const gate = new LeaseGate({
    networks: { 4: config.ipv4?.network, 6: config.ipv6?.network },
    own: lease,
    ownAddresses: [
      ...listAddrs(netlink).map((addr) => addr.address),
      ...[ext.publicIP, ext.publicIPv6].filter((ip) => ip !== undefined),
    ],
    checkVtepMac: config.backend.type === "vxlan",
    checkWireguardKey: config.backend.type === "wireguard",
    onSkip: ({ lease, reason, detail }) => {
      state.leaseSkips[reason]++;
      gateLog.warn("peer lease skipped", { lease: leaseSubnets(lease), reason, detail });
    },
    onAdmit: (lease) => gateLog.info("peer lease admitted", { lease: leaseSubnets(lease) }),
  });
  state.skipOf = (subnets) => gate.skipOf(subnets);
  state.skippedNow = () => gate.skippedByReason();
  return gate;
}

/** The known leases the lease gate let through. */
function admittedLeases(state: DaemonState): Lease[] {
  return [...state.leases.values()].filter((lease) => !state.skipOf?.(lease));
}

/** Pass every update through the gate; batches it empties are dropped. */
async function* throughGate(
  gate: LeaseGate,
  updates: AsyncIterable<LeaseWatchUpdate>,
): AsyncIterable<LeaseWatchUpdate> {
  for await (const update of updates) {
    const admitted = gate.apply(update);
    if (admitted.type === "snapshot" || admitted.events.length > 0) yield admitted;
  }
}

function describeExternal(ext: ExternalInterface): Record<string, string | number | undefined> {
  return {
    iface: ext.name,
    mtu: ext.mtu,
    addr: ext.ifaceAddr && formatAddr(ext.ifaceAddr),
    publicIP: ext.publicIP && formatAddr(ext.publicIP),
    publicIPv6: ext.publicIPv6 && formatAddr(ext.publicIPv6),
  };
}

/** Abort on the first SIGINT/SIGTERM; a second one ends the process at once, as flannel. */
function onStopSignals(controller: AbortController): () => void {
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
  const handler = () => {
    if (controller.signal.aborted) Deno.exit(1);
    log.info("shutting down");
    controller.abort();
  };
  for (const sig of signals) Deno.addSignalListener(sig, handler);
  return () => {
    for (const sig of signals) Deno.removeSignalListener(sig, handler);
  };
}

/**
 * Run the daemon until a stop signal (or `stop`) aborts it; resolves to the exit status.
 */
export async function runDaemon(parsed: ParsedRunFlags, stop?: AbortSignal): Promise<number> {
  const { options } = parsed;
  setLogLevel(options.logLevel);
  log.info("starting tartan", { version: VERSION });
  log.info("options", { effective: JSON.stringify(redactedOptions(options)) });
  for (const warning of parsed.warnings) log.warn(warning);
  for (const flag of unimplementedFlags(options, parsed.given)) {
    log.warn("flag accepted but not implemented yet: it has no effect", { flag });
  }

  const controller = new AbortController();
  stop?.addEventListener("abort", () => controller.abort(), { once: true });
  const removeSignals = onStopSignals(controller);
  const signal = controller.signal;
  const state = newDaemonState(VERSION, Deno.hostname(), options.kubeSubnetMgr ? "kube" : "etcd");
  if (!options.kubeSubnetMgr) state.etcdEndpoints = options.etcdEndpoints;
  let manager: SubnetManager | undefined;
  let network: Network | undefined;
  let admin: AdminServer | undefined;
  let netlink: NetlinkHandle | undefined;
  try {
    // Checked before anything else is touched: a bad token file stops the daemon at once.
    const token = options.adminTokenFile ? await readAdminToken(options.adminTokenFile) : undefined;
    netlink = openNetlink();
    // Process metrics are only ever read through the admin server.
    const metrics = createMetrics(state, { defaultMetrics: options.healthzPort > 0 });
    manager = await createManager(options, state, metrics);
    if (options.healthzPort > 0) {
      // The API (and Hono under it) is loaded only when the admin server runs.
      const { createApp } = await import("./api/app.ts");
      admin = serveAdmin(createApp(state, metrics, { log: logger("api"), token }), {
        hostname: options.healthzIp,
        port: options.healthzPort,
        signal,
      });
      log.info("admin API listening", { address: `${admin.hostname}:${admin.port}` });
    }
    const config = await manager.getNetworkConfig(signal);
    state.config = config;
    await requireBridgeNetfilter({
      nftables: config.enableNFTables,
      ipv4: config.ipv4 !== undefined,
      ipv6: config.ipv6 !== undefined,
    });
    // In kube mode the node-public-ip(v6) annotations override the flags (spec §4.2).
    const pinned = await manager.nodePublicIPs?.(signal) ?? {};
    const ext = await selectExternalInterface(
      {
        iface: options.iface,
        ifaceRegex: options.ifaceRegex,
        ifaceCanReach: options.ifaceCanReach,
        publicIP: pinned.publicIP ? formatAddr(pinned.publicIP) : options.publicIp,
        publicIPv6: pinned.publicIPv6 ? formatAddr(pinned.publicIPv6) : options.publicIpv6,
      },
      { v4: config.ipv4 !== undefined, v6: config.ipv6 !== undefined },
      kernelInterfaceSource(netlink),
    );
    log.info("external interface", describeExternal(ext));
    state.publicIP = ext.publicIP;
    state.publicIPv6 = ext.publicIPv6;

    const backend = backendFor(config.backend.type);
    network = await backend.register({
      config,
      ext,
      manager,
      netlink,
      signal,
      log: logger(backend.type),
      resyncMs: KERNEL_RESYNC_MS,
      observeReconcile: (seconds) => metrics.reconcileSeconds.observe(seconds),
    });
    const lease = network.lease;
    state.ownLease = lease;
    const registered = network;
    state.backend = () => registered.health();
    log.info("lease acquired", {
      subnet: lease.subnet && formatNet(lease.subnet),
      ipv6Subnet: lease.ipv6Subnet && formatNet(lease.ipv6Subnet),
    });

    const traffic = await createTrafficManager(config, lease, {
      ipMasq: options.ipMasq,
      forwardRules: options.iptablesForwardRules,
      fullyRandomDisabled: options.ipMasqFullyRandomDisable,
      resyncSeconds: options.iptablesResync,
      log: (message) => logger("traffic").warn(message),
    });
    await traffic.apply();
    state.traffic = traffic.health;
    log.info("traffic rules installed", {
      engine: traffic.engine,
      ...(traffic.iptablesVariant && {
        variant: traffic.iptablesVariant.variant ?? "plain",
        why: traffic.iptablesVariant.reason,
      }),
      ipMasq: options.ipMasq,
    });

    await writeSubnetEnv(
      options.subnetFile,
      subnetEnvFor(config, lease, network.mtu, options.ipMasq),
    );
    state.subnetEnvWritten = true;
    log.info("wrote subnet file", { path: options.subnetFile });

    const prober = startPeerProber(options, state, metrics, ext, network, netlink);
    const gate = createLeaseGate(config, lease, ext, netlink, state);
    const updates = throughGate(gate, recordInState(state, manager.watchLeases(signal)));
    const ownSubnets = [lease.subnet, lease.ipv6Subnet].filter((s) => s !== undefined);
    const running = Promise.all([
      network.run(updates, signal),
      manager.maintainLease(lease, signal),
      traffic.startResync(signal),
      options.ipBlackholeRoute &&
      maintainBlackholeRoutes(netlink, ownSubnets, options.iptablesResync, log, signal),
      prober?.run(signal),
    ]);
    tellSystemdReady();
    await running;
    return 0;
  } catch (err) {
    if (signal.aborted && !(err instanceof LeaseLostError)) return 0;
    log.error("fatal", { error: errorText(err) });
    return 1;
  } finally {
    controller.abort();
    removeSignals();
    await network?.close().catch((err) => log.warn("close failed", { error: errorText(err) }));
    await manager?.close().catch(() => {});
    await admin?.finished;
    if (netlink) closeNetlink(netlink);
  }
}

/**
 * The peer prober for this node (see `probe/`), published in the state; none when
 * `--peer-probe-interval=0`. It probes in every family the node has an interface address in.
 */
function startPeerProber(
  options: RunOptions,
  state: DaemonState,
  metrics: Metrics,
  ext: ExternalInterface,
  network: Network,
  netlink: NetlinkHandle,
): PeerProber | undefined {
  const config = state.config;
  if (!config) return undefined;
  if (options.peerProbeInterval === 0) {
    const report = probingOffReport("flag", "peer probing is off (--peer-probe-interval=0)");
    state.peerProbes = () => report;
    return undefined;
  }
  const backendType = config.backend.type;
  // (The interface selection gives an address of every enabled family.)
  const families = [ext.ifaceAddr, ext.ifaceAddrV6].flatMap((underlaySource) => {
    if (!underlaySource) return [];
    const overlaySource = overlayAddress(backendType, network.lease, underlaySource.family);
    const fullSizeBytes = pathMtu(netlink, network.mtu, overlaySource);
    return [{ underlaySource, overlaySource, fullSizeBytes }];
  });
  const prober = createPeerProber({
    intervalMs: options.peerProbeInterval * 1000,
    maxPerSecond: options.peerProbeRate,
    families,
    // Leases the gate skipped are not peers: never probe an address a hostile lease names.
    targets: () => {
      const leases = admittedLeases(state);
      return families.flatMap(({ underlaySource }) =>
        probeTargets(leases, state.ownLease, backendType, underlaySource.family)
      );
    },
    observeRtt: (path, seconds) =>
      metrics.peerProbeRttSeconds.observe({ path: probePathLabel(path) }, seconds),
    log: logger("probe"),
  });
  state.peerProbes = prober.report;
  return prober;
}

/**
 * The largest packet pods send on one family's path: FLANNEL_MTU, or the MTU of the tunnel
 * device holding our overlay address when that is smaller (a dual-stack vxlan node's
 * `flannel-v6.<VNI>` is 20 bytes smaller than `flannel.<VNI>`, and pods hear so by ICMPv6).
 */
function pathMtu(netlink: NetlinkHandle, podMtu: number, overlaySource?: IPAddr): number {
  if (!overlaySource) return podMtu;
  const addr = listAddrs(netlink, { family: overlaySource.family })
    .find((a) => addrEqual(a.address, overlaySource));
  const deviceMtu = addr && getLink(netlink, addr.index)?.mtu;
  return Math.min(podMtu, deviceMtu ?? podMtu);
}

/** `READY=1` for a `Type=notify` unit, once the backend runs (as flanneld); never fatal. */
function tellSystemdReady(): void {
  try {
    if (notifySystemd("READY=1")) log.info("told systemd we are ready");
  } catch (err) {
    log.warn("could not notify systemd", { error: errorText(err) });
  }
}

/** `tartan run --help`: every flanneld flag. */
export const RUN_USAGE = `usage: tartan run [flanneld flags…]\n\n${usage()}`;

/** `tartan run ARGS`: parse flanneld's flags and environment, then run the daemon. */
export async function runCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseRunFlags(args, Deno.env.toObject());
  } catch (err) {
    if (!(err instanceof FlagError)) throw err;
    console.error(`${err.message}\n\n${usage()}`);
    return 2;
  }
  if (parsed.help) {
    console.log(usage());
    return 0;
  }
  if (parsed.options.version) {
    console.error(VERSION); // flanneld prints its version to stderr
    return 0;
  }
  return await runDaemon(parsed);
}
