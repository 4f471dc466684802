/// <reference lib="deno.worker" />
/**
 * The udp data-path Worker: a synchronous FFI loop (its own `dlopen`) that waits in `poll` on
 * the TUN, the UDP socket and the control eventfd, then drains each ready fd until EAGAIN (or a
 * budget, for fairness) and hands every packet to the forwarder. It only returns to its event
 * loop when the control fd rings, to collect the posted messages (new peer table, stop).
 *
 * An unexpected syscall error ends the Worker with that error; the main thread sees the `error`
 * event and restarts it (bounded). Packets never cause errors: they are counted drops.
 *
 * @module
 */
import { addressOf, kernelMemory, setPointer, setSize } from "../../ffi/kernel_memory.ts";
import { EAGAIN, EINTR, ENOBUFS } from "../../ffi/errno.ts";
import { lastErrno, libc, SyscallError } from "../../ffi/libc.ts";
import { POLLIN, POLLNVAL, POLLOUT } from "../../ffi/unix.ts";
import { drainControl } from "./control_fd.ts";
import { dropSlot, SLOT } from "./counters.ts";
import { ARENA, createForwarder, type DropCause, type ForwarderIo } from "./forwarder.ts";
import { packetBuffer } from "./packet.ts";
import { createPeerTable, decodePeerTable } from "./peers.ts";
import type { FromWorker, ToWorker, WorkerSetup } from "./protocol.ts";
import { createUdpReceiver, createUdpSender } from "../../ffi/udp_io.ts";

/** Reads per fd before looking at the others again. */
const BUDGET = 64;
/**
 * A finite wait, so that `terminate()` takes effect even if the control fd were lost. The loop
 * always sleeps in poll: spinning before sleeping was measured to make the idle RTT worse on a
 * 2-vCPU node (848 µs with a 300 µs spin against 512 µs without), as it takes the CPU the peer's
 * Worker and the pods need.
 */
const POLL_TIMEOUT_MS = 500;
/** How long to wait for socket buffer space before dropping. */
const SEND_WAIT_MS = 10;
/** How long a posted message may take to arrive after its ring. */
const MESSAGE_WAIT_MS = 1000;

const inbox: ToWorker[] = [];
let waiter: ((message: ToWorker | undefined) => void) | undefined;

self.onmessage = (event: MessageEvent<ToWorker>) => {
  if (waiter) waiter(event.data);
  else inbox.push(event.data);
};

/** The next posted message, or undefined after `timeoutMs`. */
function nextMessage(timeoutMs: number): Promise<ToWorker | undefined> {
  const queued = inbox.shift();
  if (queued) return Promise.resolve(queued);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      waiter = undefined;
      resolve(undefined);
    }, timeoutMs);
    waiter = (message) => {
      clearTimeout(timer);
      waiter = undefined;
      resolve(message);
    };
  });
}

function post(message: FromWorker): void {
  self.postMessage(message);
}

/** A pollfd array for `fds`, all waiting for POLLIN. */
function pollSet(fds: number[], events = POLLIN): Uint8Array<ArrayBuffer> {
  const set = new Uint8Array(fds.length * 8);
  const view = new DataView(set.buffer);
  fds.forEach((fd, i) => {
    view.setInt32(i * 8, fd, true);
    view.setInt16(i * 8 + 4, events, true);
  });
  return set;
}

/** The syscalls of the forwarder, with bounded retries on EINTR and a short wait for space. */
function workerIo(setup: WorkerSetup, arena: Uint8Array<ArrayBuffer>): ForwarderIo {
  const lib = libc();
  const base = addressOf(arena);
  const sender = createUdpSender(setup.udpFd);
  const writable = pollSet([setup.udpFd], POLLOUT);
  const tunIovec = kernelMemory(16);
  return {
    send(offset, length, segmentSize, address): DropCause | null {
      const pointer = base + offset;
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = sender.send(pointer, length, segmentSize, address, setup.port);
        if (result >= 0) return null;
        if (result === -EINTR) continue;
        if (result !== -EAGAIN && result !== -ENOBUFS) return "send_error";
        if (lib.poll(writable, 1n, SEND_WAIT_MS) <= 0) return "buffer_full";
      }
      return "buffer_full";
    },
    writeTun(offset, length): DropCause | null {
      setPointer(tunIovec.view, 0, base + offset);
      setSize(tunIovec.view, 8, length);
      for (let attempt = 0; attempt < 3; attempt++) {
        if (lib.writev(setup.tunFd, tunIovec.bytes, 1) >= 0) return null;
        const errno = lastErrno();
        if (errno === EINTR) continue;
        return errno === EAGAIN || errno === ENOBUFS ? "buffer_full" : "send_error";
      }
      return "buffer_full";
    },
  };
}

