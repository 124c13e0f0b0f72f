// Raft messages on the wire: every variant of Message survives encode/decode in exactly its
// TypeScript shape, and bytes that are not a whole, valid message are refused, never half-read.

import t, { type Test } from 'tap'
import { FramingError, FrameDecoder, decodeFrame, encodeFrameField } from '../../../src/cluster/framing.js'
import {
  RaftCodecError,
  RaftFrameEncoder,
  decodeRaftBytes,
  decodeRaftMessage,
  encodeRaftMessage,
  raftFromProto,
  raftToProto,
} from '../../../src/cp/node/raft-codec.js'
import type { Message } from '../../../src/cp/raft/types.js'
import { grace } from '../../../src/gen/proto.js'

const ALL: Message[] = [
  { type: 'preVote', from: 'n1', to: 'n2', term: 7, lastIndex: 120, lastTerm: 6 },
  { type: 'preVoteResp', from: 'n2', to: 'n1', term: 7, granted: true },
  { type: 'preVoteResp', from: 'n2', to: 'n1', term: 7, granted: false },
  { type: 'vote', from: 'n1', to: 'n2', term: 8, lastIndex: 120, lastTerm: 6, transfer: false },
  { type: 'vote', from: 'n1', to: 'n3', term: 8, lastIndex: 0, lastTerm: 0, transfer: true },
  { type: 'voteResp', from: 'n3', to: 'n1', term: 8, granted: true },
  { type: 'voteResp', from: 'n3', to: 'n1', term: 8, granted: false },
  {
    type: 'append',
    from: 'n1',
    to: 'n2',
    term: 8,
    prevIndex: 120,
    prevTerm: 6,
    entries: [
      { index: 121, term: 8, type: 'noop', data: '' },
      { index: 122, term: 8, type: 'normal', data: '{"type":"kv.put","key":"k","value":"v"}' },
      { index: 123, term: 8, type: 'normal', data: 'héllo wörld 你好 😀 \u0000 \uffff' },
      { index: 124, term: 8, type: 'config', data: '{"op":"addLearner","id":"n4"}' },
      { index: 125, term: 8, type: 'normal', data: '' },
    ],
    commit: 119,
  },
  { type: 'append', from: 'n1', to: 'n2', term: 1, prevIndex: 0, prevTerm: 0, entries: [], commit: 0 },
  { type: 'appendResp', from: 'n2', to: 'n1', term: 8, success: true, index: 125, hintIndex: 0, hintTerm: 0 },
  { type: 'appendResp', from: 'n2', to: 'n1', term: 8, success: false, index: 120, hintIndex: 97, hintTerm: 5 },
  { type: 'heartbeat', from: 'n1', to: 'n2', term: 8, commit: 125, context: 0 },
  { type: 'heartbeat', from: 'n1', to: 'n2', term: 8, commit: 125, context: 42 },
  { type: 'heartbeatResp', from: 'n2', to: 'n1', term: 8, context: 42 },
  {
    type: 'snapshot',
    from: 'n1',
    to: 'n4',
    term: 9,
    meta: { index: 5000, term: 9, membership: { voters: ['n1', 'n2', 'n3'], learners: ['n4'] } },
  },
  { type: 'snapshot', from: 'n1', to: 'n2', term: 9, meta: { index: 1, term: 1, membership: { voters: ['n1'], learners: [] } } },
  { type: 'timeoutNow', from: 'n1', to: 'n2', term: 9 },
  // The largest numbers the core can hold exactly.
  { type: 'heartbeat', from: 'n1', to: 'n2', term: 2 ** 53 - 1, commit: 2 ** 53 - 1, context: 2 ** 53 - 1 },
  // Ids are opaque strings: unicode is fine.
  { type: 'timeoutNow', from: 'nœud-1', to: '节点-2', term: 1 },
]

