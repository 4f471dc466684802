/**
 * A unit written for flanneld (`Type=notify`) keeps working: with NOTIFY_SOCKET set, the daemon
 * sends READY=1 once its backend runs, after subnet.env is written.
 *
 * The order is proven, not inferred from timing: the listener's queue is filled before the daemon
 * starts, so the daemon's (blocking) `sendto` of READY=1 cannot complete until the test drains the
 * queue, and a daemon stuck in that call cannot write anything. The test drains only after it has
 * seen a complete subnet.env; had READY=1 come first, the file would never appear.
 */
import assert from "node:assert/strict";
import { defaultNetConf, startLab } from "../../lab/cluster.ts";
import { waitFor } from "../helpers/leases.ts";
import { rootTest, RUN_PREFIX } from "../helpers/netns.ts";
import { notifyListener } from "../helpers/notify_socket.ts";

const FILLER = "FILLER=1";

rootTest("e2e: with NOTIFY_SOCKET the daemon sends READY=1 after writing subnet.env", async () => {
  const dir = await Deno.makeTempDir();
  const socketPath = `${dir}/notify`;
  const socket = notifyListener(socketPath);
  const queued = socket.fill(FILLER);
  assert.ok(queued > 0);
  const lab = await startLab({
    prefix: RUN_PREFIX,
    nodes: 1,
    netConf: defaultNetConf("vxlan"),
    env: { NOTIFY_SOCKET: socketPath },
  });
  try {
    const subnetFile = lab.nodes[0].subnetFile;
    await waitFor(
      `${subnetFile} written`,
      async () => /^FLANNEL_SUBNET=/m.test(await Deno.readTextFile(subnetFile).catch(() => "")),
      30_000,
    );
    const messages: string[] = [];
    for (let i = 0; i <= queued; i++) {
      const message = await socket.receive(30_000);
      if (message === undefined) break;
      if (message !== FILLER) messages.push(message);
      if (message === "READY=1") break;
    }
    assert.deepEqual(messages, ["READY=1"]);
    assert.equal(await socket.receive(500), undefined, "READY=1 is sent once");
  } finally {
    await lab.stop();
    socket.close();
    await Deno.remove(dir, { recursive: true });
  }
});
