/**
 * Helpers the udp lab tests share: a lab prefix `deleteLabNetns` accepts, raw datagram
 * sockets inside a namespace, the admin API's data-path view, and a minimal pcap reader.
 *
 * @module
 */
import { addressOf } from "../../../ffi/kernel_memory.ts";
import { closeFd, pollFd } from "../../../ffi/libc.ts";
import { inNetns } from "../../../ffi/netns.ts";
import { createUdpReceiver, createUdpSender, openUdpSocket } from "../../../ffi/udp_io.ts";
import { parseAddr } from "../../../ip/mod.ts";
import { POLLIN } from "../../../ffi/unix.ts";
import { dotted } from "../../../lab/packets.ts";
import { randomTag } from "../../../lab/netns.ts";
import { type DataPathCounters, type PeerHealth } from "../../../backends/backend.ts";

/** `tt-<6 lowercase alnum>-`, the form `deleteLabNetns` insists on. */
export function labPrefix(): string {
  return `tt-${randomTag()}-`;
}

/** A datagram socket bound inside a namespace, sending and receiving raw payloads. */
export interface RawPeer {
  send(payload: Uint8Array, to: string, port?: number): void;
  /** The next datagram within `timeoutMs`, or undefined. */
  receive(timeoutMs: number): { payload: Uint8Array; from: string; port: number } | undefined;
  close(): void;
}

/** Bind `address:port` in `netns`. */
export function rawPeer(netns: string, address: string, port = 8285): RawPeer {
  const fd = inNetns(
    netns,
    () => openUdpSocket({ address: Number(parseAddr(address).value), port, bufferBytes: 1 << 20 }),
  );
  const out = new Uint8Array(new ArrayBuffer(65_536));
  const outAddress = addressOf(out);
  const region = new Uint8Array(new ArrayBuffer(65_536));
  const sender = createUdpSender(fd);
  const receiver = createUdpReceiver(fd, region);
  return {
    send(payload, to, toPort = 8285) {
      out.set(payload);
      const sent = sender.send(outAddress, payload.length, 0, Number(parseAddr(to).value), toPort);
      if (sent !== payload.length) throw new Error(`send to ${to} failed: ${sent}`);
    },
    receive(timeoutMs) {
      if (!(pollFd(fd, POLLIN, timeoutMs) & POLLIN)) return undefined;
      const n = receiver.receive();
      if (n < 0) return undefined;
      return {
        payload: region.slice(0, n),
        from: dotted(receiver.sourceAddress),
        port: receiver.sourcePort,
      };
    },
    close: () => closeFd(fd),
  };
}

/** What `/v1/backend` says about the data path and peers. */
export interface BackendView {
  readonly type: string;
  readonly ready: boolean;
  readonly peers: PeerHealth[];
  readonly dataPath: DataPathCounters | null;
}

/** GET `/v1/backend` of a node. */
export async function backendView(adminUrl: string): Promise<BackendView> {
  const res = await fetch(`${adminUrl}/v1/backend`, { signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`/v1/backend: ${res.status}`);
  return await res.json() as BackendView;
}

/** The IPv4 subnet (`10.244.X.0/24`) a node's subnet.env names. */
export async function subnetOf(subnetFile: string): Promise<string> {
  const env = await Deno.readTextFile(subnetFile);
  const m = env.match(/^FLANNEL_SUBNET=(\d+\.\d+\.\d+)\.\d+\/(\d+)$/m);
  if (!m) throw new Error(`no FLANNEL_SUBNET in ${subnetFile}`);
  return `${m[1]}.0/${m[2]}`;
}
