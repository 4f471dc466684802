import assert from "node:assert/strict";
import { CniError, DelegateError } from "../../cni/errors.ts";
import {
  checkVersion,
  formatError,
  formatVersionResult,
  parseRequest,
  versionAtLeast,
} from "../../cni/protocol.ts";
import { decodeConfig, DEFAULT_DATA_DIR, parseNetConf } from "../../cni/netconf.ts";
import { DEFAULTS } from "../../config/flags.ts";

const ADD_ENV = {
  CNI_COMMAND: "ADD",
  CNI_CONTAINERID: "a1b2c3",
  CNI_NETNS: "/run/netns/x",
  CNI_IFNAME: "eth0",
  CNI_PATH: "/usr/lib/cni",
};

function cniError(fn: () => unknown): CniError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof CniError, `expected CniError, got ${err}`);
    return err;
  }
  assert.fail("expected a CniError");
}

Deno.test("protocol: a complete ADD environment is read as is", () => {
  assert.deepEqual(parseRequest({ ...ADD_ENV, CNI_ARGS: "K8S_POD_NAME=x", OTHER: "y" }), {
    command: "ADD",
    containerId: "a1b2c3",
    netns: "/run/netns/x",
    ifName: "eth0",
    args: "K8S_POD_NAME=x",
    path: "/usr/lib/cni",
  });
});

Deno.test("protocol: missing variables are listed (code 4), per command", () => {
  const err = cniError(() => parseRequest({ CNI_COMMAND: "ADD", CNI_CONTAINERID: "c" }));
  assert.equal(err.code, 4);
  assert.equal(err.message, "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing");
  assert.equal(
    cniError(() => parseRequest({})).message,
    "required env variables [CNI_COMMAND] missing",
  );
  // DEL does not need a namespace; STATUS and VERSION need nothing else.
  const { CNI_NETNS: _, ...withoutNetns } = ADD_ENV;
  assert.equal(parseRequest({ ...withoutNetns, CNI_COMMAND: "DEL" }).netns, "");
  assert.equal(parseRequest({ CNI_COMMAND: "STATUS" }).command, "STATUS");
  assert.equal(parseRequest({ CNI_COMMAND: "VERSION" }).command, "VERSION");
  assert.equal(
    cniError(() => parseRequest({ ...ADD_ENV, CNI_COMMAND: "CHECK", CNI_NETNS: "" }))
      .message,
    "required env variables [CNI_NETNS] missing",
  );
});

Deno.test("protocol: unknown commands are code 4", () => {
  for (const command of ["GC", "add", "GET", " ADD"]) {
    const err = cniError(() => parseRequest({ ...ADD_ENV, CNI_COMMAND: command }));
    assert.equal(err.code, 4);
    assert.equal(err.message, `unknown CNI_COMMAND: ${command}`);
  }
});

Deno.test("protocol: container IDs that could leave the data directory are refused", () => {
  for (const id of ["../etc", "a/b", ".hidden", "-x", "a b", "a\nb", "/abs"]) {
    const err = cniError(() => parseRequest({ ...ADD_ENV, CNI_CONTAINERID: id }));
    assert.equal(err.code, 4, id);
    assert.match(err.message, /CNI_CONTAINERID/, id);
  }
  assert.equal(parseRequest({ ...ADD_ENV, CNI_CONTAINERID: "A.b_c-9" }).containerId, "A.b_c-9");
});

Deno.test("protocol: interface names follow the kernel's rules", () => {
  for (const name of [".", "..", "a/b", "eth:0", "eth 0", "sixteen-chars-xx", "äääääääää"]) {
    assert.equal(cniError(() => parseRequest({ ...ADD_ENV, CNI_IFNAME: name })).code, 4, name);
  }
  assert.equal(
    parseRequest({ ...ADD_ENV, CNI_IFNAME: "fifteen-chars-x" }).ifName,
    "fifteen-chars-x",
  );
});

