// Length-prefixed frames on a byte stream: a 4-byte big-endian length, then that many bytes of
// one encoded grace.peer.Frame. TCP delivers bytes in chunks of any size, so the decoder keeps a
// partial frame across chunks and returns every complete frame a chunk finishes.

import protobuf from 'protobufjs/minimal.js'
import { grace } from '../gen/proto.js'

/** The stream broke the framing rules; the connection is beyond repair and must be closed. */
export class FramingError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'FramingError'
  }
}

/**
 * Length prefix and encoded frame in one buffer, ready for socket.write: the frame is encoded
 * after 4 bytes reserved for the prefix, in one writer, rather than encoded and then copied.
 */
export function encodeFrame(frame: grace.peer.Frame.$Properties, maxFrameBytes: number): Buffer {
  const w = protobuf.Writer.create()
  w.fixed32(0)
  const out = grace.peer.Frame.encode(frame, w).finish() as Buffer
  const length = out.length - 4
  checkFrameLength(length, maxFrameBytes)
  out.writeUInt32BE(length, 0)
  return out
}

function checkFrameLength(length: number, maxFrameBytes: number): void {
  if (length > maxFrameBytes) throw new FramingError(`frame of ${length} bytes is over the limit of ${maxFrameBytes}`)
}

// ---- calls: Request and Response frames written by hand ------------------------------------
//
// Every forwarded change and sync batch is a Request frame and its Response. Written field by
// field into one buffer of the exact size, as protobufjs would write them (proto3: fields at their
// default are left out; the framing test compares the bytes), they take about 0.25 µs each where
// the generated encoder's writer, with its list of operations, took 0.65.

/** Frame field numbers and wire types as tags (transport.proto). */
const TAG_REQUEST = (6 << 3) | 2
const TAG_RESPONSE = (7 << 3) | 2
const TAG_ID = (1 << 3) | 0
/**
 * The tag of a length-delimited field. Request: method 2, payload 3. Response: error_code 2,
 * error_message 3, payload 4.
 */
const tagOf = (field: number) => (field << 3) | 2
const EMPTY = new Uint8Array(0)

/** Bytes of a varint holding v (0 <= v < 2^53). */
export function varintBytes(v: number): number {
  let n = 1
  while (v >= 128) {
    v = Math.floor(v / 128)
    n++
  }
  return n
}

/** Writes v (0 <= v < 2^53) as a varint at pos; answers the position after it. */
export function putVarint(out: Buffer, pos: number, v: number): number {
  while (v >= 128) {
    out[pos++] = (v % 128) | 128
    v = Math.floor(v / 128)
  }
  out[pos++] = v
  return pos
}

/** The UTF-8 bytes of method names, which are few and sent over and over. */
const methodBytes = new Map<string, Buffer>()
const MAX_CACHED_METHODS = 64

function utf8(s: string, cache: boolean): Buffer {
  const hit = cache ? methodBytes.get(s) : undefined
  if (hit !== undefined) return hit
  const bytes = Buffer.from(s, 'utf8')
  if (cache && methodBytes.size < MAX_CACHED_METHODS) methodBytes.set(s, bytes)
  return bytes
}

/** Bytes of a length-delimited field (tag, length, bytes); 0 when empty (left out). */
function fieldBytes(length: number): number {
  return length === 0 ? 0 : 1 + varintBytes(length) + length
}

function putField(out: Buffer, pos: number, tag: number, bytes: Uint8Array): number {
  if (bytes.length === 0) return pos
  out[pos++] = tag
  pos = putVarint(out, pos, bytes.length)
  out.set(bytes, pos)
  return pos + bytes.length
}

/** Length prefix and frame of one message (Request or Response) with an id and byte fields. */
function callFrame(frameTag: number, id: number, fields: readonly Uint8Array[], maxFrameBytes: number): Buffer {
  let inner = id === 0 ? 0 : 1 + varintBytes(id)
  for (const f of fields) inner += fieldBytes(f.length)
  const length = 1 + varintBytes(inner) + inner
  checkFrameLength(length, maxFrameBytes)
  const out = Buffer.allocUnsafe(4 + length)
  out.writeUInt32BE(length, 0)
  let pos = 4
  out[pos++] = frameTag
  pos = putVarint(out, pos, inner)
  if (id !== 0) {
    out[pos++] = TAG_ID
    pos = putVarint(out, pos, id)
  }
  for (let i = 0; i < fields.length; i++) pos = putField(out, pos, tagOf(i + 2), fields[i]!)
  return out
}

