// The Distro driver: runs the pure core (ap/distro) against the injected clock and the peer
// transport, and offers the AP contract (ap/store.ts) to the naming layer.
//
// What it does, and when:
// - A local write (put/remove, by the node responsible for the client) gets a fresh version
//   (records.ts nextVersion with this node's salt) stamped on the instances it changed
//   (writeClient), is applied to the replica at once, fires the listeners, and is queued for
//   every peer. Each peer has a SyncQueue (a few batches in flight, coalescing, backoff); the pump
//   sends batches as 'distro.sync'. A peer merges each item per instance (records.ts
//   mergeClient: stale and duplicate copies change nothing) and fires its listeners.
// - Lost changes (a batch abandoned after its retries, a queue full) are not chased one by one:
//   the queue sets needsVerify and this node runs a verification round with that peer at once.
// - Every verifyIntervalMs this node sends each peer the bucket summary of the clients it owns
//   ('distro.verify'). A receiver that differs repairs in the background: it asks the owner for
//   exact digests of the differing buckets ('distro.exact'), pulls what differs ('distro.pull'),
//   merges the owner's removals, and pushes what the owner lacks, or what its merge kept that the
//   owner's copy lacks ('distro.push'); the owner merges those and syncs the results to everyone.
// - A starting node copies everything (records and tombstones) from one ready peer, page by page
//   ('distro.load'), before it serves. A node answers loads only once it is itself loaded or
//   started, so two nodes starting together cannot hand each other an empty copy.
//
// Nothing here awaits on the write path: put() and remove() are synchronous, and every peer
// exchange runs in the background, bounded by DISTRO_LIMITS and the per-call timeout.

import { assert } from '../../core/assert.js'
import type { Cancel, Clock } from '../../core/clock.js'
import { GraceError } from '../../core/errors.js'
import type { Logger } from '../../core/logger.js'
import { differingBuckets, diffDigest, stillDiffering, type BucketSummary } from '../distro/digest.js'
import { DISTRO_LIMITS } from '../distro/limits.js'
import type { OwnershipChange } from '../distro/ownership.js'
import { fingerprint, nextVersion, versionSalt, versionTime, writeClient } from '../distro/records.js'
import { Replica } from '../distro/replica.js'
import { SyncQueue, type SyncBatch } from '../distro/sync-queue.js'
import { isTombstone, tombstone, type NodeId, type Versioned } from '../distro/types.js'
import type { ClientListener, ClientRecord, EphemeralStore } from '../store.js'
import {
  ITEM_BUDGET_BYTES,
  MAX_EXACT_ENTRIES,
  METHODS,
  chunkItems,
  decodeAccepted,
  decodeBucketList,
  decodeExact,
  decodeIds,
  decodeItemsMessage,
  decodeLoadPage,
  decodeLoadRequest,
  decodePullAnswer,
  decodeSummary,
  decodeVerifyAnswer,
  encodeBucketList,
  encodeExact,
  encodeIds,
  encodeItemsMessage,
  encodeLoadPage,
  encodeLoadRequest,
  encodeAccepted,
  encodePage,
  encodeSummary,
  encodeVerifyAnswer,
  itemBytes,
} from './distro-messages.js'

export type { NodeId } from '../distro/types.js'