/** Run the data path until a `stop` message. */
async function serve(setup: WorkerSetup): Promise<void> {
  const lib = libc();
  const arena = packetBuffer(ARENA.bytes);
  const counters = new Float64Array(setup.counters);
  const forwarder = createForwarder({
    arena,
    counters,
    io: workerIo(setup, arena.bytes),
    peers: createPeerTable(decodePeerTable(setup.table)),
    tunMtu: setup.tunMtu,
    ownAddress: setup.ownAddress,
  });
  counters[SLOT.appliedGeneration] = setup.generation;
  const receiver = createUdpReceiver(
    setup.udpFd,
    arena.bytes.subarray(ARENA.udpIn, ARENA.udpIn + ARENA.udpInBytes),
  );
  const tunRead = arena.bytes.subarray(ARENA.tunRead, ARENA.tunRead + ARENA.tunReadBytes);
  const tunReadCapacity = BigInt(tunRead.length);
  const fds = pollSet([setup.tunFd, setup.udpFd, setup.controlFd]);
  const revents = new DataView(fds.buffer);
  const bufferFull = dropSlot("buffer_full");
  const oversized = dropSlot("oversized");

  function drainTun(): void {
    for (let i = 0; i < BUDGET; i++) {
      const n = lib.read(setup.tunFd, tunRead, tunReadCapacity);
      if (n >= 0) {
        forwarder.fromTun(n);
        continue;
      }
      const errno = lastErrno();
      if (errno === EAGAIN) break;
      if (errno !== EINTR) throw new SyscallError("read", errno, "tun");
    }
    forwarder.flush();
  }

  function drainUdp(): void {
    for (let i = 0; i < BUDGET; i++) {
      const n = receiver.receive();
      if (n === -EAGAIN) break;
      if (n === -EINTR) continue;
      if (n < 0) throw new SyscallError("recvmsg", -n, "udp");
      // The kernel's count of datagrams dropped on a full receive buffer, since the socket opened.
      const overflow = receiver.overflowDrops;
      if (overflow !== counters[SLOT.rxOverflowSeen]) {
        counters[bufferFull] += (overflow - counters[SLOT.rxOverflowSeen]) >>> 0;
        counters[SLOT.rxOverflowSeen] = overflow;
      }
      if (receiver.truncated) counters[oversized]++;
      else forwarder.fromUdp(n, receiver.segmentSize, receiver.sourceAddress);
    }
    forwarder.flush();
  }

  /** Collect the messages the control fd rang for; false on `stop`. */
  async function control(): Promise<boolean> {
    const rings = drainControl(setup.controlFd);
    for (let i = 0; i < rings; i++) {
      const message = await nextMessage(MESSAGE_WAIT_MS);
      if (!message) return true; // never arrived: keep forwarding with the table we have
      if (message.type === "stop") return false;
      if (message.type === "peers") {
        forwarder.setPeers(createPeerTable(decodePeerTable(message.table)));
        counters[SLOT.appliedGeneration] = message.generation;
      }
    }
    return true;
  }

  post({ type: "running" });
  for (;;) {
    const ready = lib.poll(fds, 3n, POLL_TIMEOUT_MS);
    if (ready < 0) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      throw new SyscallError("poll", errno);
    }
    if (ready === 0) continue;
    const tun = revents.getUint16(6, true);
    const udp = revents.getUint16(14, true);
    const ctl = revents.getUint16(22, true);
    if ((tun | udp | ctl) & POLLNVAL) throw new Error("a data-path fd was closed under the Worker");
    if (ctl !== 0 && !await control()) return;
    if (tun !== 0) drainTun();
    if (udp !== 0) drainUdp();
  }
}

const first = await nextMessage(10_000);
if (first?.type === "start") await serve(first.setup);
post({ type: "stopped" });
self.close();
