// Raft messages on the wire: the TypeScript union of cp/raft/types.ts <-> grace.peer.RaftMessage
// (proto/grace/peer/raft.proto). Decoding is strict: a message comes out whole, in exactly the
// shape the core builds, or decoding throws RaftCodecError. The core asserts its invariants and
// an assertion stops the process, so a peer's bad bytes must be turned away here, at the edge.

import { encodeFrame, encodeFrameField, putVarint, varintBytes, wireU64 } from '../../cluster/framing.js'
import { grace } from '../../gen/proto.js'
import type { Entry, EntryType, Membership, Message, MessageType, NodeId, SnapshotMeta } from '../raft/types.js'

const pb = grace.peer

/** The bytes are not a valid Raft message, or a message cannot be put on the wire. */
export class RaftCodecError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'RaftCodecError'
  }
}

const MESSAGE_TYPES: Record<MessageType, grace.peer.RaftMessageType> = {
  preVote: pb.RaftMessageType.RAFT_PRE_VOTE,
  preVoteResp: pb.RaftMessageType.RAFT_PRE_VOTE_RESP,
  vote: pb.RaftMessageType.RAFT_VOTE,
  voteResp: pb.RaftMessageType.RAFT_VOTE_RESP,
  append: pb.RaftMessageType.RAFT_APPEND,
  appendResp: pb.RaftMessageType.RAFT_APPEND_RESP,
  heartbeat: pb.RaftMessageType.RAFT_HEARTBEAT,
  heartbeatResp: pb.RaftMessageType.RAFT_HEARTBEAT_RESP,
  snapshot: pb.RaftMessageType.RAFT_SNAPSHOT,
  timeoutNow: pb.RaftMessageType.RAFT_TIMEOUT_NOW,
}
const MESSAGE_TYPE_NAMES = new Map<number, MessageType>(
  (Object.keys(MESSAGE_TYPES) as MessageType[]).map((k) => [MESSAGE_TYPES[k], k]),
)

const ENTRY_TYPES: Record<EntryType, grace.peer.RaftEntryType> = {
  normal: pb.RaftEntryType.RAFT_ENTRY_NORMAL,
  noop: pb.RaftEntryType.RAFT_ENTRY_NOOP,
  config: pb.RaftEntryType.RAFT_ENTRY_CONFIG,
}
const ENTRY_TYPE_NAMES = new Map<number, EntryType>((Object.keys(ENTRY_TYPES) as EntryType[]).map((k) => [ENTRY_TYPES[k], k]))

// ---- encoding ------------------------------------------------------------------------------

/**
 * A string that UTF-8 cannot carry (a lone surrogate) would be replaced or refused on the other
 * side, and Raft would resend the same entry forever. Refuse it at the source, where the log
 * line points at the culprit. JSON.stringify never produces one: it escapes lone surrogates.
 */
function checkWellFormed(s: string, what: string): void {
  if (!(s as unknown as { isWellFormed(): boolean }).isWellFormed()) {
    throw new RaftCodecError(`${what} has a lone surrogate and cannot be sent as UTF-8`)
  }
}

function entryToProto(e: Entry): grace.peer.RaftEntry.$Properties {
  checkWellFormed(e.data, `entry ${e.index} data`)
  return { index: e.index, term: e.term, type: ENTRY_TYPES[e.type], data: e.data }
}

