// Versioned records: the merge rule, how versions are made, and tombstones.
//
// The merge rule is the whole of Distro's conflict resolution: a copy replaces what a node holds
// only if its version is strictly greater. Applying the same set of copies in any order, any
// number of times, leaves every node holding the highest version (the property test in
// test/unit/ap/distro/records.test.ts checks it). That is what lets syncs be batched, retried and
// reordered freely, and what lets verification repair drift by plain comparison (Nacos nodes
// drifted apart on instance counts, #10123, #5769).
//
// Versions are hybrid: milliseconds of wall time, shifted left by 10 bits, with a per-node salt
// in the low bits, and never below the version held + 1. Why not a plain counter (+1 per change):
// - A new owner that missed the old owner's last syncs (a partition, a crash) would continue from
//   an older number and could issue a version the old owner already used for different content;
//   equal versions compare as equal, so nodes would keep two different records forever.
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
import { SEED_B, hashString } from './hash.js'
import { DISTRO_LIMITS } from './limits.js'
import type { NodeId } from './types.js'

export const SALT_BITS = 10
const SALT_RANGE = 1 << SALT_BITS

/**
 * Whether `incoming` should replace what is held (a record or a tombstone). Strictly newer only:
 * an equal version is a duplicate, an older one is stale.
 */
export function shouldAccept(held: { readonly version: number } | undefined, incoming: { readonly version: number }): boolean {
  return acceptsVersion(held === undefined ? undefined : held.version, incoming.version)
}

/** shouldAccept on bare versions, for callers that hold a number rather than a record. */
export function acceptsVersion(held: number | undefined, incoming: number): boolean {
  return held === undefined || incoming > held
}

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

interface Held {
  readonly version: number
  readonly at: number
}

/**
 * Tombstones, bounded by age and count. Ages are counted from when this node stored each one (its
 * own clock, passed in as `now`), not from the version, so clock skew between nodes cannot make a
 * tombstone expire early. Insertion order is age order: collect() scans from the oldest and stops
 * at the first young one, so it costs only what it removes.
 */
export class TombstoneSet {
  private readonly held = new Map<string, Held>()

  constructor(
    readonly ttlMs: number = DISTRO_LIMITS.tombstoneTtlMs,
    readonly max: number = DISTRO_LIMITS.maxTombstones,
  ) {
    assert(ttlMs > 0 && max > 0, 'tombstones are kept for some time and count')
  }

  get(clientId: string): number | undefined {
    return this.held.get(clientId)?.version
  }

  /** Stores a tombstone stored at `now` (a newer one replaces the older). Returns how many were evicted by count. */
  add(clientId: string, version: number, now: number): number {
    const prev = this.held.get(clientId)
    if (prev && prev.version >= version) return 0
    // Delete first so the entry moves to the young end of the insertion order.
    this.held.delete(clientId)
    this.held.set(clientId, { version, at: now })
    let evicted = 0
    while (this.held.size > this.max) {
      const oldest = this.held.keys().next().value as string
      this.held.delete(oldest)
      evicted++
    }
    return evicted
  }

  delete(clientId: string): boolean {
    return this.held.delete(clientId)
  }

  /** Drops tombstones stored at or before now - ttl. Returns how many. */
  collect(now: number): number {
    let n = 0
    for (const [clientId, h] of this.held) {
      if (h.at + this.ttlMs > now) break
      this.held.delete(clientId)
      n++
    }
    return n
  }

  get size(): number {
    return this.held.size
  }

  *entries(): IterableIterator<[string, number]> {
    for (const [clientId, h] of this.held) yield [clientId, h.version]
  }
}
