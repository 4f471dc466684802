/** What doctor tells an operator to open, per backend and its options. */
import assert from "node:assert/strict";
import { encapsulationOf } from "../../doctor/encapsulation.ts";

Deno.test("encapsulation: the port or protocol to allow, and the bytes it costs", () => {
  assert.deepEqual(encapsulationOf("vxlan", {}), {
    allow: "UDP port 8472 (vxlan)",
    port: "udp/8472",
    overhead: 50,
  });
  assert.equal(encapsulationOf("vxlan", { port: 4789 }).port, "udp/4789");
  assert.equal(encapsulationOf("udp", {}).port, "udp/8285");
  assert.equal(encapsulationOf("udp", { port: 9000 }).overhead, 28);
  // The admin API shows the PSK as <redacted>: the port is still read.
  assert.equal(encapsulationOf("wireguard", { psk: "<redacted>" }).port, "udp/51820");
  assert.equal(encapsulationOf("wireguard", { listenport: 51000 }).port, "udp/51000");
  assert.equal(encapsulationOf("ipip", {}).port, "ip-proto/4");
  assert.equal(encapsulationOf("host-gw", {}).overhead, 0);
  assert.equal(encapsulationOf("vxlan", { port: "junk" }).port, "vxlan", "unreadable options");
});
