/**
 * The backends by type: the one table that says what each `Backend.Type` a net-conf may name
 * (config/netconf.ts `BACKEND_TYPES`, flannel's list) does here, and, through each backend's
 * `devices`, which devices are Tartan's (what `tartan cleanup` removes). The compiler holds the
 * table to exactly the types config accepts.
 *
 * @module
 */
import type { BackendType } from "../config/netconf.ts";
import { allocBackend } from "./alloc.ts";
import { type Backend, BackendError } from "./backend.ts";
import { extensionBackend } from "./extension/backend.ts";
import { hostGwBackend } from "./hostgw.ts";
import { ipipBackend } from "./ipip.ts";
import { udpBackend } from "./udp/backend.ts";
import { vxlanBackend } from "./vxlan.ts";
import { wireguardBackend } from "./wireguard/backend.ts";

/** A type flannel knows that Tartan does not run: why, so the error is precise. */
interface NotAvailable {
  readonly unavailable: string;
}

const BACKENDS: { readonly [T in BackendType]: Backend | NotAvailable } = {
  vxlan: vxlanBackend,
  "host-gw": hostGwBackend,
  udp: udpBackend,
  ipip: ipipBackend,
  wireguard: wireguardBackend,
  alloc: allocBackend,
  extension: extensionBackend,
  ipsec: { unavailable: "the ipsec backend is out of scope" },
  "tencent-vpc": { unavailable: "the tencent-vpc backend is out of scope" },
};

function isBackend(entry: Backend | NotAvailable | undefined): entry is Backend {
  return entry !== undefined && "register" in entry;
}

/** The backend for a type, or a {@link BackendError} saying why there is none. */
export function backendFor(type: string): Backend {
  const entry = (BACKENDS as Readonly<Record<string, Backend | NotAvailable>>)[type];
  if (isBackend(entry)) return entry;
  throw new BackendError(type, entry?.unavailable ?? "unknown backend type");
}

/** Whether a backend type's device holds the node subnet's network address (vxlan, udp, …). */
export function hasTunnelAddress(type: string): boolean {
  const entry = (BACKENDS as Readonly<Record<string, Backend | NotAvailable>>)[type];
  return isBackend(entry) && entry.tunnelAddress === true;
}

/** Whether a device name is one a backend creates (`flannel.1`, `flannel0`, `flannel-wg`, …). */
export function isBackendDevice(name: string): boolean {
  return Object.values(BACKENDS).some((entry) => isBackend(entry) && entry.devices?.test(name));
}
