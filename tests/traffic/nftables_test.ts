import assert from "node:assert/strict";
import { rulesFor, SPEC_NFT_POSTRTG_V4 } from "./family_rules.ts";
import fc from "fast-check";
import { parseNet } from "../../ip/mod.ts";
import {
  decodeNftRule,
  decodeNftTable,
  NftDecodeError,
  nftTableInSync,
  renderNftRemoval,
  renderNftRule,
  renderNftTransaction,
} from "../../traffic/nftables.ts";
import { EMPTY_RULE_SET } from "../../traffic/rules.ts";

const v4 = rulesFor("10.244.0.0/16", "10.244.1.0/24", true);
const v6 = rulesFor("fd00:10:244::/56", "fd00:10:244:1::/64", false);

Deno.test("render: §7.2 chains with the iptables semantics (quirk 24 fixed), IPv4", () => {
  assert.deepEqual(v4.masquerade?.map((r) => renderNftRule(4, r)), SPEC_NFT_POSTRTG_V4);
  assert.deepEqual(v4.forward?.map((r) => renderNftRule(4, r)), [
    "ip saddr 10.244.0.0/16 accept",
    "ip daddr 10.244.0.0/16 accept",
  ]);
});

Deno.test("render: IPv6 uses ip6 and ff00::/8; no fully-random when not wanted", () => {
  assert.deepEqual(v6.masquerade?.slice(3).map((r) => renderNftRule(6, r)), [
    "ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244:1::/64 return",
    "ip6 saddr fd00:10:244::/56 ip6 daddr != ff00::/8 masquerade",
    "ip6 saddr != fd00:10:244::/56 ip6 daddr fd00:10:244::/56 masquerade",
  ]);
});

Deno.test("render: one transaction replaces both tables, comments and priorities per §7.2", () => {
  const text = renderNftTransaction({ ipv4: v4, ipv6: { family: 6 } });
  assert.equal(
    text,
    [
      "add table ip flannel-ipv4",
      "delete table ip flannel-ipv4",
      "table ip flannel-ipv4 {",
      '\tcomment "rules for flannel-ipv4"',
      "\tchain forward {",
      '\t\tcomment "chain to accept flannel traffic"',
      "\t\ttype filter hook forward priority filter; policy accept;",
      "\t\tip saddr 10.244.0.0/16 accept",
      "\t\tip daddr 10.244.0.0/16 accept",
      "\t}",
      "\tchain postrtg {",
      '\t\tcomment "chain to manage traffic masquerading by flannel"',
      "\t\ttype nat hook postrouting priority srcnat; policy accept;",
      ...v4.masquerade!.map((r) => `\t\t${renderNftRule(4, r)}`),
      "\t}",
      "}",
      // the IPv6 table always exists (spec §7.2), empty when IPv6 is off
      "add table ip6 flannel-ipv6",
      "delete table ip6 flannel-ipv6",
      "table ip6 flannel-ipv6 {",
      '\tcomment "rules for flannel-ipv6"',
      "}",
      "",
    ].join("\n"),
  );
  assert.equal(
    renderNftRemoval(),
    "add table ip flannel-ipv4\ndelete table ip flannel-ipv4\n" +
      "add table ip6 flannel-ipv6\ndelete table ip6 flannel-ipv6\n",
  );
});

// JSON in the shape `nft -j list table` (nftables 1.0.6) prints.
const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });
const prefix = (addr: string, len: number) => ({ prefix: { addr, len } });
const match = (op: string, left: unknown, right: unknown) => ({ match: { op, left, right } });
const markMatch = match("==", { "&": [{ meta: { key: "mark" } }, 16384] }, 16384);

type ChainJson = { prio: number; hook: string; type: string; expr: unknown[][] };

function listing(chains: Record<string, ChainJson>) {
  const items: unknown[] = [
    { metainfo: { version: "1.0.6", json_schema_version: 1 } },
    { table: { family: "ip", name: "flannel-ipv4", handle: 5 } },
  ];
  let handle = 1;
  for (const [name, c] of Object.entries(chains)) {
    items.push({
      chain: {
        family: "ip",
        table: "flannel-ipv4",
        name,
        handle: handle++,
        type: c.type,
        hook: c.hook,
        prio: c.prio,
        policy: "accept",
      },
    });
  }
  for (const [name, c] of Object.entries(chains)) {
    for (const expr of c.expr) {
      items.push({
        rule: { family: "ip", table: "flannel-ipv4", chain: name, handle: handle++, expr },
      });
    }
  }
  return JSON.stringify({ nftables: items });
}