t.test('every variant round-trips to exactly the same object', (t) => {
  const seen = new Set<string>()
  for (const m of ALL) {
    seen.add(m.type)
    const back = decodeRaftMessage(encodeRaftMessage(m))
    // strictSame: same keys, no extra fields (a heartbeat has no `entries`), same values.
    t.strictSame(back, m, `${m.type} round-trips`)
    t.same(Object.keys(back).sort(), Object.keys(m).sort(), `${m.type} has exactly its own keys`)
  }
  const types: Message['type'][] = ['preVote', 'preVoteResp', 'vote', 'voteResp', 'append', 'appendResp', 'heartbeat', 'heartbeatResp', 'snapshot', 'timeoutNow']
  t.same([...seen].sort(), types.sort(), 'the test covers every variant')
  t.end()
})

/** A frame of RaftFrameEncoder, as the receiving transport reads it. */
function throughFrame(frame: Buffer): Message {
  const bodies = new FrameDecoder(1 << 20).pushAll(frame)
  if (bodies.length !== 1) throw new Error(`${bodies.length} frames`)
  const f = decodeFrame(bodies[0]!)
  if (!f.raftBytes) throw new Error('not read as a raft frame by the short path')
  return decodeRaftBytes(f.raftBytes)
}

t.test('frames of the frame encoder carry every variant exactly', (t) => {
  const encoder = new RaftFrameEncoder()
  for (const m of ALL) t.strictSame(throughFrame(encoder.encode(m, 1 << 20)), m, `${m.type} round-trips through a frame`)
  t.end()
})

t.test("an append's entries are encoded once for the followers that are sent them", (t) => {
  const encoder = new RaftFrameEncoder()
  const toN2 = ALL[7] as Extract<Message, { type: 'append' }>
  // The same entry objects, as the core slices them from its log for each follower.
  const toN3: Message = { ...toN2, to: 'n3', entries: toN2.entries.slice(), commit: 121 }
  t.strictSame(throughFrame(encoder.encode(toN2, 1 << 20)), toN2)
  t.equal(encoder.entriesEncoded, 5)
  t.strictSame(throughFrame(encoder.encode(toN3, 1 << 20)), toN3, 'the second follower gets its own header with the shared entries')
  t.equal(encoder.entriesEncoded, 5, 'the entries were not encoded again')
  // Fewer entries (a follower behind or ahead), or other objects at the same indexes (a log
  // rewritten from some index on), are other entries: encoded afresh, never the cached bytes.
  const shorter: Message = { ...toN2, entries: toN2.entries.slice(0, 4) }
  t.strictSame(throughFrame(encoder.encode(shorter, 1 << 20)), shorter)
  t.equal(encoder.entriesEncoded, 9)
  const rewritten: Message = { ...toN2, entries: [...toN2.entries.slice(0, 4), { index: 125, term: 8, type: 'normal', data: 'another' }] }
  t.strictSame(throughFrame(encoder.encode(rewritten, 1 << 20)), rewritten)
  t.equal(encoder.entriesEncoded, 14)
  t.end()
})

t.test("an append's entries are the bytes protobufjs writes for them", (t) => {
  const entries = [
    ...(ALL[7] as Extract<Message, { type: 'append' }>).entries,
    { index: 2 ** 53 - 1, term: 2 ** 53 - 1, type: 'normal' as const, data: 'ü'.repeat(70_000) },
    { index: 128, term: 127, type: 'normal' as const, data: 'x'.repeat(127) },
  ]
  for (let n = 1; n <= entries.length; n++) {
    const m: Message = { type: 'append', from: 'n1', to: 'n2', term: 9, prevIndex: 120, prevTerm: 8, entries: entries.slice(0, n), commit: 119 }
    const bytes = new RaftFrameEncoder().encode(m, 1 << 20)
    // The encoder writes the other fields first, then the entries (a decoder reads them the same).
    const { entries: protoEntries, ...header } = raftToProto(m)
    const pb = grace.peer.RaftMessage
    const expected = encodeFrameField(5, [pb.encode(header).finish(), pb.encode({ entries: protoEntries }).finish()], 1 << 20)
    t.same(bytes, expected, `${n} entries`)
  }
  t.end()
})

