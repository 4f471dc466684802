/**
 * A unit written for flanneld (`Type=notify`) keeps working: with NOTIFY_SOCKET set, the daemon
 * sends READY=1 once its backend runs, after subnet.env is written.
 */
import assert from "node:assert/strict";
import { defaultNetConf, startLab } from "../../lab/cluster.ts";
import { rootTest, RUN_PREFIX } from "../helpers/netns.ts";
import { notifyListener } from "../helpers/notify_socket.ts";

rootTest("e2e: with NOTIFY_SOCKET the daemon sends READY=1 after writing subnet.env", async () => {
  const dir = await Deno.makeTempDir();
  const socketPath = `${dir}/notify`;
  const socket = notifyListener(socketPath);
  const lab = await startLab({
    prefix: RUN_PREFIX,
    nodes: 1,
    netConf: defaultNetConf("vxlan"),
    env: { NOTIFY_SOCKET: socketPath },
  });
  try {
    assert.equal(await socket.receive(30_000), "READY=1");
    assert.match(await Deno.readTextFile(lab.nodes[0].subnetFile), /^FLANNEL_SUBNET=/m);
    assert.equal(await socket.receive(500), undefined, "READY=1 is sent once");
  } finally {
    await lab.stop();
    socket.close();
    await Deno.remove(dir, { recursive: true });
  }
});
