// What the responsible node sends each peer, and when. One SyncQueue per peer.
//
// - Coalescing: the queue holds at most one entry per client, the latest version. A client that
//   changes ten times while a batch is in flight is sent once. An entry keeps its place when it
//   is replaced, so a busy client cannot push quiet ones back forever.
// - One batch in flight per peer. Changes made meanwhile wait and leave together in the next
//   batch, so batches grow with load and latency stays one round trip when idle: no timer to fill
//   a batch (Nacos waits 1 s before syncing; the sync-lag target here is p99 <= 200 ms).
// - A batch is bounded by records and bytes, but always carries one record, so one big client
//   cannot stall the queue.
// - A failed batch is retried as it was, after an exponential backoff with jitter (delays come
//   from the injected random, so a seed reproduces them). After `maxSyncAttempts` it is abandoned.
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
  private inFlight: SyncBatch | null = null
  /** A failed batch waiting for its retry, and when. */
  private retry: SyncBatch | null = null
  private retryAt = 0
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

  constructor(opts: SyncQueueOptions) {
    this.random = opts.random
    this.sizeOf = opts.sizeOf ?? estimateBytes
    this.maxQueued = opts.maxQueuedClients ?? DISTRO_LIMITS.maxQueuedClients
    this.maxItems = opts.maxBatchItems ?? DISTRO_LIMITS.maxBatchItems
    this.maxBytes = opts.maxBatchBytes ?? DISTRO_LIMITS.maxBatchBytes
    this.baseBackoff = opts.baseBackoffMs ?? DISTRO_LIMITS.baseBackoffMs
    this.maxBackoff = opts.maxBackoffMs ?? DISTRO_LIMITS.maxBackoffMs
    this.maxAttempts = opts.maxSyncAttempts ?? DISTRO_LIMITS.maxSyncAttempts
    assert(this.maxQueued > 0 && this.maxItems > 0 && this.maxBytes > 0 && this.maxAttempts > 0, 'sync limits are positive')
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
   * The batch to send at `now`, or null: a batch is in flight, a retry is backing off, or nothing
   * is queued. The caller sends it and reports exactly one ack() or fail() with its id (a timeout
   * is a fail; an answer arriving after that must be ignored by the caller).
   */
  next(now: number): SyncBatch | null {
    if (this.inFlight) return null
    if (this.retry) {
      if (now < this.retryAt) return null
      this.inFlight = this.retry
      this.retry = null
      return this.inFlight
    }
    if (this.queue.size === 0) return null
    const items: Versioned[] = []
    let bytes = 0
    for (const [clientId, item] of this.queue) {
      const size = this.sizeOf(item)
      if (items.length > 0 && (items.length >= this.maxItems || bytes + size > this.maxBytes)) break
      items.push(item)
      bytes += size
      this.queue.delete(clientId)
    }
    this.inFlight = { id: this.nextId++, items, bytes, attempt: 1 }
    return this.inFlight
  }

  /** The peer stored the batch. An answer to a batch dropped by clear() is ignored. */
  ack(batchId: number): void {
    if (this.isLate(batchId)) return
    this.inFlight = null
  }

  /**
   * The send failed: the batch is retried after a backoff, or abandoned after the last attempt.
   * Returns null for an answer to a batch dropped by clear().
   */
  fail(batchId: number, now: number): FailResult | null {
    if (this.isLate(batchId)) return null
    const b = this.inFlight!
    this.inFlight = null
    if (b.attempt >= this.maxAttempts) {
      this.needsVerify = true
      return { retryAt: null, abandoned: b.items }
    }
    this.retry = { id: b.id, items: b.items, bytes: b.bytes, attempt: b.attempt + 1 }
    this.retryAt = now + backoffDelay(b.attempt, this.random, this.baseBackoff, this.maxBackoff)
    return { retryAt: this.retryAt, abandoned: null }
  }

  /** When next() may next return a batch: now-ish if work is waiting, a retry's time, or null (idle or in flight). */
  wakeAt(now: number): number | null {
    if (this.inFlight) return null
    if (this.retry) return Math.max(now, this.retryAt)
    return this.queue.size > 0 ? now : null
  }

  private isLate(batchId: number): boolean {
    assert(batchId > 0 && batchId < this.nextId, `batch ${batchId} was issued`)
    if (this.inFlight?.id === batchId) return false
    // Only a batch that clear() dropped can be answered when it is not in flight.
    assert(this.clearedBelow > batchId, `batch ${batchId} is the one in flight`)
    return true
  }

  /** The peer left the cluster (or will be sent a snapshot): drop everything for it. */
  clear(): void {
    this.clearedBelow = this.nextId
    this.queue.clear()
    this.inFlight = null
    this.retry = null
  }

  /** Distinct clients waiting (not counting the batch in flight or awaiting retry). */
  get size(): number {
    return this.queue.size
  }

  get busy(): boolean {
    return this.inFlight !== null
  }
}
