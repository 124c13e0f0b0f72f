// Builds the fastify app from the services it serves. build() is separate from listen(): tests
// drive the app through inject(), main.ts listens.

import { Buffer } from 'node:buffer'
import { type IncomingMessage, STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Logger as PinoLogger } from 'pino'
import { ERROR_CODES, type ErrorCode, GraceError, isGraceError } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import { grace } from '../gen/proto.js'
import type { ConfigService } from '../config/service.js'
import { PROTOBUF_TYPE, send, wantsProtobuf } from './codec.js'
import { AccessLog } from './access-log.js'
import { type ClusterRouteDeps, registerClusterRoutes } from './routes/cluster.js'
import { registerConfigRoutes } from './routes/config.js'
import { registerHealthRoutes } from './routes/health.js'
import { type NamingRouteDeps, registerNamingRoutes } from './routes/naming.js'
import { COMPAT_PREFIXES, registerCompatRoutes } from './compat/index.js'
import { registerWatchRoutes } from './routes/watch.js'
import type { NamingPush } from '../naming/push.js'

export interface AppDeps extends NamingRouteDeps, ClusterRouteDeps {
  config: ConfigService
  /** host:port of every node that is up, for Nacos clients (operator/servers, /nacos/serverlist); empty: this node. */
  clientAddresses?: () => readonly string[]
  /** Naming watches and deltas (POST /v1/ns/watch, GET /v1/ns/delta); absent: no such routes. */
  push?: NamingPush
  /** pino logger for request lines and errors; omit for silence (tests). */
  logger?: PinoLogger
}

declare module 'fastify' {
  interface FastifyRequest {
    /** For the access log: the route pattern and performance.now() when its handler started. */
    accessRoute: string
    accessStart: number
    /** The request's line is written: one line per request, whichever path answered it. */
    accessLogged: boolean
  }
}