t.test('a frame over the limit is refused whole', (t) => {
  const m = ALL[7]!
  const length = new RaftFrameEncoder().encode(m, 1 << 20).length - 4
  t.equal(new RaftFrameEncoder().encode(m, length).length, length + 4)
  t.throws(() => new RaftFrameEncoder().encode(m, length - 1), FramingError)
  t.throws(() => new RaftFrameEncoder().encode(ALL[10]!, 10), FramingError, 'other messages too')
  // A body long enough for a length of several varint bytes.
  const big: Message = { ...(m as Extract<Message, { type: 'append' }>), entries: [{ index: 121, term: 8, type: 'normal', data: 'x'.repeat(300_000) }] }
  t.strictSame(throughFrame(new RaftFrameEncoder().encode(big, 1 << 20)), big)
  t.end()
})

t.test('entries keep their data byte for byte, including empty and unicode data', (t) => {
  const m = ALL[7] as Extract<Message, { type: 'append' }>
  const back = decodeRaftMessage(encodeRaftMessage(m)) as Extract<Message, { type: 'append' }>
  t.equal(back.entries.length, 5)
  for (let i = 0; i < 5; i++) {
    t.equal(back.entries[i]!.data, m.entries[i]!.data)
    t.equal(typeof back.entries[i]!.index, 'number')
  }
  t.end()
})

/** protobufjs's reading of bytes, as the transport read every raft frame before decodeRaftBytes. */
function byProtobufjs(bytes: Uint8Array): Message {
  let p: grace.peer.RaftMessage
  try {
    p = grace.peer.RaftMessage.decode(bytes)
  } catch (err) {
    throw new RaftCodecError(`raft message: not a valid protobuf RaftMessage (${(err as Error).message})`)
  }
  return raftFromProto(p)
}

/** Both readings give the same message, or both refuse with the same message (when `sameError`). */
function sameReading(t: Test, bytes: Uint8Array, what: string, sameError = true): void {
  let theirs: Message | Error
  try {
    theirs = byProtobufjs(bytes)
  } catch (err) {
    theirs = err as Error
  }
  let ours: Message | Error
  try {
    ours = decodeRaftBytes(bytes)
  } catch (err) {
    if (!(err instanceof RaftCodecError)) throw err
    ours = err
  }
  if (theirs instanceof Error || ours instanceof Error) {
    t.ok(ours instanceof Error, `${what}: refused by hand as by protobufjs`)
    if (sameError && theirs instanceof Error && ours instanceof Error && !/not a valid protobuf/.test(theirs.message)) t.equal(ours.message, theirs.message, `${what}: the same reason`)
  } else {
    t.strictSame(ours, theirs, `${what}: the same message`)
  }
}

