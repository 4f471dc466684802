/**
 * Generic netlink (`linux/genetlink.h`): families are registered at run time and addressed by a
 * numeric id the kernel assigns, found by name through the `nlctrl` family (CTRL_CMD_GETFAMILY).
 * Open the socket with `openNetlink({ protocol: NETLINK_GENERIC })`; requests carry a
 * `genlmsghdr` body (`{ kind: "genl" }` in the codec).
 *
 * @module
 */
import { type Attr, attrMap, attrU16, attrU32, strAttr } from "./codec.ts";
import { NETLINK_GENERIC } from "./constants.ts";
import { execute, NetlinkError, type NetlinkHandle, type NetlinkRequest } from "./socket.ts";

/** GENL_ID_CTRL: the fixed id of `nlctrl`, the family that resolves the others. */
export const GENL_ID_CTRL = 16;
export const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const CTRL_ATTR_VERSION = 3;
export const CTRL_ATTR_MAXATTR = 5;

/** A resolved generic netlink family. */
export interface GenlFamily {
  readonly name: string;
  readonly id: number;
  /** The family's protocol version as the kernel reports it. */
  readonly version: number;
  /** Highest attribute type the family accepts. */
  readonly maxAttr: number;
}

/**
 * A request to a generic netlink family: `cmd` with `attrs`, at the caller's protocol `version`
 * (the one its encoding follows, not necessarily the kernel's).
 */
export function genlRequest(
  familyId: number,
  cmd: number,
  version: number,
  attrs: Attr[],
  flags?: number,
): NetlinkRequest {
  return { type: familyId, flags, body: { kind: "genl", msg: { cmd, version }, attrs } };
}

function requireGeneric(h: NetlinkHandle): void {
  if (h.protocol !== NETLINK_GENERIC) {
    throw new TypeError("generic netlink needs a handle opened with protocol NETLINK_GENERIC");
  }
}

/**
 * Resolve a family by name (CTRL_CMD_GETFAMILY); undefined when the kernel has no such family
 * (ENOENT, also after its attempt to load the module). Other refusals throw {@link NetlinkError}.
 *
 * @example
 * ```ts
 * const h = openNetlink({ protocol: NETLINK_GENERIC, netns });
 * const wg = resolveFamily(h, "wireguard"); // undefined without the wireguard module
 * ```
 */
export function resolveFamily(h: NetlinkHandle, name: string): GenlFamily | undefined {
  requireGeneric(h);
  let replies;
  try {
    replies = execute(
      h,
      genlRequest(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, [strAttr(CTRL_ATTR_FAMILY_NAME, name)]),
    );
  } catch (err) {
    if (err instanceof NetlinkError && err.code === "ENOENT") return undefined;
    throw err;
  }
  const reply = replies.find((m) => m.body.kind === "genl");
  if (reply?.body.kind !== "genl") {
    throw new NetlinkError(71, /* EPROTO */ GENL_ID_CTRL, `no reply for ${name}`, NETLINK_GENERIC);
  }
  const attrs = attrMap(reply.body.attrs);
  const id = attrs.get(CTRL_ATTR_FAMILY_ID);
  if (!id) {
    throw new NetlinkError(71, /* EPROTO */ GENL_ID_CTRL, `no id for ${name}`, NETLINK_GENERIC);
  }
  const version = attrs.get(CTRL_ATTR_VERSION);
  const maxAttr = attrs.get(CTRL_ATTR_MAXATTR);
  return {
    name,
    id: attrU16(id),
    version: version ? attrU32(version) : 0,
    maxAttr: maxAttr ? attrU32(maxAttr) : 0,
  };
}