const C = prefix("10.244.0.0", 16);
const S = prefix("10.244.1.0", 24);
const masqExpr = (flags: unknown) => ({ masquerade: flags });
const goodMasq = [
  [markMatch, { return: null }],
  [match("==", payload("ip", "saddr"), S), match("==", payload("ip", "daddr"), C), {
    return: null,
  }],
  [match("==", payload("ip", "saddr"), C), match("==", payload("ip", "daddr"), S), {
    return: null,
  }],
  [match("!=", payload("ip", "saddr"), C), match("==", payload("ip", "daddr"), S), {
    return: null,
  }],
  [
    match("==", payload("ip", "saddr"), C),
    match("!=", payload("ip", "daddr"), prefix("224.0.0.0", 4)),
    masqExpr({ flags: "fully-random" }),
  ],
  [
    match("!=", payload("ip", "saddr"), C),
    match("==", payload("ip", "daddr"), C),
    masqExpr({ flags: ["fully-random"] }),
  ],
];
const goodForward = [
  [match("==", payload("ip", "saddr"), C), { accept: null }],
  [match("==", payload("ip", "daddr"), C), { accept: null }],
];
const postrtg = (expr: unknown[][]) => ({ type: "nat", hook: "postrouting", prio: 100, expr });
const forward = (expr: unknown[][]) => ({ type: "filter", hook: "forward", prio: 0, expr });

Deno.test("decode: the kernel's JSON reads back as exactly the wanted rules", () => {
  const state = decodeNftTable(
    listing({ forward: forward(goodForward), postrtg: postrtg(goodMasq) }),
    4,
  );
  assert.deepEqual(state.get("postrtg")?.rules, v4.masquerade);
  assert.deepEqual(state.get("forward")?.rules, v4.forward);
  assert.equal(nftTableInSync(v4, state), true);
});

Deno.test("decode: any drift is detected (missing, reordered, foreign statement, wrong hook, extra chain)", () => {
  const drifted: Record<string, ChainJson>[] = [
    { forward: forward(goodForward), postrtg: postrtg(goodMasq.slice(1)) },
    { forward: forward([...goodForward].reverse()), postrtg: postrtg(goodMasq) },
    {
      forward: forward(goodForward),
      postrtg: postrtg([[{ counter: null }, ...goodMasq[0]], ...goodMasq.slice(1)]),
    },
    { forward: { ...forward(goodForward), prio: 10 }, postrtg: postrtg(goodMasq) },
    { forward: forward(goodForward), postrtg: postrtg(goodMasq), other: forward([]) },
    { postrtg: postrtg(goodMasq) },
    {
      forward: forward(goodForward),
      postrtg: postrtg([...goodMasq.slice(0, 5), [...goodMasq[5].slice(0, 2), masqExpr(null)]]),
    },
  ];
  for (const chains of drifted) {
    assert.equal(nftTableInSync(v4, decodeNftTable(listing(chains), 4)), false);
  }
  assert.equal(nftTableInSync(v4, undefined), false);
  assert.equal(nftTableInSync({ family: 4 }, decodeNftTable(listing({}), 4)), true);
});

Deno.test("decode: a /32 host address prints without prefix and still decodes", () => {
  const rule = decodeNftRule(4, [match("==", payload("ip", "saddr"), "10.0.0.1"), {
    accept: null,
  }]);
  assert.deepEqual(rule, {
    source: { net: parseNet("10.0.0.1/32"), negated: false },
    verdict: "accept",
  });
  assert.equal(
    decodeNftRule(4, [match("==", payload("ip6", "saddr"), "10.0.0.1"), { accept: null }]),
    undefined,
  );
  assert.equal(decodeNftRule(4, [{ accept: null }, { accept: null }]), undefined);
  assert.equal(decodeNftRule(4, []), undefined);
});

Deno.test("decode: garbage gives NftDecodeError or unknown rules, never a crash", () => {
  assert.throws(() => decodeNftTable("not json", 4), NftDecodeError);
  assert.throws(() => decodeNftTable('{"nftables": 3}', 4), NftDecodeError);
  fc.assert(fc.property(fc.jsonValue(), (value) => {
    try {
      decodeNftTable(JSON.stringify({ nftables: [value, { rule: value }, { chain: value }] }), 4);
    } catch (error) {
      assert.ok(error instanceof NftDecodeError);
    }
    assert.equal(decodeNftRule(4, [value]), undefined);
  }));
});

Deno.test("render: the empty rule set keeps two empty tables", () => {
  const text = renderNftTransaction(EMPTY_RULE_SET);
  assert.ok(!text.includes("chain"));
  assert.equal(text.match(/^table /gm)?.length, 2);
});