t.test('decoding by hand reads what protobufjs reads', (t) => {
  const pb = grace.peer.RaftMessage
  for (const m of ALL) sameReading(t, encodeRaftMessage(m), m.type)
  // Fields in another order, a scalar given twice (the later wins), unknown fields of each wire
  // type, entries spread among other fields: all things protobufjs accepts.
  const append = ALL[7] as Extract<Message, { type: 'append' }>
  const { entries, ...header } = raftToProto(append)
  const parts = [pb.encode({ entries: entries!.slice(0, 2) }).finish(), pb.encode(header).finish(), pb.encode({ entries: entries!.slice(2) }).finish()]
  sameReading(t, Buffer.concat(parts), 'entries around the other fields')
  sameReading(t, Buffer.concat([pb.encode({ ...header, term: 3, commit: 5 }).finish(), pb.encode(header).finish(), pb.encode({ entries }).finish()]), 'fields given twice')
  const unknown = Buffer.from([0xa8, 0x01, 0x05, 0xb1, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 0xba, 0x01, 0x02, 0xff, 0xff, 0xc5, 0x01, 1, 2, 3, 4]) // fields 21 to 24
  sameReading(t, Buffer.concat([unknown, encodeRaftMessage(append), unknown]), 'unknown fields of every wire type')
  const entryUnknown = pb.encode({ ...header, entries: [] }).finish()
  const entry = Buffer.concat([grace.peer.RaftEntry.encode({ index: 121, term: 8, type: 1, data: 'x' }).finish(), Buffer.from([0x28, 0x07])]) // + field 5
  sameReading(t, Buffer.concat([entryUnknown, Buffer.from([0x5a, entry.length]), entry]), 'an unknown field in an entry')
  // Numbers past 2^53 - 1 in a field the variant does not carry are ignored; in one it carries, refused.
  sameReading(t, pb.encode({ type: 8, from: 'a', to: 'b', term: 1, context: 3, commit: 2 ** 60 }).finish(), 'an oversized field the variant does not carry')
  sameReading(t, pb.encode({ type: 7, from: 'a', to: 'b', term: 1, context: 3, commit: 2 ** 60 }).finish(), 'an oversized field it carries')
  sameReading(t, pb.encode({ type: 5, from: 'a', to: 'b', term: 1, prevIndex: 0, entries: [{ index: 2 ** 60, term: 1, type: 1 }] }).finish(), 'an oversized entry index')
  sameReading(t, pb.encode({ type: 8, from: 'a', to: 'b', term: 1, entries: [{ index: 1, term: 1, type: 9 as grace.peer.RaftEntryType }] }).finish(), 'a bad entry in a message that carries none')
  // Random messages of every variant with random numbers and data.
  let s = 777
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s
  }
  const big = () => (next() % 4 === 0 ? 2 ** 53 - 1 - (next() % 1000) : next() % 100_000)
  for (let i = 0; i < 300; i++) {
    const type = 1 + (next() % 10)
    const prevIndex = big() % 2 ** 40
    const entries = Array.from({ length: next() % 4 }, (_, j) => ({ index: prevIndex + 1 + j, term: big(), type: 1 + (next() % 3), data: 'd'.repeat(next() % 200) + String.fromCodePoint(next() % 0x10000 & 0xd7ff) }))
    const fields = { type, from: `n${next() % 5}`, to: `n${next() % 5}`, term: big(), lastIndex: big(), lastTerm: big(), transfer: next() % 2 === 0, granted: next() % 2 === 0, prevIndex, prevTerm: big(), commit: big(), success: next() % 2 === 0, index: big(), hintIndex: big(), hintTerm: big(), context: big(), entries, snapshot: next() % 2 === 0 ? { index: big(), term: big(), membership: { voters: ['n1', 'n2'], learners: [] } } : undefined }
    sameReading(t, pb.encode(fields).finish(), `random message ${i}`)
  }
  t.end()
})

t.test('decoding by hand refuses a known field of the wrong wire type, and groups', (t) => {
  const valid = Buffer.from(encodeRaftMessage(ALL[10]!))
  // term (4) as a length-delimited field; from (2) as a varint; a start-group tag.
  for (const [name, extra] of [
    ['term as bytes', [0x22, 0x01, 0x07]],
    ['from as a varint', [0x10, 0x01]],
    ['a group', [0xab, 0x01]],
  ] as const) {
    t.throws(() => decodeRaftBytes(Buffer.concat([valid, Buffer.from(extra)])), RaftCodecError, name)
  }
  t.end()
})