/** What the driver needs from the peer transport (cluster/transport.ts provides it). */
export interface DistroTransport {
  call(to: NodeId, method: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>
  onCall(method: string, handler: (from: NodeId, payload: Uint8Array) => Promise<Uint8Array>): void
}

export interface DistroNodeOptions {
  self: NodeId
  transport: DistroTransport
  /** All timers via clock.setTimer; time via clock.now(). */
  clock: Clock
  /** Backoff jitter. */
  random: () => number
  logger: Logger
  /** Initial healthy members, self included (leave self out while it has not loaded). */
  members: readonly NodeId[]
  verifyIntervalMs?: number
  /** Per peer call. */
  requestTimeoutMs?: number
  /**
   * Sends of one sync batch before it is abandoned to verification; default
   * DISTRO_LIMITS.maxSyncAttempts. Tests lower it to make verification do the repairing.
   */
  maxSyncAttempts?: number
}

/** Where a change came from: a local write, or a peer (sync, pull, push, drop, load). */
export type ChangeOrigin = 'local' | 'remote'

/**
 * A ClientListener that may also read where the change came from (a 4th argument, which plain
 * ClientListeners ignore): the wiring grants a takeover grace (takeover.ts grant()) to remote
 * records of clients this node is responsible for.
 */
export type DistroListener = (clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined, origin: ChangeOrigin) => void

export interface DistroStats {
  syncBatchesSent: number
  syncBatchesFailed: number
  syncItemsAbandoned: number
  itemsApplied: number
  itemsIgnored: number
  verifyRoundsSent: number
  repairsRun: number
  repairsFailed: number
  pulled: number
  pushed: number
  refused: number
  /** Clients written again over another member's removal because this node heard from them since (see heardSince). */
  restored: number
}

/**
 * Whether this node heard from a client (a beat, a registration) after a time, by its own clock;
 * the wiring answers from the leases (naming/leases.ts heardSince).
 */
export type HeardSince = (clientId: string, sinceMs: number) => boolean

/**
 * How much later than a removal a beat must have come here to undo it (restoreIfHeard): clock
 * skew between the members, and a beat that was on its way when the client deregistered elsewhere.
 */
export const RESTORE_MARGIN_MS = 1_000

/**
 * The least time between two sends of sync batches (to every peer at once). A change made after a
 * quiet spell leaves at once; under a stream of writes, those of each interval travel together.
 * Each batch wakes the peer and, with its answer, this node again: at 1,500 writes/s over three
 * nodes a batch per write cost about 100 µs of cluster CPU per write; one per 20 ms costs about
 * a tenth of it, and adds at most 20 ms to the sync lag (target: p99 under 200 ms).
 */
export const SYNC_INTERVAL_MS = 20
/** Records in one load page; the byte budget usually binds first. */
const LOAD_PAGE_ITEMS = 5000
/**
 * A verify round the peer ignored (it does not count this node as a member yet, or it is still
 * loading: views change at slightly different moments on each node) is sent again this much later,
 * at most VERIFY_RESENDS times in a row, rather than waiting a whole interval.
 */
const VERIFY_RESEND_MS = 1_000
const VERIFY_RESENDS = 3
/** Load sessions served at once (each holds a list of client ids), and how long an idle one lives. */
const MAX_LOAD_SESSIONS = 4
const LOAD_SESSION_IDLE_MS = 60_000
const DEFAULT_LOAD_TIMEOUT_MS = 60_000
/** Buckets' worth of clients asked for in one exact request (the owner's counts), besides the 64-bucket cap. */
const EXACT_ENTRY_BUDGET = Math.floor(MAX_EXACT_ENTRIES / 2)

interface LoadSession {
  readonly ids: string[]
  lastUsed: number
}

export class DistroNode implements EphemeralStore {
  readonly self: NodeId
  private readonly transport: DistroTransport
  private readonly clock: Clock
  private readonly random: () => number
  private readonly logger: Logger
  private readonly verifyIntervalMs: number
  private readonly requestTimeoutMs: number
  private readonly maxSyncAttempts: number
  private readonly salt: number
  private readonly replica: Replica
  private readonly listeners: DistroListener[] = []
  /** See setBulkApply; by default the changes are applied as they are. */
  private bulk: (apply: () => void) => void = (apply) => apply()
  private readonly queues = new Map<NodeId, SyncQueue>()
  private readonly retryTimers = new Map<NodeId, Cancel>()
  private readonly verifying = new Set<NodeId>()
  /** Per peer: the resend scheduled after an ignored verify round, and how many in a row. */
  private readonly verifyResends = new Map<NodeId, { cancel: Cancel | null; count: number }>()
  private readonly repairing = new Set<NodeId>()
  /** Peers whose periodic verify round waits for the changes queued for them to be sent first. */
  private readonly verifyAfterSync = new Set<NodeId>()
  private readonly sessions = new Map<string, LoadSession>()
  private nextSession = 1
  /** See membersVersion. */
  private membersSeq = 0
  private pumpQueued = false
  /** The sync batch encoded last, for the other peers (see encodeBatch). */
  private lastBatch: { items: readonly Versioned[]; bytes: Uint8Array } | null = null
  /** When the sync batches last left (see SYNC_INTERVAL_MS). */
  private lastPumpAt = -Infinity
  private verifyTimer: Cancel | null = null
  private running = false
  private stopped = false
  private ready = false
  private readonly counters: DistroStats = {
    syncBatchesSent: 0,
    syncBatchesFailed: 0,
    syncItemsAbandoned: 0,
    itemsApplied: 0,
    itemsIgnored: 0,
    verifyRoundsSent: 0,
    repairsRun: 0,
    repairsFailed: 0,
    pulled: 0,
    pushed: 0,
    refused: 0,
    restored: 0,
  }
  /** See setHeardSince; by default this node has heard from nobody. */
  private heardSince: HeardSince = () => false

