/**
 * Backend options (spec §6) are read and checked when the net-conf is parsed: each bad value
 * gets its own message naming the member, and garbage of any shape is a ConfigError.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import fc from "fast-check";
import {
  checkBackendOptions,
  readIpipOptions,
  readUdpOptions,
  readVxlanOptions,
  readWireguardOptions,
} from "../../config/backend_options.ts";
import { ConfigError, parseNetConfig } from "../../config/netconf.ts";

const KEY = Buffer.alloc(32, 7).toString("base64");

/** The parse error for `backend` in a full net-conf: the path the daemon and `config check` use. */
function rejected(backend: Record<string, unknown>): ConfigError {
  const text = JSON.stringify({ Network: "10.5.0.0/16", Backend: backend });
  try {
    parseNetConfig(text, "kube");
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  assert.fail(`accepted ${text}`);
}

Deno.test("backend options: every message, as the net-conf parser reports it", () => {
  const cases: [Record<string, unknown>, string][] = [
    [
      { Type: "vxlan", MTU: -100 },
      "Backend.MTU: must be between 138 and 65535 (0 or absent: the external interface's MTU), got -100",
    ],
    [
      { Type: "vxlan", MTU: 137 },
      "Backend.MTU: must be between 138 and 65535 (0 or absent: the external interface's MTU), got 137",
    ],
    [
      { Type: "vxlan", MTU: 70000 },
      "Backend.MTU: must be between 138 and 65535 (0 or absent: the external interface's MTU), got 70000",
    ],
    [{ Type: "vxlan", MTU: 1450.5 }, "Backend.MTU: must be an integer, got 1450.5"],
    [{ Type: "vxlan", VNI: -1 }, "Backend.VNI: must be between 0 and 16777215, got -1"],
    [{ Type: "vxlan", vni: 16777216 }, "Backend.VNI: must be between 0 and 16777215, got 16777216"],
    [{ Type: "vxlan", VNI: "1" }, `Backend.VNI: must be an integer, got "1"`],
    [
      { Type: "vxlan", Port: 65536 },
      "Backend.Port: must be between 1 and 65535 (0 or absent: the kernel's default, 8472), got 65536",
    ],
    [
      { Type: "vxlan", Port: -1 },
      "Backend.Port: must be between 1 and 65535 (0 or absent: the kernel's default, 8472), got -1",
    ],
    [{ Type: "vxlan", GBP: "true" }, `Backend.GBP: must be true or false, got "true"`],
    [{ Type: "vxlan", GBP: 1 }, "Backend.GBP: must be true or false, got 1"],
    [{ Type: "vxlan", Learning: "no" }, `Backend.Learning: must be true or false, got "no"`],
    [
      { Type: "vxlan", DirectRouting: [] },
      "Backend.DirectRouting: must be true or false, got []",
    ],
    [{ Type: "udp", Port: 0 }, "Backend.Port: must be between 1 and 65535, got 0"],
    [{ Type: "udp", Port: 70000 }, "Backend.Port: must be between 1 and 65535, got 70000"],
    [{ Type: "udp", Port: "8285" }, `Backend.Port: must be an integer, got "8285"`],
    [
      { Type: "ipip", DirectRouting: "yes" },
      `Backend.DirectRouting: must be true or false, got "yes"`,
    ],
    [
      { Type: "wireguard", PSK: "c2hvcnQ=" },
      "Backend.PSK: could not parse psk: must be the base64 encoding of 32 bytes (`wg genpsk` makes one)",
    ],
    [
      { Type: "wireguard", PSK: KEY.slice(0, -1) },
      "Backend.PSK: could not parse psk: must be the base64 encoding of 32 bytes (`wg genpsk` makes one)",
    ],
    [{ Type: "wireguard", PSK: 7 }, "Backend.PSK: must be a string, got 7"],
    [
      { Type: "wireguard", Mode: "Auto" },
      `Backend.Mode: no valid Mode configured: "Auto" (known: separate, auto, ipv4, ipv6)`,
    ],
    [
      { Type: "wireguard", ListenPort: 0 },
      "Backend.ListenPort: must be between 1 and 65535, got 0",
    ],
    [
      { Type: "wireguard", ListenPortV6: 70000 },
      "Backend.ListenPortV6: must be between 1 and 65535, got 70000",
    ],
    [
      { Type: "wireguard", MTU: 100 },
      "Backend.MTU: must be between 148 and 65535 (0 or absent: the external interface's MTU), got 100",
    ],
    [
      { Type: "wireguard", PersistentKeepaliveInterval: -1 },
      "Backend.PersistentKeepaliveInterval: must be between 1 and 65535 seconds (0 or absent: off), got -1",
    ],
  ];
  for (const [backend, message] of cases) {
    const err = rejected(backend);
    assert.equal(err.message, message, JSON.stringify(backend));
    assert.equal(err.field, message.slice(0, message.indexOf(":")));
  }
});

Deno.test("backend options: flannel's defaults and names (any case)", () => {
  assert.deepEqual(readVxlanOptions({}), {
    vni: 1,
    port: 0,
    mtu: 0,
    gbp: false,
    learning: false,
    directRouting: false,
  });
  assert.deepEqual(
    readVxlanOptions({ vni: 0, port: 0, mtu: 138, gbp: true, learning: true, directrouting: true }),
    { vni: 0, port: 0, mtu: 138, gbp: true, learning: true, directRouting: true },
  );
  assert.deepEqual(readVxlanOptions({ vni: 0xffffff, port: 4789, mtu: 65535 }).port, 4789);
  assert.deepEqual(readUdpOptions({}), { port: 8285 });
  assert.deepEqual(readUdpOptions({ port: 65535 }), { port: 65535 });
  assert.deepEqual(readIpipOptions({}), { directRouting: false });
  assert.deepEqual(readWireguardOptions({}), {
    listenPort: 51820,
    listenPortV6: 51821,
    mtu: 0,
    persistentKeepaliveInterval: 0,
    mode: "separate",
  });
  assert.deepEqual(
    readWireguardOptions({
      listenport: 4000,
      listenportv6: 4001,
      mtu: 9000,
      psk: KEY,
      persistentkeepaliveinterval: 25,
      mode: "auto",
    }),
    {
      listenPort: 4000,
      listenPortV6: 4001,
      mtu: 9000,
      psk: KEY,
      persistentKeepaliveInterval: 25,
      mode: "auto",
    },
  );
  for (const mode of ["separate", "auto", "ipv4", "ipv6"]) {
    assert.equal(readWireguardOptions({ mode }).mode, mode);
  }
  // null is an absent member, as everywhere in the net-conf.
  assert.equal(readVxlanOptions({ mtu: null }).mtu, 0);
});

Deno.test("backend options: members a backend does not know are warned about", () => {
  const { config, warnings } = parseNetConfig(
    JSON.stringify({
      Network: "10.5.0.0/16",
      Backend: { Type: "vxlan", VNI: 2, DirectRoute: true },
    }),
    "etcd",
  );
  assert.equal(config.backend.options.vni, 2);
  assert.deepEqual(warnings, [
    `ignoring member Backend."directroute": the vxlan backend has no such option`,
  ]);
  assert.deepEqual(checkBackendOptions("host-gw", { port: 1 }), [
    `ignoring member Backend."port": the host-gw backend has no such option`,
  ]);
  assert.deepEqual(checkBackendOptions("extension", { subnetaddcommand: "x" }), []);
});

Deno.test("backend options: garbage of any shape is a ConfigError, never a crash", () => {
  const names = [
    "vni",
    "port",
    "mtu",
    "gbp",
    "learning",
    "directrouting",
    "listenport",
    "listenportv6",
    "psk",
    "persistentkeepaliveinterval",
    "mode",
  ];
  fc.assert(
    fc.property(
      fc.constantFrom("vxlan", "udp", "ipip", "wireguard", "host-gw", "alloc"),
      fc.dictionary(fc.constantFrom(...names), fc.jsonValue()),
      (type, options) => {
        try {
          checkBackendOptions(type, options);
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err;
        }
      },
    ),
  );
});