/** The protobuf object for m, for embedding in a larger message (the transport's Frame). */
export function raftToProto(m: Message): grace.peer.RaftMessage.$Properties {
  checkWellFormed(m.from, 'from')
  checkWellFormed(m.to, 'to')
  // Plain literals, not spreads: the build compiles a spread to Object.assign, which is slow.
  const type = MESSAGE_TYPES[m.type]
  switch (m.type) {
    case 'preVote':
      return { type, from: m.from, to: m.to, term: m.term, lastIndex: m.lastIndex, lastTerm: m.lastTerm }
    case 'vote':
      return { type, from: m.from, to: m.to, term: m.term, lastIndex: m.lastIndex, lastTerm: m.lastTerm, transfer: m.transfer }
    case 'preVoteResp':
    case 'voteResp':
      return { type, from: m.from, to: m.to, term: m.term, granted: m.granted }
    case 'append':
      return { type, from: m.from, to: m.to, term: m.term, prevIndex: m.prevIndex, prevTerm: m.prevTerm, entries: m.entries.map(entryToProto), commit: m.commit }
    case 'appendResp':
      return { type, from: m.from, to: m.to, term: m.term, success: m.success, index: m.index, hintIndex: m.hintIndex, hintTerm: m.hintTerm }
    case 'heartbeat':
      return { type, from: m.from, to: m.to, term: m.term, commit: m.commit, context: m.context }
    case 'heartbeatResp':
      return { type, from: m.from, to: m.to, term: m.term, context: m.context }
    case 'snapshot':
      return {
        type,
        from: m.from,
        to: m.to,
        term: m.term,
        snapshot: {
          index: m.meta.index,
          term: m.meta.term,
          membership: { voters: m.meta.membership.voters.slice(), learners: m.meta.membership.learners.slice() },
        },
      }
    case 'timeoutNow':
      return { type, from: m.from, to: m.to, term: m.term }
    default:
      throw new RaftCodecError(`unknown raft message type ${(m as { type: unknown }).type}`)
  }
}

export function encodeRaftMessage(m: Message): Uint8Array {
  return pb.RaftMessage.encode(raftToProto(m)).finish()
}

type Append = Extract<Message, { type: 'append' }>

/** The Frame field that carries a RaftMessage (transport.proto). */
const FRAME_RAFT_FIELD = 5

/**
 * Encodes Raft messages as transport frame bodies (a grace.peer.Frame with `raft` set), encoding
 * the entries of an append once for all the followers it goes to. A leader in step sends each
 * follower the same new entries (the same objects, sliced from its log), and their protobuf
 * encoding, UTF-8 of every entry's data included, was most of what building an append cost.
 *
 * A protobuf message may come in pieces: fields can appear in any order and a repeated field's
 * elements are concatenated, so an append's bytes are its other fields followed by the entries'
 * block (field 11 once per entry), and a decoder reads them exactly as if encoded in one go. The
 * block is reused when an append carries the same entries as the last one encoded: the same
 * first and last entry objects and the same count. Entries are never changed once in the log and
 * a slice of it is contiguous, so that means the same entries; a log rewritten from some index
 * on holds new objects from there, the last one included.
 */
export class RaftFrameEncoder {
  private last: { first: Entry; last: Entry; count: number; block: Uint8Array } | null = null
  /** Entries encoded so far: an append sent to two followers counts its entries once. */
  entriesEncoded = 0

  /** m as a frame (encodeFrame's length prefix and limit). Throws RaftCodecError or FramingError. */
  encode(m: Message, maxFrameBytes: number): Buffer {
    if (m.type !== 'append' || m.entries.length === 0) return encodeFrame({ raft: raftToProto(m) }, maxFrameBytes)
    const header = pb.RaftMessage.encode(appendHeader(m)).finish()
    const block = this.entriesBlock(m.entries)
    return encodeFrameField(FRAME_RAFT_FIELD, [header, block], maxFrameBytes)
  }

  private entriesBlock(entries: readonly Entry[]): Uint8Array {
    const first = entries[0]!
    const last = entries[entries.length - 1]!
    const cached = this.last
    if (cached && cached.first === first && cached.last === last && cached.count === entries.length) return cached.block
    const block = encodeEntries(entries)
    this.entriesEncoded += entries.length
    this.last = { first, last, count: entries.length, block }
    return block
  }
}

/** RaftMessage's `entries` (11) and RaftEntry's fields (1 to 4), as tags. */
const TAG_ENTRY = (11 << 3) | 2
const TAG_INDEX = (1 << 3) | 0
const TAG_TERM = (2 << 3) | 0
const TAG_TYPE = (3 << 3) | 0
const TAG_DATA = (4 << 3) | 2

/** Bytes of a varint field holding v, left out (0) at proto3's default, as protobufjs does. */
function varintField(v: number): number {
  return v === 0 ? 0 : 1 + varintBytes(v)
}

