/**
 * `extension` (spec §6.8): flannel's backend of operator commands. `PreStartupCommand` runs
 * before the lease is acquired and its output becomes `BackendData` (a JSON string);
 * `PostStartupCommand` runs once the lease is ours; `SubnetAddCommand` / `SubnetRemoveCommand`
 * run for every remote lease of type `extension` that comes or goes, with `SUBNET` and
 * `PUBLIC_IP` set and the peer's BackendData on standard input. A failing pre/post command stops
 * start-up; a failing add/remove command is logged with its output and retried every resync
 * (flannel only logs it), and never stops the daemon. The lease advertises the interface address
 * (not `--public-ip`), as flannel's does. Flannel has no shutdown command, and neither has this.
 *
 * @module
 */
import { readExtensionOptions } from "../../config/backend_options.ts";
import { formatAddr, formatNet } from "../../ip/mod.ts";
import type { Logger } from "../../log.ts";
import type { JsonValue, Lease } from "../../subnet/lease.ts";
import { leaseIdentity, LeaseSet } from "../../subnet/lease_set.ts";
import type { LeaseWatchUpdate } from "../../subnet/manager.ts";
import { type Backend, BackendError, type Network, type PeerHealth } from "../backend.ts";
import { followUpdates, SerialJobs } from "../serial_jobs.ts";
import { runExtensionCommand } from "./command.ts";

/** How Go prints an absent IPv4 network, IPv6 network and IPv6 address in flannel's variables. */
const NO_NET4 = "0.0.0.0/0";
const NO_NET6 = "::/0";
const NO_IP6 = "<nil>";

/** Run a start-up command; its failure is fatal, as in flannel. Returns its output. */
async function startupCommand(
  name: string,
  command: string,
  variables: Record<string, string>,
  log: Logger,
): Promise<string> {
  const outcome = await runExtensionCommand(command, variables);
  if (!outcome.ok) {
    throw new BackendError(
      "extension",
      `${name} "${command}" failed (${outcome.failure})` +
        (outcome.output ? `: ${outcome.output}` : ""),
    );
  }
  log.info(`ran ${name}`, { command, output: outcome.output });
  return outcome.output;
}

/** The extension backend. */
export const extensionBackend: Backend = {
  type: "extension",
  async register(ctx): Promise<Network> {
    const options = readExtensionOptions(ctx.config.backend.options);
    const { ext, log } = ctx;
    const preOutput = options.preStartupCommand &&
      await startupCommand("PreStartupCommand", options.preStartupCommand, {}, log);
    const lease = await ctx.manager.acquireLease({
      publicIP: ext.ifaceAddr ?? { family: 4, value: 0n },
      publicIPv6: ext.ifaceAddrV6,
      backendType: "extension",
      ...(options.preStartupCommand && { backendData: preOutput }),
    }, ctx.signal);
    if (options.postStartupCommand) {
      const network = ctx.config.ipv4?.network;
      await startupCommand("PostStartupCommand", options.postStartupCommand, {
        NETWORK: network ? formatNet(network) : NO_NET4,
        SUBNET: lease.subnet ? formatNet(lease.subnet) : NO_NET4,
        IPV6SUBNET: lease.ipv6Subnet ? formatNet(lease.ipv6Subnet) : NO_NET6,
        PUBLIC_IP: formatAddr(lease.attrs.publicIP),
        PUBLIC_IPV6: lease.attrs.publicIPv6 ? formatAddr(lease.attrs.publicIPv6) : NO_IP6,
      }, log);
    }
    return extensionNetwork(lease, ext.mtu, options, { resyncMs: ctx.resyncMs, log });
  },
};

/** The peer commands of a net-conf. */
interface PeerCommands {
  readonly subnetAddCommand: string;
  readonly subnetRemoveCommand: string;
}

/** A peer whose last command failed: what to run again, and why it failed. */
interface Pending {
  readonly lease: Lease;
  readonly action: "add" | "remove";
  readonly error: string;
}

/** The BackendData a peer's command reads on stdin: a JSON string, or nothing. */
function peerInput(data: JsonValue | undefined): string | undefined {
  if (data === undefined || data === null) return "";
  return typeof data === "string" ? data : undefined;
}

/**
 * The network: runs the add/remove command for each remote extension lease, in order, and every
 * `resyncMs` retries the ones that failed.
 */
export function extensionNetwork(
  lease: Lease,
  mtu: number,
  commands: PeerCommands,
  options: { readonly resyncMs: number; readonly log: Logger },
): Network {
  const { log } = options;
  const known = new LeaseSet(lease);
  const added = new Map<string, Lease>();
  const pending = new Map<string, Pending>();
  let ready = false;
  let lastError: string | undefined;
  const jobs = new SerialJobs();

  async function run(peer: Lease, action: "add" | "remove"): Promise<void> {
    const id = leaseIdentity(peer);
    added.delete(id);
    pending.delete(id);
    const command = action === "add" ? commands.subnetAddCommand : commands.subnetRemoveCommand;
    const name = action === "add" ? "SubnetAddCommand" : "SubnetRemoveCommand";
    const subnet = peer.subnet ? formatNet(peer.subnet) : NO_NET4;
    const input = peerInput(peer.attrs.backendData);
    let error: string | undefined;
    if (input === undefined) {
      error = "BackendData is not a JSON string";
    } else if (command) {
      const outcome = await runExtensionCommand(command, {
        SUBNET: subnet,
        PUBLIC_IP: formatAddr(peer.attrs.publicIP),
      }, input);
      if (outcome.ok) log.info(`ran ${name}`, { subnet, output: outcome.output });
      else {error = `${name} failed (${outcome.failure})${
          outcome.output ? `: ${outcome.output}` : ""
        }`;}
    }
    if (error) {
      log.warn("extension command failed; retried at the next resync", { subnet, error });
      lastError = error;
      pending.set(id, { lease: peer, action, error });
    } else if (action === "add") {
      added.set(id, peer);
    }
  }

  async function handle(update: LeaseWatchUpdate): Promise<void> {
    for (const event of known.apply(update)) {
      if (event.lease.attrs.backendType !== "extension") continue;
      await run(event.lease, event.type === "added" ? "add" : "remove");
    }
    ready = true;
  }

  async function retry(): Promise<void> {
    for (const { lease: peer, action } of [...pending.values()]) await run(peer, action);
    if (pending.size === 0) lastError = undefined;
  }

  return {
    lease,
    mtu,
    run: (updates, signal) =>
      followUpdates(updates, signal, jobs, { handle, resync: retry, resyncMs: options.resyncMs }),
    health() {
      const peer = (l: Lease, error?: string): PeerHealth => ({
        subnet: l.subnet ? formatNet(l.subnet) : NO_NET4,
        publicIP: formatAddr(l.attrs.publicIP),
        inSync: error === undefined,
        ...(error !== undefined && { error }),
      });
      return {
        type: "extension",
        ready,
        lastError,
        driftRepaired: 0,
        peers: [
          ...[...added.values()].map((l) => peer(l)),
          ...[...pending.values()].map((p) => peer(p.lease, p.error)),
        ],
      };
    },
    close: () => jobs.idle(),
  };
}
