/**
 * flannel's node annotations (spec §4.2–4.4) and the Node shape: prefix rules, the exact bytes a
 * node publishes, reading peers back, and garbage in ⇒ typed errors.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { parseNetConfig } from "../../config/netconf.ts";
import { formatAddr, formatNet, parseAddr, parseNet } from "../../ip/mod.ts";
import {
  annotationNames,
  annotationPatch,
  AnnotationPrefixError,
  nodeLease,
  NodeLeaseError,
  normalizeAnnotationPrefix,
  publication,
} from "../../subnet/kube_annotations.ts";
import {
  type KubeNode,
  networkUpPatch,
  NodeShapeError,
  parseKubeNode,
  podCidrsOf,
} from "../../subnet/kube_node.ts";
import { attrsEqual, type LeaseAttrs } from "../../subnet/lease.ts";

const AP = "flannel.alpha.coreos.com/";
const names = annotationNames();
const v4Config = parseNetConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}', "kube")
  .config;
const dualConfig = parseNetConfig(
  '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","Backend":{"Type":"vxlan"}}',
  "kube",
).config;

function node(annotations: Record<string, string>, podCIDRs: string[] = ["10.244.3.0/24"]) {
  return parseKubeNode({ metadata: { name: "n3", annotations }, spec: { podCIDRs } });
}

const vxlanAttrs: LeaseAttrs = {
  publicIP: parseAddr("198.18.0.13"),
  backendType: "vxlan",
  backendData: { VNI: 1, VtepMAC: "12:c6:65:89:b4:e3" },
};

Deno.test("the annotation prefix is normalised as flannel does", () => {
  assert.equal(normalizeAnnotationPrefix("flannel.alpha.coreos.com"), AP);
  assert.equal(normalizeAnnotationPrefix("org.com/9"), "org.com/9-");
  assert.equal(normalizeAnnotationPrefix("org.com/"), "org.com/");
  assert.equal(normalizeAnnotationPrefix("my_org.example-1.io/net-"), "my_org.example-1.io/net-");
  for (const bad of ["a/b/c", "Flannel.io", "nodots", "org.com/a.b", "", ".com", "org..com"]) {
    assert.throws(() => normalizeAnnotationPrefix(bad), AnnotationPrefixError, bad);
  }
});

Deno.test("prefix normalisation: any input gives a valid, stable prefix or a typed error", () => {
  fc.assert(fc.property(fc.string({ maxLength: 30 }), (raw) => {
    let prefix: string;
    try {
      prefix = normalizeAnnotationPrefix(raw);
    } catch (error) {
      assert.ok(error instanceof AnnotationPrefixError);
      return;
    }
    assert.match(prefix, /^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/);
    assert.equal(normalizeAnnotationPrefix(prefix), prefix);
  }));
});

Deno.test("annotation names follow the normalised prefix (quirk 16)", () => {
  assert.deepEqual(Object.values(names), [
    `${AP}kube-subnet-manager`,
    `${AP}backend-type`,
    `${AP}backend-data`,
    `${AP}public-ip`,
    `${AP}backend-v6-data`,
    `${AP}public-ipv6`,
    `${AP}node-public-ip`,
    `${AP}node-public-ipv6`,
    `${AP}public-ip-overwrite`,
    `${AP}public-ipv6-overwrite`,
  ]);
  assert.equal(annotationNames("org.com/9").backendData, "org.com/9-backend-data");
});

Deno.test("a vxlan node publishes flannel's four annotations byte for byte", () => {
  const { patch, attrs } = publication(names, vxlanAttrs, {});
  assert.deepEqual(patch, {
    [`${AP}backend-data`]: '{"VNI":1,"VtepMAC":"12:c6:65:89:b4:e3"}',
    [`${AP}backend-type`]: "vxlan",
    [`${AP}kube-subnet-manager`]: "true",
    [`${AP}public-ip`]: "198.18.0.13",
  });
  assert.equal(
    JSON.stringify(annotationPatch(patch)),
    `{"metadata":{"annotations":{"${AP}backend-data":"{\\"VNI\\":1,\\"VtepMAC\\":\\"12:c6:65:89:b4:e3\\"}",` +
      `"${AP}backend-type":"vxlan","${AP}kube-subnet-manager":"true","${AP}public-ip":"198.18.0.13"}}}`,
  );
  assert.ok(attrsEqual(attrs, vxlanAttrs));
  // Published already: nothing to patch; only what differs is patched.
  assert.deepEqual(publication(names, vxlanAttrs, patch).patch, {});
  const moved = { ...vxlanAttrs, publicIP: parseAddr("198.18.0.99") };
  assert.deepEqual(publication(names, moved, patch).patch, { [`${AP}public-ip`]: "198.18.0.99" });
});

Deno.test("backend data is Go's JSON (HTML characters escaped); none is null", () => {
  const odd = { ...vxlanAttrs, backendData: { Note: "<a&b>" } };
  assert.equal(
    publication(names, odd, {}).patch[`${AP}backend-data`],
    '{"Note":"\\u003ca\\u0026b\\u003e"}',
  );
  const udp = publication(names, { publicIP: parseAddr("1.2.3.4") }, {}).patch;
  assert.equal(udp[`${AP}backend-type`], "");
  assert.equal(udp[`${AP}backend-data`], "null");
  assert.equal(udp[`${AP}public-ip`], "1.2.3.4");
});

Deno.test("public-ip-overwrite is published instead of the detected address", () => {
  const current = { [`${AP}public-ip-overwrite`]: "203.0.113.7" };
  const { patch, attrs } = publication(names, vxlanAttrs, current);
  assert.equal(patch[`${AP}public-ip`], "203.0.113.7");
  assert.equal(formatAddr(attrs.publicIP), "203.0.113.7");
  const bad = publication(names, vxlanAttrs, { [`${AP}public-ip-overwrite`]: "banana" });
  assert.equal(bad.patch[`${AP}public-ip`], "198.18.0.13");
  assert.deepEqual(bad.badOverwrites, [`${AP}public-ip-overwrite`]);
});

Deno.test("the IPv6 pair is written for vxlan with IPv6 data; IPv6-only vxlan skips IPv4", () => {
  const dual: LeaseAttrs = {
    ...vxlanAttrs,
    publicIPv6: parseAddr("fd00::13"),
    backendV6Data: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:01" },
  };
  const { patch } = publication(names, dual, {});
  assert.equal(patch[`${AP}backend-v6-data`], '{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:01"}');
  assert.equal(patch[`${AP}public-ipv6`], "fd00::13");
  assert.equal(patch[`${AP}public-ip`], "198.18.0.13");
  const v6only =
    publication(names, { ...dual, publicIP: parseAddr("0.0.0.0"), backendData: undefined }, {})
      .patch;
  assert.equal(v6only[`${AP}public-ip`], undefined);
  assert.equal(v6only[`${AP}backend-data`], undefined);
  assert.equal(v6only[`${AP}public-ipv6`], "fd00::13");
  // host-gw writes the IPv6 pair only with a public IPv6.
  const hostgw = { publicIP: parseAddr("1.2.3.4"), backendType: "host-gw" };
  assert.equal(publication(names, hostgw, {}).patch[`${AP}public-ipv6`], undefined);
  const hostgw6 = { ...hostgw, publicIPv6: parseAddr("fd00::4") };
  assert.equal(publication(names, hostgw6, {}).patch[`${AP}backend-v6-data`], "null");
});

Deno.test("a peer's lease is read from its node (spec §4.3)", () => {
  const { patch } = publication(names, vxlanAttrs, {});
  const lease = nodeLease(node(patch), names, v4Config);
  assert.equal(formatNet(lease.subnet!), "10.244.3.0/24");
  assert.ok(attrsEqual(lease.attrs, vxlanAttrs));
  const udp = nodeLease(
    node(publication(names, { publicIP: parseAddr("1.2.3.4") }, {}).patch),
    names,
    v4Config,
  );
  assert.equal(udp.attrs.backendType, undefined);
  assert.equal(udp.attrs.backendData, undefined);
});

Deno.test("a peer's lease carries its Node's creation time (the lease gate's order)", () => {
  const { patch } = publication(names, vxlanAttrs, {});
  const at = (creationTimestamp: unknown) =>
    nodeLease(
      parseKubeNode({
        metadata: { name: "n3", annotations: patch, creationTimestamp },
        spec: { podCIDRs: ["10.244.3.0/24"] },
      }),
      names,
      v4Config,
    ).created;
  assert.equal(at("2026-12-06T15:00:00Z"), Date.parse("2026-12-06T15:00:00Z"));
  assert.equal(at(new Date(5000)), 5000, "the client library's typed objects carry a Date");
  for (const odd of [undefined, null, "yesterday", 42]) assert.equal(at(odd), undefined);
});

Deno.test("nodes without usable lease data are unmanaged or malformed, never a crash", () => {
  const good = publication(names, vxlanAttrs, {}).patch;
  const cases: Array<[KubeNode, "unmanaged" | "malformed"]> = [
    [node({}), "unmanaged"],
    [node({ ...good, [`${AP}kube-subnet-manager`]: "yes" }), "unmanaged"],
    [node({ ...good, [`${AP}public-ip`]: "fd00::1" }), "malformed"],
    [node({ ...good, [`${AP}public-ip`]: "" }), "malformed"],
    [node({ ...good, [`${AP}backend-data`]: "{oops" }), "malformed"],
    [node(good, []), "malformed"],
    [node(good, ["fc00::/64"]), "malformed"],
    [node(good, ["10.244.3.0/24", "fc00::/64", "10.244.4.0/24"]), "malformed"],
    [node(good, ["10.244.3.0"]), "malformed"],
    [node(good, ["10.244.3.7/32"]), "malformed"],
  ];
  for (const [n, kind] of cases) {
    assert.throws(() => nodeLease(n, names, v4Config), (e) => {
      assert.ok(e instanceof NodeLeaseError, String(e));
      assert.equal(e.kind, kind, e.message);
      return true;
    });
  }
  // Dual stack needs both families.
  assert.throws(() => nodeLease(node(good), names, dualConfig), NodeLeaseError);
});

Deno.test("podCIDR is used when podCIDRs is empty; host bits are cleared", () => {
  const n = parseKubeNode({
    metadata: { name: "x" },
    spec: { podCIDR: "10.244.7.9/24", podCIDRs: [] },
  });
  assert.equal(formatNet(podCidrsOf(n).ipv4!), "10.244.7.0/24");
  const dual = parseKubeNode({
    metadata: { name: "x" },
    spec: { podCIDRs: ["fc00:0:0:7::/64", "10.244.7.0/24"] },
  });
  assert.equal(formatNet(podCidrsOf(dual).ipv6!), "fc00:0:0:7::/64");
  assert.equal(formatNet(podCidrsOf(dual).ipv4!), "10.244.7.0/24");
});

Deno.test("publishing then reading back yields the same lease (property)", () => {
  const mac = fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 6, maxLength: 6 })
    .map((b) => b.map((x) => x.toString(16).padStart(2, "0")).join(":"));
  fc.assert(fc.property(
    fc.nat(0xffffffff),
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 1, max: 0xffffff }),
    mac,
    fc.constantFrom("vxlan", "host-gw", "wireguard", undefined),
    (ip, third, vni, vtepMac, backendType) => {
      const attrs: LeaseAttrs = {
        publicIP: { family: 4, value: BigInt(ip) },
        ...(backendType && { backendType }),
        ...(backendType !== "host-gw" && { backendData: { VNI: vni, VtepMAC: vtepMac } }),
      };
      const { patch } = publication(names, attrs, {});
      const lease = nodeLease(node({ ...patch }, [`10.244.${third}.0/24`]), names, v4Config);
      assert.ok(attrsEqual(lease.attrs, attrs), JSON.stringify(patch));
      assert.equal(formatNet(lease.subnet!), formatNet(parseNet(`10.244.${third}.0/24`)));
    },
  ));
});

Deno.test("any JSON as a node gives a KubeNode or a NodeShapeError", () => {
  fc.assert(fc.property(fc.jsonValue(), (value) => {
    try {
      const parsed = parseKubeNode(value);
      assert.equal(typeof parsed.name, "string");
      try {
        podCidrsOf(parsed);
      } catch (error) {
        assert.ok(error instanceof NodeShapeError);
      }
    } catch (error) {
      assert.ok(error instanceof NodeShapeError, String(error));
    }
  }));
  assert.throws(
    () => parseKubeNode({ metadata: { name: "x", annotations: { a: 1 } } }),
    NodeShapeError,
  );
  assert.throws(() => parseKubeNode(null), NodeShapeError);
});

Deno.test("the NetworkUnavailable patch is flannel's, member for member", () => {
  const body = JSON.stringify(networkUpPatch(new Date("2025-01-02T03:04:05.678Z")));
  assert.equal(
    body,
    '{"status":{"conditions":[{"type":"NetworkUnavailable","status":"False",' +
      '"lastHeartbeatTime":"2025-01-02T03:04:05Z","lastTransitionTime":"2025-01-02T03:04:05Z",' +
      '"reason":"FlannelIsUp","message":"Flannel is running on this node"}]}}',
  );
});
