// Versioned records: how versions are made, how two copies of a client merge, and tombstones.
//
// The merge rule is the whole of Distro's conflict resolution. A client's record stamps each of
// its instances with the version of the write that last changed it, and remembers the instances
// it removed (with the removal's version). Two copies merge instance by instance: for each
// instance the newest write wins, whether it put the instance or removed it. A tombstone (the
// whole client removed at version V) removes everything stamped at or below V; a record written
// after a tombstone keeps V as its `floor` for the same reason.
//
// Why per instance and not whole records, newest wins: two nodes can write the same client
// concurrently, each from a copy that lacks the other's writes: the two sides of a partition,
// each owning the client in its own view; a node that restarted and has not loaded yet; a node
// answering a heartbeat "not registered" and taking the client's registration again. With whole
// records, the later of the two writes replaced the earlier and the instances only the earlier
// one held vanished though their client was alive (the simulator found it in about one seed in
// six). Merged per instance, both writes survive.
//
// The merge is a join: commutative, associative and idempotent (the property tests in
// test/unit/ap/distro/records.test.ts check it), so any order and any duplication of deliveries
// leaves every node with the same state. That is what lets syncs be batched, retried and
// reordered freely, and what lets verification repair drift by comparing fingerprints (Nacos
// nodes drifted apart on instance counts, #10123, #5769). One bound bends it: a record remembers
// at most maxRemovalsPerClient removals (the newest), so a copy older than a forgotten removal can
// bring that instance back, as a copy older than a collected tombstone can bring a client back.
//
// Versions are hybrid: milliseconds of wall time, shifted left by 10 bits, with a per-node salt
// in the low bits, and never below the version held + 1. Why not a plain counter (+1 per change):
// - A new owner that missed the old owner's last syncs (a partition, a crash) would continue from
//   an older number and could issue a version the old owner already used for different content;
//   equal stamps compare as equal, so nodes would keep two different instances forever.
// - After a removal's tombstone is collected, a counter restarts at 1, below stale copies that
//   some node may still hold, and the new registration would lose to them.
// Time-based versions order writes by wall time when clocks are roughly in sync, and the salt
// keeps two nodes from ever producing the same version (unless their salts collide: 1 in 1024
// per pair with versionSalt; the driver may assign distinct salts instead). 2^53 / 2^10 ms
// lasts until the year 2248.
//
// Tombstones: a removal is kept as (clientId, version) so that a delayed copy of an older record
// cannot bring the client back. The rule that bounds them: a tombstone lives `tombstoneTtlMs`
// from when this node stored it, and at most `maxTombstones` are held, the oldest dropped first.
// Past that, verification (digest.ts) is the backstop.

import { assert } from '../../core/assert.js'
import { instanceIdOf, sameSlot, serviceKey, type Instance } from '../../naming/model.js'
import { bucketHash } from './digest.js'
import { SEED_A, SEED_B, type PartsState, beginParts, feedInteger, feedString, finishParts, hashString, mix32, partsState, resumeParts } from './hash.js'
import { DISTRO_LIMITS } from './limits.js'
import { isTombstone, tombstone, type ClientState, type InstanceRemoval, type NodeId, type Tombstone, type Versioned } from './types.js'

export const SALT_BITS = 10
const SALT_RANGE = 1 << SALT_BITS

/** A node's salt for nextVersion, from its id: in [0, 1024). */
export function versionSalt(nodeId: NodeId): number {
  return hashString(nodeId, SEED_B) & (SALT_RANGE - 1)
}

/**
 * The version for a change the responsible node makes now. `held` is the version of the record
 * or tombstone it holds for the client (undefined for none). Always greater than held, and it
 * carries `salt` in its low bits.
 */
export function nextVersion(held: number | undefined, nowMs: number, salt: number): number {
  assert(Number.isInteger(salt) && salt >= 0 && salt < SALT_RANGE, `version salt ${salt} in [0, ${SALT_RANGE})`)
  assert(Number.isFinite(nowMs) && nowMs >= 0, 'now is a time in milliseconds')
  let ms = Math.floor(nowMs)
  if (held !== undefined) ms = Math.max(ms, Math.floor(held / SALT_RANGE) + 1)
  const v = ms * SALT_RANGE + salt
  assert(v <= Number.MAX_SAFE_INTEGER, 'version stays an exact integer')
  return v
}