  constructor(opts: DistroNodeOptions) {
    assert(opts.self.length > 0, 'a node has an id')
    this.self = opts.self
    this.transport = opts.transport
    this.clock = opts.clock
    this.random = opts.random
    this.logger = opts.logger
    this.verifyIntervalMs = opts.verifyIntervalMs ?? DISTRO_LIMITS.verifyIntervalMs
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 2_000
    this.maxSyncAttempts = opts.maxSyncAttempts ?? DISTRO_LIMITS.maxSyncAttempts
    assert(this.verifyIntervalMs > 0 && this.requestTimeoutMs > 0, 'intervals are positive')
    this.salt = versionSalt(opts.self)
    this.replica = new Replica(opts.self, opts.members)
    this.syncQueuesToMembers()
    this.serve(METHODS.sync, (from, p) => this.onSync(from, p))
    this.serve(METHODS.verify, (from, p) => this.onVerify(from, p))
    this.serve(METHODS.exact, (_from, p) => this.onExact(p))
    this.serve(METHODS.pull, (_from, p) => this.onPull(p))
    this.serve(METHODS.push, (from, p) => this.onPush(from, p))
    this.serve(METHODS.load, (_from, p) => this.onLoad(p))
  }

  // ---- lifecycle -----------------------------------------------------------------------------

  /** Starts the sync pump and the verify timer. The node also serves loads from here on. */
  start(): void {
    if (this.running || this.stopped) return
    this.running = true
    this.ready = true
    this.verifyTimer = this.clock.setTimer(this.verifyIntervalMs, this.verifyTick)
    this.schedulePump()
  }

  /** Clears timers and refuses peer calls; calls already sent may still finish. */
  stop(): void {
    this.stopped = true
    this.running = false
    this.verifyTimer?.()
    this.verifyTimer = null
    for (const cancel of this.retryTimers.values()) cancel()
    this.retryTimers.clear()
    for (const r of this.verifyResends.values()) r.cancel?.()
    this.verifyResends.clear()
    this.verifyAfterSync.clear()
    this.sessions.clear()
  }

  /** Whether this node holds a full copy (loaded, or started as a first node). */
  get loaded(): boolean {
    return this.ready
  }

  /**
   * Startup: copies every record and tombstone from one ready peer (tried in turn), page by page,
   * applying each page as it arrives. True if a peer's copy was completed; false if none answered
   * in time (a first node, or a whole cluster starting together). Either way the node is ready
   * afterwards.
   */
  async load(timeoutMs: number = DEFAULT_LOAD_TIMEOUT_MS): Promise<boolean> {
    const deadline = this.clock.now() + timeoutMs
    const started = this.clock.now()
    try {
      for (const peer of this.peers()) {
        let session: string | null = null
        let offset = 0
        let applied = 0
        try {
          for (;;) {
            const left = deadline - this.clock.now()
            if (left <= 0 || this.stopped) return false
            const answer = await this.transport.call(peer, METHODS.load, encodeLoadRequest({ session, offset }), Math.min(this.requestTimeoutMs, left))
            const page = decodeLoadPage(answer, offset)
            if (session !== null && page.session !== session) throw new Error(`load session changed from ${session} to ${page.session}`)
            this.bulk(() => {
              for (const item of page.items) if (this.applyRemote(item)) applied++
            })
            session = page.session
            offset = page.next
            if (offset >= page.total) {
              this.logger.info({ peer, records: page.total, applied, ms: this.clock.now() - started }, 'distro: loaded a full copy from a peer')
              return true
            }
          }
        } catch (err) {
          this.logger.warn({ peer, err: (err as Error).message, applied }, 'distro: load from peer failed, trying the next')
        }
      }
      this.logger.info({ peers: this.peers().length }, 'distro: no peer could give a copy; starting from what this node has')
      return false
    } finally {
      this.ready = true
    }
  }

  // ---- membership and ownership ----------------------------------------------------------------

  /**
   * A new view of the healthy members (self included once it serves). Returns the clients whose
   * owner changed; feed them to TakeoverGrace.ownershipChanged. A peer that leaves the view loses
   * its sync queue (verification repairs it when it is back). When the view changes, this node
   * verifies with every peer at once rather than at the next round: a peer that rejoins has
   * missed changes, and the clients this node takes over may be ones it never received.
   */
  setMembers(healthy: readonly NodeId[]): OwnershipChange[] {
    const before = this.replica.members()
    const changes = this.replica.setMembers(healthy)
    this.syncQueuesToMembers()
    if (this.replica.members() === before) return changes
    this.membersSeq++
    if (this.running) for (const peer of this.peers()) this.sendVerify(peer)
    return changes
  }

