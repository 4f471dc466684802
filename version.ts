/** Tartan's version, reported by `tartan version`, `--version` and the admin API. */
export const VERSION = "0.1.0";
