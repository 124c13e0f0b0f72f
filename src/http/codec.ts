// Content negotiation: every route reads JSON or protobuf and answers in the encoding the client
// asked for. Protobuf bodies decode to the same plain-object shape as JSON (camelCase field names,
// absent fields absent), so one set of validators serves both.

import type { FastifyReply, FastifyRequest } from 'fastify'
import { fail } from '../core/errors.js'
import { type Fields, asFields } from '../core/validate.js'

export const JSON_TYPE = 'application/json; charset=utf-8'
export const PROTOBUF_TYPE = 'application/x-protobuf'

/** What the generated code offers for each message type. */
export interface MessageType {
  decode(reader: Uint8Array): object
  encode(message: never): { finish(): Uint8Array }
  fromObject(object: Record<string, unknown>): object
  toObject(message: never, options?: object): Record<string, unknown>
}

const FROM_WIRE = { longs: Number, defaults: false, arrays: false, objects: false }

/** The request body as fields. A protobuf body is decoded as `type`; JSON arrives parsed. */
export function readBody(request: FastifyRequest, type: MessageType): Fields {
  const body = request.body
  if (body instanceof Uint8Array) {
    let message: object
    try {
      message = type.decode(body)
    } catch (err) {
      fail('INVALID_PROTOBUF', `body is not a valid protobuf message: ${(err as Error).message}`)
    }
    return type.toObject(message as never, FROM_WIRE)
  }
  return asFields(body)
}

/**
 * True when the client asked for protobuf. Of application/json and application/x-protobuf, the
 * one listed first wins (q-values are not weighed); no Accept means JSON. Throws NOT_ACCEPTABLE
 * when the client accepts neither.
 */
export function wantsProtobuf(request: FastifyRequest): boolean {
  const accept = request.headers.accept
  if (!accept) return false
  const pb = accept.indexOf(PROTOBUF_TYPE)
  const json = accept.indexOf('application/json')
  if (pb >= 0) return json < 0 || pb < json
  if (json >= 0 || accept.includes('*/*') || accept.includes('application/*')) return false
  fail('NOT_ACCEPTABLE', `cannot answer in ${accept}; use application/json or ${PROTOBUF_TYPE}`)
}

export function encodeProtobuf(type: MessageType, value: object): Buffer {
  const bytes = type.encode(type.fromObject(value as Record<string, unknown>) as never).finish()
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** Sends value as JSON or as a protobuf `type`, whichever the client asked for. */
export function send(request: FastifyRequest, reply: FastifyReply, type: MessageType, value: object, status = 200): FastifyReply {
  reply.code(status)
  if (wantsProtobuf(request)) return reply.type(PROTOBUF_TYPE).send(encodeProtobuf(type, value))
  return reply.type(JSON_TYPE).send(JSON.stringify(value))
}

/** An answer that is always the same, encoded once in both forms. */
export interface ConstantAnswer {
  readonly json: string
  readonly protobuf: Buffer
}

export function constantAnswer(type: MessageType, value: object): ConstantAnswer {
  return { json: JSON.stringify(value), protobuf: encodeProtobuf(type, value) }
}

/** send() for a constant answer: no encoding per request (registrations answer this way). */
export function sendConstant(request: FastifyRequest, reply: FastifyReply, answer: ConstantAnswer): FastifyReply {
  if (wantsProtobuf(request)) return reply.type(PROTOBUF_TYPE).send(answer.protobuf)
  return reply.type(JSON_TYPE).send(answer.json)
}
