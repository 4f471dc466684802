/**
 * Run by icmp_test.ts without CAP_NET_RAW: open an echo socket, ping 127.0.0.1 once, and print
 * what happened as JSON (`{"kind", "answered"}` or `{"error"}`).
 */
import { parseAddr } from "../../ip/mod.ts";
import { openIcmpSocket } from "../../probe/icmp_socket.ts";

try {
  const socket = openIcmpSocket();
  try {
    const sent = socket.send(parseAddr("127.0.0.1"), 7, 84);
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
