// Verification: each node summarizes the clients it owns; a peer compares, and repairs exactly
// what differs. Syncs can be lost (a full queue, abandoned retries, a partition); verification is
// what makes Distro converge anyway (Nacos's drift, #10123, #5769, came from a verify that did not).
//
// Two levels, so that the steady state costs a constant:
// 1. A bucket summary. Clients are spread over DISTRO_LIMITS.digestBuckets buckets by a hash of
//    their id; each bucket keeps a count and a 64-bit fingerprint, the XOR of a hash of
//    (clientId, the client's fingerprint from records.ts) over its clients. 1024 buckets are 12 KiB whether the owner has 10 or
//    100k clients; sending a full clientId -> version map instead would be about 4.5 MB per peer
//    every 5 s at 100k clients. XOR is its own inverse, so a change updates its bucket in O(1)
//    (remove the old version's hash, add the new one's) and nobody ever rescans. Two different
//    bucket contents share a fingerprint with probability about 2^-64.
// 2. For the buckets that differ, the owner lists them exactly (an ExactDigest: clientId ->
//    fingerprint of its live clients, and its tombstones' versions), and diffDigest says what to
//    pull, push and drop. A client whose fingerprints differ is pulled, merged (records.ts), and
//    pushed back if the merge kept something the owner lacks (stillDiffering): copies written
//    concurrently on two sides of a partition each hold what the other lacks.
//
// The summary covers live records only: tombstones are collected at different times on different
// nodes, so including them would make buckets differ when nothing that matters does. The exact
// listing carries them, so a peer still holding a client the owner removed learns the removal's
// version and drops it.
//
// "Owned by" is always the local node's own ownership mapping (ownership.ts) under its own view
// of the healthy members. When views agree, a peer's "clients of owner X" is exactly X's "clients
// I own", and their summaries match. While views disagree (a node just failed or joined),
// comparisons may differ and repair more than needed; versions keep every repair safe, and once
// the views agree, one round repairs the rest.
//
// Fingerprints, not versions, because merged states are not ordered by their newest version: a
// copy holding {A@5} and one holding {A@5, B@3} both have version 5.

import { assert } from '../../core/assert.js'
import { SEED_B, hashString, mix32 } from './hash.js'
import { DISTRO_LIMITS } from './limits.js'
import type { NodeId } from './types.js'

const TWO_32 = 4294967296

/** The second 32-bit hash of a client id: picks its bucket and, with clientHash, names it in fingerprints. */
export function bucketHash(clientId: string): number {
  return hashString(clientId, SEED_B)
}

export function bucketOf(clientId: string, buckets: number = DISTRO_LIMITS.digestBuckets): number {
  return bucketHash(clientId) & (buckets - 1)
}

/**
 * Bucket counts and fingerprints, updated one client at a time. The caller passes the client's
 * two hashes (clientHash, bucketHash), which it caches, so no string is hashed here.
 */
export class BucketDigest {
  readonly counts: Uint32Array
  /** Two 32-bit words per bucket: fps[2b], fps[2b + 1]. */
  readonly fps: Uint32Array
  private readonly mask: number

  constructor(readonly buckets: number = DISTRO_LIMITS.digestBuckets) {
    assert(buckets > 0 && (buckets & (buckets - 1)) === 0, 'bucket count is a power of two')
    this.counts = new Uint32Array(buckets)
    this.fps = new Uint32Array(2 * buckets)
    this.mask = buckets - 1
  }

  /** Counts a client in: its two hashes and its fingerprint (records.ts, below 2^53). */
  add(hA: number, hB: number, fp: number): void {
    const b = hB & this.mask
    this.counts[b]! += 1
    this.flip(b, hA, hB, fp)
  }

  remove(hA: number, hB: number, fp: number): void {
    const b = hB & this.mask
    assert(this.counts[b]! > 0, 'a client removed from a digest was in it')
    this.counts[b]! -= 1
    this.flip(b, hA, hB, fp)
  }

  private flip(b: number, hA: number, hB: number, fp: number): void {
    const lo = fp >>> 0
    const hi = Math.floor(fp / TWO_32) >>> 0
    this.fps[2 * b] = (this.fps[2 * b]! ^ mix32(mix32(hA, lo), hi)) >>> 0
    this.fps[2 * b + 1] = (this.fps[2 * b + 1]! ^ mix32(mix32(hB, hi), lo ^ hA)) >>> 0
  }

  /** A copy to send: what the owner's node holds as `owner`'s clients. */
  summary(owner: NodeId): BucketSummary {
    return { owner, buckets: this.buckets, counts: this.counts.slice(), fps: this.fps.slice() }
  }
}

/** Level 1: per bucket, how many clients and the XOR of their (clientId, fingerprint) hashes. */
export interface BucketSummary {
  readonly owner: NodeId
  readonly buckets: number
  readonly counts: ArrayLike<number>
  readonly fps: ArrayLike<number>
}

