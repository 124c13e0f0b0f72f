// The Distro peer messages: method names, encoders and strict decoders. The messages of every
// sync and verify round are binary (distro-items.ts's writer and reader): records (sync, push,
// pull answers, load pages), bucket summaries and their answers. The rest, sent only when a
// repair or a load runs, are JSON in UTF-8, like the Raft driver's calls. Everything a peer sends is checked in full before any of it is applied: a
// malformed message is refused as a whole (a GraceError, which the transport answers as an error
// code), so a broken or hostile peer can neither crash a node nor leave half a batch applied.
// Peers are authenticated by the transport, so this guards against bugs and version skew, not
// against forged identities.
//
// Size: every message this node builds stays under MAX_MESSAGE_BYTES: batches and pages are cut
// by itemBytes, an upper bound of what each item adds. The one exception is a single client record that alone is larger:
// it is still sent (a client may hold up to LIMITS.maxInstancesPerClient instances), bounded by
// the transport's frame limit.

import { name } from '../../core/validate.js'
import type { BucketSummary } from '../distro/digest.js'
import { DISTRO_LIMITS } from '../distro/limits.js'
import type { NodeId, Versioned } from '../distro/types.js'
import { ANSWER_FORMAT, ByteReader, ByteWriter, ITEMS_FORMAT, SUMMARY_FORMAT, itemBytes, malformed, readItems, writeItems } from './distro-items.js'

export { itemBytes, malformed }

export const METHODS = {
  /** Owner -> peer: { items } -> { accepted }. */
  sync: 'distro.sync',
  /** Owner -> peer: a bucket summary of what the sender owns -> { differing, ignored }. */
  verify: 'distro.verify',
  /** Peer -> owner: { buckets } -> the owner's exact digest in those buckets. */
  exact: 'distro.exact',
  /** Peer -> owner: { ids } -> { items, next }. */
  pull: 'distro.pull',
  /** Peer -> owner: { items } the owner lacks or holds older -> { accepted }. */
  push: 'distro.push',
  /** Starting node -> any peer: { session, offset } -> a page of a full copy. */
  load: 'distro.load',
} as const

export const MAX_MESSAGE_BYTES = 1024 * 1024
/** Room left for a message's envelope around its items. */
const ENVELOPE_BYTES = 1024
export const ITEM_BUDGET_BYTES = MAX_MESSAGE_BYTES - ENVELOPE_BYTES
/** Items in one sync batch as the receiver accepts it (senders use DISTRO_LIMITS.maxBatchItems). */
const MAX_ITEMS_PER_MESSAGE = 10_000
/** Entries in one exact digest answer, live plus removed (64 buckets of 100k clients is ~6,400). */
export const MAX_EXACT_ENTRIES = 20_000
const MAX_SESSION_CHARS = 128

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

// ---- items ---------------------------------------------------------------------------------
//
// Records travel in the binary form of distro-items.ts: one format byte, the message's own fields,
// then the items block. The other messages are small (one per verify round or repair) and stay
// JSON.

/** A message of items: the format byte, `head` (the message's own fields), the items block. */
function itemsMessage(items: readonly Versioned[], head?: (w: ByteWriter) => void): Uint8Array {
  const w = new ByteWriter(64 + 96 * items.length)
  w.u8(ITEMS_FORMAT)
  head?.(w)
  writeItems(w, items)
  return w.bytes()
}

// ---- JSON ----------------------------------------------------------------------------------

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function safeNonNegative(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) malformed(`${what} is not a non-negative integer`)
  return x
}

export function encodeJson(s: string): Uint8Array {
  return encoder.encode(s)
}

export function encodeObject(o: unknown): Uint8Array {
  return encoder.encode(JSON.stringify(o))
}

/** The JSON object in a payload, or a refusal. */
export function decodeObject(payload: Uint8Array): Record<string, unknown> {
  let body: unknown
  try {
    body = JSON.parse(decoder.decode(payload))
  } catch (err) {
    malformed(`not UTF-8 JSON (${(err as Error).message})`)
  }
  if (!isObject(body)) malformed('the body is not a JSON object')
  return body
}

/**
 * Splits items into groups under the byte budget and `maxItems` (a group always holds at least
 * one item, so one large record cannot stall the rest).
 */
