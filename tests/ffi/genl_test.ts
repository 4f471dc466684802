/**
 * Generic netlink: the `genlmsghdr` encoding (hand-computed bytes from linux/genetlink.h) and
 * family resolution against the real kernel, cross-checked with iproute2's `genl ctrl get`.
 */
import assert from "node:assert/strict";
import {
  decodeMessages,
  encodeMessage,
  NetlinkDecodeError,
  type NetlinkMessage,
  strAttr,
} from "../../ffi/netlink/codec.ts";
import { NETLINK_GENERIC } from "../../ffi/netlink/constants.ts";
import {
  CTRL_ATTR_FAMILY_NAME,
  CTRL_CMD_GETFAMILY,
  resolveFamily,
} from "../../ffi/netlink/genl.ts";
import { withNetlink } from "../../ffi/netlink/socket.ts";
import { nsExec, rootTest, withNetns } from "../helpers/netns.ts";

const GETFAMILY_NLCTRL: NetlinkMessage = {
  header: { type: 0x10, flags: 0x05, seq: 1, pid: 0 },
  body: {
    kind: "genl",
    msg: { cmd: CTRL_CMD_GETFAMILY, version: 1 },
    attrs: [strAttr(CTRL_ATTR_FAMILY_NAME, "nlctrl")],
  },
};

// deno-fmt-ignore
const GETFAMILY_NLCTRL_BYTES = Uint8Array.from([
  0x20, 0, 0, 0, 0x10, 0, 0x05, 0, 1, 0, 0, 0, 0, 0, 0, 0, // nlmsghdr: 32 bytes, GENL_ID_CTRL
  0x03, 0x01, 0, 0, // genlmsghdr: CTRL_CMD_GETFAMILY, version 1, reserved
  0x0b, 0, 0x02, 0, 0x6e, 0x6c, 0x63, 0x74, 0x72, 0x6c, 0, 0, // CTRL_ATTR_FAMILY_NAME "nlctrl\0" + pad
]);

Deno.test("genl codec: genlmsghdr bytes, round trip, protocol-strict kinds", () => {
  assert.deepStrictEqual(encodeMessage(GETFAMILY_NLCTRL, NETLINK_GENERIC), GETFAMILY_NLCTRL_BYTES);
  const [decoded] = decodeMessages(GETFAMILY_NLCTRL_BYTES, NETLINK_GENERIC);
  assert.equal(decoded.body.kind, "genl");
  if (decoded.body.kind !== "genl") return;
  assert.deepStrictEqual(decoded.body.msg, { cmd: 3, version: 1 });
  assert.deepStrictEqual([...decoded.body.attrs[0].data], [
    ...new TextEncoder().encode("nlctrl\0"),
  ]);
  // Type 16 is RTM_NEWLINK on rtnetlink: a genl body there is a programming error.
  assert.throws(() => encodeMessage(GETFAMILY_NLCTRL), RangeError);
  assert.equal(decodeMessages(GETFAMILY_NLCTRL_BYTES)[0].body.kind, "link");
  const truncated = Uint8Array.from([
    0x13,
    0,
    0,
    0,
    0x10,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    3,
    1,
    0,
  ]);
  assert.throws(() => decodeMessages(truncated, NETLINK_GENERIC), NetlinkDecodeError);
});

/** What `genl ctrl get name <family>` prints: id, version, max attribs (hex). */
async function genlTool(ns: string, name: string) {
  const { stdout } = await nsExec(ns, ["genl", "ctrl", "get", "name", name]);
  const m = stdout.match(/ID: (0x[0-9a-f]+)\s+Version: (0x[0-9a-f]+).*max attribs: (\d+)/);
  assert.ok(m, stdout);
  return { id: Number(m[1]), version: Number(m[2]), maxAttr: Number(m[3]) };
}

rootTest(
  "genl: families resolve by name as iproute2's genl sees them",
  () =>
    withNetns(async (ns) => {
      const expected = {
        nlctrl: await genlTool(ns, "nlctrl"),
        ethtool: await genlTool(ns, "ethtool"),
      };
      await withNetlink({ netns: ns, protocol: NETLINK_GENERIC }, (h) => {
        assert.equal(h.protocol, NETLINK_GENERIC);
        for (const [name, want] of Object.entries(expected)) {
          assert.deepStrictEqual(resolveFamily(h, name), { name, ...want });
        }
        assert.equal(resolveFamily(h, "nlctrl")?.id, 16, "GENL_ID_CTRL");
        assert.equal(resolveFamily(h, "tt-nosuchfam"), undefined);
      });
      await withNetlink({ netns: ns }, (h) => {
        assert.throws(
          () => resolveFamily(h, "nlctrl"),
          TypeError,
          "an rtnetlink handle is refused",
        );
      });
    }),
);