/**
 * The buckets where two summaries differ, lowest first (at most `max`). The peer asks the owner
 * for them in requests of DISTRO_LIMITS.maxBucketsPerRequest buckets, all in the same round: the
 * limit bounds a message, not the repair rate, so a large drift (a long partition) is still
 * repaired in one round.
 */
export function differingBuckets(local: BucketSummary, remote: BucketSummary, max: number = Infinity): number[] {
  assert(local.buckets === remote.buckets, `both sides bucket alike (${local.buckets} vs ${remote.buckets})`)
  assert(remote.counts.length === remote.buckets && remote.fps.length === 2 * remote.buckets, 'a summary has one count and two words per bucket')
  const out: number[] = []
  for (let b = 0; b < local.buckets && out.length < max; b++) {
    if (local.counts[b] !== remote.counts[b] || local.fps[2 * b] !== remote.fps[2 * b] || local.fps[2 * b + 1] !== remote.fps[2 * b + 1]) out.push(b)
  }
  return out
}

/** Level 2: the owner's exact state in some buckets (all of them when `buckets` is null). */
export interface ExactDigest {
  readonly owner: NodeId
  readonly buckets: readonly number[] | null
  /** The owner's live clients in those buckets, by its own ownership mapping: clientId -> fingerprint. */
  readonly live: ReadonlyMap<string, number>
  /** Every tombstone the owner holds in those buckets: clientId -> the removal's version. */
  readonly removed: ReadonlyMap<string, number>
}

/** What a node holds for a client: a record (removed: false) or a tombstone (removed: true). */
export interface HeldState {
  readonly version: number
  readonly removed: boolean
  /** records.ts fingerprint: the tombstone's version for a tombstone. */
  readonly fingerprint: number
}

/** What a node holds, as diffDigest needs to see it. Replica implements it. */
export interface LocalView {
  held(clientId: string): HeldState | undefined
  /** The live clients this node counts as owned by `owner`, in the given buckets (all when null). */
  ownedBy(owner: NodeId, buckets: ReadonlySet<number> | null): Iterable<string>
}

export interface DigestDiff {
  /**
   * Clients whose copies differ from the owner's (or that the peer lacks): fetch the owner's
   * records or tombstones and merge them. A tombstone removes what was written before it; an
   * instance written after it survives. Afterwards, stillDiffering says which to push back.
   */
  readonly pull: string[]
  /**
   * Clients the peer holds as the owner's while the owner has neither a record nor a tombstone
   * for them: send the peer's record to the owner.
   */
  readonly push: string[]
}

/**
 * What a peer must do so that its copy of `digest.owner`'s clients matches the owner's.
 *
 * A client the peer holds as the owner's but the owner neither has nor remembers removing is
 * pushed to the owner, not dropped. The owner may never have seen it: a registration taken on
 * the other side of a partition, whose syncs were lost. Dropping it would remove a live client,
 * which Distro must never do (issue 4's second checker). If instead the owner removed it so long
 * ago that its tombstone was collected, the pushed copy is stale; the owner then holds a client
 * that does not beat, and expires it after one timeout (takeover.ts), and the removal syncs like
 * any other. A ghost for one timeout is the price, and only after a delay longer than the
 * tombstone TTL.
 */
export function diffDigest(view: LocalView, digest: ExactDigest): DigestDiff {
  const pull: string[] = []
  const push: string[] = []
  for (const [clientId, fp] of digest.live) {
    const h = view.held(clientId)
    if (h === undefined || h.removed || h.fingerprint !== fp) pull.push(clientId)
  }
  // The tombstone itself is pulled: it may remember removals above its version (types.ts).
  for (const clientId of digest.removed.keys()) {
    const h = view.held(clientId)
    if (h !== undefined && !h.removed) pull.push(clientId)
  }
  const scope = digest.buckets === null ? null : new Set(digest.buckets)
  for (const clientId of view.ownedBy(digest.owner, scope)) {
    if (!digest.live.has(clientId) && !digest.removed.has(clientId)) push.push(clientId)
  }
  return { pull, push }
}

/**
 * Of `clientIds` (pulled by a repair, and merged), those whose copy here still differs
 * from the owner's: the merge kept something the owner lacks, so the peer pushes its copy and
 * the owner merges it too. A client the owner holds live differs when the fingerprints do; one
 * the owner removed, when it is still live here (written after the removal).
 */
export function stillDiffering(view: LocalView, digest: ExactDigest, clientIds: Iterable<string>): string[] {
  const out: string[] = []
  for (const clientId of clientIds) {
    const h = view.held(clientId)
    if (h === undefined) continue
    const fp = digest.live.get(clientId)
    if (fp !== undefined ? h.removed || h.fingerprint !== fp : !h.removed && digest.removed.has(clientId)) out.push(clientId)
  }
  return out
}
