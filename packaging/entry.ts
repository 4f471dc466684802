/**
 * The entry point of the bundled program inside `dist/tartan`. The launcher passes the name it
 * was started by first (`flannel`, `flanneld`, `tartan`, …), because here the process is the
 * unpacked Deno runtime, whose own name says nothing about how the user called Tartan.
 *
 * @module
 */
import { main } from "../main.ts";

const [programName, ...args] = Deno.args;
Deno.exit(await main(programName ?? "tartan", args));
