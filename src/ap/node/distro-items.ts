// The binary wire form of Distro's items (client records and tombstones), written and read by
// hand. Every message that carries items (sync, push, a pull's answer, a load page) starts with
// one format byte, then its own few fields, then the items block; distro-messages.ts frames them.
//
// Why binary and not JSON: a registration's record is synced to two peers, and encoding and
// decoding it as JSON (JSON.stringify of item lists, TextEncoder, TextDecoder, JSON.parse, then
// checking the parsed values' types) was most of the CPU the sync path spent outside the merge
// and the naming views. Here each field is read once, straight into the record, and its type is
// the wire's, so only ranges are left to check.
//
// The items block:
//   items    := varint stringCount, string × stringCount, varint itemCount, item × itemCount
//   string   := varint byteLength, UTF-8 bytes
//   item     := string clientId, u8 kind, f64 version, then
//               kind 1 (a record):    f64 floor, varint instanceCount, instance × instanceCount, stamps, removals
//               kind 2 (a tombstone): removals
//   instance := varint namespace, group, service, cluster (indices into the string table),
//               string ip, varint port, f64 weight, u8 flags (1 enabled, 2 healthy),
//               varint metadataCount, varint × metadataCount (table indices: key, value, key, ...)
//   stamps   := varint 0 (every instance written at the version: records.ts compactStamps), or
//               varint instanceCount, f64 × instanceCount
//   removals := varint count, (string instance key, f64 version) × count, newest first
// Varints are unsigned LEB128 of at most 5 bytes (below 2^35); f64 is little-endian. Versions
// travel as f64 because they are integers up to 2^53 (records.ts nextVersion): the reader checks
// that each is one. The string table holds each distinct name and metadata key or value once, so
// that a load page of 100k records is checked (and its metadata maps built) per distinct string,
// not per record. An instance's clientId is its record's and it is ephemeral: the form cannot say
// otherwise, so a peer cannot send anything else.
//
// A message's first byte names its format. A payload in any other format (a peer of another
// version, JSON from before this form) is refused whole with a message that says so, before any
// of it is read: a node never applies what it cannot decode.

import { Buffer } from 'node:buffer'
import { isIP } from 'node:net'
import { GraceError } from '../../core/errors.js'
import { LIMITS } from '../../core/limits.js'
import { name } from '../../core/validate.js'
import { EMPTY_METADATA, type Instance } from '../../naming/model.js'
import { sharedName } from '../../naming/shared-names.js'
import { DISTRO_LIMITS } from '../distro/limits.js'
import { compactStamps, floorField, instanceKey } from '../distro/records.js'
import { isTombstone, tombstone, type InstanceRemoval, type Versioned } from '../distro/types.js'

/** The first byte of a message in this form (a JSON payload starts with '{', 0x7b). */
export const ITEMS_FORMAT = 0xd1
/** The first byte of a bucket summary (distro-messages.ts encodeSummary). */
export const SUMMARY_FORMAT = 0xd2
/** The first byte of a sync's, push's or verify round's answer. */
export const ANSWER_FORMAT = 0xd3
export const KIND_RECORD = 1
export const KIND_TOMBSTONE = 2

/** Entries in one message's string table. */
const MAX_STRINGS_PER_MESSAGE = 400_000
/** An instance key (records.ts instanceKey): four names and an address, with separators. */
const MAX_KEY_BYTES = 4 * LIMITS.maxNameBytes + 64
/** An IP address as text (the longest IPv6 form with a zone is well under it). */
const MAX_IP_BYTES = 64

const fatalUtf8 = new TextDecoder('utf-8', { fatal: true })

/** A refusal of a malformed message: INVALID_ARGUMENT, so the transport answers it as such. */
export function malformed(what: string): never {
  throw new GraceError('INVALID_ARGUMENT', `malformed distro message: ${what}`)
}

// ---- writing -------------------------------------------------------------------------------------

/** Bytes written into one growing buffer; `bytes()` is a view of what was written. */
export class ByteWriter {
  private buf: Buffer
  private pos = 0

