// What the responsible node sends each peer, and when. One SyncQueue per peer.
//
// - Coalescing: the queue holds at most one entry per client, the latest version. A client that
//   changes ten times while batches are in flight is sent once. An entry keeps its place when it
//   is replaced, so a busy client cannot push quiet ones back forever.
// - A few batches in flight per peer (maxBatchesInFlight). With one, a change made while a batch
//   was out waited for that batch's answer and then for its own: under load, when a busy peer
//   answers late, that doubled the sync lag. The receiver merges whatever arrives in any order
//   (records.ts), so overlapping batches are safe. Batches still grow with load (whatever queued
//   while the slots were full leaves together), and latency stays one round trip when idle.
// - A batch is bounded by records and bytes, but always carries one record, so one big client
//   cannot stall the queue.
// - A failed batch is retried as it was, after an exponential backoff with jitter (delays come
//   from the injected random, so a seed reproduces them). While a retry is pending the peer is
//   treated as failing: nothing new is sent, and retries go one at a time. After
//   `maxSyncAttempts` a batch is abandoned.
// - The queue is bounded in distinct clients. A change that does not fit is not queued.
// Abandoning and refusing both lose changes; both set `needsVerify`, and the driver then runs a
// verification round with that peer soon, which finds and repairs whatever was lost (digest.ts).
// Order never matters for correctness: the receiver merges per instance (records.ts).

import { assert } from '../../core/assert.js'
import type { ClientRecord } from '../store.js'
import { DISTRO_LIMITS } from './limits.js'
import { isTombstone, type Versioned } from './types.js'

export interface SyncQueueOptions {
  /** A number in [0, 1): injected, so a seed reproduces every backoff. */
  readonly random: () => number
  /** Encoded size of an item in bytes; defaults to estimateBytes. */
  readonly sizeOf?: (item: Versioned) => number
  readonly maxQueuedClients?: number
  readonly maxBatchItems?: number
  readonly maxBatchBytes?: number
  readonly baseBackoffMs?: number
  readonly maxBackoffMs?: number
  readonly maxSyncAttempts?: number
  readonly maxBatchesInFlight?: number
}

export interface SyncBatch {
  readonly id: number
  readonly items: readonly Versioned[]
  readonly bytes: number
  /** 1 for the first send, 2 for the first retry, ... */
  readonly attempt: number
}

/** queued: a new entry; coalesced: replaced an older queued version; stale: an equal or newer one is queued; full: not queued. */
export type EnqueueResult = 'queued' | 'coalesced' | 'stale' | 'full'

export type FailResult = { readonly retryAt: number; readonly abandoned: null } | { readonly retryAt: null; readonly abandoned: readonly Versioned[] }

/**
 * The delay before send number `attempt + 1`, after `attempt` failed sends: base * 2^(attempt - 1)
 * capped at max, with equal jitter (between half and all of it). Half is fixed so that retries
 * still back off; half is random so that peers that failed together do not retry together.
 */
export function backoffDelay(attempt: number, random: () => number, baseMs: number = DISTRO_LIMITS.baseBackoffMs, maxMs: number = DISTRO_LIMITS.maxBackoffMs): number {
  assert(attempt >= 1, 'a backoff follows a failed attempt')
  const d = Math.min(maxMs, baseMs * Math.pow(2, Math.min(attempt - 1, 30)))
  const r = random()
  assert(r >= 0 && r < 1, 'random() is in [0, 1)')
  return Math.floor(d / 2 + (r * d) / 2)
}

/**
 * A cheap estimate of an item's encoded size, from string lengths (UTF-16 units, which equal
 * UTF-8 bytes for ASCII) plus a fixed overhead per field. The driver may pass its encoder's exact
 * size instead; the limit only has to keep a batch well under the peer frame limit.
 */
export function estimateBytes(item: Versioned): number {
  let n = 24 + item.clientId.length
  if (isTombstone(item)) return n
  for (const i of (item as ClientRecord).instances) {
    n += 64 + i.namespace.length + i.group.length + i.service.length + i.cluster.length + i.ip.length + i.clientId.length
    for (const k in i.metadata) n += 4 + k.length + i.metadata[k]!.length
  }
  return n
}

export class SyncQueue {
  private readonly queue = new Map<string, Versioned>()
  private readonly inFlight = new Map<number, SyncBatch>()
  /** Failed batches waiting for their retry, oldest first, each with its time. */
  private readonly retries: { batch: SyncBatch; at: number }[] = []
  private nextId = 1
  /** Batches with smaller ids were dropped by clear(); their answers may still come. */
  private clearedBelow = 1
  /**
   * Some change for this peer was lost (refused or abandoned): verify with it soon. The driver
   * resets it to false when it schedules that round.
   */
  needsVerify = false

  private readonly random: () => number
  private readonly sizeOf: (item: Versioned) => number
  private readonly maxQueued: number
  private readonly maxItems: number
  private readonly maxBytes: number
  private readonly baseBackoff: number
  private readonly maxBackoff: number
  private readonly maxAttempts: number
  private readonly maxInFlight: number