  /**
   * Goes up by one whenever the view of the healthy members changes, and with it possibly the
   * owner of any client: a verdict of isResponsible holds while this stays the same.
   */
  get membersVersion(): number {
    return this.membersSeq
  }

  members(): readonly NodeId[] {
    return this.replica.members()
  }

  ownerOf(clientId: string): NodeId | null {
    return this.replica.ownerOf(clientId)
  }

  isResponsible(clientId: string): boolean {
    return this.replica.isResponsible(clientId)
  }

  // ---- EphemeralStore ----------------------------------------------------------------------------

  get(clientId: string): ClientRecord | undefined {
    return this.replica.get(clientId)
  }

  /**
   * A local write by the responsible node. record.version is ignored: the record is stored with a
   * fresh version above whatever this node holds, salted with its id, so that two nodes writing
   * the same client (across a takeover or a partition) never make equal versions.
   */
  put(record: ClientRecord): void {
    const id = record.clientId
    if (record.instances.length === 0) return this.remove(id)
    const version = nextVersion(this.replica.heldVersion(id), this.clock.now(), this.salt)
    const next = writeClient(this.replica.heldItem(id), id, record.instances, version)
    if (next === null) return // the same instances, unchanged: nothing to store or sync
    const change = this.replica.apply(next, this.clock.now())
    assert(change !== null, 'a fresh version is always accepted')
    this.fire(id, change.prev, change.next, 'local')
    this.enqueueAll(next, null)
  }

  /** A local removal: a tombstone with a fresh version. A client not held live is left alone. */
  remove(clientId: string): void {
    if (this.replica.get(clientId) === undefined) return
    const version = nextVersion(this.replica.heldVersion(clientId), this.clock.now(), this.salt)
    const t = tombstone(clientId, version)
    const change = this.replica.apply(t, this.clock.now())
    assert(change !== null && change.prev !== undefined, 'a fresh tombstone removes the live record')
    this.fire(clientId, change.prev, undefined, 'local')
    this.enqueueAll(t, null)
  }

  clients(): IterableIterator<ClientRecord> {
    return this.replica.records()
  }

  size(): number {
    return this.replica.size
  }

  subscribe(listener: ClientListener | DistroListener): void {
    this.listeners.push(listener as DistroListener)
  }

  /**
   * How a batch of a peer's changes (a sync or push batch, a load page, a pull answer) is
   * applied: the wiring passes the naming view's batch(), so that the batch's changes give each
   * service one revision and one round of watch and push notifications, as a lease sweep's do on
   * the owner, instead of one per client (a sweep's thousands of expiries reach the peers in
   * batches of hundreds). `bulk` must call `apply` once, synchronously.
   */
  setBulkApply(bulk: (apply: () => void) => void): void {
    this.bulk = bulk
  }

  /** How this node tells whether it heard from a client after another member removed it (restoreIfHeard). */
  setHeardSince(heardSince: HeardSince): void {
    this.heardSince = heardSince
  }

  // ---- introspection (tests, metrics) -------------------------------------------------------------

  /** The version held for a client, as a record or a tombstone. */
  versionOf(clientId: string): number | undefined {
    return this.replica.heldVersion(clientId)
  }

  /** The record or tombstone held for a client, as a peer would be sent it. */
  heldItem(clientId: string): Versioned | undefined {
    return this.replica.heldItem(clientId)
  }

  stats(): Readonly<DistroStats> {
    return { ...this.counters }
  }

  /** Changes waiting to be synced, over all peers (not counting batches in flight). */
  queuedSyncs(): number {
    let n = 0
    for (const q of this.queues.values()) n += q.size
    return n
  }

  /** Asserts the replica's invariants (O(clients)); for tests and the simulator. */
  check(): void {
    this.replica.check()
  }

  // ---- applying and listeners ---------------------------------------------------------------------

  /** Merges a peer's copy; true if it took effect. */
  private applyRemote(item: Versioned): boolean {
    const change = this.replica.apply(item, this.clock.now())
    if (change === null) {
      this.counters.itemsIgnored++
      return false
    }
    this.counters.itemsApplied++
    // A removal that dropped instances held here (a tombstone drops only those it is newer than).
    const dropped = isTombstone(item) && change.prev !== undefined && (change.next === undefined || change.next.instances.length < change.prev.instances.length)
    if (dropped && this.restoreIfHeard(item.version, change.prev!)) return true
    // A merge can change only what is remembered (a floor, a removal), not what is visible.
    if ((change.prev !== undefined || change.next !== undefined) && !sameInstances(change.prev, change.next)) {
      this.fire(item.clientId, change.prev, change.next, 'remote')
    }
    return true
  }

