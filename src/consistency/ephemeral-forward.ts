// The wire form of an ephemeral change forwarded to its client's owner (ephemeral-cluster.ts),
// and of the owner's answer.
//
// Two peer methods:
// - 'naming.beat': a beat that names only its client, the bulk of a registry's traffic. The
//   request is the client id's UTF-8 bytes, the answer 9 bytes (registered: 0 or 1, then the
//   beat interval as a float64, big-endian). As JSON, the two encodings and two parses cost about
//   5 µs of the two nodes' CPU per forwarded beat, a few percent of a beat's cost in a cluster
//   (test/bench/ap-cpu.ts), and a few hundred bytes of garbage.
// - 'naming.ephemeral': every other change (registrations, deregistrations, patches, beats that
//   name an instance), as JSON, and its answer as { result }.
//
// The owner checks what it receives as it would a client's request (parseBeat, parseEphemeralOp):
// the peer is authenticated, but a change is applied only in a form a client could have sent.
// Strings become bytes with Buffer.from: in Node 20, TextEncoder.encode takes about 1.4 µs for a
// short string, four times as long.

import { GraceError } from '../core/errors.js'
import type { BeatResult, EphemeralOp } from '../naming/service.js'
import { type BeatRequest, parseBeat, parseEphemeralOp } from '../naming/validate.js'

export const FORWARD_METHOD = 'naming.ephemeral'
export const FORWARD_BEAT_METHOD = 'naming.beat'

const BEAT_ANSWER_BYTES = 9

/** A forwarded change as it goes on the wire: the peer method and its payload. */
export interface ForwardCall {
  readonly method: string
  readonly payload: Uint8Array
}

/** The call that carries `op`. */
export function encodeForward(op: EphemeralOp): ForwardCall {
  if (op.op === 'beat' && op.request.instance === undefined && op.request.clientId !== undefined) {
    return { method: FORWARD_BEAT_METHOD, payload: Buffer.from(op.request.clientId, 'utf8') }
  }
  return { method: FORWARD_METHOD, payload: Buffer.from(JSON.stringify(op), 'utf8') }
}

function text(payload: Uint8Array): string {
  return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).toString('utf8')
}

/** A 'naming.ephemeral' payload, checked as a client's request is. */
export function decodeForwardedOp(payload: Uint8Array): EphemeralOp {
  let raw: unknown
  try {
    raw = JSON.parse(text(payload))
  } catch {
    throw new GraceError('INVALID_JSON', 'a forwarded change is not JSON')
  }
  return parseEphemeralOp(raw)
}

/** A 'naming.beat' payload: the client id, checked as a beat request's clientId is. */
export function decodeForwardedBeat(payload: Uint8Array): BeatRequest {
  const clientId = text(payload)
  // parseBeat takes an empty id for "no clientId" and then asks for an instance: say what is wrong.
  if (clientId === '') throw new GraceError('INVALID_ARGUMENT', 'a forwarded beat names no client')
  return parseBeat({ clientId })
}

export function encodeBeatAnswer(result: BeatResult): Uint8Array {
  const out = Buffer.allocUnsafe(BEAT_ANSWER_BYTES)
  out[0] = result.registered ? 1 : 0
  out.writeDoubleBE(result.clientBeatInterval, 1)
  return out
}

export function decodeBeatAnswer(answer: Uint8Array): BeatResult {
  if (answer.byteLength !== BEAT_ANSWER_BYTES || answer[0]! > 1) throw new GraceError('INTERNAL', 'malformed answer to a forwarded beat')
  const clientBeatInterval = Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength).readDoubleBE(1)
  if (!(clientBeatInterval > 0) || !Number.isFinite(clientBeatInterval)) throw new GraceError('INTERNAL', 'malformed answer to a forwarded beat')
  return { clientBeatInterval, registered: answer[0] === 1 }
}

export function encodeForwardAnswer(result: unknown): Uint8Array {
  return Buffer.from(JSON.stringify({ result: result ?? null }), 'utf8')
}

export function decodeForwardAnswer(answer: Uint8Array): unknown {
  return (JSON.parse(text(answer)) as { result: unknown }).result
}
