// The wire form of an ephemeral change forwarded to its client's owner (ephemeral-cluster.ts),
// and of the owner's answer.
//
// Three peer methods:
// - 'naming.beat': a beat that names only its client, the bulk of a registry's traffic. The
//   request is the client id's UTF-8 bytes, the answer 9 bytes (registered: 0 or 1, then the
//   beat interval as a float64, big-endian). As JSON, the two encodings and two parses cost about
//   5 µs of the two nodes' CPU per forwarded beat, a few percent of a beat's cost in a cluster
//   (test/bench/ap-cpu.ts), and a few hundred bytes of garbage.
// - 'naming.register': a registration, the instance in a binary form (below), answered with no
//   bytes. As JSON ({op, instance}, answered {"result":null}) the encodings and parses cost the
//   two nodes about 8 µs per forwarded registration, four times what the instance's checks do.
// - 'naming.ephemeral': every other change (deregistrations, patches, beats that name an
//   instance), as JSON, and its answer as { result }.
//
// A registration: format byte 0xd4, then namespace, group, service, cluster and ip as strings
// (varint UTF-8 length, bytes: ap/node/distro-items.ts ByteWriter), varint port, float64 weight,
// u8 flags (1 enabled, 2 healthy), varint metadata pairs, each key and value as strings, then the
// client id as a string. Any other first byte (JSON from a peer of an older version), a payload
// cut short or with bytes after it, or text that is not UTF-8, is refused whole.
//
// The owner checks what it receives as it would a client's request (parseBeat, parseEphemeralOp,
// parseInstance): the peer is authenticated, but a change is applied only in a form a client
// could have sent.
// Strings become bytes with Buffer.from: in Node 20, TextEncoder.encode takes about 1.4 µs for a
// short string, four times as long.

import { ByteReader, ByteWriter } from '../ap/node/distro-items.js'
import { GraceError } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import type { Instance } from '../naming/model.js'
import type { BeatResult, EphemeralOp } from '../naming/service.js'
import { type BeatRequest, parseBeat, parseEphemeralOp, parseInstance } from '../naming/validate.js'

export const FORWARD_METHOD = 'naming.ephemeral'
export const FORWARD_BEAT_METHOD = 'naming.beat'
export const FORWARD_REGISTER_METHOD = 'naming.register'

const BEAT_ANSWER_BYTES = 9
const REGISTRATION_FORMAT = 0xd4
/** The answer to a forwarded registration: it has nothing to say but that it was applied. */
export const REGISTER_ANSWER: Uint8Array = new Uint8Array(0)
/** The longest ip as text a registration may carry (the longest IPv6 form with a zone is well under it). */
const MAX_IP_BYTES = 64

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
  if (op.op === 'register') return { method: FORWARD_REGISTER_METHOD, payload: encodeRegistration(op.instance) }
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

function encodeRegistration(i: Instance): Uint8Array {
  const w = new ByteWriter(128)
  w.u8(REGISTRATION_FORMAT)
  w.string(i.namespace)
  w.string(i.group)
  w.string(i.service)
  w.string(i.cluster)
  w.string(i.ip)
  w.varint(i.port)
  w.f64(i.weight)
  w.u8((i.enabled ? 1 : 0) | (i.healthy ? 2 : 0))
  const keys = Object.keys(i.metadata)
  w.varint(keys.length)
  for (const k of keys) {
    w.string(k)
    w.string(i.metadata[k]!)
  }
  w.string(i.clientId)
  return w.bytes()
}

/** A 'naming.register' payload: the instance, checked as a client's registration is (parseInstance). */
export function decodeForwardedRegistration(payload: Uint8Array): Instance {
  const r = new ByteReader(payload, 'forwarded registration')
  r.format(REGISTRATION_FORMAT)
  const namespace = r.string(LIMITS.maxNameBytes, 'the namespace')
  const group = r.string(LIMITS.maxNameBytes, 'the group')
  const service = r.string(LIMITS.maxNameBytes, 'the service')
  const cluster = r.string(LIMITS.maxNameBytes, 'the cluster')
  const ip = r.string(MAX_IP_BYTES, 'the ip')
  const port = r.varint()
  const weight = r.f64()
  const flags = r.u8()
  if (flags > 3) r.refuse(`flags ${flags}`)
  const pairs = r.varint()
  // Each pair takes two bytes at least: more than the metadata's byte limit cannot be valid.
  if (pairs > LIMITS.maxMetadataBytes) r.refuse(`${pairs} metadata entries`)
  // Filled by assignment, as a JSON body's object is read (core/validate.ts stringMap): a key
  // "__proto__" sets nothing, as stringMap drops it from a parsed body.
  const metadata: Record<string, string> = {}
  for (let k = 0; k < pairs; k++) {
    const key = r.string(LIMITS.maxMetadataBytes, 'a metadata key')
    metadata[key] = r.string(LIMITS.maxMetadataBytes, 'a metadata value')
  }
  const clientId = r.string(LIMITS.maxNameBytes, 'the client id')
  r.end()
  // What a client's body holds, through the checks a client's registration goes through.
  return parseInstance({ namespace, group, service, cluster, ip, port, weight, enabled: (flags & 1) !== 0, healthy: (flags & 2) !== 0, ephemeral: true, metadata: pairs === 0 ? undefined : metadata, clientId })
}

/** The answer to a 'naming.register' call: no bytes. */
export function decodeRegisterAnswer(answer: Uint8Array): null {
  if (answer.byteLength !== 0) throw new GraceError('INTERNAL', 'malformed answer to a forwarded registration')
  return null
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