  /**
   * Another member's removal of a client (its tombstone at `removedAt`) was just merged over
   * `prev`, the record held here. If this node heard from the client after that removal, the
   * remover could not have: it was cut off from the client and from this node (a partition: the
   * side with a majority expires the clients whose beats go to the other side). Then this node
   * writes `prev`'s instances again above the removal, before any listener sees the removal, so
   * the client does not drop here at the heal and comes back on every other node with this sync
   * instead of at its next beat. A new owner gives the restored client a takeover grace, and its
   * beats keep it; a client that is gone expires again, and is not restored twice (this node
   * heard nothing after the new removal). A deregistration is not undone: a client stops beating
   * before it deregisters, so no beat comes after it (RESTORE_MARGIN_MS allows for clock skew).
   * Returns false when nothing was restored (the caller fires the removal).
   */
  private restoreIfHeard(removedAt: number, prev: ClientRecord): boolean {
    const id = prev.clientId
    if (!this.heardSince(id, versionTime(removedAt) + RESTORE_MARGIN_MS)) return false
    const now = this.clock.now()
    const next = writeClient(this.replica.heldItem(id), id, prev.instances, nextVersion(this.replica.heldVersion(id), now, this.salt))
    assert(next !== null, 'instances written over their removal are a change')
    const change = this.replica.apply(next, now)
    assert(change !== null, 'a fresh version is always accepted')
    this.counters.restored++
    if (!sameInstances(prev, next)) this.fire(id, prev, next, 'local')
    this.enqueueAll(next, null)
    return true
  }

  private fire(clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined, origin: ChangeOrigin): void {
    for (const l of this.listeners) {
      try {
        l(clientId, prev, next, origin)
      } catch (err) {
        // A listener's bug must not leave the replica and the other listeners half updated.
        this.logger.error({ clientId, err: (err as Error).message }, 'distro: a store listener threw')
      }
    }
  }

  // ---- sync ------------------------------------------------------------------------------------

  private peers(): NodeId[] {
    return this.replica.members().filter((m) => m !== this.self)
  }

  /** Makes the sync queues match the peers; returns the peers added. */
  private syncQueuesToMembers(): NodeId[] {
    const peers = new Set(this.peers())
    const added: NodeId[] = []
    for (const [peer, q] of this.queues) {
      if (peers.has(peer)) continue
      q.clear()
      this.queues.delete(peer)
      this.retryTimers.get(peer)?.()
      this.retryTimers.delete(peer)
      this.verifyAfterSync.delete(peer)
    }
    for (const peer of peers) {
      if (this.queues.has(peer)) continue
      this.queues.set(peer, new SyncQueue({ random: this.random, sizeOf: itemBytes, maxBatchBytes: ITEM_BUDGET_BYTES, maxSyncAttempts: this.maxSyncAttempts }))
      added.push(peer)
    }
    return added
  }

  private enqueueAll(item: Versioned, except: NodeId | null): void {
    for (const [peer, q] of this.queues) {
      if (peer === except) continue
      if (q.enqueue(item) === 'full') this.lost(peer, q)
    }
    this.schedulePump()
  }

  /**
   * Sends what is queued for every peer now if the last send was SYNC_INTERVAL_MS ago or more,
   * else when that much time has passed: at most one round of batches per interval.
   */
  private schedulePump(): void {
    if (this.pumpQueued || !this.running) return
    this.pumpQueued = true
    const wait = Math.max(0, this.lastPumpAt + SYNC_INTERVAL_MS - this.clock.now())
    this.clock.setTimer(wait, () => {
      this.pumpQueued = false
      this.lastPumpAt = this.clock.now()
      for (const peer of this.queues.keys()) this.pump(peer)
    })
  }

  private pump(peer: NodeId): void {
    const q = this.queues.get(peer)
    if (!q || !this.running) return
    const now = this.clock.now()
    for (let batch = q.next(now); batch !== null; batch = q.next(now)) this.send(peer, q, batch)
    if (q.size === 0 && this.verifyAfterSync.delete(peer)) this.sendVerify(peer)
    const at = q.wakeAt(now)
    if (at !== null && at > now && !this.retryTimers.has(peer)) {
      this.retryTimers.set(
        peer,
        this.clock.setTimer(at - now, () => {
          this.retryTimers.delete(peer)
          this.pump(peer)
        }),
      )
    }
  }

