// The one registry of error codes. Every error Grace answers has a code from here, and the code
// fixes the HTTP status. docs/errors.md lists the same codes; a test keeps the two in sync.

export const ERROR_CODES = {
  // 400: the request is wrong and nothing was stored.
  INVALID_JSON: { status: 400, summary: 'The body is not valid JSON.' },
  INVALID_PROTOBUF: { status: 400, summary: 'The body is not a valid protobuf message of the expected type.' },
  INVALID_ARGUMENT: { status: 400, summary: 'A field is missing, of the wrong type, or out of range.' },
  INVALID_NAME: { status: 400, summary: 'A namespace, group, service, cluster, dataId or clientId is empty, too long, or has forbidden characters.' },
  INVALID_IP: { status: 400, summary: 'The ip is not a valid IPv4 or IPv6 address.' },
  INVALID_PORT: { status: 400, summary: 'The port is not an integer in 1..65535.' },
  INVALID_WEIGHT: { status: 400, summary: 'The weight is not a finite number in 0..10000.' },
  INVALID_METADATA: { status: 400, summary: 'The metadata is not a map of strings, or is over 16 KiB.' },
  NOT_EPHEMERAL: { status: 400, summary: 'A heartbeat was sent for a persistent instance; the server checks those itself.' },
  MALFORMED_HTTP: { status: 400, summary: 'The request is not valid HTTP/1.1 (its request line, a header or the chunked body); the connection is closed.' },
  INVALID_HEALTH_CHECK: { status: 400, summary: 'A cluster health check is malformed: unknown type, a field out of range, or a field the type does not take.' },
  // 401: who is asking is not known.
  UNAUTHENTICATED: { status: 401, summary: 'A request that changes the cluster (its members or leader) did not carry the cluster secret as Authorization: Bearer <secret>.' },
  // 404: the thing named does not exist.
  NOT_FOUND: { status: 404, summary: 'No such route.' },
  SERVICE_NOT_FOUND: { status: 404, summary: 'The service does not exist.' },
  INSTANCE_NOT_FOUND: { status: 404, summary: 'The instance does not exist.' },
  CONFIG_NOT_FOUND: { status: 404, summary: 'The config does not exist.' },
  NOT_ACCEPTABLE: { status: 406, summary: 'The Accept header asks for an encoding Grace does not produce.' },
  // 409: the request conflicts with what is stored.
  SERVICE_KIND_CONFLICT: { status: 409, summary: 'The service is ephemeral and the instance persistent, or the other way round.' },
  SERVICE_ALREADY_EXISTS: { status: 409, summary: 'A service with that name already exists.' },
  SERVICE_NOT_EMPTY: { status: 409, summary: 'The service still has instances.' },
  HEALTH_NOT_MANUAL: { status: 409, summary: 'The instance\'s health cannot be set by hand: an ephemeral instance\'s follows its heartbeats, a probed cluster\'s follows the server\'s probes.' },
  CAS_MISMATCH: { status: 409, summary: 'The config md5 is not the casMd5 the request expected.' },
  MEMBERSHIP_CONFLICT: { status: 409, summary: 'The membership change does not fit the cluster: the node is already (or not) a member, it is the last voter, the peer address is that of another member, or the node runs standalone.' },
  // 408: the request did not arrive in time.
  REQUEST_TIMEOUT: { status: 408, summary: 'The request headers or body took longer than the server waits; the connection is closed.' },
  // 413, 415, 431: the body or headers themselves.
  HEADERS_TOO_LARGE: { status: 431, summary: 'The request line and headers are over 16 KiB; the connection is closed.' },
  BODY_TOO_LARGE: { status: 413, summary: 'The request body is over the limit for the route.' },
  CONTENT_TOO_LARGE: { status: 413, summary: 'The config content is over 1 MiB.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, summary: 'The Content-Type is neither application/json nor application/x-protobuf.' },
  // 429: a server-side limit.
  TOO_MANY_LISTENERS: { status: 429, summary: 'The server holds as many long-poll listeners as it allows; retry later.' },
  TOO_MANY_WATCHERS: { status: 429, summary: 'The server holds as many naming watches as it allows (10,000); retry later, or on another node.' },
  LIMIT_EXCEEDED: { status: 429, summary: 'A count or size limit is reached: instances per service or per client, the bytes of the instances of one client, services, configs, services in one delta answer.' },
  // 5xx: the server cannot answer now.
  INTERNAL: { status: 500, summary: 'A bug in Grace. The log has the details.' },
  UNAVAILABLE: { status: 503, summary: 'The server is starting, shutting down, or cannot reach its storage, the leader or the node responsible for the client; retry.' },
} as const satisfies Record<string, { status: number; summary: string }>

export type ErrorCode = keyof typeof ERROR_CODES

/** An error meant for the client: its code picks the HTTP status and its message is shown as is. */
export class GraceError extends Error {
  readonly code: ErrorCode
  readonly status: number

  constructor(code: ErrorCode, message: string) {
    super(message)
    this.name = 'GraceError'
    this.code = code
    this.status = ERROR_CODES[code].status
  }
}

/** Throws a GraceError. */
export function fail(code: ErrorCode, message: string): never {
  throw new GraceError(code, message)
}

export function isGraceError(err: unknown): err is GraceError {
  return err instanceof GraceError
}