/** Bytes of a RaftEntry message holding e, whose data has dataBytes bytes of UTF-8. */
function entryBytes(e: Entry, dataBytes: number): number {
  return varintField(e.index) + varintField(e.term) + varintField(ENTRY_TYPES[e.type]) + (dataBytes === 0 ? 0 : 1 + varintBytes(dataBytes) + dataBytes)
}

function putVarintField(out: Buffer, pos: number, tag: number, v: number): number {
  if (v === 0) return pos
  out[pos++] = tag
  return putVarint(out, pos, v)
}

/**
 * The entries' block of an append (field 11 once per entry), written by hand into one buffer of
 * the exact size: the bytes RaftMessage.encode writes for entries.map(entryToProto), fields at
 * their default left out (the codec test compares them). The generated encoder's writer queues
 * an operation object per field and a state per nested message, and a LongBits per 64-bit
 * number, a dozen objects an entry to collect: an append of 64 registrations took 0.93 µs an
 * entry to encode that way, 0.69 this way (both in one process).
 */
function encodeEntries(entries: readonly Entry[]): Buffer {
  const dataBytes: number[] = new Array(entries.length)
  let total = 0
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    checkWellFormed(e.data, `entry ${e.index} data`)
    const d = Buffer.byteLength(e.data, 'utf8')
    dataBytes[i] = d
    const inner = entryBytes(e, d)
    total += 1 + varintBytes(inner) + inner
  }
  const out = Buffer.allocUnsafe(total)
  let pos = 0
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    const d = dataBytes[i]!
    out[pos++] = TAG_ENTRY
    pos = putVarint(out, pos, entryBytes(e, d))
    pos = putVarintField(out, pos, TAG_INDEX, e.index)
    pos = putVarintField(out, pos, TAG_TERM, e.term)
    pos = putVarintField(out, pos, TAG_TYPE, ENTRY_TYPES[e.type])
    if (d === 0) continue
    out[pos++] = TAG_DATA
    pos = putVarint(out, pos, d)
    pos += out.write(e.data, pos, d, 'utf8')
  }
  return out
}

/** An append's fields but its entries. */
function appendHeader(m: Append): grace.peer.RaftMessage.$Properties {
  checkWellFormed(m.from, 'from')
  checkWellFormed(m.to, 'to')
  return { type: MESSAGE_TYPES.append, from: m.from, to: m.to, term: m.term, prevIndex: m.prevIndex, prevTerm: m.prevTerm, commit: m.commit }
}

// ---- decoding ------------------------------------------------------------------------------

/** A uint64 from the decoder (a Long, or a number) as a safe integer, or an error. */
function u64(v: unknown, what: string): number {
  const n = wireU64(v)
  if (n === null) throw new RaftCodecError(`raft message: ${what} is not an integer in 0..2^53 - 1`)
  return n
}

function nodeId(v: unknown, what: string): NodeId {
  if (typeof v !== 'string' || v.length === 0) throw new RaftCodecError(`raft message: ${what} is missing`)
  return v
}

function entryFromProto(e: grace.peer.RaftEntry.$Properties, i: number): Entry {
  const type = ENTRY_TYPE_NAMES.get(e.type as number)
  if (!type) throw new RaftCodecError(`raft message: entry ${i} has unknown type ${e.type}`)
  const data = e.data ?? ''
  if (typeof data !== 'string') throw new RaftCodecError(`raft message: entry ${i} data is not a string`)
  return { index: u64(e.index, `entry ${i} index`), term: u64(e.term, `entry ${i} term`), type, data }
}

function membershipFromProto(m: grace.peer.RaftMembership.$Properties | null | undefined): Membership {
  if (!m) throw new RaftCodecError('raft message: snapshot membership is missing')
  const ids = (list: unknown, what: string): NodeId[] => {
    if (!Array.isArray(list)) return []
    return list.map((id, i) => nodeId(id, `snapshot ${what}[${i}]`))
  }
  return { voters: ids(m.voters, 'voters'), learners: ids(m.learners, 'learners') }
}