  private send(peer: NodeId, q: SyncQueue, batch: SyncBatch): void {
    this.counters.syncBatchesSent++
    this.transport.call(peer, METHODS.sync, this.encodeBatch(batch.items), this.requestTimeoutMs).then(
      (answer) => {
        try {
          decodeAccepted(answer)
        } catch (err) {
          // The peer answered, so it received the batch; a garbled answer is only logged.
          this.logger.warn({ peer, err: (err as Error).message }, 'distro: malformed sync answer')
        }
        q.ack(batch.id)
        // What queued meanwhile leaves with the next round, SYNC_INTERVAL_MS after the last: under
        // load, answers come often, and a batch per answer would be many small ones. A backlog
        // (a lease sweep's thousands of expiries) is sent in full batches as fast as the peer
        // answers them: nothing would coalesce by waiting, and the round would cap the rate.
        if (this.queues.get(peer) !== q || q.size === 0) return
        if (q.fullBatchReady) this.pump(peer)
        else this.schedulePump()
      },
      (err: Error) => {
        this.counters.syncBatchesFailed++
        const r = q.fail(batch.id, this.clock.now())
        if (r === null || this.queues.get(peer) !== q) return
        if (r.abandoned !== null) {
          this.counters.syncItemsAbandoned += r.abandoned.length
          this.logger.warn({ peer, items: r.abandoned.length, err: err.message }, 'distro: sync batch abandoned; verification will repair')
          this.lost(peer, q)
          // Queued changes wait behind no batch now.
          this.pump(peer)
          return
        }
        this.pump(peer)
      },
    )
  }

  /**
   * A batch's message. Every peer's queue gets the same changes in the same order, so a round
   * usually sends each peer the very same items: they are encoded once, for the first peer, and
   * the bytes reused for the others (the transport copies them into its frame).
   */
  private encodeBatch(items: readonly Versioned[]): Uint8Array {
    const last = this.lastBatch
    if (last !== null && last.items.length === items.length && last.items.every((item, i) => item === items[i])) return last.bytes
    const bytes = encodeItemsMessage(items)
    this.lastBatch = { items, bytes }
    return bytes
  }

  /** Some change for `peer` was lost: verify with it now rather than at the next round. */
  private lost(peer: NodeId, q: SyncQueue): void {
    if (!q.needsVerify) return
    q.needsVerify = false
    if (this.running) this.sendVerify(peer)
  }

  // ---- verify (the owner's side) -------------------------------------------------------------------

  private readonly verifyTick = (): void => {
    if (!this.running) return
    const now = this.clock.now()
    this.replica.collect(now)
    for (const [id, s] of this.sessions) if (s.lastUsed + LOAD_SESSION_IDLE_MS <= now) this.sessions.delete(id)
    for (const peer of this.peers()) this.verifyBehindSyncs(peer)
    this.verifyTimer = this.clock.setTimer(this.verifyIntervalMs, this.verifyTick)
  }

  /**
   * The periodic round leaves right behind the changes queued for the peer (or at once when none
   * are): the peer reads one connection's calls in order, so the summary it compares is one its
   * syncs have caught up with. Sent ahead of them, under load nearly every round found buckets
   * "differing" by the changes of the last sync interval, and the peer ran a repair (exact
   * digests that scan every client, pulls) for what the syncs brought anyway. A round still
   * waiting at the next tick (the peer is failing, a backlog) is sent then as it is.
   */
  private verifyBehindSyncs(peer: NodeId): void {
    const q = this.queues.get(peer)
    if (!q || q.size === 0 || this.verifyAfterSync.delete(peer)) return this.sendVerify(peer)
    this.verifyAfterSync.add(peer)
    this.schedulePump()
  }

  /** Sends `peer` the summary of the clients this node owns (one round in flight per peer). */
  private sendVerify(peer: NodeId): void {
    if (this.verifying.has(peer)) return
    this.verifying.add(peer)
    this.counters.verifyRoundsSent++
    this.transport
      .call(peer, METHODS.verify, encodeSummary(this.replica.summary(this.self)), this.requestTimeoutMs)
      .then((answer) => {
        if (decodeVerifyAnswer(answer).ignored) this.resendVerifyLater(peer)
        else this.verifyResends.delete(peer)
      })
      .catch((err: Error) => this.logger.info({ peer, err: err.message }, 'distro: verify round with peer failed'))
      .finally(() => this.verifying.delete(peer))
  }

  private resendVerifyLater(peer: NodeId): void {
    const r = this.verifyResends.get(peer) ?? { cancel: null, count: 0 }
    if (!this.running || r.cancel || r.count >= VERIFY_RESENDS) return
    r.count++
    r.cancel = this.clock.setTimer(VERIFY_RESEND_MS, () => {
      r.cancel = null
      if (this.running && this.peers().includes(peer)) this.sendVerify(peer)
    })
    this.verifyResends.set(peer, r)
  }

