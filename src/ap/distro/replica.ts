// What one Distro node holds: every client's latest record or tombstone, which member owns each
// client under this node's view of the healthy members, and a bucket digest per owner kept up to
// date on every change. Pure and synchronous: the driver (ap/node) wraps it in an EphemeralStore
// (adding listeners for the naming views), feeds it local writes, syncs, pulls and pushes, and
// calls setMembers when the healthy member set changes.
//
// Invariants, checked by check() in tests:
//   a client is live or tombstoned, never both;
//   every live client is in exactly the digest and client set of its owner (or none when there
//   are no members), and each digest's counts add up to its owner's client count.

import { assert } from '../../core/assert.js'
import type { ClientRecord } from '../store.js'
import { BucketDigest, bucketHash, type BucketSummary, type ExactDigest, type HeldState, type LocalView } from './digest.js'
import { DISTRO_LIMITS } from './limits.js'
import { Ownership, clientHash, type OwnershipChange } from './ownership.js'
import { TombstoneSet, fingerprint, mergeClient, newestVersion } from './records.js'
import { isTombstone, type ClientState, type NodeId, type Versioned } from './types.js'

/**
 * One per live client on every node, so its numbers are kept as small integers: a field that
 * ever holds a number outside the 32-bit signed range (a fingerprint, an unsigned hash above
 * 2^31) is stored by V8 as a separate heap number for every entry, three objects per client that
 * each young-generation collection copies and each full one marks.
 */
interface Entry {
  record: ClientState
  /** records.ts fingerprint(record), what the digests hold for it: high 21 bits, low 32 bits (signed). */
  fpHi: number
  fpLo: number
  /** clientHash and bucketHash of the id, computed once per client, as signed 32-bit integers (hash.ts mixes them alike). */
  readonly hA: number
  readonly hB: number
  owner: NodeId | null
  /** Where the entry sits in its owner's bucket array (OwnerIndex.byBucket); -1 when not indexed. */
  slot: number
}

const TWO_32 = 4294967296

function fpOf(e: Entry): number {
  return e.fpHi * TWO_32 + (e.fpLo >>> 0)
}

function setFp(e: Entry, fp: number): void {
  e.fpHi = Math.floor(fp / TWO_32)
  e.fpLo = fp | 0
}

interface OwnerIndex {
  readonly digest: BucketDigest
  /**
   * The owner's clients by digest bucket (bucketHash & (buckets - 1)), so that an exact digest of
   * some buckets reads only their clients: a scan of every client per request of 64 buckets took
   * about 14 ms of a turn at 100k clients, several times per repair.
   *
   * Arrays of entries, each entry knowing its slot, rather than sets of ids: every node indexes
   * every client it learns of, and a Set.add per client (hashing the id, growing and rehashing the
   * set) was 8 % of a 3-node cluster's CPU per registration in ap-register.ts and about 23 bytes
   * of heap per client per node. Removal moves the bucket's last entry into the freed slot.
   */
  readonly byBucket: (Entry[] | undefined)[]
  count: number
}

/** A change that took effect: prev and next as for ap/store.ts's ClientListener. */
export interface Applied {
  readonly prev: ClientRecord | undefined
  readonly next: ClientRecord | undefined
}

export interface ReplicaOptions {
  readonly tombstoneTtlMs?: number
  readonly maxTombstones?: number
  readonly buckets?: number
}

export class Replica implements LocalView {
  private ownership: Ownership
  private readonly live = new Map<string, Entry>()
  private readonly tombs: TombstoneSet
  private readonly owners = new Map<NodeId, OwnerIndex>()
  /** Counts index() and unindex() calls, so that ownedBy can tell that it was interleaved with a change. */
  private indexChanges = 0
  readonly buckets: number

  constructor(
    readonly self: NodeId,
    healthyMembers: Iterable<NodeId>,
    opts: ReplicaOptions = {},
  ) {
    this.ownership = new Ownership(healthyMembers)
    this.buckets = opts.buckets ?? DISTRO_LIMITS.digestBuckets
    this.tombs = new TombstoneSet(opts.tombstoneTtlMs ?? DISTRO_LIMITS.tombstoneTtlMs, opts.maxTombstones ?? DISTRO_LIMITS.maxTombstones, this.buckets)
  }

  // ---- reads -------------------------------------------------------------------------------

  get(clientId: string): ClientState | undefined {
    return this.live.get(clientId)?.record
  }

  held(clientId: string): HeldState | undefined {
    const e = this.live.get(clientId)
    if (e) return { version: e.record.version, removed: false, fingerprint: fpOf(e) }
    const t = this.tombs.item(clientId)
    return t === undefined ? undefined : { version: newestVersion(t), removed: true, fingerprint: fingerprint(t) }
  }

