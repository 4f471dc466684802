/**
 * Creating a tunnel device whose driver may be missing from the kernel. The kernel answers an
 * unknown link kind with EOPNOTSUPP ("Unknown device type") — after trying to load the module —
 * which says nothing about what to do; this turns it into a start-up error that does.
 *
 * @module
 */
import { addLink, type Link, type LinkSpec } from "../ffi/netlink/link.ts";
import { NetlinkError, type NetlinkHandle } from "../ffi/netlink/socket.ts";
import { BackendError } from "./backend.ts";

/** Whether a link-creation failure means the kernel has no driver for the kind. */
export function isMissingDriver(err: unknown): boolean {
  return err instanceof NetlinkError && err.code === "EOPNOTSUPP";
}

/**
 * {@link addLink}, with "no driver for this kind" reported as a {@link BackendError} naming the
 * kernel module to load.
 *
 * @example
 * ```ts
 * createTunnelLink(h, { name: "flannel.ipip", kind: "ipip", ipip: { local } }, "ipip", "ipip");
 * ```
 */
export function createTunnelLink(
  h: NetlinkHandle,
  spec: LinkSpec,
  backend: string,
  module: string,
): Link {
  try {
    return addLink(h, spec);
  } catch (err) {
    if (!isMissingDriver(err)) throw err;
    throw new BackendError(
      backend,
      `the kernel has no ${module} module: creating ${spec.name} (kind ${spec.kind}) failed with ` +
        `${(err as NetlinkError).code}; load it (modprobe ${module}) or choose another backend`,
    );
  }
}