/** The wall time (ms, by its writer's clock) at which a version was made: nextVersion's inverse, less the salt. */
export function versionTime(version: number): number {
  return Math.floor(version / SALT_RANGE)
}

// ---- records: writes, merges, fingerprints ------------------------------------------------------

// Names never hold control characters (validation rejects them), so one makes a safe separator.
const SEP = '\u001f'

/** An instance's identity within its client: its service and its address there. */
export function instanceKey(i: Instance): string {
  return serviceKey(i) + SEP + instanceIdOf(i)
}

/**
 * The names the last instance key hash began with, and the hash's state after them. Most keys
 * hashed in a row are of one service and cluster (a sync batch, a registration's fingerprint on
 * each node), and the names are most of a key's characters: they are fed once per change of
 * service or cluster, not once per key.
 */
let lastNames: { readonly seed: number; readonly namespace: string; readonly group: string; readonly service: string; readonly cluster: string; readonly state: PartsState } | undefined

/** hashString(instanceKey(i), seed) without building the key. */
export function instanceKeyHash(i: Instance, seed: number): number {
  const last = lastNames
  if (last !== undefined && last.seed === seed && last.cluster === i.cluster && last.service === i.service && last.group === i.group && last.namespace === i.namespace) {
    resumeParts(last.state)
  } else {
    beginParts(seed)
    feedString(i.namespace)
    feedString(SEP)
    feedString(i.group)
    feedString(SEP)
    feedString(i.service)
    feedString(SEP)
    feedString(i.cluster)
    feedString(SEP)
    lastNames = { seed, namespace: i.namespace, group: i.group, service: i.service, cluster: i.cluster, state: partsState() }
  }
  feedString(i.ip)
  feedString(SEP)
  feedInteger(i.port)
  return finishParts()
}

/** The stamp of record.instances[i]: a plain record (no stamps) wrote everything at its version. */
export function stampAt(record: ClientState, i: number): number {
  return record.stamps === undefined ? record.version : record.stamps[i]!
}

function floorOf(item: Versioned): number {
  return isTombstone(item) ? item.version : (item.floor ?? 0)
}

/**
 * A record's floor as it is stored: none rather than 0, which nearly every record has. A field
 * that only ever holds numbers, some of them versions above 2^31, V8 keeps as a separate heap
 * number for every record, 0 included (16 bytes per client on every node); a field that also
 * holds undefined keeps undefined and small integers in place.
 */
export function floorField(floor: number): number | undefined {
  return floor === 0 ? undefined : floor
}

/** Whether two instances with the same key say the same thing (a re-registration that changes nothing). */
export function sameContent(a: Instance, b: Instance): boolean {
  if (a === b) return true
  if (a.weight !== b.weight || a.enabled !== b.enabled || a.healthy !== b.healthy || a.ephemeral !== b.ephemeral || a.clientId !== b.clientId) return false
  const ka = Object.keys(a.metadata)
  if (ka.length !== Object.keys(b.metadata).length) return false
  for (const k of ka) if (a.metadata[k] !== b.metadata[k]) return false
  return true
}

