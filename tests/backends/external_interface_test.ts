import assert from "node:assert/strict";
import {
  type InterfaceAddress,
  type InterfaceInfo,
  type InterfaceOptions,
  InterfaceSelectionError,
  type InterfaceSource,
  selectExternalInterface,
} from "../../backends/external_interface.ts";
import { formatAddr, parseAddr } from "../../ip/mod.ts";

function address(text: string, extra: Partial<InterfaceAddress> = {}): InterfaceAddress {
  const addr = parseAddr(text);
  const linkLocal = text.startsWith("fe80");
  return {
    addr,
    prefix: addr.family === 4 ? 24 : 64,
    scope: linkLocal ? "link" : "global",
    permanent: true,
    deprecated: false,
    temporary: false,
    ...extra,
  };
}

const IFACES: InterfaceInfo[] = [
  { name: "lo", index: 1, mtu: 65536, addrs: [address("127.0.0.1", { scope: "host" })] },
  {
    name: "eth0",
    index: 2,
    mtu: 1500,
    addrs: [address("fe80::1"), address("198.18.0.10"), address("fd00::10")],
  },
  { name: "eth1", index: 3, mtu: 9000, addrs: [address("198.19.5.1"), address("fd00:5::1")] },
  { name: "veth-empty", index: 4, mtu: 1500, addrs: [] },
];

function source(defaultV4 = 2, defaultV6 = 2): InterfaceSource {
  return {
    interfaces: () => Promise.resolve(IFACES),
    defaultRouteIndex: (family) => Promise.resolve(family === 4 ? defaultV4 : defaultV6),
    routeTo: (addr) =>
      Promise.resolve(
        formatAddr(addr).startsWith("198.19.")
          ? { index: 3, src: parseAddr("198.19.5.1") }
          : undefined,
      ),
  };
}

const NONE: InterfaceOptions = {
  iface: [],
  ifaceRegex: [],
  ifaceCanReach: "",
  publicIP: "",
  publicIPv6: "",
};
const V4 = { v4: true, v6: false };
const DUAL = { v4: true, v6: true };

Deno.test("without flags the default route's interface is chosen", async () => {
  const ext = await selectExternalInterface(NONE, V4, source());
  assert.equal(ext.name, "eth0");
  assert.equal(ext.mtu, 1500);
  assert.equal(formatAddr(ext.ifaceAddr!), "198.18.0.10");
  assert.equal(formatAddr(ext.publicIP!), "198.18.0.10");
  assert.equal(ext.publicIPv6, undefined);
});

Deno.test("dual stack takes the global IPv6 address before link-local", async () => {
  const ext = await selectExternalInterface(NONE, DUAL, source());
  assert.equal(formatAddr(ext.ifaceAddrV6!), "fd00::10");
});

Deno.test("dual stack with default routes on different interfaces is refused", async () => {
  await assert.rejects(selectExternalInterface(NONE, DUAL, source(2, 3)), InterfaceSelectionError);
});

Deno.test("a known public IP selects the interface holding it", async () => {
  const ext = await selectExternalInterface({ ...NONE, publicIP: "198.19.5.1" }, V4, source());
  assert.equal(ext.name, "eth1");
});

Deno.test("--iface values are tried in order, by name or by IP", async () => {
  let ext = await selectExternalInterface({ ...NONE, iface: ["nope", "eth1"] }, V4, source());
  assert.equal(ext.name, "eth1");
  ext = await selectExternalInterface({ ...NONE, iface: ["198.18.0.10"] }, V4, source());
  assert.equal(ext.name, "eth0");
  assert.equal(formatAddr(ext.ifaceAddr!), "198.18.0.10");
});

Deno.test("an interface without a usable address is skipped", async () => {
  const ext = await selectExternalInterface(
    { ...NONE, iface: ["veth-empty"], ifaceRegex: ["^eth1$"] },
    V4,
    source(),
  );
  assert.equal(ext.name, "eth1");
});

Deno.test("--iface-regex matches addresses first, then names", async () => {
  let ext = await selectExternalInterface({ ...NONE, ifaceRegex: ["^198\\.19\\."] }, V4, source());
  assert.equal(ext.name, "eth1");
  ext = await selectExternalInterface({ ...NONE, ifaceRegex: ["th0"] }, V4, source());
  assert.equal(ext.name, "eth0");
});

Deno.test("--iface-can-reach uses the route's interface and preferred source", async () => {
  const ext = await selectExternalInterface(
    { ...NONE, ifaceCanReach: "198.19.9.9" },
    V4,
    source(),
  );
  assert.equal(ext.name, "eth1");
  assert.equal(formatAddr(ext.ifaceAddr!), "198.19.5.1");
});

Deno.test("--public-ip overrides the advertised address, not the interface address", async () => {
  const ext = await selectExternalInterface(
    { ...NONE, iface: ["eth0"], publicIP: "203.0.113.7" },
    V4,
    source(),
  );
  assert.equal(formatAddr(ext.ifaceAddr!), "198.18.0.10");
  assert.equal(formatAddr(ext.publicIP!), "203.0.113.7");
});

Deno.test("no match at all is a clear error naming what was tried", async () => {
  await assert.rejects(
    selectExternalInterface({ ...NONE, iface: ["wlan9"], ifaceRegex: ["^zz"] }, V4, source()),
    /no interface matched wlan9, \^zz/,
  );
  await assert.rejects(
    selectExternalInterface({ ...NONE, publicIP: "fd00::1" }, V4, source()),
    /not an IPv4 address/,
  );
});