  constructor(initialBytes: number) {
    this.buf = Buffer.allocUnsafe(Math.max(64, initialBytes))
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return
    const grown = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.pos + n))
    this.buf.copy(grown, 0, 0, this.pos)
    this.buf = grown
  }

  u8(v: number): void {
    this.room(1)
    this.buf[this.pos++] = v
  }

  /** 0 <= v < 2^35. */
  varint(v: number): void {
    this.room(5)
    while (v >= 128) {
      this.buf[this.pos++] = (v % 128) | 128
      v = Math.floor(v / 128)
    }
    this.buf[this.pos++] = v
  }

  /** The first n values of `values` (each in [0, 2^32)), little-endian u32 each. */
  u32s(values: ArrayLike<number>, n: number): void {
    this.room(4 * n)
    const buf = this.buf
    let pos = this.pos
    for (let i = 0; i < n; i++) {
      const v = values[i]!
      buf[pos] = v
      buf[pos + 1] = v >>> 8
      buf[pos + 2] = v >>> 16
      buf[pos + 3] = v >>> 24
      pos += 4
    }
    this.pos = pos
  }

  f64(v: number): void {
    this.room(8)
    this.buf.writeDoubleLE(v, this.pos)
    this.pos += 8
  }

  string(s: string): void {
    // A UTF-16 unit is at most 3 bytes of UTF-8: up to 42 units fit a 1-byte length, written
    // after the bytes, so that a short string is measured by writing it.
    if (s.length <= 42) {
      this.room(1 + 3 * s.length)
      const n = this.buf.write(s, this.pos + 1, 'utf8')
      this.buf[this.pos] = n
      this.pos += 1 + n
      return
    }
    const n = Buffer.byteLength(s, 'utf8')
    this.varint(n)
    this.room(n)
    this.pos += this.buf.write(s, this.pos, 'utf8')
  }

  bytes(): Uint8Array {
    return this.buf.subarray(0, this.pos)
  }
}

/** Writes the items block: the string table, then the items against it. */
export function writeItems(w: ByteWriter, items: readonly Versioned[]): void {
  // The table is gathered first (a table index is written before the strings it needs could be
  // known otherwise); the items are then written in a second pass.
  const index = new Map<string, number>()
  const table: string[] = []
  const ref = (s: string): void => {
    if (!index.has(s)) {
      index.set(s, table.length)
      table.push(s)
    }
  }
  for (const item of items) {
    if (isTombstone(item)) continue
    for (const i of item.instances) {
      ref(i.namespace)
      ref(i.group)
      ref(i.service)
      ref(i.cluster)
      for (const k in i.metadata) {
        ref(k)
        ref(i.metadata[k]!)
      }
    }
  }
  w.varint(table.length)
  for (const s of table) w.string(s)
  w.varint(items.length)
  for (const item of items) {
    w.string(item.clientId)
    if (isTombstone(item)) {
      w.u8(KIND_TOMBSTONE)
      w.f64(item.version)
      writeRemovals(w, item.removals)
      continue
    }
    w.u8(KIND_RECORD)
    w.f64(item.version)
    w.f64(item.floor ?? 0)
    w.varint(item.instances.length)
    for (const i of item.instances) {
      w.varint(index.get(i.namespace)!)
      w.varint(index.get(i.group)!)
      w.varint(index.get(i.service)!)
      w.varint(index.get(i.cluster)!)
      w.string(i.ip)
      w.varint(i.port)
      w.f64(i.weight)
      w.u8((i.enabled ? 1 : 0) | (i.healthy ? 2 : 0))
      const keys = Object.keys(i.metadata)
      w.varint(2 * keys.length)
      for (const k of keys) {
        w.varint(index.get(k)!)
        w.varint(index.get(i.metadata[k]!)!)
      }
    }
    if (item.stamps === undefined) w.varint(0)
    else {
      w.varint(item.stamps.length)
      for (const v of item.stamps) w.f64(v)
    }
    writeRemovals(w, item.removals)
  }
}

function writeRemovals(w: ByteWriter, removals: readonly InstanceRemoval[] | undefined): void {
  if (removals === undefined) {
    w.varint(0)
    return
  }
  w.varint(removals.length)
  for (const r of removals) {
    w.string(r.key)
    w.f64(r.version)
  }
}

/** UTF-8 bytes of a string at most, with its length. */
function stringBytes(s: string): number {
  return 3 * s.length + 5
}

/**
 * The most bytes an item can add to a message: its strings counted in full, as if the table held
 * none of them yet, each at 3 bytes per UTF-16 unit. Batches and pages are cut by it, so a message
 * never passes the budget, with no need to encode an item to know its size.
 */
export function itemBytes(item: Versioned): number {
  // clientId, kind, version, floor, instance count, stamps' and removals' counts.
  let n = stringBytes(item.clientId) + 1 + 8 + 8 + 3 * 5
  for (const r of item.removals ?? []) n += stringBytes(r.key) + 8
  if (isTombstone(item)) return n
  for (const i of item.instances) {
    // Four names and their indices, ip, port, weight, flags, a stamp, the metadata count.
    n += stringBytes(i.namespace) + stringBytes(i.group) + stringBytes(i.service) + stringBytes(i.cluster) + 4 * 5
    n += stringBytes(i.ip) + 5 + 8 + 1 + 8 + 5
    for (const k of Object.keys(i.metadata)) n += stringBytes(k) + stringBytes(i.metadata[k]!) + 2 * 5
  }
  return n
}

