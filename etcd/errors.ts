/**
 * The etcd client's failures: etcd's own answers (a gRPC status code and message) and endpoints
 * that cannot be reached, with the few codes the client acts on.
 *
 * @module
 */
import { errorText } from "../log.ts";

/** gRPC status codes the client acts on. */
export const GrpcCode = {
  INVALID_ARGUMENT: 3,
  NOT_FOUND: 5,
  OUT_OF_RANGE: 11,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A failed request: etcd's answer (gRPC code and message) or an unreachable endpoint. */
export class EtcdError extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
    this.name = "EtcdError";
  }
}

/** An error's message with its causes (fetch puts the TLS or socket reason in `cause`). */
export function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && parts.length < 4; e = (e as Error).cause) {
    parts.push(errorText(e));
    if (!(e instanceof Error)) break;
  }
  return parts.join(": ");
}

/** Whether etcd refused our auth token (expired, or minted by another member). */
export function tokenRefused(code: number, message: string): boolean {
  return code === GrpcCode.UNAUTHENTICATED || /auth token|user name is empty/i.test(message);
}
