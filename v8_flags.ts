/**
 * V8 flags the daemon runs with: a smaller young generation and slower heap growth keep the
 * resident memory of a node with 10 000 peers around 165–195 MB instead of 210–260 MB, at no
 * measured cost in programming time (bench/control_plane.ts). Baseline (Sparkplug) code is
 * compiled on the main thread: a concurrent compile is installed on the main thread between a
 * synchronous FFI call and the read of its errno, and leaves ENOENT there (12 of 2 000 fresh
 * processes misread `close(-1)`'s EBADF with it on, none of 2 000 with it off), so a failed
 * syscall would be reported, or retried, by the wrong errno. They must be given when Deno
 * starts (`deno compile`/`deno run --v8-flags=…`); setting them from inside has no effect.
 */
export const DAEMON_V8_FLAGS =
  "--max-semi-space-size=4,--heap-growing-percent=25,--no-concurrent-sparkplug";
