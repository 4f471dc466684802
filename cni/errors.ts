/**
 * CNI error results: the well-known codes and the error classes the plugin raises.
 *
 * Every failure ends up as `{"cniVersion":…,"code":N,"msg":…,"details":…}` on stdout with a
 * non-zero exit status, so each error carries its CNI code from the place that knows it.
 *
 * @module
 */

/** Well-known CNI error codes (CNI spec, "Error" result type) and the ones this plugin uses. */
export const ErrorCode = {
  incompatibleVersion: 1,
  containerUnknown: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodingFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  pluginNotAvailable: 50,
  /** Catch-all, as libcni uses it: a delegate that failed without an error result, a bug. */
  internal: 999,
} as const;

/** An error that maps to one CNI error result. */
export class CniError extends Error {
  constructor(readonly code: number, msg: string, readonly details = "") {
    super(msg);
    this.name = "CniError";
  }
}

/** The network configuration on stdin is invalid; `path` names the offending field. */
export class ConfigError extends CniError {
  constructor(readonly path: string, msg: string) {
    super(ErrorCode.invalidConfig, path ? `${path}: ${msg}` : msg);
    this.name = "ConfigError";
  }
}

/**
 * A delegate plugin failed and printed its own CNI error result: `output` is passed on to the
 * runtime byte for byte, so the runtime sees the real cause (e.g. bridge's or host-local's).
 */
export class DelegateError extends CniError {
  constructor(readonly output: string, code: number, msg: string) {
    super(code, msg);
    this.name = "DelegateError";
  }
}
