/**
 * Stand-alone entry of the flannel CNI plugin: `deno run -A cni/bin.ts` behaves exactly like
 * `tartan cni` (the tests drive it this way inside network namespaces).
 *
 * @module
 */
import { runCniPlugin } from "./plugin.ts";

if (import.meta.main) Deno.exit(await runCniPlugin());
