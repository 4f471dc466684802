/**
 * Backend types by name (the net-conf `Backend.Type`, lower-cased).
 *
 * @module
 */
import { allocBackend } from "./alloc.ts";
import { type Backend, BackendError } from "./backend.ts";
import { hostGwBackend } from "./hostgw.ts";
import { ipipBackend } from "./ipip.ts";
import { udpBackend } from "./udp/backend.ts";
import { vxlanBackend } from "./vxlan.ts";
import { wireguardBackend } from "./wireguard.ts";

const BACKENDS: Readonly<Record<string, Backend>> = {
  alloc: allocBackend,
  "host-gw": hostGwBackend,
  ipip: ipipBackend,
  udp: udpBackend,
  vxlan: vxlanBackend,
  wireguard: wireguardBackend,
};

/** Types flannel knows that Tartan does not run (yet): named so the error is precise. */
const NOT_AVAILABLE: Readonly<Record<string, string>> = {
  extension: "the extension backend is not implemented",
  ipsec: "the ipsec backend is out of scope",
  "tencent-vpc": "the tencent-vpc backend is out of scope",
};

/** The backend for a type, or a {@link BackendError} saying why there is none. */
export function backendFor(type: string): Backend {
  const backend = BACKENDS[type];
  if (backend) return backend;
  throw new BackendError(type, NOT_AVAILABLE[type] ?? "unknown backend type");
}
