// The Distro peer messages: method names, encoders and strict decoders. JSON in UTF-8, like the
// Raft driver's calls. Everything a peer sends is checked in full before any of it is applied: a
// malformed message is refused as a whole (a GraceError, which the transport answers as an error
// code), so a broken or hostile peer can neither crash a node nor leave half a batch applied.
// Peers are authenticated by the transport, so this guards against bugs and version skew, not
// against forged identities.
//
// Size: every message this node builds stays under MAX_MESSAGE_BYTES. Items are encoded once
// (and cached per item object, since the same record goes to every peer) so that the byte budget
// is exact, not an estimate. The one exception is a single client record that alone is larger:
// it is still sent (a client may hold up to LIMITS.maxInstancesPerClient instances), bounded by
// the transport's frame limit.

import { Buffer } from 'node:buffer'
import { isIP } from 'node:net'
import { GraceError } from '../../core/errors.js'
import { LIMITS } from '../../core/limits.js'
import { name } from '../../core/validate.js'
import type { Instance } from '../../naming/model.js'
import type { BucketSummary } from '../distro/digest.js'
import { DISTRO_LIMITS } from '../distro/limits.js'
import { compactStamps, instanceKey } from '../distro/records.js'
import { isTombstone, tombstone, type InstanceRemoval, type NodeId, type Versioned } from '../distro/types.js'

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
/** An instance key (records.ts instanceKey): four names and an address, with separators. */
const MAX_KEY_CHARS = 4 * LIMITS.maxNameBytes + 64

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** A refusal of a malformed message: INVALID_ARGUMENT, so the transport answers it as such. */
export function malformed(what: string): never {
  throw new GraceError('INVALID_ARGUMENT', `malformed distro message: ${what}`)
}

// ---- items ---------------------------------------------------------------------------------

/**
 * Items encoded lately, with their UTF-8 size: a change goes to every peer, and its size is asked
 * when it is batched, so each item is encoded once rather than once per use. Two generations of
 * at most ENCODED_CACHE_ITEMS (a load page's worth fits), so the cache stays bounded: a WeakMap
 * keyed by the items kept the JSON of every record a node had ever sent for as long as the record
 * lived, about 40 MB on a node that served a load of 100k clients.
 */
const ENCODED_CACHE_ITEMS = 8192
let recent = new Map<object, Encoded>()
let older = new Map<object, Encoded>()

interface Encoded {
  readonly json: string
  /** UTF-8 bytes of json plus its separator in a list. */
  readonly bytes: number
}

function encoded(item: Versioned): Encoded {
  let e = recent.get(item)
  if (e !== undefined) return e
  e = older.get(item)
  if (e === undefined) {
    const json = isTombstone(item)
      ? JSON.stringify({ clientId: item.clientId, version: item.version, removed: true, removals: removalPairs(item.removals) })
      : JSON.stringify({
          clientId: item.clientId,
          version: item.version,
          instances: item.instances,
          stamps: item.stamps,
          removals: removalPairs(item.removals),
          floor: item.floor || undefined,
        })
    e = { json, bytes: Buffer.byteLength(json, 'utf8') + 1 }
  }
  if (recent.size >= ENCODED_CACHE_ITEMS) {
    older = recent
    recent = new Map()
  }
  recent.set(item, e)
  return e
}

/** The JSON of one record or tombstone. */
export function encodeItem(item: Versioned): string {
  return encoded(item).json
}

/** Removals as [key, version] pairs on the wire; absent when there are none. */
function removalPairs(removals: readonly InstanceRemoval[] | undefined): [string, number][] | undefined {
  return removals === undefined || removals.length === 0 ? undefined : removals.map((r) => [r.key, r.version])
}

/** Exact UTF-8 bytes of encodeItem(item) plus its separator. */
export function itemBytes(item: Versioned): number {
  return encoded(item).bytes
}

function itemsJson(items: readonly Versioned[]): string {
  let s = '['
  for (let i = 0; i < items.length; i++) {
    if (i > 0) s += ','
    s += encodeItem(items[i]!)
  }
  return s + ']'
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function safeNonNegative(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) malformed(`${what} is not a non-negative integer`)
  return x
}

function parseInstance(x: unknown, clientId: string): Instance {
  if (!isObject(x)) malformed('an instance is not an object')
  if (x.ephemeral !== true) malformed(`an instance of ${clientId} is not ephemeral`)
  if (x.clientId !== clientId) malformed(`an instance of ${clientId} names another client`)
  if (typeof x.ip !== 'string' || isIP(x.ip) === 0) malformed(`an instance of ${clientId} has no valid ip`)
  const port = x.port
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) malformed(`an instance of ${clientId} has no valid port`)
  const weight = x.weight
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > LIMITS.maxWeight) malformed(`an instance of ${clientId} has no valid weight`)
  if (typeof x.enabled !== 'boolean' || typeof x.healthy !== 'boolean') malformed(`an instance of ${clientId} has no enabled/healthy flags`)
  // A fresh object with exactly the model's fields: nothing else a peer sends reaches the views.
  return {
    namespace: name(x.namespace, 'namespace'),
    group: name(x.group, 'group'),
    service: name(x.service, 'service'),
    cluster: name(x.cluster, 'cluster'),
    ip: x.ip,
    port,
    weight,
    enabled: x.enabled,
    healthy: x.healthy,
    ephemeral: true,
    metadata: metadataOf(x.metadata, clientId),
    clientId,
  }
}