export function chunkItems(items: readonly Versioned[], maxItems: number, budget: number = ITEM_BUDGET_BYTES): Versioned[][] {
  const out: Versioned[][] = []
  let cur: Versioned[] = []
  let bytes = 0
  for (const it of items) {
    const n = itemBytes(it)
    if (cur.length > 0 && (cur.length >= maxItems || bytes + n > budget)) {
      out.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(it)
    bytes += n
  }
  if (cur.length > 0) out.push(cur)
  return out
}

// ---- sync and push: { items } -> { accepted } ------------------------------------------------

export function encodeItemsMessage(items: readonly Versioned[]): Uint8Array {
  return itemsMessage(items)
}

export function decodeItemsMessage(payload: Uint8Array): Versioned[] {
  const r = new ByteReader(payload)
  r.format(ITEMS_FORMAT)
  const items = readItems(r, MAX_ITEMS_PER_MESSAGE)
  r.end()
  return items
}

/** A sync's or push's answer: how many items the receiver took. */
export function encodeAccepted(accepted: number): Uint8Array {
  const w = new ByteWriter(8)
  w.u8(ANSWER_FORMAT)
  w.varint(accepted)
  return w.bytes()
}

export function decodeAccepted(payload: Uint8Array): number {
  const r = new ByteReader(payload)
  r.format(ANSWER_FORMAT)
  const accepted = r.varint()
  r.end()
  return accepted
}

// ---- verify: a bucket summary -> { differing, ignored } --------------------------------------
//
// Binary: the format byte, the owner, the bucket count, then every count and every fingerprint
// word as a little-endian u32. As JSON, 1,024 buckets took about 0.6 ms to encode and 0.4 ms to
// decode, a turn of the event loop per peer every verify interval.

const MAX_OWNER_BYTES = 256

export function encodeSummary(s: BucketSummary): Uint8Array {
  const w = new ByteWriter(16 + MAX_OWNER_BYTES + 12 * s.buckets)
  w.u8(SUMMARY_FORMAT)
  w.string(s.owner)
  w.varint(s.buckets)
  w.u32s(s.counts, s.buckets)
  w.u32s(s.fps, 2 * s.buckets)
  return w.bytes()
}

export function decodeSummary(payload: Uint8Array, expectedBuckets: number): BucketSummary {
  const r = new ByteReader(payload)
  r.format(SUMMARY_FORMAT)
  const owner = r.string(MAX_OWNER_BYTES, 'the summary owner')
  if (owner.length === 0) malformed('summary owner is not a node id')
  const buckets = r.varint()
  if (buckets !== expectedBuckets) malformed(`summary has ${buckets} buckets, this node uses ${expectedBuckets}`)
  const counts = r.u32s(buckets)
  const fps = r.u32s(2 * buckets)
  r.end()
  return { owner, buckets, counts, fps }
}

export interface VerifyAnswer {
  readonly differing: number
  /** The receiver does not count the sender as a healthy member, so it did not compare. */
  readonly ignored: boolean
}

/** A verify round's answer: a flags byte (1: ignored), then how many clients differed. */
export function encodeVerifyAnswer(a: VerifyAnswer): Uint8Array {
  const w = new ByteWriter(8)
  w.u8(ANSWER_FORMAT)
  w.u8(a.ignored ? 1 : 0)
  w.varint(a.differing)
  return w.bytes()
}

export function decodeVerifyAnswer(payload: Uint8Array): VerifyAnswer {
  const r = new ByteReader(payload)
  r.format(ANSWER_FORMAT)
  const flags = r.u8()
  if (flags > 1) malformed(`verify answer flags ${flags}`)
  const differing = r.varint()
  r.end()
  return { differing, ignored: flags === 1 }
}

// ---- exact: { buckets } -> the owner's exact digest --------------------------------------------

export function encodeBucketList(buckets: readonly number[]): Uint8Array {
  return encodeObject({ buckets })
}

export function decodeBucketList(payload: Uint8Array, bucketCount: number): number[] {
  const x = decodeObject(payload).buckets
  if (!Array.isArray(x) || x.length === 0 || x.length > DISTRO_LIMITS.maxBucketsPerRequest) malformed(`buckets is not a list of 1 to ${DISTRO_LIMITS.maxBucketsPerRequest}`)
  const seen = new Set<number>()
  for (const b of x) {
    if (typeof b !== 'number' || !Number.isInteger(b) || b < 0 || b >= bucketCount) malformed(`bucket ${String(b)} is not in 0..${bucketCount - 1}`)
    if (seen.has(b)) malformed(`bucket ${b} appears twice`)
    seen.add(b)
  }
  return x as number[]
}

export interface ExactAnswer {
  readonly owner: NodeId
  readonly buckets: number[]
  readonly live: Map<string, number>
  readonly removed: Map<string, number>
}

export function encodeExact(owner: NodeId, buckets: readonly number[], live: ReadonlyMap<string, number>, removed: ReadonlyMap<string, number>): Uint8Array {
  return encodeObject({ owner, buckets, live: Array.from(live), removed: Array.from(removed) })
}

function versionMap(x: unknown, what: string, max: number): Map<string, number> {
  if (!Array.isArray(x) || x.length > max) malformed(`${what} is not a list of at most ${max}`)
  const out = new Map<string, number>()
  for (const e of x) {
    if (!Array.isArray(e) || e.length !== 2 || typeof e[0] !== 'string' || e[0].length === 0) malformed(`${what} holds something other than [clientId, version]`)
    out.set(e[0], safeNonNegative(e[1], `${what} version of ${e[0]}`))
  }
  return out
}

export function decodeExact(payload: Uint8Array, asked: readonly number[]): ExactAnswer {
  const o = decodeObject(payload)
  if (typeof o.owner !== 'string') malformed('exact owner is not a node id')
  const b = o.buckets
  if (!Array.isArray(b) || b.length !== asked.length || b.some((x, i) => x !== asked[i])) malformed('exact answer is for other buckets than asked')
  return { owner: o.owner, buckets: asked.slice(), live: versionMap(o.live, 'live', MAX_EXACT_ENTRIES), removed: versionMap(o.removed, 'removed', 2 * DISTRO_LIMITS.maxTombstones) }
}

// ---- pull: { ids } -> { items, next } -----------------------------------------------------------

export function encodeIds(ids: readonly string[]): Uint8Array {
  return encodeObject({ ids })
}

export function decodeIds(payload: Uint8Array): string[] {
  const x = decodeObject(payload).ids
  if (!Array.isArray(x) || x.length === 0 || x.length > DISTRO_LIMITS.maxRecordsPerPull) malformed(`ids is not a list of 1 to ${DISTRO_LIMITS.maxRecordsPerPull}`)
  for (const id of x) name(id, 'clientId')
  return x as string[]
}

/** An answer with `next`, the index of the first asked id not answered yet, and the items found. */
export function encodePage(items: readonly Versioned[], next: number): Uint8Array {
  return itemsMessage(items, (w) => w.varint(next))
}

export interface PullAnswer {
  readonly items: Versioned[]
  readonly next: number
}

export function decodePullAnswer(payload: Uint8Array, asked: readonly string[]): PullAnswer {
  const r = new ByteReader(payload)
  r.format(ITEMS_FORMAT)
  const next = r.varint()
  if (next === 0 || next > asked.length) malformed(`next ${next} is not in 1..${asked.length}`)
  const items = readItems(r, MAX_ITEMS_PER_MESSAGE)
  r.end()
  const window = new Set(asked.slice(0, next))
  for (const it of items) if (!window.has(it.clientId)) malformed(`pull answered ${it.clientId}, which was not asked`)
  return { items, next }
}

// ---- load: { session, offset } -> { session, total, items, next } --------------------------------

export interface LoadRequest {
  readonly session: string | null
  readonly offset: number
}

export function encodeLoadRequest(r: LoadRequest): Uint8Array {
  return encodeObject(r)
}

export function decodeLoadRequest(payload: Uint8Array): LoadRequest {
  const o = decodeObject(payload)
  const session = o.session ?? null
  if (session !== null && (typeof session !== 'string' || session.length === 0 || session.length > MAX_SESSION_CHARS)) malformed('session is not a session id')
  const offset = safeNonNegative(o.offset, 'offset')
  if (session === null && offset !== 0) malformed('a new load starts at offset 0')
  return { session, offset }
}

/** A load page: its session, the copy's total and `next`, then the items. */
export function encodeLoadPage(session: string, total: number, items: readonly Versioned[], next: number): Uint8Array {
  return itemsMessage(items, (w) => {
    w.string(session)
    w.varint(total)
    w.varint(next)
  })
}

export interface LoadPage {
  readonly session: string
  readonly total: number
  readonly items: Versioned[]
  readonly next: number
}

export function decodeLoadPage(payload: Uint8Array, offset: number): LoadPage {
  const r = new ByteReader(payload)
  r.format(ITEMS_FORMAT)
  const session = r.string(MAX_SESSION_CHARS, 'the load session')
  if (session.length === 0) malformed('load answer has no session')
  const total = r.varint()
  const next = r.varint()
  // A page moves forward, unless the copy is complete (an empty node answers 0 of 0).
  if (next > total || (next <= offset && next < total)) malformed(`load page next ${next} does not advance from ${offset} (of ${total})`)
  const items = readItems(r, MAX_ITEMS_PER_MESSAGE)
  r.end()
  return { session, total, items, next }
}
