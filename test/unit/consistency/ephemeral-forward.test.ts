// The wire form of forwarded ephemeral changes (consistency/ephemeral-forward.ts): a beat that
// names only its client travels as the bare client id and is answered in 9 bytes, a registration
// in a binary form answered with no bytes; everything else as JSON. Either way the owner checks
// what arrives as it would a client's request.

import t from 'tap'
import {
  FORWARD_BEAT_METHOD,
  FORWARD_METHOD,
  FORWARD_REGISTER_METHOD,
  REGISTER_ANSWER,
  decodeBeatAnswer,
  decodeForwardAnswer,
  decodeForwardedBeat,
  decodeForwardedOp,
  decodeForwardedRegistration,
  decodeRegisterAnswer,
  encodeBeatAnswer,
  encodeForward,
  encodeForwardAnswer,
} from '../../../src/consistency/ephemeral-forward.js'
import { BEAT_METADATA, EMPTY_METADATA, type Instance } from '../../../src/naming/model.js'
import type { EphemeralOp } from '../../../src/naming/service.js'
import { parseInstance } from '../../../src/naming/validate.js'

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
    { op: 'deregister', ref, clientId: 'c1' },
  ]
  for (const op of ops) {
    const call = encodeForward(op)
    t.equal(call.method, FORWARD_METHOD, op.op)
    t.same(decodeForwardedOp(call.payload), op, `${op.op} decodes to what was sent`)
  }
})

t.test('a registration travels in the binary form and comes back as the owner parses a client\'s', async (t) => {
  const instances: Instance[] = [
    { ...ref, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId: '10.0.0.1:80' },
    { ...ref, service: 'commandes-é', cluster: 'eu-west', ip: '2001:db8::1', port: 65535, weight: 2.5, enabled: false, healthy: false, ephemeral: true, metadata: { a: 'b', 'clé': 'välue ✓', [BEAT_METADATA.unhealthyAfterMs]: '3000' }, clientId: 'client-ü-7' },
  ]
  for (const instance of instances) {
    const call = encodeForward({ op: 'register', instance })
    t.equal(call.method, FORWARD_REGISTER_METHOD)
    t.equal(call.payload[0], 0xd4, 'the format byte')
    t.same(decodeForwardedRegistration(call.payload), instance, `${instance.clientId} decodes to what was sent`)
    // A view into a larger buffer, as the transport hands payloads over.
    const framed = Buffer.concat([Buffer.from('xx'), Buffer.from(call.payload), Buffer.from('yy')])
    t.same(decodeForwardedRegistration(framed.subarray(2, 2 + call.payload.byteLength)), instance, 'read from within a frame')
  }
  const bare = decodeForwardedRegistration(encodeForward({ op: 'register', instance: instances[0]! }).payload)
  t.equal(bare.metadata, EMPTY_METADATA, 'no metadata: the shared empty object, as a body without any')
  // A key "__proto__" is dropped, as from a client's JSON body.
  const proto = JSON.parse('{"__proto__":"x","k":"v"}') as Record<string, string>
  const viaJson = parseInstance(JSON.parse(JSON.stringify({ ...ref, ephemeral: true, clientId: 'c', metadata: proto })) as Record<string, unknown>)
  const viaForward = decodeForwardedRegistration(encodeForward({ op: 'register', instance: { ...viaJson, metadata: proto } }).payload)
  t.same(viaForward.metadata, viaJson.metadata)
  t.same(Object.keys(viaForward.metadata), ['k'])
  t.equal(decodeRegisterAnswer(REGISTER_ANSWER), null, 'answered with no bytes')
  t.throws(() => decodeRegisterAnswer(new Uint8Array(1)), { code: 'INTERNAL' }, 'an answer with bytes')
})

t.test('the owner refuses a forwarded registration it cannot read, or a client could not have sent', async (t) => {
  const instance: Instance = { ...ref, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: { a: 'b' }, clientId: 'c1' }
  const good = Buffer.from(encodeForward({ op: 'register', instance }).payload)
  const refused = (payload: Uint8Array, code: string, message: RegExp, why: string) => t.throws(() => decodeForwardedRegistration(payload), { code, message }, why)
  refused(Buffer.from(JSON.stringify({ op: 'register', instance })), 'INVALID_ARGUMENT', /malformed forwarded registration: a JSON message/, 'JSON, as a peer of an older version sends')
  refused(new Uint8Array(0), 'INVALID_ARGUMENT', /format none/, 'empty')
  refused(good.subarray(0, good.length - 1), 'INVALID_ARGUMENT', /ends early/, 'cut short')
  refused(Buffer.concat([good, Buffer.from([0])]), 'INVALID_ARGUMENT', /1 bytes after/, 'a byte after it')
  const notUtf8 = Buffer.from(good)
  // The service's first byte (format, namespace, group: 1 + 7 + 14 bytes, then the service's length).
  notUtf8[1 + 7 + 14 + 1] = 0xff
  refused(notUtf8, 'INVALID_ARGUMENT', /the service is not UTF-8/, 'text that is not UTF-8 is refused, not replaced')
  const checked = (i: Instance, code: string, why: string) => t.throws(() => decodeForwardedRegistration(encodeForward({ op: 'register', instance: i }).payload), { code }, why)
  checked({ ...instance, ip: 'not-an-ip' }, 'INVALID_IP', 'an ip a client could not register')
  checked({ ...instance, port: 0 }, 'INVALID_PORT', 'port 0')
  checked({ ...instance, weight: -1 }, 'INVALID_WEIGHT', 'a negative weight')
  checked({ ...instance, service: ' padded ' }, 'INVALID_NAME', 'a name with white space at its ends')
  checked({ ...instance, metadata: { [BEAT_METADATA.unhealthyAfterMs]: '5' } }, 'INVALID_METADATA', 'a beat timeout under 100 ms')
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