/** encodeFrame({ request: { id, method, payload } }), the same bytes. id is a safe integer >= 0. */
export function encodeRequestFrame(id: number, method: string, payload: Uint8Array, maxFrameBytes: number): Buffer {
  return callFrame(TAG_REQUEST, id, [utf8(method, true), payload], maxFrameBytes)
}

/** encodeFrame({ response: { id, errorCode, errorMessage, payload } }), the same bytes. */
export function encodeResponseFrame(id: number, errorCode: string, errorMessage: string, payload: Uint8Array | null, maxFrameBytes: number): Buffer {
  return callFrame(TAG_RESPONSE, id, [utf8(errorCode, false), utf8(errorMessage, false), payload ?? EMPTY], maxFrameBytes)
}

/**
 * encodeFrame for a frame whose one field (Frame field number `field`, a message) is already
 * encoded, in pieces concatenated in order (see RaftFrameEncoder): the same bytes, the same limit,
 * one buffer.
 */
export function encodeFrameField(field: number, parts: readonly Uint8Array[], maxFrameBytes: number): Buffer {
  let inner = 0
  for (const p of parts) inner += p.length
  const length = 1 + varintBytes(inner) + inner
  checkFrameLength(length, maxFrameBytes)
  const out = Buffer.allocUnsafe(4 + length)
  out.writeUInt32BE(length, 0)
  out[4] = tagOf(field)
  let pos = putVarint(out, 5, inner)
  for (const p of parts) {
    out.set(p, pos)
    pos += p.length
  }
  return out
}

/** A decoded frame: which kind it is, and that kind's message. */
export interface DecodedFrame extends grace.peer.Frame.$Properties {
  readonly kind?: grace.peer.Frame['kind']
  /**
   * A raft frame's RaftMessage, still encoded (a view of the body): the Raft codec reads it
   * straight into a Message (decodeRaftBytes), and a bad one is dropped, not the connection.
   * Set instead of `raft` when the frame is that one field; `raft` (Frame.decode's) otherwise.
   */
  readonly raftBytes?: Uint8Array
}

/**
 * Frame's fields by number (transport.proto): each reads its message from a reader over the body
 * and builds the decoded frame as a literal of one shape per kind (an object built with a
 * computed key took as long as the decoding).
 */
type FieldDecoder = (r: protobuf.Reader, length: number) => DecodedFrame
const FRAME_FIELDS: readonly (FieldDecoder | undefined)[] = [
  undefined,
  (r, n) => ({ kind: 'hello', hello: grace.peer.Hello.decode(r, n) }),
  (r, n) => ({ kind: 'helloAck', helloAck: grace.peer.HelloAck.decode(r, n) }),
  (r, n) => ({ kind: 'helloConfirm', helloConfirm: grace.peer.HelloConfirm.decode(r, n) }),
  (r, n) => ({ kind: 'helloReject', helloReject: grace.peer.HelloReject.decode(r, n) }),
  (r, n) => ({ kind: 'raft', raftBytes: r.buf.subarray(r.pos, r.pos + n) }),
  (r, n) => ({ kind: 'request', request: grace.peer.Request.decode(r, n) }),
  (r, n) => ({ kind: 'response', response: grace.peer.Response.decode(r, n) }),
  (r, n) => ({ kind: 'ping', ping: grace.peer.Ping.decode(r, n) }),
  (r, n) => ({ kind: 'pong', pong: grace.peer.Pong.decode(r, n) }),
]

/**
 * Decodes one frame body; a body that is not a Frame is a FramingError. A frame as encodeFrame
 * writes it, one field of the oneof and nothing else, is read here: the field's tag and length,
 * then its message, with protobufjs. Frame.decode would give the same, but sets the oneof's name
 * through a setter that deletes each of the eight other fields from the new object, which was
 * the largest single cost of a peer call in a CPU profile (test/bench/ap-forward.ts). Anything
 * else (no field, several, unknown ones) goes to Frame.decode.
 */
