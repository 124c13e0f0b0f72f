// Framing: a byte stream cut anywhere still yields whole frames, in order; an oversized length
// prefix is refused before any of the body is buffered.

import t from 'tap'
import { FrameDecoder, FramingError, decodeFrame, encodeFrame, encodeRequestFrame, encodeResponseFrame, wireU64 } from '../../../src/cluster/framing.js'
import { ackMac, confirmMac, macEquals } from '../../../src/cluster/handshake.js'
import { grace } from '../../../src/gen/proto.js'

const frames = [
  encodeFrame({ ping: {} }, 1 << 20),
  encodeFrame({ request: { id: 1, method: 'echo', payload: Buffer.from('hello') } }, 1 << 20),
  encodeFrame({ request: { id: 2, method: 'big', payload: Buffer.alloc(200_000, 7) } }, 1 << 20),
  encodeFrame({ response: { id: 2, errorCode: 'CAS_MISMATCH', errorMessage: 'md5 differs' } }, 1 << 20),
  encodeFrame({ pong: {} }, 1 << 20),
]
const stream = Buffer.concat(frames)

function kinds(bodies: Buffer[]): string[] {
  return bodies.map((b) => decodeFrame(b).kind ?? '?')
}

t.test('one chunk with several frames', (t) => {
  const d = new FrameDecoder(1 << 20)
  t.same(kinds(d.pushAll(stream)), ['ping', 'request', 'request', 'response', 'pong'])
  t.equal(d.pendingBytes, 0)
  t.end()
})

t.test('every split point, and one byte at a time', (t) => {
  for (const size of [1, 2, 3, 5, 7, 4096, 65536]) {
    const d = new FrameDecoder(1 << 20)
    const got: Buffer[] = []
    for (let at = 0; at < stream.length; at += size) got.push(...d.pushAll(stream.subarray(at, at + size)))
    t.same(kinds(got), ['ping', 'request', 'request', 'response', 'pong'], `chunks of ${size}`)
    const big = decodeFrame(got[2]!).request!
    t.equal(big.payload!.length, 200_000)
    t.ok(Buffer.from(big.payload!).every((b) => b === 7), 'the large payload is intact')
  }
  // Two chunks, split at every position of the small frames.
  const small = Buffer.concat([frames[0]!, frames[1]!, frames[3]!])
  for (let cut = 0; cut <= small.length; cut++) {
    const d = new FrameDecoder(1 << 20)
    const got = [...d.pushAll(small.subarray(0, cut)), ...d.pushAll(small.subarray(cut))]
    t.same(kinds(got), ['ping', 'request', 'response'], `cut at ${cut}`)
  }
  t.end()
})

t.test('empty frames come out as empty bodies, wherever the stream is cut', (t) => {
  const s = Buffer.concat([Buffer.alloc(4), frames[0]!, Buffer.alloc(4)])
  for (let cut = 0; cut <= s.length; cut++) {
    const d = new FrameDecoder(100)
    const got = [...d.pushAll(s.subarray(0, cut)), ...d.pushAll(s.subarray(cut))]
    t.same(got.map((b) => b.length), [0, frames[0]!.length - 4, 0], `cut at ${cut}`)
    t.equal(d.pendingBytes, 0)
  }
  t.end()
})

t.test('a new limit applies from the next frame of the same chunk, and onFrame can stop', (t) => {
  const big = encodeFrame({ request: { id: 1, method: 'm', payload: Buffer.alloc(10_000) } }, 1 << 20)
  const chunk = Buffer.concat([frames[0]!, big, frames[4]!])
  const d = new FrameDecoder(100)
  const got: number[] = []
  d.push(chunk, (body) => {
    got.push(body.length)
    d.setMaxFrameBytes(1 << 20) // as the handshake does after its last frame
    return true
  })
  t.same(got, [frames[0]!.length - 4, big.length - 4, frames[4]!.length - 4])
  const d2 = new FrameDecoder(1 << 20)
  let n = 0
  d2.push(chunk, () => ++n < 2)
  t.equal(n, 2, 'nothing is handed over after onFrame says stop')
  t.end()
})

