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
/** Entries in one message's string table (each takes at least 3 bytes of a message's budget). */
const MAX_STRINGS_PER_MESSAGE = 400_000
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
//
// Records travel in a compact form. A message that carries items has a string table `s`, with
// each distinct name and metadata key or value once, and each item is a list:
//   a record:     [clientId, version, floor, instances, stamps, removals]
//   a tombstone:  [clientId, version, removals]
//   an instance:  [namespace, group, service, cluster, ip, port, weight, flags, metadata]
// namespace to cluster are indices into `s`; flags is 1 for enabled plus 2 for healthy; metadata
// is a flat list of indices [key, value, key, value, ...]; stamps is 0 when every instance was
// written at the version (records.ts compactStamps), else one per instance; removals is 0 or a
// list of [instance key, version]. An instance's clientId is its record's and it is ephemeral:
// the form cannot say otherwise, so a peer cannot send anything else.
// Why not the records as JSON objects: a load moves 100k records, and as objects each repeated
// every field name and the same few names and metadata maps. Parsing and checking them took most
// of a load, and encoding them most of the sender's share. With the table a page is about half
// the size, and each distinct name and metadata map is checked (and built) once per message.

/** Builds the `s` and `items` of one message. */
class ItemsWriter {
  readonly strings: string[] = []
  readonly items: unknown[] = []
  private readonly index = new Map<string, number>()

  constructor(items: readonly Versioned[]) {
    for (const item of items) this.items.push(this.item(item))
  }

  /** The message's JSON: `s`, `items` and any further fields (`extra` is ",\"k\":v..." or empty). */
  json(extra: string): string {
    return `{"s":${JSON.stringify(this.strings)},"items":${JSON.stringify(this.items)}${extra}}`
  }

  private ref(s: string): number {
    let i = this.index.get(s)
    if (i === undefined) {
      i = this.strings.length
      this.strings.push(s)
      this.index.set(s, i)
    }
    return i
  }

  private item(item: Versioned): unknown[] {
    const removals = item.removals === undefined || item.removals.length === 0 ? 0 : item.removals.map((r) => [r.key, r.version])
    if (isTombstone(item)) return [item.clientId, item.version, removals]
    const instances = item.instances.map((i) => {
      const meta: number[] = []
      for (const k of Object.keys(i.metadata)) meta.push(this.ref(k), this.ref(i.metadata[k]!))
      return [this.ref(i.namespace), this.ref(i.group), this.ref(i.service), this.ref(i.cluster), i.ip, i.port, i.weight, (i.enabled ? 1 : 0) | (i.healthy ? 2 : 0), meta]
    })
    return [item.clientId, item.version, item.floor ?? 0, instances, item.stamps ?? 0, removals]
  }
}

/** Printable ASCII but '"' and '\': JSON writes such a string as it is, one byte per character. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/

/** UTF-8 bytes of a string in JSON, quotes and a comma included. */
function jsonBytes(s: string): number {
  return (PLAIN.test(s) ? s.length + 2 : Buffer.byteLength(JSON.stringify(s), 'utf8')) + 1
}

/** A safe integer in JSON (at most 16 digits) and its comma. */
const INTEGER_BYTES = 17
/** A string table index and its comma (a message has far fewer than 10^7 strings). */
const REF_BYTES = 8

/**
 * The most bytes an item can add to a message: its strings counted in full as if the table held
 * none of them yet, every integer at its longest. Batches and pages are cut by it, so a message
 * never passes the budget, with no need to encode an item to know its size.
 */
export function itemBytes(item: Versioned): number {
  let n = 16 + jsonBytes(item.clientId) + 3 * INTEGER_BYTES
  for (const r of item.removals ?? []) n += 4 + jsonBytes(r.key) + INTEGER_BYTES
  if (isTombstone(item)) return n
  for (const i of item.instances) {
    // Brackets, the four names and their indices, ip, port, weight, flags and a stamp.
    n += 8 + jsonBytes(i.namespace) + jsonBytes(i.group) + jsonBytes(i.service) + jsonBytes(i.cluster) + 4 * REF_BYTES
    n += jsonBytes(i.ip) + 3 * INTEGER_BYTES + String(i.weight).length + 1
    for (const k of Object.keys(i.metadata)) n += jsonBytes(k) + jsonBytes(i.metadata[k]!) + 2 * REF_BYTES
  }
  return n
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x)
}

function safeNonNegative(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < 0) malformed(`${what} is not a non-negative integer`)
  return x
}

const isWellFormed = (String.prototype as unknown as { isWellFormed: (this: string) => boolean }).isWellFormed

/**
 * Reads the items of one message against its string table. Each table entry is checked once for
 * each use it is put to (a name, a metadata string), and each distinct metadata list is built
 * once: the instances of a message that carry the same metadata share one frozen object.
 */