  /** What to send for a client (a pull answer, a push): its record or tombstone. */
  heldItem(clientId: string): Versioned | undefined {
    const e = this.live.get(clientId)
    if (e) return e.record
    return this.tombs.item(clientId)
  }

  /** The version a local write must exceed (record or tombstone), for nextVersion. */
  heldVersion(clientId: string): number | undefined {
    const e = this.live.get(clientId)
    if (e) return e.record.version
    const t = this.tombs.item(clientId)
    return t === undefined ? undefined : newestVersion(t)
  }

  ownerOf(clientId: string): NodeId | null {
    const e = this.live.get(clientId)
    return e ? e.owner : this.ownership.ownerOf(clientId)
  }

  isResponsible(clientId: string): boolean {
    return this.ownerOf(clientId) === this.self
  }

  members(): readonly NodeId[] {
    return this.ownership.members
  }

  records(): IterableIterator<ClientState> {
    return mapIter(this.live.values(), (e) => e.record)
  }

  /** Every live client's id. */
  liveIds(): IterableIterator<string> {
    return this.live.keys()
  }

  /** Every tombstoned client's id, oldest stored first. */
  *tombstoneIds(): IterableIterator<string> {
    for (const [id] of this.tombs.entries()) yield id
  }

  /** The live clients this node is responsible for. */
  *owned(): IterableIterator<ClientState> {
    for (const id of this.ownedBy(this.self, null)) yield this.live.get(id)!.record
  }

  ownedCount(owner: NodeId = this.self): number {
    return this.owners.get(owner)?.count ?? 0
  }

  /** The ids of `owner`'s clients in some buckets (all when null). The replica must not change while this is read. */
  *ownedBy(owner: NodeId, buckets: ReadonlySet<number> | null): Iterable<string> {
    const idx = this.owners.get(owner)
    if (!idx) return
    // Removal moves entries between slots: a change while reading would skip or repeat clients.
    const changes = this.indexChanges
    for (const b of buckets ?? idx.byBucket.keys()) {
      const entries = idx.byBucket[b]
      if (!entries) continue
      for (let i = 0; i < entries.length; i++) {
        yield entries[i]!.record.clientId
        assert(this.indexChanges === changes, 'the replica is not changed while its owned clients are read')
      }
    }
  }

  get size(): number {
    return this.live.size
  }

  get tombstones(): number {
    return this.tombs.size
  }

  // ---- digests -----------------------------------------------------------------------------

  /** The bucket summary of the clients this node counts as `owner`'s (its own by default). */
  summary(owner: NodeId = this.self): BucketSummary {
    const idx = this.owners.get(owner)
    return idx ? idx.digest.summary(owner) : new BucketDigest(this.buckets).summary(owner)
  }

  /** This node's exact state as an owner in some buckets (all when null), for a peer's diffDigest. */
  exact(buckets: readonly number[] | null): ExactDigest {
    const scope = buckets === null ? null : new Set(buckets)
    const mask = this.buckets - 1
    const live = new Map<string, number>()
    for (const id of this.ownedBy(this.self, scope)) live.set(id, fpOf(this.live.get(id)!))
    // Tombstones carry no owner: every one in the buckets goes.
    const removed = this.tombs.inBuckets(mask, scope)
    return { owner: this.self, buckets: buckets === null ? null : buckets.slice(), live, removed }
  }

  // ---- changes -----------------------------------------------------------------------------

  /**
   * Merges a record or tombstone from anywhere (a local write, a sync, a pull, a push) by
   * records.ts mergeClient. Returns the change, or null when it added nothing (stale or a
   * duplicate). A merge that ends in a tombstone where none or a tombstone was held returns
   * { prev: undefined, next: undefined }: accepted, but nothing visible changed.
   */
  apply(item: Versioned, now: number): Applied | null {
    const id = item.clientId
    const e = this.live.get(id)
    const merged = mergeClient(e ? e.record : this.tombs.item(id), item)
    if (merged === null) return null
    if (isTombstone(merged)) {
      this.tombs.add(merged, now, e?.hB)
      if (!e) return { prev: undefined, next: undefined }
      this.live.delete(id)
      this.unindex(e)
      return { prev: e.record, next: undefined }
    }
    assert(merged.instances.every((i) => i.ephemeral && i.clientId === id), 'a client record holds only its own ephemeral instances')
    const fp = fingerprint(merged)
    if (e) {
      const idx = e.owner === null ? undefined : this.owners.get(e.owner)
      idx?.digest.remove(e.hA, e.hB, fpOf(e))
      const prev = e.record
      e.record = merged
      setFp(e, fp)
      idx?.digest.add(e.hA, e.hB, fp)
      return { prev, next: merged }
    }
    this.tombs.delete(id)
    const hA = clientHash(id) | 0
    const fresh: Entry = { record: merged, fpHi: 0, fpLo: 0, hA, hB: bucketHash(id) | 0, owner: this.ownership.ownerOfHash(hA), slot: -1 }
    setFp(fresh, fp)
    this.live.set(id, fresh)
    this.index(fresh)
    return { prev: undefined, next: merged }
  }