/** Newest first, at most the bound: the same list whatever order the removals were gathered in. */
function boundRemovals(removals: InstanceRemoval[]): InstanceRemoval[] {
  removals.sort((a, b) => b.version - a.version || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  if (removals.length > DISTRO_LIMITS.maxRemovalsPerClient) removals.length = DISTRO_LIMITS.maxRemovalsPerClient
  return removals
}

/**
 * The record after the responsible node writes `instances` for the client at `version` (from
 * nextVersion, above everything held). Instances that did not change keep their stamps; changed
 * and new ones take `version`; held ones left out are recorded as removed at `version`. Returns
 * null when nothing changed (a re-registration of the same instance), so nothing is synced. An
 * empty list is a removal of the whole client: the caller writes a tombstone instead.
 */
export function writeClient(held: Versioned | undefined, clientId: string, instances: readonly Instance[], version: number): ClientState | null {
  assert(instances.length > 0, 'a write keeps at least one instance; removing them all is a tombstone')
  const floor = held === undefined ? 0 : floorOf(held)
  const before = held === undefined || isTombstone(held) ? undefined : held
  // The two writes of nearly every client, without the maps and sets of the general case below
  // (a registry's clients hold one instance; these objects were a good part of a registration's
  // garbage on the owner): a first registration, and one instance changed in place (a weight,
  // health marked by expiry or a beat).
  if (instances.length === 1) {
    if (before === undefined) return { clientId, version, instances, stamps: undefined, removals: undefined, floor: floorField(floor) }
    if (before.instances.length === 1) {
      const was = before.instances[0]!
      const key = instanceKey(instances[0]!)
      if (instanceKey(was) === key) {
        if (sameContent(was, instances[0]!)) return null
        const removals = before.removals?.filter((r) => r.key !== key)
        return { clientId, version, instances, stamps: undefined, removals: removals === undefined ? undefined : compactRemovals(removals), floor: floorField(floor) }
      }
    }
  }
  const index = new Map<string, number>()
  if (before) for (let i = 0; i < before.instances.length; i++) index.set(instanceKey(before.instances[i]!), i)
  let changed = before === undefined || before.instances.length !== instances.length
  const stamps: number[] = []
  const kept = new Set<number>()
  const keys: string[] = []
  for (const inst of instances) {
    const key = instanceKey(inst)
    keys.push(key)
    const j = index.get(key)
    if (j !== undefined && sameContent(before!.instances[j]!, inst)) {
      stamps.push(stampAt(before!, j))
      kept.add(j)
    } else {
      stamps.push(version)
      changed = true
    }
  }
  if (!changed) return null
  assert(new Set(keys).size === keys.length, 'a client holds each instance once')
  const removals: InstanceRemoval[] = []
  if (before) {
    const written = new Set(keys)
    for (let j = 0; j < before.instances.length; j++) {
      if (kept.has(j)) continue
      const key = instanceKey(before.instances[j]!)
      if (!written.has(key)) removals.push({ key, version })
    }
    for (const r of before.removals ?? []) if (!written.has(r.key)) removals.push(r)
  }
  // Something changed, so an instance or a removal carries `version`, the newest of all.
  return { clientId, version, instances, stamps: compactStamps(stamps, version), removals: compactRemovals(removals), floor: floorField(floor) }
}

/**
 * Stamps as a record keeps them: none when every instance was written at the record's version
 * (stampAt reads that as the version), which is every single-instance client and every fresh
 * registration. A held record is kept for each client on every node, so the array and its boxed
 * numbers (versions are above 2^31) cost memory per client for nothing, and bytes on every sync.
 */
export function compactStamps(stamps: number[], version: number): number[] | undefined {
  for (const s of stamps) if (s !== version) return stamps
  return undefined
}

/** Removals bounded as boundRemovals does, and none rather than an empty list (as compactStamps). */
function compactRemovals(removals: InstanceRemoval[]): InstanceRemoval[] | undefined {
  return removals.length === 0 ? undefined : boundRemovals(removals)
}

interface MergeEntry {
  readonly version: number
  /** The instance, or undefined for a removal. */
  readonly instance: Instance | undefined
}

/** What merging one state's entries into a map did. */
interface Added {
  /** Entries of the state above the floor. */
  readonly count: number
  /** Some entry of the state was newer than the map's. */
  readonly newer: boolean
  /** Some entry of the state was older than the map's. */
  readonly older: boolean
}

function addEntries(into: Map<string, MergeEntry>, item: Versioned, floor: number): Added {
  let count = 0
  let newer = false
  let older = false
  const add = (key: string, version: number, instance: Instance | undefined): void => {
    if (version <= floor) return
    count++
    const cur = into.get(key)
    if (cur === undefined || version > cur.version) {
      into.set(key, { version, instance })
      newer = true
    } else if (version < cur.version) older = true
  }
  if (!isTombstone(item)) for (let i = 0; i < item.instances.length; i++) add(instanceKey(item.instances[i]!), stampAt(item, i), item.instances[i]!)
  for (const r of item.removals ?? []) add(r.key, r.version, undefined)
  return { count, newer, older }
}

/**
 * The state after merging `incoming` into `held`, or null when `incoming` adds nothing (a
 * duplicate, or older than everything it carries). Per instance the newest write wins; a floor or
 * tombstone removes everything stamped at or below it. A state left with no instances is a
 * tombstone at the floor that keeps the removals above it.
 *
 * When the result is exactly `incoming` (the usual case: a sync of the owner's next write), that
 * object is returned as it is, in the owner's instance order. A merge of concurrent writes makes a
 * new record, its instances in key order, so every node that merges the same writes holds them
 * in the same order.
 */
export function mergeClient(held: Versioned | undefined, incoming: Versioned): Versioned | null {
  if (held === undefined) return incoming
  assert(held.clientId === incoming.clientId, 'a merge is of one client')
  const quick = quickMerge(held, incoming)
  return quick !== undefined ? quick : mergeEntries(held, incoming)
}

/** mergeClient of two states by their entries: the general case (exported for tests of the quick one). */
export function mergeEntries(held: Versioned, incoming: Versioned): Versioned | null {
  const heldFloor = floorOf(held)
  const floor = Math.max(heldFloor, floorOf(incoming))
  const entries = new Map<string, MergeEntry>()
  addEntries(entries, held, floor)
  const added = addEntries(entries, incoming, floor)
  if (!added.newer && floor === heldFloor) return null
  if (!added.older && entries.size === added.count && floor === floorOf(incoming)) return incoming
  const keys = [...entries.keys()].sort()
  const instances: Instance[] = []
  const stamps: number[] = []
  const removals: InstanceRemoval[] = []
  let version = floor
  for (const key of keys) {
    const e = entries.get(key)!
    if (e.version > version) version = e.version
    if (e.instance === undefined) removals.push({ key, version: e.version })
    else {
      instances.push(e.instance)
      stamps.push(e.version)
    }
  }
  const capped = removals.length > DISTRO_LIMITS.maxRemovalsPerClient
  const merged: Versioned =
    instances.length === 0
      ? tombstone(held.clientId, floor, boundRemovals(removals))
      : { clientId: held.clientId, version, instances, stamps: compactStamps(stamps, version), removals: compactRemovals(removals), floor: floorField(floor) }
  // The bound on removals can drop exactly what incoming added: then nothing changed after all.
  if (capped && isTombstone(merged) === isTombstone(held) && fingerprint(merged) === fingerprint(held)) return null
  return merged
}

/**
 * mergeClient's answer, without its map of entries and key strings, for the syncs of nearly every
 * client: the next write of a client of one instance (its health marked by expiry, its weight
 * changed), or its removal; undefined for any other case. Relies on a live record's version being
 * its newest stamp or removal and above its floor (as every writer makes it, and decoding checks).
 */
function quickMerge(held: Versioned, incoming: Versioned): Versioned | null | undefined {
  if (isTombstone(held)) return undefined
  if (isTombstone(incoming)) {
    // Removed at or above everything held: the general merge keeps nothing held, and answers incoming.
    return incoming.removals === undefined && incoming.version >= held.version ? incoming : undefined
  }
  if (held.instances.length !== 1 || incoming.instances.length !== 1 || held.removals !== undefined || incoming.removals !== undefined) return undefined
  if (!sameSlot(held.instances[0]!, incoming.instances[0]!)) return undefined
  const heldFloor = held.floor ?? 0
  const incomingFloor = incoming.floor ?? 0
  const heldStamp = stampAt(held, 0)
  const incomingStamp = stampAt(incoming, 0)
  // The same instance, written later, over a floor at least as high: incoming replaces held.
  if (incomingStamp > heldStamp && incomingFloor >= heldFloor) return incoming
  // Not newer, under a floor no higher: nothing to add.
  if (incomingStamp <= heldStamp && incomingFloor <= heldFloor) return null
  return undefined
}

/** The newest version a state carries: what a new write must exceed (a tombstone's removals may be above it). */
export function newestVersion(item: Versioned): number {
  if (!isTombstone(item) || item.removals === undefined || item.removals.length === 0) return item.version
  return Math.max(item.version, item.removals[0]!.version)
}

const TWO_32 = 4294967296

/**
 * A 53-bit fingerprint of a client's state, for verification digests (digest.ts): equal states
 * give equal fingerprints, and different ones differ except with probability about 2^-53. It
 * covers every instance's key, stamp and removal and the floor, not the instances' order, so
 * two nodes that merged the same writes in different orders agree. A plain tombstone's is its
 * version.
 */
export function fingerprint(item: Versioned): number {
  if (isTombstone(item) && item.removals === undefined) return item.version
  const floor = floorOf(item)
  let lo = mix32(SEED_A, floor >>> 0)
  let hi = mix32(SEED_B, Math.floor(floor / TWO_32))
  const instances = isTombstone(item) ? [] : item.instances
  for (let i = 0; i < instances.length; i++) {
    const h = instanceKeyHash(instances[i]!, SEED_A)
    const st = stampAt(item as ClientState, i)
    lo ^= mix32(mix32(h, st >>> 0), Math.floor(st / TWO_32))
    hi ^= mix32(mix32(h ^ 0x2545f491, Math.floor(st / TWO_32)), st >>> 0)
  }
  for (const r of item.removals ?? []) {
    const h = hashString(r.key, SEED_B)
    lo ^= mix32(mix32(h, r.version >>> 0), Math.floor(r.version / TWO_32))
    hi ^= mix32(mix32(h ^ 0x68e31da4, Math.floor(r.version / TWO_32)), r.version >>> 0)
  }
  return (hi >>> 11) * TWO_32 + (lo >>> 0)
}

// ---- tombstones ------------------------------------------------------------------------------------

interface Held {
  readonly item: Tombstone
  readonly at: number
  /** digest.ts bucketHash of the client id: exact digests scan every tombstone by bucket. */
  readonly hB: number
}

/**
 * Tombstones, bounded by age and count. Ages are counted from when this node stored each one (its
 * own clock, passed in as `now`), not from the version, so clock skew between nodes cannot make a
 * tombstone expire early. Insertion order is age order: collect() scans from the oldest and stops
 * at the first young one, so it costs only what it removes.
 */
export class TombstoneSet {
  private readonly held = new Map<string, Held>()
  /** The held tombstones by digest bucket (hB & mask), for inBuckets; a bucket with none has no map. */
  private readonly byBucket = new Map<number, Map<string, Held>>()
  private readonly mask: number

  constructor(
    readonly ttlMs: number = DISTRO_LIMITS.tombstoneTtlMs,
    readonly max: number = DISTRO_LIMITS.maxTombstones,
    buckets: number = DISTRO_LIMITS.digestBuckets,
  ) {
    assert(ttlMs > 0 && max > 0, 'tombstones are kept for some time and count')
    this.mask = buckets - 1
  }

  /** The tombstone's version (its floor), if one is held. */
  get(clientId: string): number | undefined {
    return this.held.get(clientId)?.item.version
  }

  item(clientId: string): Tombstone | undefined {
    return this.held.get(clientId)?.item
  }

  /**
   * Stores a tombstone at `now`, replacing the one held (the caller merged them: mergeClient).
   * Returns how many were evicted by count.
   */
  add(t: Tombstone, now: number, hB: number = bucketHash(t.clientId)): number {
    // Delete first so the entry moves to the young end of the insertion order.
    this.delete(t.clientId)
    const h: Held = { item: t, at: now, hB }
    this.held.set(t.clientId, h)
    const b = hB & this.mask
    const inBucket = this.byBucket.get(b)
    if (inBucket) inBucket.set(t.clientId, h)
    else this.byBucket.set(b, new Map([[t.clientId, h]]))
    let evicted = 0
    while (this.held.size > this.max) {
      this.delete(this.held.keys().next().value as string)
      evicted++
    }
    return evicted
  }

  delete(clientId: string): boolean {
    const h = this.held.get(clientId)
    if (h === undefined) return false
    this.held.delete(clientId)
    const b = h.hB & this.mask
    const inBucket = this.byBucket.get(b)!
    inBucket.delete(clientId)
    if (inBucket.size === 0) this.byBucket.delete(b)
    return true
  }

  /** Drops tombstones stored at or before now - ttl. Returns how many. */
  collect(now: number): number {
    let n = 0
    for (const [clientId, h] of this.held) {
      if (h.at + this.ttlMs > now) break
      this.delete(clientId)
      n++
    }
    return n
  }

  get size(): number {
    return this.held.size
  }

  /** [clientId, version] of every tombstone, oldest stored first. */
  *entries(): IterableIterator<[string, number]> {
    for (const [clientId, h] of this.held) yield [clientId, h.item.version]
  }

  /**
   * clientId -> version of the tombstones in some buckets (bucketHash & mask in scope), or of
   * all. An exact digest asks for them once per 64 buckets: after a lease sweep's removals there
   * are up to maxTombstones, and hashing each id again took 28 ms of a turn for 100k; with the
   * digest's own buckets, only the tombstones of the buckets asked for are read.
   */
  inBuckets(mask: number, scope: ReadonlySet<number> | null): Map<string, number> {
    const out = new Map<string, number>()
    if (scope !== null && mask === this.mask) {
      for (const b of scope) for (const [clientId, h] of this.byBucket.get(b) ?? []) out.set(clientId, h.item.version)
      return out
    }
    for (const [clientId, h] of this.held) if (scope === null || scope.has(h.hB & mask)) out.set(clientId, h.item.version)
    return out
  }
}