class ItemsReader {
  private readonly strings: string[]
  /** Per table entry: 1 once it passed core/validate name(). */
  private readonly nameOk: Uint8Array
  /** Per table entry: its UTF-8 bytes once it passed the metadata check, else -1. */
  private readonly metaBytes: Int32Array
  private readonly metas = new Map<string, Readonly<Record<string, string>>>()

  constructor(table: unknown) {
    if (!Array.isArray(table) || table.length > MAX_STRINGS_PER_MESSAGE) malformed(`s is not a list of at most ${MAX_STRINGS_PER_MESSAGE} strings`)
    for (const x of table) if (typeof x !== 'string') malformed('s holds something other than a string')
    this.strings = table as string[]
    this.nameOk = new Uint8Array(table.length)
    this.metaBytes = new Int32Array(table.length).fill(-1)
  }

  items(x: unknown, max: number): Versioned[] {
    if (!Array.isArray(x) || x.length > max) malformed(`items is not a list of at most ${max}`)
    const out = x.map((i) => this.item(i))
    // Two copies of a client in one message would make "accepted" ambiguous; a sender never does it.
    const seen = new Set<string>()
    for (const it of out) {
      if (seen.has(it.clientId)) malformed(`client ${it.clientId} appears twice`)
      seen.add(it.clientId)
    }
    return out
  }

  /** One record or tombstone, checked so that Replica.apply's assertions hold. */
  item(x: unknown): Versioned {
    if (!Array.isArray(x)) malformed('an item is not a list')
    const clientId = name(x[0], 'clientId')
    const version = safeNonNegative(x[1], `the version of ${clientId}`)
    if (x.length === 3) {
      // A tombstone's version is its floor: its removals lie above it.
      return tombstone(clientId, version, parseRemovals(x[2], clientId, version, Infinity, new Set()))
    }
    if (x.length !== 6) malformed(`the item of ${clientId} is neither a record nor a tombstone`)
    const raw = x[3] as unknown
    if (!Array.isArray(raw) || raw.length === 0 || raw.length > LIMITS.maxInstancesPerClient) {
      malformed(`the instances of ${clientId} are not a list of 1 to ${LIMITS.maxInstancesPerClient}`)
    }
    const instances = raw.map((i) => this.instance(i, clientId))
    const floor = safeNonNegative(x[2], `the floor of ${clientId}`)
    // Every stamp and removal lies in (floor, version], and version is the newest of them: the
    // shape records.ts writeClient and mergeClient produce, which mergeClient relies on.
    const inRange = (v: number): boolean => v > floor && v <= version
    let newest = floor
    let stamps: number[] | undefined
    if (x[4] !== 0) {
      if (!Array.isArray(x[4]) || x[4].length !== instances.length) malformed(`the stamps of ${clientId} are not one per instance`)
      stamps = (x[4] as unknown[]).map((v) => safeNonNegative(v, `a stamp of ${clientId}`))
      for (const v of stamps) {
        if (!inRange(v)) malformed(`a stamp of ${clientId} is outside (floor, version]`)
        newest = Math.max(newest, v)
      }
    } else {
      if (!inRange(version)) malformed(`the version of ${clientId} is not above its floor`)
      newest = version
    }
    // A client of one instance and no removals (nearly every record a sync carries) has no
    // key to compare: no key strings and no set for it.
    let removals: InstanceRemoval[] = []
    if (instances.length > 1 || x[5] !== 0) {
      const keys = new Set<string>()
      for (const i of instances) {
        const k = instanceKey(i)
        if (keys.has(k)) malformed(`client ${clientId} holds an instance twice`)
        keys.add(k)
      }
      removals = parseRemovals(x[5], clientId, floor, version, keys)
    }
    for (const r of removals) newest = Math.max(newest, r.version)
    if (newest !== version) malformed(`the version of ${clientId} is not its newest stamp`)
    // Kept as records.ts writeClient keeps them: no lists that say nothing.
    return { clientId, version, instances, stamps: stamps && compactStamps(stamps, version), removals: removals.length === 0 ? undefined : removals, floor }
  }