  // ---- verify (the peer's side): compare, then repair in the background -------------------------------

  private onVerify(from: NodeId, payload: Uint8Array): Uint8Array {
    const remote = decodeSummary(payload, this.replica.buckets)
    if (remote.owner !== from) throw new GraceError('INVALID_ARGUMENT', `malformed distro message: ${from} sent a summary for ${remote.owner}`)
    // A node still loading would find nearly every bucket differing and pull what the load is
    // bringing anyway, competing with it for the CPU and the owner (twice the work at startup).
    // The owner's next round, once this node is loaded, repairs whatever the copy missed.
    if (!this.ready) return encodeVerifyAnswer({ differing: 0, ignored: true })
    // Comparing is meaningful only when both sides count the same clients as the sender's; while
    // this node does not see the sender as healthy, its summary of the sender is empty.
    if (!this.replica.members().includes(from)) return encodeVerifyAnswer({ differing: 0, ignored: true })
    const differing = differingBuckets(this.replica.summary(from), remote)
    if (differing.length > 0 && !this.repairing.has(from)) {
      this.repairing.add(from)
      this.counters.repairsRun++
      this.repair(from, differing, remote)
        .catch((err: Error) => {
          this.counters.repairsFailed++
          this.logger.info({ owner: from, err: err.message }, 'distro: repair from owner failed; the next round retries')
        })
        .finally(() => this.repairing.delete(from))
    }
    return encodeVerifyAnswer({ differing: differing.length, ignored: false })
  }

  /** Makes this node's copy of `owner`'s clients match the owner's, in the differing buckets. */
  private async repair(owner: NodeId, buckets: readonly number[], remote: BucketSummary): Promise<void> {
    const local = this.replica.summary(owner)
    for (const chunk of chunkBuckets(buckets, remote, local)) {
      if (this.stopped) return
      const exact = decodeExact(await this.transport.call(owner, METHODS.exact, encodeBucketList(chunk), this.requestTimeoutMs), chunk)
      const digest = { owner, buckets: exact.buckets, live: exact.live, removed: exact.removed }
      const diff = diffDigest(this.replica, digest)
      for (let i = 0; i < diff.pull.length; i += DISTRO_LIMITS.maxRecordsPerPull) {
        await this.pull(owner, diff.pull.slice(i, i + DISTRO_LIMITS.maxRecordsPerPull))
      }
      // Merged copies that kept something the owner lacks (concurrent writes) go back to it.
      const merged = stillDiffering(this.replica, digest, diff.pull)
      const items: Versioned[] = []
      for (const id of [...diff.push, ...merged]) {
        const item = this.replica.heldItem(id)
        if (item) items.push(item)
      }
      for (const group of chunkItems(items, DISTRO_LIMITS.maxRecordsPerPull)) {
        decodeAccepted(await this.transport.call(owner, METHODS.push, encodeItemsMessage(group), this.requestTimeoutMs))
        this.counters.pushed += group.length
      }
    }
  }

  private async pull(owner: NodeId, ids: string[]): Promise<void> {
    let rest = ids
    while (rest.length > 0) {
      const answer = decodePullAnswer(await this.transport.call(owner, METHODS.pull, encodeIds(rest), this.requestTimeoutMs), rest)
      this.bulk(() => {
        for (const item of answer.items) if (this.applyRemote(item)) this.counters.pulled++
      })
      rest = rest.slice(answer.next)
    }
  }

  // ---- handlers ----------------------------------------------------------------------------------

  /** Registers a handler that refuses after stop() and logs what it refuses. */
  private serve(method: string, handler: (from: NodeId, payload: Uint8Array) => Uint8Array): void {
    this.transport.onCall(method, async (from, payload) => {
      if (this.stopped) throw new GraceError('UNAVAILABLE', `distro node ${this.self} is stopped`)
      try {
        return handler(from, payload)
      } catch (err) {
        if (err instanceof GraceError && err.code !== 'UNAVAILABLE') {
          this.counters.refused++
          this.logger.warn({ peer: from, method, err: err.message }, 'distro: refused a peer message')
        } else if (!(err instanceof GraceError)) {
          this.logger.error({ peer: from, method, err: (err as Error).message }, 'distro: peer message handler failed')
        }
        throw err
      }
    })
  }

  private onSync(_from: NodeId, payload: Uint8Array): Uint8Array {
    const items = decodeItemsMessage(payload)
    let accepted = 0
    this.bulk(() => {
      for (const item of items) if (this.applyRemote(item)) accepted++
    })
    return encodeAccepted(accepted)
  }

