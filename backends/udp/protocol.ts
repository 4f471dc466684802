/**
 * Messages between the udp backend (main thread) and its data-path Worker. Every message after
 * `start` is followed by one ring of the control eventfd (see `control_fd.ts`).
 *
 * @module
 */

/** Everything the Worker needs; file descriptors are process-wide, so numbers suffice. */
export interface WorkerSetup {
  readonly tunFd: number;
  readonly udpFd: number;
  readonly controlFd: number;
  /** Shared counters (layout in `counters.ts`). */
  readonly counters: SharedArrayBuffer;
  readonly tunMtu: number;
  /** This node's subnet base, unsigned 32-bit (source of ICMP errors). */
  readonly ownAddress: number;
  /** UDP port of every peer (flannel assumes its own for all). */
  readonly port: number;
  /** The peer table to start with (`encodePeerTable`) and its generation. */
  readonly generation: number;
  readonly table: Uint32Array;
}

/** Main thread → Worker. */
export type ToWorker =
  | { readonly type: "start"; readonly setup: WorkerSetup }
  | { readonly type: "peers"; readonly generation: number; readonly table: Uint32Array }
  | { readonly type: "stop" };

/** Worker → main thread. */
export type FromWorker = { readonly type: "running" } | { readonly type: "stopped" };