// ---- reading -------------------------------------------------------------------------------------

/** Reads a payload front to back; every read past its end is a refusal. */
export class ByteReader {
  private readonly buf: Buffer
  pos = 0

  /** `kind` names the payload in refusals: "malformed <kind>: ...". */
  constructor(
    payload: Uint8Array,
    private readonly kind: string = 'distro message',
  ) {
    this.buf = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength)
  }

  /** Refuses the payload (INVALID_ARGUMENT, so the transport answers it as such). */
  refuse(what: string): never {
    throw new GraceError('INVALID_ARGUMENT', `malformed ${this.kind}: ${what}`)
  }

  /** Refuses a payload in another format than `format` before reading anything else. */
  format(format: number): void {
    const first = this.buf.length === 0 ? undefined : this.buf[0]
    if (first !== format) {
      this.refuse(
        first === 0x7b
          ? 'a JSON message where this node reads the binary form (a peer of an older version?)'
          : `format ${first === undefined ? 'none (empty)' : `0x${first.toString(16)}`}, this node reads 0x${format.toString(16)} (a peer of another version?)`,
      )
    }
    this.pos = 1
  }

  end(): void {
    if (this.pos !== this.buf.length) this.refuse(`${this.buf.length - this.pos} bytes after the message`)
  }

  private need(n: number): void {
    if (this.pos + n > this.buf.length) this.refuse('the message ends early')
  }

  u8(): number {
    this.need(1)
    return this.buf[this.pos++]!
  }

  varint(): number {
    let v = 0
    let scale = 1
    for (let i = 0; i < 5; i++) {
      const b = this.u8()
      v += (b & 127) * scale
      if (b < 128) return v
      scale *= 128
    }
    this.refuse('a varint longer than 5 bytes')
  }

  /** n little-endian u32 values. */
  u32s(n: number): Uint32Array {
    this.need(4 * n)
    const out = new Uint32Array(n)
    const buf = this.buf
    let pos = this.pos
    for (let i = 0; i < n; i++) {
      out[i] = buf[pos]! | (buf[pos + 1]! << 8) | (buf[pos + 2]! << 16) | (buf[pos + 3]! << 24)
      pos += 4
    }
    this.pos = pos
    return out
  }

  f64(): number {
    this.need(8)
    const v = this.buf.readDoubleLE(this.pos)
    this.pos += 8
    return v
  }

  /** A string of at most maxBytes bytes of UTF-8 (invalid UTF-8 is refused, not replaced). */
  string(maxBytes: number, what: string): string {
    const n = this.varint()
    if (n > maxBytes) this.refuse(`${what} is over ${maxBytes} bytes`)
    this.need(n)
    const start = this.pos
    const end = start + n
    this.pos = end
    const buf = this.buf
    for (let i = start; i < end; i++) if (buf[i]! >= 0x80) return this.utf8(buf.subarray(start, end), what)
    return buf.toString('latin1', start, end)
  }

  private utf8(bytes: Uint8Array, what: string): string {
    try {
      return fatalUtf8.decode(bytes)
    } catch {
      this.refuse(`${what} is not UTF-8`)
    }
  }

  /** The bytes in [start, end) as Latin-1 text: a cheap exact key for a byte range. */
  slice(start: number, end: number): string {
    return this.buf.toString('latin1', start, end)
  }
}


function versionOf(x: number, what: string): number {
  if (!Number.isSafeInteger(x) || x < 0) malformed(`${what} is not a non-negative integer`)
  return x
}

/**
 * Reads an items block. Each table entry is checked once for each use it is put to (a name, a
 * metadata string), and each distinct metadata list is built once: the instances of a message
 * that carry the same metadata share one frozen object. Everything is checked before the caller
 * applies any of it (a malformed message is refused as a whole), and so that Replica.apply's
 * assertions hold.
 */
export function readItems(r: ByteReader, maxItems: number): Versioned[] {
  return new ItemsReader(r).items(maxItems)
}

class ItemsReader {
  private readonly strings: string[] = []
  /** Per table entry: 1 once it passed core/validate name(). */
  private readonly nameOk: Uint8Array
  /** Per table entry: its UTF-8 bytes once counted, else -1. */
  private readonly metaBytes: Int32Array
  private readonly metas = new Map<string, Readonly<Record<string, string>>>()

