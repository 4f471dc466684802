/**
 * Run by icmp_test.ts without CAP_NET_RAW: open an echo socket of the family in the first
 * argument (4 or 6), ping the loopback address once, and print what happened as JSON
 * (`{"kind", "answered"}` or `{"error"}`).
 */
import { parseAddr } from "../../ip/mod.ts";
import { openIcmpSocket } from "../../probe/icmp_socket.ts";
import { smallProbeBytes } from "../../probe/prober.ts";

const family = Deno.args[0] === "6" ? 6 : 4;
try {
  const socket = openIcmpSocket({ family });
  try {
    const sent = socket.send(
      parseAddr(family === 4 ? "127.0.0.1" : "::1"),
      7,
      smallProbeBytes(family),
    );
    let answered = false;
    for (let i = 0; i < 8 && !answered && sent === undefined; i++) {
      answered = (await socket.receive(250)).some((reply) => reply.seq === 7);
    }
    console.log(JSON.stringify({ kind: socket.kind, answered }));
  } finally {
    socket.close();
  }
} catch (err) {
  console.log(JSON.stringify({ error: (err as Error).message }));
}
