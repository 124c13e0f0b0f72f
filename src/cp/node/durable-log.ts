// The single-member CP log: each proposal is appended to the LevelDB log with a synced write,
// then applied. It stands where Raft will stand and keeps Raft's storage shape (log entries,
// applied index written atomically with the state they produced), so the switch changes no data.
//
// Group commit: proposals that arrive while a write is in flight wait and share the next fsync.

import { GraceError, isGraceError } from '../../core/errors.js'
import { assert } from '../../core/assert.js'
import type { Clock } from '../../core/clock.js'
import { LIMITS } from '../../core/limits.js'
import type { Logger } from '../../core/logger.js'
import { type BatchOp, type Database, PREFIX, indexKey, prefixRange } from '../../storage/db.js'
import type { CpCommand, CpStatus, LogEntry, ReplicatedLog, StateMachine } from '../log.js'

const APPLIED_KEY = PREFIX.cpMeta + 'applied'
const COMPACTED_KEY = PREFIX.cpMeta + 'compacted'

/** Entries kept behind the applied index; Raft will need them for lagging followers. */
const RETAINED_ENTRIES = 10_000
/** Log entries deleted per write at most, so compaction never makes one write large. */
const MAX_DELETES_PER_WRITE = 2048

interface Proposal {
  command: CpCommand
  resolve(result: unknown): void
  reject(err: Error): void
}

export interface DurableLogOptions {
  db: Database
  stateMachine: StateMachine
  clock: Clock
  logger: Logger
  maxProposalsPerBatch?: number
  maxPendingProposals?: number
}

export class DurableLog implements ReplicatedLog {
  private readonly db: Database
  private readonly sm: StateMachine
  private readonly clock: Clock
  private readonly logger: Logger
  private readonly maxBatch: number
  private readonly maxPending: number

  private lastIndex = 0
  private appliedIndex = 0
  private compactedIndex = 0
  private pending: Proposal[] = []
  private writing: Promise<void> | null = null
  private closed = false
  /** Set when a write to storage failed: what is on disk is unknown, so no more writes. */
  private broken: Error | null = null

  private constructor(opts: DurableLogOptions) {
    this.db = opts.db
    this.sm = opts.stateMachine
    this.clock = opts.clock
    this.logger = opts.logger
    this.maxBatch = opts.maxProposalsPerBatch ?? LIMITS.maxProposalsPerBatch
    this.maxPending = opts.maxPendingProposals ?? LIMITS.maxPendingProposals
  }

  /** Loads the state machine, then replays the log entries it has not applied yet. */
  static async open(opts: DurableLogOptions): Promise<DurableLog> {
    const log = new DurableLog(opts)
    await log.recover()
    return log
  }

  private async recover(): Promise<void> {
    this.appliedIndex = Number((await this.db.get(APPLIED_KEY)) ?? 0)
    this.compactedIndex = Number((await this.db.get(COMPACTED_KEY)) ?? 0)
    await this.sm.load()
    this.lastIndex = this.appliedIndex
    const ops: BatchOp[] = []
    let replayed = 0
    for await (const [key, value] of this.db.iterator({ gt: PREFIX.cpLog + indexKey(this.appliedIndex), lt: prefixRange(PREFIX.cpLog).lt })) {
      const entry = JSON.parse(value) as LogEntry
      assert(entry.index === this.lastIndex + 1, `log gap at ${key}: expected ${this.lastIndex + 1}, found ${entry.index}`)
      this.applyOne(entry, ops)
      this.lastIndex = entry.index
      replayed++
    }
    if (replayed > 0) {
      this.appliedIndex = this.lastIndex
      ops.push({ type: 'put', key: APPLIED_KEY, value: String(this.appliedIndex) })
      await this.db.batch(ops, { sync: true })
    }
    this.logger.info({ appliedIndex: this.appliedIndex, replayed }, 'cp log recovered')
  }

