import assert from "node:assert/strict";
import fc from "fast-check";
import { parseNetConfig } from "../../config/netconf.ts";
import type { FamilyConfig } from "../../config/network_config.ts";
import {
  countFreeSubnets,
  fitsConfig,
  isFree,
  pickFreeSubnet,
  randomBelow,
} from "../../subnet/allocate.ts";
import {
  enumerateSubnets,
  formatNet,
  type IPNet,
  makeNet,
  netOverlaps,
  parseNet,
} from "../../ip/mod.ts";

function configOf(json: string) {
  return parseNetConfig(json, "etcd").config;
}

function ipv4Of(json: string): FamilyConfig {
  return configOf(json).ipv4!;
}

/** The model: every candidate in order, minus those overlapping an occupied network. */
function bruteForceFree(family: FamilyConfig, occupied: IPNet[]): IPNet[] {
  return [...enumerateSubnets(family.subnetMin, family.subnetMax, family.subnetLen)]
    .filter((candidate) => !occupied.some((o) => netOverlaps(candidate, o)));
}

const smallFamily = fc.record({
  subnetLen: fc.integer({ min: 22, max: 28 }),
  minOffset: fc.nat(6),
  maxOffset: fc.nat(6),
}).map(({ subnetLen, minOffset, maxOffset }) => {
  const base = ipv4Of(`{"Network":"10.7.0.0/20","SubnetLen":${subnetLen}}`);
  const step = 1n << BigInt(32 - subnetLen);
  return {
    ...base,
    subnetMin: { family: 4 as const, value: base.subnetMin.value + BigInt(minOffset) * step },
    subnetMax: { family: 4 as const, value: base.subnetMax.value - BigInt(maxOffset) * step },
  };
});

const occupiedNets = fc.array(
  fc.tuple(fc.nat(0xfff), fc.integer({ min: 18, max: 32 }))
    .map(([offset, prefix]) => makeNet({ family: 4, value: 0x0a070000n + BigInt(offset) }, prefix)),
  { maxLength: 12 },
);

Deno.test("every free candidate is reachable, in order, and nothing else (property)", () => {
  fc.assert(
    fc.property(smallFamily, occupiedNets, (family, occupied) => {
      const expected = bruteForceFree(family, occupied).map(formatNet);
      assert.equal(countFreeSubnets(family, occupied), BigInt(expected.length));
      // Index i of the uniform draw maps to the i-th free candidate: a bijection, so a uniform
      // draw gives a uniform subnet.
      const picked = expected.map((_, i) =>
        formatNet(pickFreeSubnet(family, occupied, () => BigInt(i))!)
      );
      assert.deepEqual(picked, expected);
      if (expected.length === 0) assert.equal(pickFreeSubnet(family, occupied), undefined);
      else {
        const random = pickFreeSubnet(family, occupied)!;
        assert.ok(expected.includes(formatNet(random)));
        assert.ok(isFree(random, occupied));
      }
    }),
    { numRuns: 500 },
  );
});

Deno.test("allocation covers the whole range, not the first 100 free candidates (quirk 30)", () => {
  const family = ipv4Of('{"Network":"10.0.0.0/8","SubnetLen":24}'); // 65 534 candidates
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const subnet = pickFreeSubnet(family, [])!;
    seen.add(Number((subnet.base >> 8n) & 0xffffn));
  }
  assert.ok(seen.size > 190, `only ${seen.size} distinct subnets in 200 draws`);
  assert.ok([...seen].some((index) => index > 1000), "draws stay at the bottom of the range");
});

Deno.test("a range ending at 255.255.255.255 does not wrap around (quirk 30)", () => {
  const family = ipv4Of('{"Network":"255.255.255.0/24","SubnetLen":28}');
  const all = bruteForceFree(family, []);
  assert.equal(formatNet(all.at(-1)!), "255.255.255.240/28");
  const occupied = all.slice(1);
  assert.equal(formatNet(pickFreeSubnet(family, occupied)!), formatNet(all[0]));
  assert.equal(pickFreeSubnet(family, all), undefined);
});

Deno.test("huge IPv6 ranges are sampled without enumerating them", () => {
  const config = configOf(
    '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/16","IPv6SubnetLen":64}',
  );
  const family = config.ipv6!;
  const occupied = [parseNet("fc00:1::/32"), parseNet("fc00:ffff:ffff:fffe::/64")];
  const start = performance.now();
  for (let i = 0; i < 1000; i++) {
    const subnet = pickFreeSubnet(family, occupied)!;
    assert.equal(subnet.prefix, 64);
    assert.ok(isFree(subnet, occupied));
  }
  assert.ok(performance.now() - start < 2000);
  assert.equal(countFreeSubnets(family, occupied), (1n << 48n) - 1n - (1n << 32n) - 1n);
});

Deno.test("a full network yields no subnet", () => {
  const family = ipv4Of('{"Network":"10.9.0.0/22","SubnetLen":24}');
  assert.equal(countFreeSubnets(family, [parseNet("10.9.0.0/22")]), 0n);
  const taken = ["10.9.1.0/24", "10.9.2.0/24", "10.9.3.0/24"].map(parseNet);
  assert.equal(pickFreeSubnet(family, taken), undefined);
  assert.equal(formatNet(pickFreeSubnet(family, taken.slice(1))!), "10.9.1.0/24");
});

Deno.test("randomBelow stays in range and covers it", () => {
  const counts = new Array(7).fill(0);
  for (let i = 0; i < 7000; i++) counts[Number(randomBelow(7n))]++;
  for (const count of counts) assert.ok(count > 800 && count < 1200, String(counts));
  const big = (1n << 100n) + 3n;
  for (let i = 0; i < 100; i++) {
    const value = randomBelow(big);
    assert.ok(value >= 0n && value < big);
  }
  assert.equal(randomBelow(1n), 0n);
});

Deno.test("fitsConfig checks length, range and families (spec §3.4 step 2)", () => {
  const v4 = configOf('{"Network":"10.5.0.0/16"}');
  assert.ok(fitsConfig(v4, { subnet: parseNet("10.5.34.0/24") }));
  assert.ok(fitsConfig(v4, { subnet: parseNet("10.5.255.0/24") }));
  assert.ok(!fitsConfig(v4, { subnet: parseNet("10.5.0.0/24") })); // below SubnetMin
  assert.ok(!fitsConfig(v4, { subnet: parseNet("10.5.34.0/25") }));
  assert.ok(!fitsConfig(v4, { subnet: parseNet("10.6.34.0/24") }));
  assert.ok(
    !fitsConfig(v4, { subnet: parseNet("10.5.34.0/24"), ipv6Subnet: parseNet("fc00::/64") }),
  );
  assert.ok(!fitsConfig(v4, { ipv6Subnet: parseNet("fc00::/64") }));
  const dual = configOf(
    '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":64}',
  );
  assert.ok(
    fitsConfig(dual, {
      subnet: parseNet("10.5.34.0/24"),
      ipv6Subnet: parseNet("fc00:0:0:22::/64"),
    }),
  );
  assert.ok(!fitsConfig(dual, { subnet: parseNet("10.5.34.0/24") }));
  assert.ok(
    !fitsConfig(dual, { subnet: parseNet("10.5.34.0/24"), ipv6Subnet: parseNet("fc00::/64") }),
  );
});
