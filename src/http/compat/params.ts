// What the Nacos and Eureka adapters share: form bodies, string parameters (their clients send
// every value as text), and errors answered as plain text in their style instead of Grace's JSON.

import { createHash } from 'node:crypto'
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { ERROR_CODES, GraceError, fail, isGraceError } from '../../core/errors.js'
import { LIMITS } from '../../core/limits.js'
import type { Fields } from '../../core/validate.js'

export const FORM_TYPE = 'application/x-www-form-urlencoded'
export const TEXT_TYPE = 'text/plain; charset=utf-8'
export const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * Form bodies, in this plugin scope only (Grace's own routes keep refusing them). A repeated
 * parameter is refused rather than one copy silently winning.
 */
export function addFormParser(scope: FastifyInstance): void {
  scope.addContentTypeParser(FORM_TYPE, { parseAs: 'string' }, (_request, body, done) => {
    try {
      done(null, parseForm(body as string))
    } catch (err) {
      done(err as Error, undefined)
    }
  })
}

export function parseForm(text: string): Fields {
  const out: Fields = Object.create(null)
  for (const [k, v] of new URLSearchParams(text)) {
    if (k in out) fail('INVALID_ARGUMENT', `parameter ${k} is given more than once`)
    out[k] = v
  }
  return out
}

/**
 * The request's parameters: the query string and a form body together, as the Nacos server
 * reads them (its Java client sends POST parameters in the body, the Node.js one in the query
 * string). A parameter in both places must have the same value.
 */
export function params(request: FastifyRequest): Fields {
  const query = request.query as Record<string, unknown>
  const body = request.body
  const out: Fields = Object.create(null)
  for (const [k, v] of Object.entries(query)) {
    if (Array.isArray(v)) fail('INVALID_ARGUMENT', `parameter ${k} is given more than once`)
    out[k] = v
  }
  if (body === undefined || body === null) return out
  if (typeof body !== 'object' || Array.isArray(body) || body instanceof Uint8Array) fail('INVALID_ARGUMENT', `send the parameters as ${FORM_TYPE}`)
  for (const [k, v] of Object.entries(body as Fields)) {
    if (k in out && out[k] !== v) fail('INVALID_ARGUMENT', `parameter ${k} differs between the query string and the body`)
    out[k] = v
  }
  return out
}

/** A text parameter, or undefined when absent or empty. */
export function text(f: Fields, key: string): string | undefined {
  const v = f[key]
  if (v === undefined || v === null || v === '') return undefined
  if (typeof v !== 'string') fail('INVALID_ARGUMENT', `parameter ${key} must be text`)
  return v
}

export function required(f: Fields, key: string): string {
  const v = text(f, key)
  if (v === undefined) fail('INVALID_ARGUMENT', `Required parameter '${key}' is not present`)
  return v
}

/** true/false as text (Nacos also takes any case). */
export function textBool(f: Fields, key: string, fallback: boolean): boolean {
  const v = text(f, key)
  if (v === undefined) return fallback
  const lower = v.toLowerCase()
  if (lower === 'true') return true
  if (lower === 'false') return false
  fail('INVALID_ARGUMENT', `parameter ${key} must be true or false`)
}

/** A decimal number as text ("1", "1.0"), or undefined when absent. */
export function textNumber(f: Fields, key: string): number | undefined {
  const v = text(f, key)
  if (v === undefined) return undefined
  if (!/^-?\d{1,16}(\.\d{1,16})?$/.test(v)) fail('INVALID_ARGUMENT', `parameter ${key} must be a number`)
  return Number(v)
}

export function textInteger(f: Fields, key: string, min: number, max: number, fallback: number): number {
  const v = text(f, key)
  if (v === undefined) return fallback
  if (!/^-?\d{1,16}$/.test(v) || Number(v) < min || Number(v) > max) fail('INVALID_ARGUMENT', `parameter ${key} must be an integer in ${min}..${max}`)
  return Number(v)
}

/** A short stable name for a lease (client ids are names of at most 512 bytes). */
export function leaseId(prefix: string, ...parts: string[]): string {
  return `${prefix}:${createHash('sha256').update(parts.join('\u001f')).digest('hex').slice(0, 32)}`
}

/** Whatever was thrown, as a GraceError (fastify's own errors by their status). */
export function asGraceError(err: FastifyError): GraceError {
  if (isGraceError(err)) return err
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new GraceError('UNSUPPORTED_MEDIA_TYPE', err.message)
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return new GraceError('BODY_TOO_LARGE', err.message)
  if (err instanceof SyntaxError || err.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || err.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') {
    return new GraceError('INVALID_JSON', `body is not valid JSON: ${err.message}`)
  }
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return new GraceError('INVALID_ARGUMENT', err.message)
  return new GraceError('INTERNAL', 'internal error')
}

/**
 * Errors in a compat scope: the HTTP status of Grace's code (what the clients act on) and a
 * text body, `format` of the message. Unexpected errors are logged and answered 500.
 */
export function setTextErrors(scope: FastifyInstance, format: (err: GraceError) => string, log?: { error(obj: object, msg: string): void }): void {
  scope.setErrorHandler((err: FastifyError, request, reply) => {
    const grace = asGraceError(err)
    if (grace.code === 'INTERNAL') log?.error({ err, reqId: request.id, method: request.method, route: request.routeOptions.url }, 'unhandled error')
    return sendText(reply, ERROR_CODES[grace.code].status, format(grace))
  })
}

export function sendText(reply: FastifyReply, status: number, body: string): FastifyReply {
  return reply.code(status).type(TEXT_TYPE).send(body)
}

export function sendJson(reply: FastifyReply, value: unknown, status = 200): FastifyReply {
  return reply.code(status).type(JSON_TYPE).send(JSON.stringify(value))
}

/** Config routes carry content in form bodies. */
export const CONFIG_BODY = { bodyLimit: LIMITS.maxConfigBodyBytes }
