/**
 * V8 flags the daemon runs with: a smaller young generation and slower heap growth keep the
 * resident memory of a node with 10 000 peers around 165–195 MB instead of 210–260 MB, at no
 * measured cost in programming time (bench/control_plane.ts). They must be given when Deno
 * starts (`deno compile`/`deno run --v8-flags=…`); setting them from inside has no effect.
 */
export const DAEMON_V8_FLAGS = "--max-semi-space-size=4,--heap-growing-percent=25";