  constructor(private readonly r: ByteReader) {
    const count = r.varint()
    if (count > MAX_STRINGS_PER_MESSAGE) malformed(`a string table of ${count} entries (at most ${MAX_STRINGS_PER_MESSAGE})`)
    for (let i = 0; i < count; i++) this.strings.push(r.string(LIMITS.maxMetadataBytes, 'a table string'))
    this.nameOk = new Uint8Array(count)
    this.metaBytes = new Int32Array(count).fill(-1)
  }

  items(max: number): Versioned[] {
    const count = this.r.varint()
    if (count > max) malformed(`${count} items (at most ${max})`)
    const out: Versioned[] = []
    // Two copies of a client in one message would make "accepted" ambiguous; a sender never does it.
    const seen = new Set<string>()
    for (let k = 0; k < count; k++) {
      const it = this.item()
      if (seen.has(it.clientId)) malformed(`client ${it.clientId} appears twice`)
      seen.add(it.clientId)
      out.push(it)
    }
    return out
  }

  private item(): Versioned {
    const r = this.r
    const clientId = name(r.string(LIMITS.maxNameBytes, 'a client id'), 'clientId')
    const kind = r.u8()
    const version = versionOf(r.f64(), `the version of ${clientId}`)
    if (kind === KIND_TOMBSTONE) {
      // A tombstone's version is its floor: its removals lie above it.
      return tombstone(clientId, version, this.removals(clientId, version, Infinity, null))
    }
    if (kind !== KIND_RECORD) malformed(`the item of ${clientId} is of kind ${kind}, neither a record nor a tombstone`)
    const floor = versionOf(r.f64(), `the floor of ${clientId}`)
    const count = r.varint()
    if (count === 0 || count > LIMITS.maxInstancesPerClient) malformed(`${clientId} holds ${count} instances, not 1 to ${LIMITS.maxInstancesPerClient}`)
    // Exactly as long as it is: a list grown by push() keeps room for 17 (136 bytes more per
    // client, for as long as the record is held, on every node).
    let instances: Instance[]
    if (count === 1) instances = [this.instance(clientId)]
    else {
      instances = []
      for (let k = 0; k < count; k++) instances.push(this.instance(clientId))
      instances = instances.slice()
    }
    // Every stamp and removal lies in (floor, version], and version is the newest of them: the
    // shape records.ts writeClient and mergeClient produce, which mergeClient relies on.
    let newest = floor
    let stamps: number[] | undefined
    const stampCount = r.varint()
    if (stampCount !== 0) {
      if (stampCount !== count) malformed(`the stamps of ${clientId} are not one per instance`)
      stamps = []
      for (let k = 0; k < count; k++) {
        const v = versionOf(r.f64(), `a stamp of ${clientId}`)
        if (v <= floor || v > version) malformed(`a stamp of ${clientId} is outside (floor, version]`)
        if (v > newest) newest = v
        stamps.push(v)
      }
    } else {
      if (version <= floor) malformed(`the version of ${clientId} is not above its floor`)
      newest = version
    }
    // A client of one instance and no removals (nearly every record a sync carries) has no
    // key to compare: no key strings and no set for it.
    let removals: InstanceRemoval[] = []
    const removalsAt = r.pos
    if (count > 1 || r.varint() !== 0) {
      r.pos = removalsAt
      const keys = new Set<string>()
      for (const i of instances) {
        const key = instanceKey(i)
        if (keys.has(key)) malformed(`client ${clientId} holds an instance twice`)
        keys.add(key)
      }
      removals = this.removals(clientId, floor, version, keys)
    }
    for (const rm of removals) if (rm.version > newest) newest = rm.version
    if (newest !== version) malformed(`the version of ${clientId} is not its newest stamp`)
    // Kept as records.ts writeClient keeps them: no lists that say nothing.
    return { clientId, version, instances, stamps: stamps && compactStamps(stamps, version), removals: removals.length === 0 ? undefined : removals, floor: floorField(floor) }
  }