function snapshotFromProto(s: grace.peer.RaftSnapshotMeta.$Properties | null | undefined): SnapshotMeta {
  if (!s) throw new RaftCodecError('raft message: snapshot meta is missing')
  return { index: u64(s.index, 'snapshot index'), term: u64(s.term, 'snapshot term'), membership: membershipFromProto(s.membership) }
}

/**
 * A RaftMessage's fields as read from the wire, before they are checked: a uint64 that is not a
 * safe integer is NaN, entries and snapshot meta are checked only by the variants that carry them.
 */
interface RaftFields {
  type: number
  from: unknown
  to: unknown
  term: number
  lastIndex: number
  lastTerm: number
  transfer: boolean
  granted: boolean
  prevIndex: number
  prevTerm: number
  commit: number
  success: boolean
  index: number
  hintIndex: number
  hintTerm: number
  context: number
  /** The entries, or a function that decodes them (throwing RaftCodecError). */
  entries: () => Entry[]
  snapshot: () => SnapshotMeta
}

function num(v: number, what: string): number {
  if (Number.isNaN(v)) throw new RaftCodecError(`raft message: ${what} is not an integer in 0..2^53 - 1`)
  return v
}

/**
 * The Message a RaftMessage's fields stand for, with exactly the fields of its variant. Throws
 * RaftCodecError when the type is unknown, an id is empty, a number is above 2^53 - 1, an entry
 * has an unknown type, or the entries of an append do not follow prevIndex one by one.
 */
function buildMessage(p: RaftFields): Message {
  const type = MESSAGE_TYPE_NAMES.get(p.type)
  if (!type) throw new RaftCodecError(p.type ? `raft message: unknown type ${p.type}` : 'raft message: type is missing')
  const from = nodeId(p.from, 'from')
  const to = nodeId(p.to, 'to')
  const term = num(p.term, 'term')
  switch (type) {
    case 'preVote':
      return { type, from, to, term, lastIndex: num(p.lastIndex, 'lastIndex'), lastTerm: num(p.lastTerm, 'lastTerm') }
    case 'vote':
      return { type, from, to, term, lastIndex: num(p.lastIndex, 'lastIndex'), lastTerm: num(p.lastTerm, 'lastTerm'), transfer: p.transfer }
    case 'preVoteResp':
    case 'voteResp':
      return { type, from, to, term, granted: p.granted }
    case 'append': {
      const prevIndex = num(p.prevIndex, 'prevIndex')
      const entries = p.entries()
      for (let i = 0; i < entries.length; i++) {
        if (entries[i]!.index !== prevIndex + 1 + i) {
          throw new RaftCodecError(`raft message: append entry ${i} has index ${entries[i]!.index}, expected ${prevIndex + 1 + i}`)
        }
      }
      return { type, from, to, term, prevIndex, prevTerm: num(p.prevTerm, 'prevTerm'), entries, commit: num(p.commit, 'commit') }
    }
    case 'appendResp':
      return {
        type,
        from,
        to,
        term,
        success: p.success,
        index: num(p.index, 'index'),
        hintIndex: num(p.hintIndex, 'hintIndex'),
        hintTerm: num(p.hintTerm, 'hintTerm'),
      }
    case 'heartbeat':
      return { type, from, to, term, commit: num(p.commit, 'commit'), context: num(p.context, 'context') }
    case 'heartbeatResp':
      return { type, from, to, term, context: num(p.context, 'context') }
    case 'snapshot':
      return { type, from, to, term, meta: p.snapshot() }
    case 'timeoutNow':
      return { type, from, to, term }
  }
}

/** A uint64 from protobufjs (a Long, or a number) as a safe integer, or NaN. */
function u64OrNaN(v: unknown): number {
  const n = wireU64(v)
  return n === null ? NaN : n
}

