/**
 * Leveled, structured logging to stderr: one logfmt line per event.
 *
 * `time=… level=info msg="lease acquired" subnet=10.244.1.0/24` is greppable by people and
 * parseable by log shippers, and needs no library.
 *
 * @example
 * ```ts
 * const log = logger("etcd");
 * log.info("lease acquired", { subnet: "10.244.1.0/24" });
 * ```
 *
 * @module
 */

export type LogLevel = "debug" | "info" | "warn" | "error";

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Field values a log line can carry. */
export type LogFields = Record<string, string | number | bigint | boolean | undefined | null>;

/** A logger bound to one component. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
}

let threshold: LogLevel = "info";
let sink: (line: string) => void = (line) => console.error(line);

/** Set the lowest level that is written. */
export function setLogLevel(level: LogLevel): void {
  threshold = level;
}

/** Redirect log lines (tests capture them; the default writes to stderr). */
export function setLogSink(write: (line: string) => void): void {
  sink = write;
}

function quote(value: string): string {
  return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
}

/** Render one logfmt line. */
export function formatLine(
  level: LogLevel,
  component: string,
  msg: string,
  fields: LogFields = {},
  now = new Date(),
): string {
  const parts = [`time=${now.toISOString()}`, `level=${level}`, `component=${component}`];
  parts.push(`msg=${quote(msg)}`);
  for (const [key, value] of Object.entries(fields)) {
    if (value !== undefined) parts.push(`${key}=${quote(String(value))}`);
  }
  return parts.join(" ");
}

/** A logger for one component (`etcd`, `vxlan`, `api`, …). */
export function logger(component: string): Logger {
  const at = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (RANK[level] >= RANK[threshold]) sink(formatLine(level, component, msg, fields));
  };
  return { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

/** The message of anything thrown, for log fields. */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