  /**
   * A state's removals: each version in (floor, max], no key twice nor one in `keys` (the
   * instances the state holds), newest first as records.ts keeps them.
   */
  private removals(clientId: string, floor: number, max: number, keys: Set<string> | null): InstanceRemoval[] {
    const r = this.r
    const count = r.varint()
    if (count > DISTRO_LIMITS.maxRemovalsPerClient) malformed(`${clientId} has ${count} removals (at most ${DISTRO_LIMITS.maxRemovalsPerClient})`)
    const out: InstanceRemoval[] = []
    const seen = keys ?? new Set<string>()
    for (let k = 0; k < count; k++) {
      const key = r.string(MAX_KEY_BYTES, `a removal key of ${clientId}`)
      if (key.length === 0) malformed(`a removal of ${clientId} has an empty key`)
      const v = versionOf(r.f64(), `a removal version of ${clientId}`)
      if (v <= floor || v > max) malformed(`a removal of ${clientId} is outside (floor, version]`)
      if (out.length > 0 && v > out[out.length - 1]!.version) malformed(`the removals of ${clientId} are not newest first`)
      if (seen.has(key)) malformed(`client ${clientId} holds or removed an instance twice`)
      seen.add(key)
      out.push({ key, version: v })
    }
    return out
  }

  private instance(clientId: string): Instance {
    const r = this.r
    const namespace = this.name('namespace')
    const group = this.name('group')
    const service = this.name('service')
    const cluster = this.name('cluster')
    const ip = r.string(MAX_IP_BYTES, `the ip of an instance of ${clientId}`)
    if (isIP(ip) === 0) malformed(`an instance of ${clientId} has no valid ip`)
    const port = r.varint()
    if (port < 1 || port > 65535) malformed(`an instance of ${clientId} has no valid port`)
    const w = r.f64()
    if (!Number.isFinite(w) || w < 0 || w > LIMITS.maxWeight) malformed(`an instance of ${clientId} has no valid weight`)
    // A whole weight (nearly all) as a small integer, as a JSON registration's: read as a float,
    // V8 keeps it in a separate heap number, 16 bytes per instance held.
    const weight = Number.isInteger(w) ? w | 0 : w
    const flags = r.u8()
    if (flags > 3) malformed(`an instance of ${clientId} has no valid flags`)
    // A fresh object with exactly the model's fields: nothing else a peer sends reaches the views.
    return {
      namespace,
      group,
      service,
      cluster,
      ip,
      port,
      weight,
      enabled: (flags & 1) !== 0,
      healthy: (flags & 2) !== 0,
      ephemeral: true,
      metadata: this.metadata(clientId),
      clientId,
    }
  }

  private ref(): number {
    const i = this.r.varint()
    if (i >= this.strings.length) malformed(`${i} is not an index into the string table`)
    return i
  }

  private name(field: string): string {
    const i = this.ref()
    if (this.nameOk[i] === 0) {
      // The string the instances of earlier messages hold (shared-names.ts), not this message's copy.
      this.strings[i] = sharedName(name(this.strings[i], field))
      this.nameOk[i] = 1
    }
    return this.strings[i]!
  }

  /**
   * An instance's metadata: what core/validate.ts stringMap accepts of a client (no empty key, no
   * unpaired surrogate (strings are read as valid UTF-8), at most LIMITS.maxMetadataBytes of UTF-8 in keys and values), and no key
   * twice. Shared and frozen: records are immutable, and nothing may change one in place.
   */
  private metadata(clientId: string): Readonly<Record<string, string>> {
    const r = this.r
    const count = r.varint()
    if (count === 0) return EMPTY_METADATA
    if (count % 2 !== 0) malformed(`the metadata of an instance of ${clientId} is not key and value pairs`)
    const start = r.pos
    const refs: number[] = []
    for (let j = 0; j < count; j++) refs.push(this.ref())
    // The same indices in the same order make the same map: their bytes are the cache's key.
    const cacheKey = r.slice(start, r.pos)
    const cached = this.metas.get(cacheKey)
    if (cached !== undefined) return cached
    const out: Record<string, string> = {}
    let bytes = 0
    for (let j = 0; j < count; j += 2) {
      const k = this.strings[refs[j]!]!
      const v = this.strings[refs[j + 1]!]!
      if (k === '' || Object.prototype.hasOwnProperty.call(out, k)) malformed(`the metadata of an instance of ${clientId} has an empty or repeated key`)
      bytes += this.metaString(refs[j]!) + this.metaString(refs[j + 1]!)
      if (bytes > LIMITS.maxMetadataBytes) malformed(`the metadata of an instance of ${clientId} is over ${LIMITS.maxMetadataBytes} bytes`)
      // A key "__proto__" would set the prototype if assigned: define it as a plain property.
      Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true })
    }
    Object.freeze(out)
    this.metas.set(cacheKey, out)
    return out
  }

  /** A table string's UTF-8 bytes. It holds no unpaired surrogate: it was read as valid UTF-8. */
  private metaString(i: number): number {
    let n = this.metaBytes[i]!
    if (n < 0) {
      n = Buffer.byteLength(this.strings[i]!, 'utf8')
      this.metaBytes[i] = n
    }
    return n
  }
}
