/**
 * The test etcd is the lab's etcd (lab/etcd.ts): one implementation for the demo and the tests.
 *
 * @module
 */
export * from "../../lab/etcd.ts";
