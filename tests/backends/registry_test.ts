import assert from "node:assert/strict";
import { BackendError } from "../../backends/backend.ts";
import { backendFor, hasTunnelAddress, isBackendDevice } from "../../backends/registry.ts";
import { IPIP_DEVICE } from "../../backends/ipip.ts";
import { vxlanDeviceName } from "../../backends/vxlan.ts";
import { BACKEND_TYPES } from "../../config/netconf.ts";

Deno.test("registry: every type config accepts runs or says why not; others are unknown", () => {
  const runnable = BACKEND_TYPES.filter((type) => {
    try {
      return backendFor(type).type === type;
    } catch (error) {
      assert.ok(error instanceof BackendError);
      assert.doesNotMatch(error.message, /unknown/);
      return false;
    }
  });
  assert.deepEqual(runnable, [
    "vxlan",
    "host-gw",
    "udp",
    "ipip",
    "wireguard",
    "alloc",
    "extension",
  ]);
  assert.throws(() => backendFor("gre"), /gre: unknown backend type/);
  assert.throws(() => backendFor("ipsec"), /ipsec: the ipsec backend is out of scope/);
});

Deno.test("registry: cleanup's devices are exactly the names the backends create", () => {
  for (
    const name of [
      vxlanDeviceName(4, 1),
      vxlanDeviceName(6, 4096),
      "flannel0",
      "flannel12",
      IPIP_DEVICE,
      "flannel-wg",
      "flannel-wg-v6",
    ]
  ) assert.ok(isBackendDevice(name), name);
  for (
    const name of ["eth0", "cni0", "flannel", "flannel.", "flannel.x", "flannel-wg-v4", "xflannel0"]
  ) {
    assert.ok(!isBackendDevice(name), name);
  }
});

Deno.test("registry: the backends whose device holds the subnet's network address", () => {
  const withAddress = BACKEND_TYPES.filter((type) => hasTunnelAddress(type));
  assert.deepEqual(withAddress, ["vxlan", "udp", "ipip", "wireguard"]);
  assert.equal(hasTunnelAddress("gre"), false);
});