t.test('a length over the limit throws as soon as the prefix is complete', (t) => {
  const d = new FrameDecoder(1000)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(1001, 0)
  t.same(d.pushAll(header.subarray(0, 3)), [])
  t.throws(() => d.pushAll(header.subarray(3)), FramingError)
  const d2 = new FrameDecoder(1000)
  header.writeUInt32BE(1000, 0)
  t.same(d2.pushAll(header), [], 'exactly the limit is fine, and waits for the body')
  t.end()
})

t.test('encodeFrame refuses a frame over the limit', (t) => {
  t.throws(() => encodeFrame({ request: { id: 1, method: 'x', payload: Buffer.alloc(2000) } }, 1000), FramingError)
  t.end()
})

t.test('a body that is not a Frame is a FramingError', (t) => {
  t.throws(() => decodeFrame(Buffer.from([0xff, 0xff, 0xff])), FramingError)
  t.end()
})

t.test('frames decode as protobufjs decodes them, by the short path or by Frame.decode', (t) => {
  const samples: grace.peer.Frame.$Properties[] = [
    { hello: { version: 1, nodeId: 'n1', targetId: 'n2', nonce: Buffer.alloc(32, 1) } },
    { helloAck: { nodeId: 'n2', nonce: Buffer.alloc(32, 2), mac: Buffer.alloc(32, 3) } },
    { helloConfirm: { mac: Buffer.alloc(32, 4) } },
    { helloReject: { reason: 'authentication failed' } },
    { raft: { type: 2, from: 'n1', to: 'n2', term: 7 } },
    { request: { id: 1, method: 'naming.beat', payload: Buffer.from('client-1') } },
    { request: { id: 2 ** 40, method: 'big', payload: Buffer.alloc(300, 9) } },
    { request: {} },
    { response: { id: 3, payload: Buffer.from([1, 2, 3]) } },
    { response: { id: 4, errorCode: 'UNAVAILABLE', errorMessage: 'loading' } },
    { ping: {} },
    { pong: {} },
  ]
  const plain = (x: unknown) => JSON.parse(JSON.stringify(x, (_k, v: unknown) => (v instanceof Uint8Array ? [...v] : v))) as unknown
  for (const sample of samples) {
    const framed = encodeFrame(sample, 1 << 20)
    const body = framed.subarray(4)
    t.equal(framed.readUInt32BE(0), body.length, 'the prefix is the body length')
    t.same([...body], [...grace.peer.Frame.encode(sample).finish()], 'encodeFrame writes what Frame.encode does')
    const ours = decodeFrame(body)
    const theirs = grace.peer.Frame.decode(body)
    t.equal(ours.kind, theirs.kind)
    const kind = theirs.kind!
    if (kind === 'raft') {
      // Left encoded for the Raft codec (decodeRaftBytes): the bytes of Frame.decode's message.
      t.same([...ours.raftBytes!], [...grace.peer.RaftMessage.encode(theirs.raft!).finish()], 'raft: the message, still encoded')
      continue
    }
    t.same(plain(ours[kind]), plain(theirs[kind]), `${kind}: the same message`)
  }
  // Not one field spanning the body: Frame.decode reads it (here: two fields, the last wins).
  const two = Buffer.concat([grace.peer.Frame.encode({ ping: {} }).finish(), grace.peer.Frame.encode({ request: { id: 9, method: 'm' } }).finish()])
  t.equal(decodeFrame(two).kind, 'request')
  t.equal(wireU64(decodeFrame(two).request!.id), 9)
  t.equal(decodeFrame(Buffer.alloc(0)).kind, undefined, 'an empty frame has no kind')
  t.equal(decodeFrame(Buffer.from([0x62, 0x00])).kind, undefined, 'an unknown field (12) is skipped')
  // A length that runs past the body, or a message that is not one, is a FramingError.
  t.throws(() => decodeFrame(Buffer.from([0x32, 0x05, 0x08])), FramingError)
  t.throws(() => decodeFrame(Buffer.from([0x32, 0x02, 0x12, 0x05])), FramingError)
  t.end()
})