t.test('garbage and broken messages throw RaftCodecError, never return part of a message', (t) => {
  const valid = encodeRaftMessage(ALL[7]!)
  const cases: [string, Uint8Array][] = [
    ['empty bytes (no type)', new Uint8Array(0)],
    ['ASCII text', Buffer.from('this is not a raft message at all')],
    ['all ones', Buffer.alloc(32, 0xff)],
    ['invalid UTF-8 in from', Buffer.from([0x08, 0x05, 0x12, 0x02, 0xc3, 0x28])],
    ['truncated inside the entries', valid.subarray(0, valid.length - 5)],
    ['truncated inside from', valid.subarray(0, 4)],
    ['unknown message type', grace.peer.RaftMessage.encode({ type: 99 as grace.peer.RaftMessageType, from: 'a', to: 'b', term: 1 }).finish()],
    ['missing from', grace.peer.RaftMessage.encode({ type: 10, to: 'b', term: 1 }).finish()],
    ['missing to', grace.peer.RaftMessage.encode({ type: 10, from: 'a', term: 1 }).finish()],
    ['term above 2^53 - 1', grace.peer.RaftMessage.encode({ type: 10, from: 'a', to: 'b', term: 2 ** 60 }).finish()],
    ['entry of unknown type', grace.peer.RaftMessage.encode({ type: 5, from: 'a', to: 'b', term: 1, prevIndex: 0, entries: [{ index: 1, term: 1, type: 0 }] }).finish()],
    ['entries that skip an index', grace.peer.RaftMessage.encode({ type: 5, from: 'a', to: 'b', term: 1, prevIndex: 3, entries: [{ index: 4, term: 1, type: 1 }, { index: 6, term: 1, type: 1 }] }).finish()],
    ['entries that do not follow prevIndex', grace.peer.RaftMessage.encode({ type: 5, from: 'a', to: 'b', term: 1, prevIndex: 3, entries: [{ index: 3, term: 1, type: 1 }] }).finish()],
    ['snapshot without meta', grace.peer.RaftMessage.encode({ type: 9, from: 'a', to: 'b', term: 1 }).finish()],
    ['snapshot without membership', grace.peer.RaftMessage.encode({ type: 9, from: 'a', to: 'b', term: 1, snapshot: { index: 1, term: 1 } }).finish()],
    ['snapshot with an empty voter id', grace.peer.RaftMessage.encode({ type: 9, from: 'a', to: 'b', term: 1, snapshot: { index: 1, term: 1, membership: { voters: [''] } } }).finish()],
  ]
  for (const [name, bytes] of cases) {
    t.throws(() => decodeRaftMessage(bytes), RaftCodecError, name)
    try {
      decodeRaftMessage(bytes)
    } catch (err) {
      t.match((err as Error).message, /^raft message: /, `${name}: the message says what is wrong`)
    }
  }
  t.end()
})

t.test('random bytes either throw RaftCodecError or decode to a whole message', (t) => {
  // A seeded generator, so a failure reproduces.
  let s = 12345
  const next = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s
  }
  let thrown = 0
  for (let i = 0; i < 2000; i++) {
    const bytes = new Uint8Array(1 + (next() % 64))
    for (let j = 0; j < bytes.length; j++) bytes[j] = next() & 0xff
    try {
      const m = decodeRaftMessage(bytes)
      // Whatever decodes is a whole message: it survives another round trip unchanged.
      t.strictSame(decodeRaftMessage(encodeRaftMessage(m)), m)
    } catch (err) {
      if (!(err instanceof RaftCodecError)) throw err
      thrown++
    }
  }
  t.ok(thrown > 1900, `most random inputs are refused (${thrown} of 2000)`)
  t.end()
})

t.test('a lone surrogate is refused at encode time, where the bug is', (t) => {
  const m: Message = { type: 'append', from: 'a', to: 'b', term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: [{ index: 1, term: 1, type: 'normal', data: 'x\ud800y' }] }
  t.throws(() => encodeRaftMessage(m), RaftCodecError)
  t.throws(() => new RaftFrameEncoder().encode(m, 1 << 20), RaftCodecError, 'in a frame too')
  t.end()
})
