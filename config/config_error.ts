/**
 * The error for a net-conf that cannot be used, shared by the net-conf parser and the backend
 * option readers.
 *
 * @module
 */

/** A net-conf that cannot be used; `field` is the member path (`Network`, `Backend.Type`, `""`). */
export class ConfigError extends Error {
  constructor(readonly field: string, readonly reason: string) {
    super(field === "" ? reason : `${field}: ${reason}`);
    this.name = "ConfigError";
  }
}