t.test('Request and Response frames written by hand are the bytes protobufjs writes', (t) => {
  const ids = [0, 1, 127, 128, 16_383, 16_384, 2 ** 31, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]
  const payloads = [Buffer.alloc(0), Buffer.from('client-1'), Buffer.alloc(200, 1), Buffer.alloc(20_000, 2)]
  const same = (ours: Buffer, frame: grace.peer.Frame.$Properties, what: string) => t.same([...ours], [...encodeFrame(frame, 1 << 20)], what)
  for (const id of ids) {
    for (const payload of payloads) {
      for (const method of ['', 'naming.beat', 'distro.sync', 'méthode']) {
        same(encodeRequestFrame(id, method, payload, 1 << 20), { request: { id, method, payload } }, `request ${id} ${method} ${payload.length}`)
      }
      // A view into a larger buffer, as payloads often are.
      const view = Buffer.concat([Buffer.from('xx'), payload]).subarray(2)
      same(encodeRequestFrame(id, 'm', view, 1 << 20), { request: { id, method: 'm', payload } }, 'a view of a payload')
      same(encodeResponseFrame(id, '', '', payload, 1 << 20), { response: { id, errorCode: '', errorMessage: '', payload } }, `answer ${id} ${payload.length}`)
    }
    same(encodeResponseFrame(id, 'UNAVAILABLE', 'still loading: ünïcode', null, 1 << 20), { response: { id, errorCode: 'UNAVAILABLE', errorMessage: 'still loading: ünïcode' } }, `error ${id}`)
  }
  t.throws(() => encodeRequestFrame(1, 'x', Buffer.alloc(2000), 1000), FramingError, 'the limit holds')
  t.throws(() => encodeResponseFrame(1, '', '', Buffer.alloc(2000), 1000), FramingError)
  t.end()
})

t.test('wireU64 takes Longs and numbers, refuses what a double cannot hold', (t) => {
  t.equal(wireU64({ low: 5, high: 0 }), 5)
  t.equal(wireU64({ low: -1, high: 0x1f_ffff }), 2 ** 53 - 1)
  t.equal(wireU64({ low: 0, high: 0x20_0000 }), null)
  t.equal(wireU64(7), 7)
  t.equal(wireU64(-1), null)
  t.equal(wireU64(undefined), 0)
  t.end()
})

t.test('the two handshake MACs differ and bind every field', (t) => {
  const f = { dialerId: 'a', acceptorId: 'b', dialerNonce: Buffer.alloc(32, 1), acceptorNonce: Buffer.alloc(32, 2) }
  const secret = 'a-cluster-secret-of-enough-length'
  const ack = ackMac(secret, f)
  t.notOk(macEquals(ack, confirmMac(secret, f)), 'an ack MAC cannot be reflected as a confirm MAC')
  t.notOk(macEquals(ack, ackMac(secret, { ...f, dialerId: 'c' })))
  t.notOk(macEquals(ack, ackMac(secret, { ...f, acceptorNonce: Buffer.alloc(32, 3) })))
  t.notOk(macEquals(ack, ackMac('another-cluster-secret-here', f)))
  // Length-prefixed fields: moving a separator between the ids changes the MAC.
  t.notOk(macEquals(ackMac(secret, { ...f, dialerId: 'a|b', acceptorId: 'c' }), ackMac(secret, { ...f, dialerId: 'a', acceptorId: 'b|c' })))
  t.ok(macEquals(ack, ackMac(secret, f)))
  t.notOk(macEquals(ack, ack.subarray(0, 31)), 'a short MAC is wrong, not an exception')
  t.notOk(macEquals(ack, undefined))
  t.end()
})
