// Errors the SDK throws. A server's answer keeps its code (docs/errors.md); the SDK adds its own
// codes for what happens on the client side.

export type ClientErrorCode =
  /** Every server was tried and none answered (network errors, timeouts, 503s). */
  | 'NO_SERVER'
  /** A server answered something that is not Grace's JSON. */
  | 'BAD_ANSWER'
  /** The client was closed. */
  | 'CLOSED'
  /** A balancer found no instance to pick. */
  | 'NO_INSTANCE'
  /** The options or the config file are wrong. */
  | 'BAD_OPTIONS'

export class GraceClientError extends Error {
  /** A server code (INVALID_NAME, CAS_MISMATCH, ...) or one of ClientErrorCode. */
  readonly code: string
  /** The HTTP status, when a server answered. */
  readonly status: number | undefined

  constructor(code: string, message: string, status?: number) {
    super(message)
    this.name = 'GraceClientError'
    this.code = code
    this.status = status
  }
}