/** The Message a protobufjs-decoded RaftMessage stands for (see buildMessage). */
export function raftFromProto(p: grace.peer.RaftMessage.$Properties): Message {
  return buildMessage({
    type: (p.type as number | undefined) ?? 0,
    from: p.from,
    to: p.to,
    term: u64OrNaN(p.term),
    lastIndex: u64OrNaN(p.lastIndex),
    lastTerm: u64OrNaN(p.lastTerm),
    transfer: p.transfer === true,
    granted: p.granted === true,
    prevIndex: u64OrNaN(p.prevIndex),
    prevTerm: u64OrNaN(p.prevTerm),
    commit: u64OrNaN(p.commit),
    success: p.success === true,
    index: u64OrNaN(p.index),
    hintIndex: u64OrNaN(p.hintIndex),
    hintTerm: u64OrNaN(p.hintTerm),
    context: u64OrNaN(p.context),
    entries: () => (Array.isArray(p.entries) ? p.entries : []).map(entryFromProto),
    snapshot: () => snapshotFromProto(p.snapshot),
  })
}

// ---- decoding by hand ------------------------------------------------------------------------
//
// A follower decodes every append the leader sends: a frame per round carrying the round's
// entries. protobufjs builds a RaftEntry (its prototype's defaults), a Long per 64-bit number
// and a field object per entry, which raftFromProto then copies into an Entry. Read here field
// by field, the bytes go straight into the Message: the same fields, the same checks and errors
// (buildMessage), the wire read as protobufjs reads it (any field order, a later scalar replaces
// an earlier one, unknown fields skipped), but stricter: a known field of the wrong wire type,
// or a group, is refused rather than misread.

const WIRE_VARINT = 0
const WIRE_FIXED64 = 1
const WIRE_BYTES = 2
const WIRE_FIXED32 = 5

/** A cursor over a protobuf message's bytes [pos, end). Every read checks the end. */
class WireReader {
  constructor(
    readonly buf: Buffer,
    public pos: number,
    readonly end: number,
  ) {}

  /** A varint as a number: exact up to 2^53 - 1, NaN above (the 10-byte limit is enforced). */
  varint(): number {
    let value = 0
    let scale = 1
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw truncated()
      const b = this.buf[this.pos++]!
      value += (b & 0x7f) * scale
      if (b < 0x80) return value <= Number.MAX_SAFE_INTEGER ? value : NaN
      scale *= 128
    }
    throw new RaftCodecError('raft message: not a valid protobuf RaftMessage (varint over 10 bytes)')
  }

  /** A length-delimited field's bounds; pos moves past it. */
  bytes(): [number, number] {
    const length = this.varint()
    const start = this.pos
    if (!(length <= this.end - start)) throw truncated()
    this.pos = start + length
    return [start, this.pos]
  }

  string(): string {
    const [start, end] = this.bytes()
    return (this.buf as Buffer & { utf8Slice(start: number, end: number): string }).utf8Slice(start, end)
  }

  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.varint()
    else if (wire === WIRE_BYTES) this.bytes()
    else if (wire === WIRE_FIXED64 || wire === WIRE_FIXED32) {
      const n = wire === WIRE_FIXED64 ? 8 : 4
      if (this.end - this.pos < n) throw truncated()
      this.pos += n
    } else throw new RaftCodecError(`raft message: not a valid protobuf RaftMessage (wire type ${wire})`)
  }
}

function truncated(): RaftCodecError {
  return new RaftCodecError('raft message: not a valid protobuf RaftMessage (truncated)')
}

function wrongWire(field: number): RaftCodecError {
  return new RaftCodecError(`raft message: not a valid protobuf RaftMessage (field ${field} has the wrong wire type)`)
}

/** A RaftEntry at [start, end) (RaftEntry's fields: index 1, term 2, type 3, data 4). */
function readEntry(buf: Buffer, start: number, end: number, i: number): Entry {
  const r = new WireReader(buf, start, end)
  let index = 0
  let term = 0
  let typeCode = 0
  let data = ''
  while (r.pos < end) {
    const tag = r.varint()
    const field = Math.floor(tag / 8)
    const wire = tag % 8
    if (field >= 1 && field <= 3) {
      if (wire !== WIRE_VARINT) throw wrongWire(field)
      const v = r.varint()
      if (field === 1) index = v
      else if (field === 2) term = v
      else typeCode = v
    } else if (field === 4) {
      if (wire !== WIRE_BYTES) throw wrongWire(field)
      data = r.string()
    } else r.skip(wire)
  }
  const type = ENTRY_TYPE_NAMES.get(typeCode)
  if (!type) throw new RaftCodecError(`raft message: entry ${i} has unknown type ${typeCode}`)
  return { index: num(index, `entry ${i} index`), term: num(term, `entry ${i} term`), type, data }
}