  /**
   * A new view of the healthy members: recomputes every client's owner and returns the clients
   * whose owner changed. Those with `to === self` are takeovers (give them a grace, takeover.ts);
   * those with `from === self` are handed over.
   */
  setMembers(healthyMembers: Iterable<NodeId>): OwnershipChange[] {
    const next = new Ownership(healthyMembers)
    const changes: OwnershipChange[] = []
    if (next.sameMembers(this.ownership)) return changes
    this.ownership = next
    for (const [id, e] of this.live) {
      const owner = next.ownerOfHash(e.hA)
      if (owner === e.owner) continue
      changes.push({ clientId: id, from: e.owner, to: owner })
      this.unindex(e)
      e.owner = owner
      this.index(e)
    }
    for (const [owner, idx] of this.owners) if (idx.count === 0) this.owners.delete(owner)
    return changes
  }

  /** Drops tombstones past their time (records.ts). Returns how many. */
  collect(now: number): number {
    return this.tombs.collect(now)
  }

  /** Asserts the invariants; O(clients). For tests and the simulator. */
  check(): void {
    let indexed = 0
    const mask = this.buckets - 1
    for (const [owner, idx] of this.owners) {
      let sum = 0
      for (const c of idx.digest.counts) sum += c
      let held = 0
      for (const [b, entries] of idx.byBucket.entries()) {
        if (!entries) continue
        assert(entries.length > 0, `${owner}'s bucket ${b} has no empty array`)
        assert(entries.length === idx.digest.counts[b], `${owner}'s bucket ${b} holds as many clients as its digest counts`)
        entries.forEach((e, slot) => {
          const id = e.record.clientId
          assert(this.live.get(id) === e, `${id} is indexed as the live entry`)
          assert(e.owner === owner && (e.hB & mask) === b && e.slot === slot, `${id} is indexed under its owner ${owner}, its bucket and its slot`)
        })
        held += entries.length
      }
      assert(sum === idx.count && held === idx.count, `${owner}'s digest counts ${sum} clients, its buckets ${held}, its count ${idx.count}`)
      indexed += idx.count
    }
    let owned = 0
    for (const [id, e] of this.live) {
      assert(this.tombs.get(id) === undefined, `${id} is live or tombstoned, not both`)
      assert(e.owner === this.ownership.ownerOfHash(e.hA), `${id}'s owner is current`)
      assert(fpOf(e) === fingerprint(e.record), `${id}'s fingerprint is its record's`)
      if (e.owner !== null) owned++
    }
    assert(indexed === owned, 'every owned client is indexed once')
  }

  private index(e: Entry): void {
    if (e.owner === null) return
    let idx = this.owners.get(e.owner)
    if (!idx) {
      idx = { digest: new BucketDigest(this.buckets), byBucket: new Array<Entry[] | undefined>(this.buckets).fill(undefined), count: 0 }
      this.owners.set(e.owner, idx)
    }
    const b = e.hB & (this.buckets - 1)
    const entries = idx.byBucket[b] ?? (idx.byBucket[b] = [])
    e.slot = entries.length
    entries.push(e)
    this.indexChanges++
    idx.count++
    idx.digest.add(e.hA, e.hB, fpOf(e))
  }

  private unindex(e: Entry): void {
    if (e.owner === null) return
    const idx = this.owners.get(e.owner)!
    const b = e.hB & (this.buckets - 1)
    const entries = idx.byBucket[b]!
    assert(entries[e.slot] === e, "an indexed client is in its slot of its owner's bucket")
    const last = entries.pop()!
    if (last !== e) {
      entries[e.slot] = last
      last.slot = e.slot
    }
    e.slot = -1
    this.indexChanges++
    // An emptied bucket holds no array: tens of thousands of owners' clients come and go.
    if (entries.length === 0) idx.byBucket[b] = undefined
    idx.count--
    idx.digest.remove(e.hA, e.hB, fpOf(e))
  }
}

function* mapIter<A, B>(it: Iterable<A>, f: (a: A) => B): IterableIterator<B> {
  for (const a of it) yield f(a)
}