const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed

/**
 * An instance's metadata from a peer: what core/validate.ts stringMap accepts (strings only, no
 * empty key, no unpaired surrogate, at most LIMITS.maxMetadataBytes of UTF-8 in keys and values),
 * checked without a regex or an entries array per map. A load brings 100k of them at once, and
 * stringMap was a third of the time spent checking it. The UTF-8 size is counted exactly only
 * when three bytes per UTF-16 unit could pass the limit.
 */
function metadataOf(x: unknown, clientId: string): Record<string, string> {
  if (x === undefined || x === null) return {}
  if (typeof x !== 'object' || Array.isArray(x)) malformed(`the metadata of an instance of ${clientId} is not an object of strings`)
  const src = x as Record<string, unknown>
  const out: Record<string, string> = {}
  let units = 0
  for (const k of Object.keys(src)) {
    const v = src[k]
    if (typeof v !== 'string' || k === '' || !isWellFormed.call(k) || !isWellFormed.call(v)) {
      malformed(`the metadata of an instance of ${clientId} is not a map of well-formed strings with non-empty keys`)
    }
    units += k.length + v.length
    // A key "__proto__" would set the prototype if assigned: define it as a plain property.
    if (k === '__proto__') Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    else out[k] = v
  }
  if (units * 3 > LIMITS.maxMetadataBytes) {
    let bytes = 0
    for (const k of Object.keys(out)) bytes += Buffer.byteLength(k, 'utf8') + Buffer.byteLength(out[k]!, 'utf8')
    if (bytes > LIMITS.maxMetadataBytes) malformed(`the metadata of an instance of ${clientId} is over ${LIMITS.maxMetadataBytes} bytes`)
  }
  return out
}

/** One record or tombstone from a peer, checked so that Replica.apply's assertions hold. */
export function parseItem(x: unknown): Versioned {
  if (!isObject(x)) malformed('an item is not an object')
  const clientId = name(x.clientId, 'clientId')
  const version = safeNonNegative(x.version, `the version of ${clientId}`)
  if (x.removed !== undefined) {
    if (x.removed !== true || x.instances !== undefined || x.stamps !== undefined || x.floor !== undefined) {
      malformed(`the tombstone of ${clientId} is not { clientId, version, removed: true, removals? }`)
    }
    // A tombstone's version is its floor: its removals lie above it.
    return tombstone(clientId, version, parseRemovals(x.removals, clientId, version, Infinity, new Set()))
  }
  const raw = x.instances
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > LIMITS.maxInstancesPerClient) {
    malformed(`the instances of ${clientId} are not a list of 1 to ${LIMITS.maxInstancesPerClient}`)
  }
  const instances = raw.map((i) => parseInstance(i, clientId))
  const floor = x.floor === undefined ? 0 : safeNonNegative(x.floor, `the floor of ${clientId}`)
  // Every stamp and removal lies in (floor, version], and version is the newest of them: the
  // shape records.ts writeClient and mergeClient produce, which mergeClient relies on.
  const inRange = (v: number): boolean => v > floor && v <= version
  let newest = floor
  let stamps: number[] | undefined
  if (x.stamps !== undefined) {
    if (!Array.isArray(x.stamps) || x.stamps.length !== instances.length) malformed(`the stamps of ${clientId} are not one per instance`)
    stamps = x.stamps.map((v) => safeNonNegative(v, `a stamp of ${clientId}`))
    for (const v of stamps) {
      if (!inRange(v)) malformed(`a stamp of ${clientId} is outside (floor, version]`)
      newest = Math.max(newest, v)
    }
  } else {
    if (!inRange(version)) malformed(`the version of ${clientId} is not above its floor`)
    newest = version
  }
  const keys = new Set<string>()
  for (const i of instances) {
    const k = instanceKey(i)
    if (keys.has(k)) malformed(`client ${clientId} holds an instance twice`)
    keys.add(k)
  }
  const removals = parseRemovals(x.removals, clientId, floor, version, keys)
  for (const r of removals) newest = Math.max(newest, r.version)
  if (newest !== version) malformed(`the version of ${clientId} is not its newest stamp`)
  // Kept as records.ts writeClient keeps them: no lists that say nothing.
  return { clientId, version, instances, stamps: stamps && compactStamps(stamps, version), removals: removals.length === 0 ? undefined : removals, floor }
}

/**
 * A state's removals: [key, version] pairs, each version in (floor, max], no key twice nor one
 * in `keys` (the instances the state holds), newest first as records.ts keeps them.
 */