/** Field numbers of RaftMessage read as varints (uint64, enum, bool). */
const VARINT_FIELDS = new Set([1, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 17])

/**
 * Decodes the RaftMessage in buf[start, end) (bytes encodeRaftMessage or RaftFrameEncoder made)
 * straight into a Message. Throws RaftCodecError, never returns part of one.
 */
export function decodeRaftBytes(bytes: Uint8Array, start = 0, end = bytes.length): Message {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const r = new WireReader(buf, start, end)
  const f: RaftFields = {
    type: 0,
    from: '',
    to: '',
    term: 0,
    lastIndex: 0,
    lastTerm: 0,
    transfer: false,
    granted: false,
    prevIndex: 0,
    prevTerm: 0,
    commit: 0,
    success: false,
    index: 0,
    hintIndex: 0,
    hintTerm: 0,
    context: 0,
    entries: noEntries,
    snapshot: noSnapshot,
  }
  // Entries' bounds, read once the type says they are wanted.
  const entryBounds: number[] = []
  let snapshot: [number, number] | null = null
  while (r.pos < end) {
    const tag = r.varint()
    const field = Math.floor(tag / 8)
    const wire = tag % 8
    if (VARINT_FIELDS.has(field)) {
      if (wire !== WIRE_VARINT) throw wrongWire(field)
      const v = r.varint()
      switch (field) {
        case 1:
          // An enum is an int32 on the wire: a negative one takes 10 bytes, and is no type we know.
          f.type = v
          break
        case 4:
          f.term = v
          break
        case 5:
          f.lastIndex = v
          break
        case 6:
          f.lastTerm = v
          break
        case 7:
          f.transfer = v !== 0
          break
        case 8:
          f.granted = v !== 0
          break
        case 9:
          f.prevIndex = v
          break
        case 10:
          f.prevTerm = v
          break
        case 12:
          f.commit = v
          break
        case 13:
          f.success = v !== 0
          break
        case 14:
          f.index = v
          break
        case 15:
          f.hintIndex = v
          break
        case 16:
          f.hintTerm = v
          break
        case 17:
          f.context = v
          break
      }
    } else if (field === 2 || field === 3 || field === 11 || field === 18) {
      if (wire !== WIRE_BYTES) throw wrongWire(field)
      if (field === 2) f.from = r.string()
      else if (field === 3) f.to = r.string()
      else if (field === 11) {
        const [s, e] = r.bytes()
        entryBounds.push(s, e)
      } else snapshot = r.bytes()
    } else r.skip(wire)
  }
  if (entryBounds.length > 0) {
    f.entries = () => {
      const entries: Entry[] = new Array(entryBounds.length / 2)
      for (let i = 0; i < entries.length; i++) entries[i] = readEntry(buf, entryBounds[2 * i]!, entryBounds[2 * i + 1]!, i)
      return entries
    }
  }
  if (snapshot) {
    const [s, e] = snapshot
    // Rare (a follower far behind): protobufjs reads it.
    f.snapshot = () => {
      let meta: grace.peer.RaftSnapshotMeta
      try {
        meta = pb.RaftSnapshotMeta.decode(buf.subarray(s, e))
      } catch (err) {
        throw new RaftCodecError(`raft message: not a valid protobuf RaftMessage (${(err as Error).message})`)
      }
      return snapshotFromProto(meta)
    }
  }
  return buildMessage(f)
}

const noEntries = (): Entry[] => []
const noSnapshot = (): SnapshotMeta => snapshotFromProto(undefined)

/** Decodes bytes made by encodeRaftMessage. Throws RaftCodecError, never returns part of one. */
export function decodeRaftMessage(bytes: Uint8Array): Message {
  return decodeRaftBytes(bytes)
}