  private instance(x: unknown, clientId: string): Instance {
    if (!Array.isArray(x) || x.length !== 9) malformed(`an instance of ${clientId} is not a list of 9`)
    const ip = x[4] as unknown
    if (typeof ip !== 'string' || isIP(ip) === 0) malformed(`an instance of ${clientId} has no valid ip`)
    const port = x[5] as unknown
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) malformed(`an instance of ${clientId} has no valid port`)
    const weight = x[6] as unknown
    if (typeof weight !== 'number' || !Number.isFinite(weight) || weight < 0 || weight > LIMITS.maxWeight) malformed(`an instance of ${clientId} has no valid weight`)
    const flags = x[7] as unknown
    if (flags !== 0 && flags !== 1 && flags !== 2 && flags !== 3) malformed(`an instance of ${clientId} has no valid flags`)
    // A fresh object with exactly the model's fields: nothing else a peer sends reaches the views.
    return {
      namespace: this.name(x[0], 'namespace'),
      group: this.name(x[1], 'group'),
      service: this.name(x[2], 'service'),
      cluster: this.name(x[3], 'cluster'),
      ip,
      port,
      weight,
      enabled: (flags & 1) !== 0,
      healthy: (flags & 2) !== 0,
      ephemeral: true,
      metadata: this.metadata(x[8], clientId),
      clientId,
    }
  }

  private ref(x: unknown): number {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= this.strings.length) malformed(`${String(x)} is not an index into s`)
    return x
  }

  private name(x: unknown, field: string): string {
    const i = this.ref(x)
    if (this.nameOk[i] === 0) {
      name(this.strings[i], field)
      this.nameOk[i] = 1
    }
    return this.strings[i]!
  }

  /**
   * An instance's metadata: what core/validate.ts stringMap accepts of a client (no empty key, no
   * unpaired surrogate, at most LIMITS.maxMetadataBytes of UTF-8 in keys and values), and no key
   * twice. Shared and frozen: records are immutable, and nothing may change one in place.
   */
  private metadata(x: unknown, clientId: string): Readonly<Record<string, string>> {
    if (!Array.isArray(x) || x.length % 2 !== 0) malformed(`the metadata of an instance of ${clientId} is not a list of key and value indices`)
    const cacheKey = x.join(',')
    const cached = this.metas.get(cacheKey)
    if (cached !== undefined) return cached
    const out: Record<string, string> = {}
    let bytes = 0
    for (let j = 0; j < x.length; j += 2) {
      const k = this.strings[this.ref(x[j])]!
      const v = this.strings[this.ref(x[j + 1])]!
      if (k === '' || Object.prototype.hasOwnProperty.call(out, k)) malformed(`the metadata of an instance of ${clientId} has an empty or repeated key`)
      bytes += this.metaString(x[j] as number, clientId) + this.metaString(x[j + 1] as number, clientId)
      if (bytes > LIMITS.maxMetadataBytes) malformed(`the metadata of an instance of ${clientId} is over ${LIMITS.maxMetadataBytes} bytes`)
      // A key "__proto__" would set the prototype if assigned: define it as a plain property.
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    }
    Object.freeze(out)
    this.metas.set(cacheKey, out)
    return out
  }

  private metaString(i: number, clientId: string): number {
    let n = this.metaBytes[i]!
    if (n < 0) {
      const s = this.strings[i]!
      if (!isWellFormed.call(s)) malformed(`the metadata of an instance of ${clientId} has an unpaired UTF-16 surrogate`)
      n = Buffer.byteLength(s, 'utf8')
      this.metaBytes[i] = n
    }
    return n
  }
}

/**
 * A state's removals: 0 for none, or [key, version] pairs, each version in (floor, max], no key
 * twice nor one in `keys` (the instances the state holds), newest first as records.ts keeps them.
 */
function parseRemovals(x: unknown, clientId: string, floor: number, max: number, keys: Set<string>): InstanceRemoval[] {
  if (x === 0) return []
  if (!Array.isArray(x) || x.length > DISTRO_LIMITS.maxRemovalsPerClient) {
    malformed(`the removals of ${clientId} are not 0 or a list of at most ${DISTRO_LIMITS.maxRemovalsPerClient}`)
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

/** The JSON of a message carrying `items`, with further fields after them. */
function itemsJson(items: readonly Versioned[], extra: string = ''): string {
  return new ItemsWriter(items).json(extra)
}

/** The items of a decoded message (its `s` and `items`), checked in full. */
function parseItems(o: Record<string, unknown>): Versioned[] {
  return new ItemsReader(o.s).items(o.items, MAX_ITEMS_PER_MESSAGE)
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
  return encodeJson(itemsJson(items))
}

export function decodeItemsMessage(payload: Uint8Array): Versioned[] {
  return parseItems(decodeObject(payload))
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
  return encodeJson(itemsJson(items, `,"next":${next}${extra}`))
}

export interface PullAnswer {
  readonly items: Versioned[]
  readonly next: number
}

export function decodePullAnswer(payload: Uint8Array, asked: readonly string[]): PullAnswer {
  const o = decodeObject(payload)
  const next = safeNonNegative(o.next, 'next')
  if (next === 0 || next > asked.length) malformed(`next ${next} is not in 1..${asked.length}`)
  const items = parseItems(o)
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
  return { session: o.session, total, items: parseItems(o), next }
}
