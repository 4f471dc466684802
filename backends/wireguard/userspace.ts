/**
 * wireguard-go, where the kernel has no wireguard module: one supervised process per device
 * (`wireguard_go.ts`), configured through its UAPI socket with exactly what the kernel path
 * programs through netlink. Loaded only when the fallback is taken.
 *
 * @module
 */
import { deleteLink, getLink, type Link, setLinkMtu } from "../../ffi/netlink/link.ts";
import type { NetlinkHandle } from "../../ffi/netlink/socket.ts";
import type { WgPeerState } from "../../ffi/netlink/wireguard.ts";
import type { Logger } from "../../log.ts";
import { sleep } from "../../sleep.ts";
import { BackendError } from "../backend.ts";
import type { WireguardDevice } from "./config.ts";
import type { DriverOptions, WireguardDriver } from "./driver.ts";
import { uapiGet, uapiSet } from "./uapi_client.ts";
import { socketAnswers, startWireguardGo, type WireguardGo } from "./wireguard_go.ts";

const toError = (err: unknown) => err instanceof Error ? err : new Error(String(err));
const GONE_TIMEOUT_MS = 5000;
const POLL_MS = 50;

/** Poll `get` (bounded) until it gives a value; undefined when it never did. */
async function until<T>(get: () => Promise<T | undefined> | T | undefined): Promise<T | undefined> {
  const never = new AbortController().signal;
  for (const deadline = Date.now() + GONE_TIMEOUT_MS; Date.now() < deadline;) {
    const value = await get();
    if (value !== undefined) return value;
    await sleep(POLL_MS, never);
  }
  return undefined;
}

/**
 * Delete a leftover device (a wireguard-go left running by a killed daemon exits when its device
 * goes) and wait for its socket to stop answering, so the new process owns the name.
 */
async function clearDevice(h: NetlinkHandle, name: string): Promise<void> {
  const existing = getLink(h, name);
  if (existing) deleteLink(h, existing.index);
  if (!await until(async () => await socketAnswers(name) ? undefined : true)) {
    throw new BackendError("wireguard", `another process still serves ${name}'s UAPI socket`);
  }
}

/** Start wireguard-go for every device and give each its MTU, key and port. */
export async function wireguardGoDriver(
  h: NetlinkHandle,
  options: DriverOptions,
  log: Logger,
): Promise<WireguardDriver> {
  const processes = new Map<string, WireguardGo>();
  const links = new Map<string, Link>();
  /** The generation each device was last configured for. */
  const configured = new Map<string, number>();
  let restartListener = () => {};

  async function configure(spec: WireguardDevice, process: WireguardGo): Promise<void> {
    const link = await until(() => getLink(h, spec.name));
    if (!link) throw new BackendError("wireguard", `wireguard-go created no ${spec.name}`);
    setLinkMtu(h, link.index, options.mtu);
    await uapiSet(spec.name, { privateKey: options.privateKey, listenPort: spec.port });
    links.set(spec.name, link);
    configured.set(spec.name, process.generation);
  }

  const close = async () => {
    await Promise.all([...processes.values()].map((p) => p.stop()));
  };
  try {
    for (const spec of options.devices) {
      await clearDevice(h, spec.name);
      const process = await startWireguardGo({
        device: spec.name,
        netns: h.netns,
        log,
        onRestart: () => restartListener(),
      });
      processes.set(spec.name, process);
      await configure(spec, process);
    }
  } catch (err) {
    await close();
    throw err;
  }

  return {
    implementation: "wireguard-go",
    indexOf: (device) => links.get(device)!.index,
    async apply(changes) {
      // One request each, in order: a removal must land before a re-add of the same device.
      const results: (Error | undefined)[] = [];
      for (const { device, peer } of changes) {
        results.push(await uapiSet(device, { peers: [peer] }).then(() => undefined, toError));
      }
      return results;
    },
    async read() {
      const peers = new Map<string, readonly WgPeerState[]>();
      for (const name of processes.keys()) peers.set(name, (await uapiGet(name)).peers);
      return peers;
    },
    async restarted() {
      const again: WireguardDevice[] = [];
      for (const spec of options.devices) {
        const process = processes.get(spec.name)!;
        if (configured.get(spec.name) === process.generation) continue;
        await configure(spec, process);
        log.info("wireguard-go restarted; device configured again", { device: spec.name });
        again.push(spec);
      }
      return again;
    },
    onRestart: (listener) => void (restartListener = listener),
    close,
  };
}