export function decodeFrame(body: Uint8Array): DecodedFrame {
  try {
    const tag = body.length > 1 ? body[0]! : 0
    const field = FRAME_FIELDS[tag >>> 3]
    if (field !== undefined && (tag & 7) === 2) {
      // The length, a varint of at most 5 bytes (a frame is far below 2^32 bytes).
      let length = 0
      let pos = 1
      for (let shift = 0; shift < 35 && pos < body.length; shift += 7) {
        const b = body[pos++]!
        length += (b & 0x7f) * 2 ** shift
        if (b < 0x80) {
          if (pos + length !== body.length) break
          const r = protobuf.Reader.create(body)
          r.pos = pos
          return field(r, length)
        }
      }
    }
    return grace.peer.Frame.decode(body)
  } catch (err) {
    throw new FramingError(`not a valid frame: ${(err as Error).message}`)
  }
}

/** A uint64 as the decoder gives it (a Long, or a number), or null when above 2^53 - 1. */
export function wireU64(v: unknown): number | null {
  if (v === undefined || v === null) return 0
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null
  const long = v as { low?: unknown; high?: unknown }
  if (typeof long.low !== 'number' || typeof long.high !== 'number') return null
  const hi = long.high >>> 0
  if (hi > 0x1f_ffff) return null
  return hi * 0x1_0000_0000 + (long.low >>> 0)
}

/**
 * Splits a byte stream into frame bodies. A frame that lies inside one chunk comes out as a view
 * of it (no copy); a frame spread over chunks is copied once into a buffer of its exact size,
 * allocated when its length prefix is read, so memory is bounded by maxFrameBytes however the
 * bytes are cut up.
 */
export class FrameDecoder {
  /** The length prefix, while it arrives in pieces. */
  private readonly header = Buffer.alloc(4)
  private headerFilled = 0
  /** Body length of the frame being read, or -1 while its length prefix is incomplete. */
  private need = -1
  /** The body being filled across chunks, and how much of it is there. */
  private body: Buffer | null = null
  private filled = 0

  /** maxFrameBytes can be raised later (after a handshake) with setMaxFrameBytes. */
  constructor(private maxFrameBytes: number) {}

  setMaxFrameBytes(n: number): void {
    this.maxFrameBytes = n
  }

  /** Bytes received that are not yet part of a complete frame. */
  get pendingBytes(): number {
    return this.headerFilled + this.filled + (this.need >= 0 && !this.body ? 4 : 0)
  }

  /**
   * Adds a chunk and hands each frame body it completes to onFrame, in order, one at a time: a
   * frame can change the limit for the next one (the handshake raises it), and onFrame returns
   * false to stop (the connection is being closed; the rest of the chunk is not read). Throws
   * FramingError when a length prefix announces more than maxFrameBytes.
   */
  push(chunk: Buffer, onFrame: (body: Buffer) => boolean): void {
    let pos = 0
    while (pos < chunk.length) {
      if (this.body) {
        const k = Math.min(this.need - this.filled, chunk.length - pos)
        chunk.copy(this.body, this.filled, pos, pos + k)
        this.filled += k
        pos += k
        if (this.filled === this.need) {
          const body = this.body
          this.body = null
          this.filled = 0
          this.need = -1
          if (!onFrame(body)) return
        }
        continue
      }
      if (this.need < 0) {
        if (this.headerFilled === 0 && chunk.length - pos >= 4) {
          this.need = chunk.readUInt32BE(pos)
          pos += 4
        } else {
          const k = Math.min(4 - this.headerFilled, chunk.length - pos)
          chunk.copy(this.header, this.headerFilled, pos, pos + k)
          this.headerFilled += k
          pos += k
          if (this.headerFilled < 4) break
          this.headerFilled = 0
          this.need = this.header.readUInt32BE(0)
        }
        if (this.need > this.maxFrameBytes) {
          throw new FramingError(`frame length ${this.need} is over the limit of ${this.maxFrameBytes} bytes`)
        }
      }
      if (chunk.length - pos >= this.need) {
        const body = chunk.subarray(pos, pos + this.need)
        pos += this.need
        this.need = -1
        if (!onFrame(body)) return
      } else {
        this.body = Buffer.allocUnsafe(this.need)
        this.filled = 0
      }
    }
    // A frame of length 0 whose prefix ends the chunk.
    if (this.need === 0) {
      this.need = -1
      onFrame(Buffer.alloc(0))
    }
  }

  /** push, collecting the bodies (for tests and simple readers). */
  pushAll(chunk: Buffer): Buffer[] {
    const out: Buffer[] = []
    this.push(chunk, (body) => {
      out.push(body)
      return true
    })
    return out
  }
}
