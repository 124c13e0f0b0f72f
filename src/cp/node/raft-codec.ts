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
 * The Message a decoded protobuf RaftMessage stands for, with exactly the fields of its variant.
 * Throws RaftCodecError when the type is unknown, an id is empty, a number is above 2^53 - 1,
 * an entry has an unknown type, or the entries of an append do not follow prevIndex one by one.
 */
export function raftFromProto(p: grace.peer.RaftMessage.$Properties): Message {
  const type = MESSAGE_TYPE_NAMES.get(p.type as number)
  if (!type) throw new RaftCodecError(p.type ? `raft message: unknown type ${p.type}` : 'raft message: type is missing')
  const from = nodeId(p.from, 'from')
  const to = nodeId(p.to, 'to')
  const term = u64(p.term, 'term')
  switch (type) {
    case 'preVote':
      return { type, from, to, term, lastIndex: u64(p.lastIndex, 'lastIndex'), lastTerm: u64(p.lastTerm, 'lastTerm') }
    case 'vote':
      return { type, from, to, term, lastIndex: u64(p.lastIndex, 'lastIndex'), lastTerm: u64(p.lastTerm, 'lastTerm'), transfer: p.transfer === true }
    case 'preVoteResp':
    case 'voteResp':
      return { type, from, to, term, granted: p.granted === true }
    case 'append': {
      const prevIndex = u64(p.prevIndex, 'prevIndex')
      const list = Array.isArray(p.entries) ? p.entries : []
      const entries = list.map(entryFromProto)
      for (let i = 0; i < entries.length; i++) {
        if (entries[i]!.index !== prevIndex + 1 + i) {
          throw new RaftCodecError(`raft message: append entry ${i} has index ${entries[i]!.index}, expected ${prevIndex + 1 + i}`)
        }
      }
      return { type, from, to, term, prevIndex, prevTerm: u64(p.prevTerm, 'prevTerm'), entries, commit: u64(p.commit, 'commit') }
    }
    case 'appendResp':
      return {
        type,
        from,
        to,
        term,
        success: p.success === true,
        index: u64(p.index, 'index'),
        hintIndex: u64(p.hintIndex, 'hintIndex'),
        hintTerm: u64(p.hintTerm, 'hintTerm'),
      }
    case 'heartbeat':
      return { type, from, to, term, commit: u64(p.commit, 'commit'), context: u64(p.context, 'context') }
    case 'heartbeatResp':
      return { type, from, to, term, context: u64(p.context, 'context') }
    case 'snapshot':
      return { type, from, to, term, meta: snapshotFromProto(p.snapshot) }
    case 'timeoutNow':
      return { type, from, to, term }
  }
}

/** Decodes bytes made by encodeRaftMessage. Throws RaftCodecError, never returns part of one. */
export function decodeRaftMessage(bytes: Uint8Array): Message {
  let p: grace.peer.RaftMessage
  try {
    p = pb.RaftMessage.decode(bytes)
  } catch (err) {
    throw new RaftCodecError(`raft message: not a valid protobuf RaftMessage (${(err as Error).message})`)
  }
  return raftFromProto(p)
}
