import assert from "node:assert/strict";
import { notifySystemd } from "../systemd_notify.ts";
import { notifyListener } from "./helpers/notify_socket.ts";

Deno.test("systemd notify: READY=1 reaches a socket on a path", async () => {
  const dir = await Deno.makeTempDir();
  const socket = notifyListener(`${dir}/notify`);
  try {
    assert.equal(notifySystemd("READY=1", `${dir}/notify`), true);
    assert.equal(await socket.receive(2000), "READY=1");
  } finally {
    socket.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("systemd notify: an @name is in the abstract namespace", async () => {
  const name = `@tartan-test-${crypto.randomUUID()}`;
  const socket = notifyListener(name);
  try {
    assert.equal(notifySystemd("READY=1", name), true);
    assert.equal(await socket.receive(2000), "READY=1");
  } finally {
    socket.close();
  }
});

Deno.test("systemd notify: no socket means nothing to do; a bad one is a clear error", () => {
  assert.equal(notifySystemd("READY=1", undefined), false);
  assert.equal(notifySystemd("READY=1", ""), false);
  assert.throws(() => notifySystemd("READY=1", "@"), RangeError);
  assert.throws(() => notifySystemd("READY=1", `/${"x".repeat(120)}`), RangeError);
  assert.throws(
    () => notifySystemd("READY=1", "/nonexistent/tartan-notify"),
    { name: "SyscallError", code: "ENOENT" },
  );
});
