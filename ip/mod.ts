/**
 * IP addresses, networks and subnet arithmetic for both families.
 *
 * @module
 */
export * from "./addr.ts";
export * from "./net.ts";
