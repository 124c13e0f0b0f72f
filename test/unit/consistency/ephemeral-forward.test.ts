// The wire form of forwarded ephemeral changes (consistency/ephemeral-forward.ts): a beat that
// names only its client travels as the bare client id and is answered in 9 bytes; everything
// else as JSON. Either way the owner checks what arrives as it would a client's request.

import t from 'tap'
import {
  FORWARD_BEAT_METHOD,
  FORWARD_METHOD,
  decodeBeatAnswer,
  decodeForwardAnswer,
  decodeForwardedBeat,
  decodeForwardedOp,
  encodeBeatAnswer,
  encodeForward,
  encodeForwardAnswer,
} from '../../../src/consistency/ephemeral-forward.js'
import type { EphemeralOp } from '../../../src/naming/service.js'

const ref = { namespace: 'public', group: 'DEFAULT_GROUP', service: 'orders', cluster: 'DEFAULT', ip: '10.0.0.1', port: 80 }

t.test('a beat that names only its client travels as the client id', async (t) => {
  const call = encodeForward({ op: 'beat', request: { clientId: 'client-é-1' } })
  t.equal(call.method, FORWARD_BEAT_METHOD)
  t.equal(Buffer.from(call.payload).toString('utf8'), 'client-é-1', 'the bare UTF-8 bytes of the id')
  t.same(decodeForwardedBeat(call.payload), { clientId: 'client-é-1' })
  // A view into a larger buffer, as the transport hands payloads over.
  const framed = Buffer.concat([Buffer.from('xx'), Buffer.from(call.payload), Buffer.from('yy')])
  t.same(decodeForwardedBeat(framed.subarray(2, 2 + call.payload.byteLength)), { clientId: 'client-é-1' })
})

t.test('every other change travels as JSON and comes back as it was', async (t) => {
  const ops: EphemeralOp[] = [
    { op: 'beat', request: { instance: ref } },
    { op: 'beat', request: { clientId: 'c1', instance: ref } },
    { op: 'register', instance: { ...ref, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: { a: 'b' }, clientId: 'c1' } },
    { op: 'deregister', ref, clientId: 'c1' },
  ]
  for (const op of ops) {
    const call = encodeForward(op)
    t.equal(call.method, FORWARD_METHOD, op.op)
    t.same(decodeForwardedOp(call.payload), op, `${op.op} decodes to what was sent`)
  }
})

t.test('the owner refuses a forwarded beat a client could not have sent', async (t) => {
  t.throws(() => decodeForwardedBeat(new Uint8Array(0)), { code: 'INVALID_ARGUMENT' }, 'no client id')
  t.throws(() => decodeForwardedBeat(Buffer.from(' padded ')), { code: 'INVALID_NAME' }, 'white space at the ends')
  t.throws(() => decodeForwardedBeat(Buffer.from('x'.repeat(10_000))), { code: 'INVALID_NAME' }, 'too long')
  t.throws(() => decodeForwardedOp(Buffer.from('{not json')), { code: 'INVALID_JSON' })
  t.throws(() => decodeForwardedOp(Buffer.from('{"op":"beat","request":{}}')), { code: 'INVALID_ARGUMENT' })
})

t.test('answers: a beat in 9 bytes, anything else as JSON', async (t) => {
  for (const result of [
    { clientBeatInterval: 5000, registered: true },
    { clientBeatInterval: 1500.5, registered: false },
  ]) {
    const bytes = encodeBeatAnswer(result)
    t.equal(bytes.byteLength, 9)
    t.same(decodeBeatAnswer(bytes), result)
  }
  t.throws(() => decodeBeatAnswer(new Uint8Array(8)), { code: 'INTERNAL' }, 'short')
  const bad = Buffer.from(encodeBeatAnswer({ clientBeatInterval: 5000, registered: true }))
  bad[0] = 2
  t.throws(() => decodeBeatAnswer(bad), { code: 'INTERNAL' }, 'a flag other than 0 or 1')
  t.throws(() => decodeBeatAnswer(encodeBeatAnswer({ clientBeatInterval: NaN, registered: true })), { code: 'INTERNAL' }, 'no interval')
  t.same(decodeForwardAnswer(encodeForwardAnswer({ deleted: true })), { deleted: true })
  t.equal(decodeForwardAnswer(encodeForwardAnswer(undefined)), null)
})