export function buildApp(deps: AppDeps): FastifyInstance {
  const log = deps.logger
  const app = Fastify({
    // Fastify's own logging would make a child logger per request and write two lines; we write
    // one line per request from the root logger (AccessLog, below).
    logger: false,
    bodyLimit: LIMITS.maxNamingBodyBytes,
    // Requests that arrive while closing get our UNAVAILABLE error (below), not fastify's body.
    return503OnClosing: false,
    // Keep-alive connections that are idle are closed at once on shutdown; busy ones finish.
    forceCloseConnections: 'idle',
    // Requests node's HTTP parser refuses never reach a route: answer them with a code too.
    clientErrorHandler: answerClientError,
  }) as unknown as FastifyInstance

  // JSON (fastify's parser, which rejects __proto__ poisoning) and protobuf; nothing else. An
  // empty JSON body counts as no body, so DELETE and beat fall back to the query string.
  const parseJson = app.getDefaultJsonParser('error', 'error')
  app.removeContentTypeParser(['text/plain', 'application/json'])
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') done(null, undefined)
    else parseJson(request, body as string, done)
  })
  app.addContentTypeParser(PROTOBUF_TYPE, { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  // One line per request, written once its answer is sent. Two places see every answer: the route
  // wrapper below (a handler's answer, sent when the handler returns or when its promise settles)
  // and sendError (refusals before any handler ran, 404s, errors thrown by handlers). No fastify
  // hook: an onSend hook sends every answer through fastify's hook runner, and onResponse makes
  // fastify add and remove two listeners per response; each was a few per cent of a small
  // request's CPU on the benchmark machine (docs/benchmarks.md).
  const access = log?.isLevelEnabled('info') ? new AccessLog(log) : undefined
  const logAnswer = access
    ? (request: FastifyRequest, reply: FastifyReply): void => {
        if (request.accessLogged) return
        request.accessLogged = true
        // The route pattern, not the URL: query strings may carry names or, later, tokens.
        // accessRoute is empty when the request was refused before its handler ran.
        const route = request.accessRoute || (request.routeOptions.url ?? 'none')
        const ms = request.accessStart === 0 ? 0 : Math.round((performance.now() - request.accessStart) * 100) / 100
        access.record(request.id, request.method, route, reply.statusCode, ms)
      }
    : undefined
  if (access) {
    app.decorateRequest('accessRoute', '')
    app.decorateRequest('accessStart', 0)
    app.decorateRequest('accessLogged', false)
    app.addHook('onClose', (_app, done) => {
      access.close()
      done()
    })
  }
  const sendError = (request: FastifyRequest, reply: FastifyReply, err: GraceError): FastifyReply => {
    const sent = sendErrorAnswer(request, reply, err)
    logAnswer?.(request, reply)
    return sent
  }

  app.setErrorHandler((err: FastifyError, request, reply) => sendError(request, reply, toGraceError(err, request, log)))
  app.setNotFoundHandler((request, reply) =>
    sendError(request, reply, new GraceError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`)),
  )

  // On shutdown: held long-polls are answered at once, new requests get UNAVAILABLE (readyz
  // says NOT_READY), and connections are closed as soon as they fall idle, so that close()
  // need not wait out the keep-alive timeouts of connections that were busy when it began.
  let closing = false
  // Connections that never sent a request are not idle to node (closeIdleConnections leaves them)
  // and no timeout applies to them: one silent connection (a port scan, a balancer's TCP check)
  // kept a stopping server up indefinitely. They are closed on shutdown too.
  const silent = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    silent.add(socket)
    socket.once('close', () => silent.delete(socket))
  })
  app.server.on('request', (req: IncomingMessage) => silent.delete(req.socket))
  app.addHook('preClose', (done) => {
    closing = true
    deps.config.releaseAll()
    deps.push?.releaseAll()
    const sweep = setInterval(() => {
      app.server.closeIdleConnections()
      for (const socket of silent) socket.destroy()
    }, 20)
    sweep.unref()
    app.server.once('close', () => clearInterval(sweep))
    done()
  })

  // Checks every route makes before its handler runs. A wrapper rather than an onRequest hook:
  // it costs a function call, where a hook costs a pass through fastify's hook runner.
  app.addHook('onRoute', (route) => {
    const handler = route.handler
    const url = route.url
    const always = url === '/readyz' || url === '/healthz'
    // The Nacos and Eureka adapters answer in their own formats whatever the client accepts.
    const negotiates = !COMPAT_PREFIXES.some((prefix) => url.startsWith(prefix))
    route.handler = function checkedHandler(request, reply) {
      if (access) {
        request.accessRoute = url
        request.accessStart = performance.now()
      }
      // An Accept header we cannot answer is refused before anything runs: found only when the
      // answer is sent, it would turn a stored write into a 406 the client takes for a failure.
      if (negotiates) wantsProtobuf(request)
      if (closing && !always) throw new GraceError('UNAVAILABLE', 'the server is shutting down')
      const result = handler.call(this, request, reply)
      if (logAnswer) {
        // Every handler here answers by calling send before it returns or before its promise
        // settles. A rejected promise goes to the error handler, which logs through sendError.
        if (reply.sent) logAnswer(request, reply)
        else if (isThenable(result)) result.then(() => reply.sent && logAnswer(request, reply), ignore)
      }
      return result
    }
  })

  registerHealthRoutes(app, { isReady: () => !closing })
  registerNamingRoutes(app, deps)
  registerConfigRoutes(app, deps.config)
  registerClusterRoutes(app, deps)
  registerCompatRoutes(app, { ...deps, ...(log ? { logger: log } : {}), ...(logAnswer ? { onAnswer: logAnswer } : {}) })
  if (deps.push) registerWatchRoutes(app, deps.push)
  return app
}

/**
 * An error on a connection before a request could be parsed (a malformed request line or
 * header, headers past node's 16 KiB, a bad chunk, a timeout): node's HTTP parser rejected it,
 * so no route ran. The answer is written on the raw socket, which is then closed: the stream
 * cannot be trusted past a parse error.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || !socket.writable) {
    socket.destroy()
    return
  }
  const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'MALFORMED_HTTP'
  const status = ERROR_CODES[code].status
  const body = JSON.stringify({ code, message: ERROR_CODES[code].summary })
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  )
}

/** Maps whatever was thrown to a GraceError: fastify's own errors by their codes. */
function toGraceError(err: FastifyError, request: FastifyRequest, log: PinoLogger | undefined): GraceError {
  if (isGraceError(err)) return err
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
    return new GraceError('UNSUPPORTED_MEDIA_TYPE', `Content-Type ${request.headers['content-type'] ?? '(none)'} is not supported; use application/json or ${PROTOBUF_TYPE}`)
  }
  const mapped = FASTIFY_ERRORS[err.code]
  if (mapped) return new GraceError(mapped, err.message)
  if (err instanceof SyntaxError || (err.statusCode === 400 && /JSON/i.test(err.message))) {
    return new GraceError('INVALID_JSON', `body is not valid JSON: ${err.message}`)
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new GraceError('INVALID_ARGUMENT', err.message)
  }
  log?.error({ err, reqId: request.id, method: request.method, route: request.routeOptions.url }, 'unhandled error')
  return new GraceError('INTERNAL', 'internal error')
}

const FASTIFY_ERRORS: Record<string, ErrorCode> = {
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'INVALID_ARGUMENT',
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'INVALID_JSON',
  FST_ERR_CTP_INVALID_JSON_BODY: 'INVALID_JSON',
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as PromiseLike<unknown> | undefined)?.then === 'function'
}

function ignore(): void {}

function sendErrorAnswer(request: FastifyRequest, reply: FastifyReply, err: GraceError): FastifyReply {
  const body = { code: err.code, message: err.message }
  try {
    return send(request, reply, grace.v1.Error, body, ERROR_CODES[err.code].status)
  } catch {
    // The client's Accept header was itself the problem: answer in JSON.
    return reply.code(ERROR_CODES[err.code].status).type('application/json; charset=utf-8').send(JSON.stringify(body))
  }
}