  propose(command: CpCommand): Promise<unknown> {
    if (this.closed) return Promise.reject(new GraceError('UNAVAILABLE', 'the server is shutting down'))
    if (this.broken) return Promise.reject(new GraceError('UNAVAILABLE', 'storage failed; the server must be restarted'))
    if (this.pending.length >= this.maxPending) {
      return Promise.reject(new GraceError('UNAVAILABLE', 'too many writes waiting for storage; retry'))
    }
    return new Promise((resolve, reject) => {
      this.pending.push({ command, resolve, reject })
      if (!this.writing) this.writing = this.writeLoop()
    })
  }

  readBarrier(): Promise<void> {
    // One member: every acknowledged write was applied before it was acknowledged.
    return Promise.resolve()
  }

  status(): CpStatus {
    return { role: 'leader', commitIndex: this.lastIndex, appliedIndex: this.appliedIndex }
  }

  async close(): Promise<void> {
    this.closed = true
    if (this.writing) await this.writing
  }

  private async writeLoop(): Promise<void> {
    try {
      while (this.pending.length > 0 && !this.broken) {
        await this.writeBatch(this.pending.splice(0, this.maxBatch))
      }
      for (const p of this.pending.splice(0)) p.reject(new GraceError('UNAVAILABLE', 'storage failed; the server must be restarted'))
    } finally {
      this.writing = null
    }
  }

  /** One group: append with one fsync, apply in order, store the results, then answer. */
  private async writeBatch(batch: Proposal[]): Promise<void> {
    const ts = this.clock.now()
    const entries: LogEntry[] = batch.map((p, i) => ({ index: this.lastIndex + 1 + i, ts, command: p.command }))
    try {
      await this.db.batch(
        entries.map((e) => ({ type: 'put' as const, key: PREFIX.cpLog + indexKey(e.index), value: JSON.stringify(e) })),
        { sync: true },
      )
    } catch (err) {
      this.fail(err as Error, batch)
      return
    }
    this.lastIndex += entries.length

    const ops: BatchOp[] = []
    const outcomes = entries.map((e) => this.applyOne(e, ops))
    this.appliedIndex = this.lastIndex
    ops.push({ type: 'put', key: APPLIED_KEY, value: String(this.appliedIndex) })
    this.compact(ops)
    try {
      // Not synced: after a crash, replaying the synced log entries rebuilds these writes.
      await this.db.batch(ops)
    } catch (err) {
      this.fail(err as Error, batch)
      return
    }
    outcomes.forEach((o, i) => (o.ok ? batch[i]!.resolve(o.value) : batch[i]!.reject(o.error)))
  }

  private applyOne(entry: LogEntry, ops: BatchOp[]): { ok: true; value: unknown } | { ok: false; error: GraceError } {
    const mark = ops.length
    try {
      return { ok: true, value: this.sm.apply(entry, ops) }
    } catch (err) {
      // A rejected command leaves no writes behind; anything else is a bug in the state machine.
      if (!isGraceError(err)) throw err
      ops.length = mark
      return { ok: false, error: err }
    }
  }

  /** Deletes old entries behind the applied index, a bounded number at a time. */
  private compact(ops: BatchOp[]): void {
    const upTo = Math.min(this.appliedIndex - RETAINED_ENTRIES, this.compactedIndex + MAX_DELETES_PER_WRITE)
    if (upTo <= this.compactedIndex) return
    for (let i = this.compactedIndex + 1; i <= upTo; i++) ops.push({ type: 'del', key: PREFIX.cpLog + indexKey(i) })
    ops.push({ type: 'put', key: COMPACTED_KEY, value: String(upTo) })
    this.compactedIndex = upTo
  }

  private fail(err: Error, batch: Proposal[]): void {
    this.broken = err
    this.logger.error({ err }, 'cp log write failed; refusing further writes')
    const answer = new GraceError('UNAVAILABLE', 'storage failed; the write may or may not have been stored')
    for (const p of batch) p.reject(answer)
  }
}