  constructor(opts: SyncQueueOptions) {
    this.random = opts.random
    this.sizeOf = opts.sizeOf ?? estimateBytes
    this.maxQueued = opts.maxQueuedClients ?? DISTRO_LIMITS.maxQueuedClients
    this.maxItems = opts.maxBatchItems ?? DISTRO_LIMITS.maxBatchItems
    this.maxBytes = opts.maxBatchBytes ?? DISTRO_LIMITS.maxBatchBytes
    this.baseBackoff = opts.baseBackoffMs ?? DISTRO_LIMITS.baseBackoffMs
    this.maxBackoff = opts.maxBackoffMs ?? DISTRO_LIMITS.maxBackoffMs
    this.maxAttempts = opts.maxSyncAttempts ?? DISTRO_LIMITS.maxSyncAttempts
    this.maxInFlight = opts.maxBatchesInFlight ?? DISTRO_LIMITS.maxBatchesInFlight
    assert(this.maxQueued > 0 && this.maxItems > 0 && this.maxBytes > 0 && this.maxAttempts > 0 && this.maxInFlight > 0, 'sync limits are positive')
  }

  /**
   * Queues a client's new state for this peer, replacing an older queued one. The caller passes
   * the state it holds now, which includes everything it held before; a merge can add to it
   * without raising its version (records.ts), so an equal version replaces too.
   */
  enqueue(item: Versioned): EnqueueResult {
    const queued = this.queue.get(item.clientId)
    if (queued) {
      if (queued.version > item.version) return 'stale'
      this.queue.set(item.clientId, item)
      return 'coalesced'
    }
    if (this.queue.size >= this.maxQueued) {
      this.needsVerify = true
      return 'full'
    }
    this.queue.set(item.clientId, item)
    return 'queued'
  }

  /**
   * The next batch to send at `now`, or null: every slot is taken, a retry is backing off (or
   * waits for the batches still out), or nothing is queued. The caller sends it and reports
   * exactly one ack() or fail() with its id (a timeout is a fail; an answer arriving after that
   * must be ignored by the caller). Call it again until it returns null.
   */
  next(now: number): SyncBatch | null {
    if (this.failing()) {
      // One send at a time, the oldest retry first, nothing new, until a retry is answered.
      const r = this.retries[0]
      if (r === undefined || this.inFlight.size > 0 || now < r.at) return null
      this.retries.shift()
      this.inFlight.set(r.batch.id, r.batch)
      return r.batch
    }
    if (this.inFlight.size >= this.maxInFlight || this.queue.size === 0) return null
    const items: Versioned[] = []
    let bytes = 0
    for (const [clientId, item] of this.queue) {
      const size = this.sizeOf(item)
      if (items.length > 0 && (items.length >= this.maxItems || bytes + size > this.maxBytes)) break
      items.push(item)
      bytes += size
      this.queue.delete(clientId)
    }
    const batch: SyncBatch = { id: this.nextId++, items, bytes, attempt: 1 }
    this.inFlight.set(batch.id, batch)
    return batch
  }

  /**
   * Whether a batch as large as a batch may be is waiting: waiting for more changes to coalesce
   * would not make it larger, so it may leave as soon as a slot is free.
   */
  get fullBatchReady(): boolean {
    return this.queue.size >= this.maxItems
  }

  /** The peer stored the batch. An answer to a batch dropped by clear() is ignored. */
  ack(batchId: number): void {
    if (this.isLate(batchId)) return
    this.inFlight.delete(batchId)
  }

  /**
   * The send failed: the batch is retried after a backoff, or abandoned after the last attempt.
   * Returns null for an answer to a batch dropped by clear().
   */
  fail(batchId: number, now: number): FailResult | null {
    if (this.isLate(batchId)) return null
    const b = this.inFlight.get(batchId)!
    this.inFlight.delete(batchId)
    if (b.attempt >= this.maxAttempts) {
      this.needsVerify = true
      return { retryAt: null, abandoned: b.items }
    }
    const at = now + backoffDelay(b.attempt, this.random, this.baseBackoff, this.maxBackoff)
    this.retries.push({ batch: { id: b.id, items: b.items, bytes: b.bytes, attempt: b.attempt + 1 }, at })
    return { retryAt: at, abandoned: null }
  }

  /** When next() may next return a batch: now-ish if work can leave, a retry's time, or null (wait for answers, or idle). */
  wakeAt(now: number): number | null {
    if (this.failing()) return this.inFlight.size > 0 || this.retries.length === 0 ? null : Math.max(now, this.retries[0]!.at)
    return this.queue.size > 0 && this.inFlight.size < this.maxInFlight ? now : null
  }

  /** A batch failed and no retry has been answered since: a retry is waiting or out. */
  private failing(): boolean {
    if (this.retries.length > 0) return true
    for (const b of this.inFlight.values()) if (b.attempt > 1) return true
    return false
  }

  private isLate(batchId: number): boolean {
    assert(batchId > 0 && batchId < this.nextId, `batch ${batchId} was issued`)
    if (this.inFlight.has(batchId)) return false
    // Only a batch that clear() dropped can be answered when it is not in flight.
    assert(this.clearedBelow > batchId, `batch ${batchId} is one in flight`)
    return true
  }

  /** The peer left the cluster (or will be sent a snapshot): drop everything for it. */
  clear(): void {
    this.clearedBelow = this.nextId
    this.queue.clear()
    this.inFlight.clear()
    this.retries.length = 0
  }

  /** Distinct clients waiting (not counting batches in flight or awaiting retry). */
  get size(): number {
    return this.queue.size
  }

  get busy(): boolean {
    return this.inFlight.size > 0
  }

  /** Batches sent and not yet answered. */
  get batchesInFlight(): number {
    return this.inFlight.size
  }
}
