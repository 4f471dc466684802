/**
 * The kernel's answers for interface selection, read over netlink in the current namespace.
 *
 * @module
 */
import { listAddrs } from "../ffi/netlink/addr.ts";
import {
  IFA_F_DEPRECATED,
  IFA_F_PERMANENT,
  IFA_F_TEMPORARY,
  RT_SCOPE_HOST,
  RT_SCOPE_LINK,
  RT_SCOPE_SITE,
  RT_TABLE_MAIN,
} from "../ffi/netlink/constants.ts";
import { listLinks } from "../ffi/netlink/link.ts";
import { getRoute, listRoutes } from "../ffi/netlink/route.ts";
import type { NetlinkHandle } from "../ffi/netlink/socket.ts";
import type { InterfaceAddress, InterfaceInfo, InterfaceSource } from "./external_interface.ts";

function scopeName(scope: number): InterfaceAddress["scope"] {
  if (scope === RT_SCOPE_HOST) return "host";
  if (scope === RT_SCOPE_LINK) return "link";
  if (scope === RT_SCOPE_SITE) return "site";
  return "global";
}

/** An {@link InterfaceSource} over a netlink handle. */
export function kernelInterfaceSource(h: NetlinkHandle): InterfaceSource {
  return {
    interfaces() {
      const addrs = listAddrs(h);
      return Promise.resolve(
        listLinks(h).map((link): InterfaceInfo => ({
          name: link.name,
          index: link.index,
          mtu: link.mtu,
          addrs: addrs.filter((a) => a.index === link.index).map((a) => ({
            addr: a.address,
            prefix: a.prefix,
            scope: scopeName(a.scope),
            permanent: (a.flags & IFA_F_PERMANENT) !== 0,
            deprecated: (a.flags & IFA_F_DEPRECATED) !== 0,
            temporary: (a.flags & IFA_F_TEMPORARY) !== 0,
          })),
        })),
      );
    },
    defaultRouteIndex(family) {
      const route = listRoutes(h, { family, table: RT_TABLE_MAIN })
        .find((r) => r.dst.prefix === 0 && r.oif !== undefined);
      return Promise.resolve(route?.oif);
    },
    routeTo(addr) {
      try {
        const route = getRoute(h, addr);
        return Promise.resolve(
          route.oif === undefined ? undefined : { index: route.oif, src: route.prefsrc },
        );
      } catch {
        return Promise.resolve(undefined);
      }
    },
  };
}