function parseRemovals(x: unknown, clientId: string, floor: number, max: number, keys: Set<string>): InstanceRemoval[] {
  if (x === undefined) return []
  if (!Array.isArray(x) || x.length > DISTRO_LIMITS.maxRemovalsPerClient) {
    malformed(`the removals of ${clientId} are not a list of at most ${DISTRO_LIMITS.maxRemovalsPerClient}`)
  }
  const out: InstanceRemoval[] = []
  for (const r of x) {
    if (!Array.isArray(r) || r.length !== 2 || typeof r[0] !== 'string' || r[0].length === 0 || r[0].length > MAX_KEY_CHARS) {
      malformed(`a removal of ${clientId} is not [instance key, version]`)
    }
    const v = safeNonNegative(r[1], `a removal version of ${clientId}`)
    if (v <= floor || v > max) malformed(`a removal of ${clientId} is outside (floor, version]`)
    if (out.length > 0 && v > out[out.length - 1]!.version) malformed(`the removals of ${clientId} are not newest first`)
    if (keys.has(r[0])) malformed(`client ${clientId} holds or removed an instance twice`)
    keys.add(r[0])
    out.push({ key: r[0], version: v })
  }
  return out
}

function parseItems(x: unknown, max: number): Versioned[] {
  if (!Array.isArray(x) || x.length > max) malformed(`items is not a list of at most ${max}`)
  const out = x.map(parseItem)
  // Two copies of a client in one message would make "accepted" ambiguous; a sender never does it.
  const seen = new Set<string>()
  for (const it of out) {
    if (seen.has(it.clientId)) malformed(`client ${it.clientId} appears twice`)
    seen.add(it.clientId)
  }
  return out
}

// ---- framing -------------------------------------------------------------------------------

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
  return encodeJson(`{"items":${itemsJson(items)}}`)
}

export function decodeItemsMessage(payload: Uint8Array): Versioned[] {
  return parseItems(decodeObject(payload).items, MAX_ITEMS_PER_MESSAGE)
}

export function decodeAccepted(payload: Uint8Array): number {
  return safeNonNegative(decodeObject(payload).accepted, 'accepted')
}

// ---- verify: a bucket summary -> { differing, ignored } --------------------------------------

export function encodeSummary(s: BucketSummary): Uint8Array {
  return encodeObject({ owner: s.owner, buckets: s.buckets, counts: Array.from(s.counts), fps: Array.from(s.fps) })
}

function u32List(x: unknown, length: number, what: string): number[] {
  if (!Array.isArray(x) || x.length !== length) malformed(`${what} is not a list of ${length}`)
  for (const v of x) if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) malformed(`${what} holds something other than a 32-bit unsigned integer`)
  return x as number[]
}

export function decodeSummary(payload: Uint8Array, expectedBuckets: number): BucketSummary {
  const o = decodeObject(payload)
  if (typeof o.owner !== 'string' || o.owner.length === 0) malformed('summary owner is not a node id')
  if (o.buckets !== expectedBuckets) malformed(`summary has ${String(o.buckets)} buckets, this node uses ${expectedBuckets}`)
  return { owner: o.owner, buckets: expectedBuckets, counts: u32List(o.counts, expectedBuckets, 'counts'), fps: u32List(o.fps, 2 * expectedBuckets, 'fps') }
}

export interface VerifyAnswer {
  readonly differing: number
  /** The receiver does not count the sender as a healthy member, so it did not compare. */
  readonly ignored: boolean
}

export function decodeVerifyAnswer(payload: Uint8Array): VerifyAnswer {
  const o = decodeObject(payload)
  return { differing: safeNonNegative(o.differing, 'differing'), ignored: o.ignored === true }
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

/** An answer with the items found and `next`, the index of the first asked id not answered yet. */
export function encodePage(items: readonly Versioned[], next: number, extra: string = ''): Uint8Array {
  return encodeJson(`{"items":${itemsJson(items)},"next":${next}${extra}}`)
}

export interface PullAnswer {
  readonly items: Versioned[]
  readonly next: number
}

export function decodePullAnswer(payload: Uint8Array, asked: readonly string[]): PullAnswer {
  const o = decodeObject(payload)
  const next = safeNonNegative(o.next, 'next')
  if (next === 0 || next > asked.length) malformed(`next ${next} is not in 1..${asked.length}`)
  const items = parseItems(o.items, MAX_ITEMS_PER_MESSAGE)
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

export function encodeLoadPage(session: string, total: number, items: readonly Versioned[], next: number): Uint8Array {
  return encodePage(items, next, `,"session":${JSON.stringify(session)},"total":${total}`)
}

export interface LoadPage {
  readonly session: string
  readonly total: number
  readonly items: Versioned[]
  readonly next: number
}

export function decodeLoadPage(payload: Uint8Array, offset: number): LoadPage {
  const o = decodeObject(payload)
  if (typeof o.session !== 'string' || o.session.length === 0 || o.session.length > MAX_SESSION_CHARS) malformed('load answer has no session')
  const total = safeNonNegative(o.total, 'total')
  const next = safeNonNegative(o.next, 'next')
  // A page moves forward, unless the copy is complete (an empty node answers 0 of 0).
  if (next > total || (next <= offset && next < total)) malformed(`load page next ${next} does not advance from ${offset} (of ${total})`)
  return { session: o.session, total, items: parseItems(o.items, MAX_ITEMS_PER_MESSAGE), next }
}