Deno.test("protocol: versions", () => {
  // libcni's full list, as flannel's plugin accepts; "" is the implied 0.1.0.
  for (const v of ["", "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    checkVersion(v);
  }
  for (const v of ["0.0.1", "0.5.0", "1.2.0", "2.0.0", "1.0", "latest"]) {
    const err = cniError(() => checkVersion(v));
    assert.equal(err.code, 1, v);
    assert.equal(err.message, "incompatible CNI versions");
    assert.match(
      err.details,
      /plugin supports \["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"\]/,
    );
  }
  assert.ok(versionAtLeast("0.4.0", "0.4.0"));
  assert.ok(versionAtLeast("1.0.0", "0.4.0"));
  assert.ok(versionAtLeast("0.10.0", "0.4.0"));
  assert.ok(!versionAtLeast("0.3.1", "0.4.0"));
  assert.ok(!versionAtLeast("1.0.0", "1.1.0"));
});

Deno.test("protocol: error and version results", () => {
  assert.equal(
    formatError(new CniError(7, "bad", "very bad"), "1.0.0"),
    '{"cniVersion":"1.0.0","code":7,"msg":"bad","details":"very bad"}\n',
  );
  assert.equal(
    formatError(new CniError(4, "x"), "0.3.1"),
    '{"cniVersion":"0.3.1","code":4,"msg":"x"}\n',
  );
  const raw = '{\n    "code": 11,\n    "msg": "from the delegate"\n}';
  assert.equal(formatError(new DelegateError(raw, 11, "from the delegate"), "1.0.0"), raw);
  const all = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
  for (const requested of ["0.2.0", "0.4.0"]) {
    assert.deepEqual(JSON.parse(formatVersionResult(requested)), {
      cniVersion: requested,
      supportedVersions: all,
    });
  }
  for (const requested of [undefined, "0.5.0", 5, "junk"]) {
    assert.deepEqual(JSON.parse(formatVersionResult(requested)), {
      cniVersion: "1.1.0",
      supportedVersions: all,
    });
  }
});

Deno.test("netconf: decoding failures are code 6", () => {
  const bytes = (text: string) => new TextEncoder().encode(text);
  for (
    const input of [
      bytes(""),
      bytes("{"),
      bytes("[]"),
      bytes("null"),
      bytes('"x"'),
      new Uint8Array([0xff, 0xfe]),
    ]
  ) {
    assert.equal(cniError(() => decodeConfig(input)).code, 6);
  }
  assert.equal(cniError(() => parseNetConf({ cniVersion: 1, name: "x" })).code, 6);
});

Deno.test("netconf: version is checked before the rest (code 1), then the schema (code 7)", () => {
  assert.equal(cniError(() => parseNetConf({ cniVersion: "9.9.9", name: 5 })).code, 1);
  // No cniVersion is the implied 0.1.0, accepted and kept as "none" for the delegate.
  assert.equal(cniError(() => parseNetConf({ name: 5 })).code, 7);
  for (const cniVersion of [undefined, null, ""]) {
    assert.equal(parseNetConf({ cniVersion, name: "n" }).cniVersion, undefined);
  }
  const cases: Array<[Record<string, unknown>, string]> = [
    [{}, "name: missing network name"],
    [{ name: ["cbr0"] }, "name: must be a string"],
    [{ name: "" }, "name: invalid characters found in network name"],
    [{ name: "a/b" }, "name: invalid characters found in network name"],
    [{ name: "n", subnetFile: "relative/subnet.env" }, "subnetFile: must be an absolute path"],
    [{ name: "n", dataDir: 7 }, "dataDir: Invalid input: expected string, received number"],
    [{ name: "n", delegate: [] }, "delegate: must be a JSON object"],
    [{ name: "n", ipam: "host-local" }, "ipam: must be a JSON object"],
    [{ name: "n", runtimeConfig: true }, "runtimeConfig: must be a JSON object"],
  ];
  for (const [fields, message] of cases) {
    const err = cniError(() => parseNetConf({ cniVersion: "1.0.0", ...fields }));
    assert.equal(err.code, 7, message);
    assert.equal(err.message, message);
  }
});

Deno.test("netconf: defaults fill absent and null members", () => {
  const conf = parseNetConf({
    cniVersion: "1.0.0",
    name: "cbr0",
    type: "flannel",
    subnetFile: null,
    delegate: null,
    extra: "ignored",
  });
  assert.deepEqual(conf, {
    cniVersion: "1.0.0",
    name: "cbr0",
    subnetFile: DEFAULTS.subnetFile,
    dataDir: DEFAULT_DATA_DIR,
    delegate: {},
    ipam: {},
  });
  assert.equal(DEFAULTS.subnetFile, "/run/flannel/subnet.env");
  assert.equal(DEFAULT_DATA_DIR, "/var/lib/cni/flannel");
});