  /** A peer's copies this node (as owner) lacks or holds older: apply, and sync the accepted ones on. */
  private onPush(from: NodeId, payload: Uint8Array): Uint8Array {
    const items = decodeItemsMessage(payload)
    let accepted = 0
    this.bulk(() => {
      for (const item of items) {
        if (!this.applyRemote(item)) continue
        accepted++
        // The merged state, which may hold more than the pushed copy; the pusher gets it too.
        const held = this.replica.heldItem(item.clientId)
        if (held) this.enqueueAll(held, fingerprint(held) === fingerprint(item) ? from : null)
      }
    })
    return encodeAccepted(accepted)
  }

  private onExact(payload: Uint8Array): Uint8Array {
    const buckets = decodeBucketList(payload, this.replica.buckets)
    const exact = this.replica.exact(buckets)
    return encodeExact(this.self, buckets, exact.live, exact.removed)
  }

  private onPull(payload: Uint8Array): Uint8Array {
    const ids = decodeIds(payload)
    const { items, next } = this.page(ids, 0, Infinity)
    return encodePage(items, next)
  }

  private onLoad(payload: Uint8Array): Uint8Array {
    const req = decodeLoadRequest(payload)
    if (!this.ready) throw new GraceError('UNAVAILABLE', `distro node ${this.self} has not loaded yet`)
    const now = this.clock.now()
    let id = req.session
    let session: LoadSession | undefined
    if (id === null) {
      const ids: string[] = []
      for (const id of this.replica.liveIds()) ids.push(id)
      for (const id of this.replica.tombstoneIds()) ids.push(id)
      while (this.sessions.size >= MAX_LOAD_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string)
      id = `${this.self}/${this.nextSession++}`
      session = { ids, lastUsed: now }
      this.sessions.set(id, session)
    } else {
      session = this.sessions.get(id)
      if (!session) throw new GraceError('INVALID_ARGUMENT', `malformed distro message: no load session ${id} (expired?)`)
    }
    session.lastUsed = now
    const ids = session.ids
    if (req.offset > ids.length) throw new GraceError('INVALID_ARGUMENT', `malformed distro message: offset ${req.offset} is past ${ids.length}`)
    // A client collected since the session began is skipped; one that changed goes as it is now.
    const { items, next } = this.page(ids, req.offset, LOAD_PAGE_ITEMS)
    if (next >= ids.length) this.sessions.delete(id)
    return encodeLoadPage(id, ids.length, items, next)
  }

  /**
   * What this node holds for ids[from..], as many as fit one message (at least one) and at most
   * maxItems; ids it no longer holds are skipped. `next` is where the following page starts.
   */
  private page(ids: readonly string[], from: number, maxItems: number): { items: Versioned[]; next: number } {
    const items: Versioned[] = []
    let bytes = 0
    let next = from
    for (; next < ids.length && items.length < maxItems; next++) {
      const item = this.replica.heldItem(ids[next]!)
      if (item === undefined) continue
      const n = itemBytes(item)
      if (items.length > 0 && bytes + n > ITEM_BUDGET_BYTES) break
      items.push(item)
      bytes += n
    }
    return { items, next }
  }
}

/** Whether two records hold the very same instance objects (in any order): a merge keeps the objects it keeps. */
function sameInstances(prev: ClientRecord | undefined, next: ClientRecord | undefined): boolean {
  if (prev === undefined || next === undefined || prev.instances.length !== next.instances.length) return false
  if (prev.instances.length <= 8) return next.instances.every((i) => prev.instances.includes(i))
  const held = new Set(prev.instances)
  return next.instances.every((i) => held.has(i))
}

/**
 * Groups differing buckets into exact requests: at most maxBucketsPerRequest buckets, and about
 * EXACT_ENTRY_BUDGET clients by the larger of the two sides' counts, so an answer stays far
 * under the message limit however many clients the owner has. At least one bucket per request.
 */
function chunkBuckets(buckets: readonly number[], remote: BucketSummary, local: BucketSummary): number[][] {
  const out: number[][] = []
  let cur: number[] = []
  let entries = 0
  for (const b of buckets) {
    const n = Math.max(remote.counts[b] ?? 0, local.counts[b] ?? 0)
    if (cur.length > 0 && (cur.length >= DISTRO_LIMITS.maxBucketsPerRequest || entries + n > EXACT_ENTRY_BUDGET)) {
      out.push(cur)
      cur = []
      entries = 0
    }
    cur.push(b)
    entries += n
  }
  if (cur.length > 0) out.push(cur)
  return out
}
