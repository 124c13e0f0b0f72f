// The Raft log as the core sees it: the entries after the latest snapshot, kept in memory (the
// driver keeps the durable copy), with the indexes that say how far they are stable (on disk),
// committed and applied. Pure: no IO.
//
// Invariants, checked by assert after every change:
//   offset <= applied <= committed <= lastIndex
//   entries[k].index === offset + 1 + k, and terms never decrease along the log

import { assert } from '../../core/assert.js'
import type { Entry } from './types.js'

// The checks below run on every append, slice and commit, so each tests its condition first and
// builds its message only when it fails: a template literal in the call would be built (numbers
// formatted, strings joined) every time, a few allocations per call on the hot path.

export class RaftLog {
  private entries: Entry[]
  /** The index and term of the last entry the snapshot covers (0, 0 for none). */
  private offset: number
  private offsetTerm: number
  /** The last index known to be on disk (advance() moves it). */
  stable: number
  committed: number
  /** The last index handed to the driver to apply. */
  applied: number

  constructor(snapshotIndex: number, snapshotTerm: number, entries: readonly Entry[], committed: number) {
    this.offset = snapshotIndex
    this.offsetTerm = snapshotTerm
    this.entries = [...entries]
    this.stable = this.lastIndex()
    this.committed = Math.max(committed, snapshotIndex)
    this.applied = snapshotIndex
    this.check()
  }

  firstIndex(): number {
    return this.offset + 1
  }

  lastIndex(): number {
    return this.offset + this.entries.length
  }

  lastTerm(): number {
    return this.entries.length > 0 ? this.entries[this.entries.length - 1]!.term : this.offsetTerm
  }

  snapshotIndex(): number {
    return this.offset
  }

  snapshotTerm(): number {
    return this.offsetTerm
  }

  /** The term of entry i; undefined when i is compacted away (below the snapshot) or beyond the end. */
  term(i: number): number | undefined {
    if (i === this.offset) return this.offsetTerm
    if (i < this.offset || i > this.lastIndex()) return undefined
    return this.entries[i - this.offset - 1]!.term
  }

  entry(i: number): Entry | undefined {
    if (i <= this.offset || i > this.lastIndex()) return undefined
    return this.entries[i - this.offset - 1]
  }

  matchTerm(i: number, term: number): boolean {
    return this.term(i) === term
  }

  /** 5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm() || (lastTerm === this.lastTerm() && lastIndex >= this.lastIndex())
  }

  /** Entries [lo, hi), at most maxCount of them and maxBytes of data (but at least one). */
  slice(lo: number, hi: number, maxCount = Infinity, maxBytes = Infinity): Entry[] {
    if (!(lo > this.offset && hi <= this.lastIndex() + 1 && lo <= hi)) assert(false, `slice [${lo}, ${hi}) outside (${this.offset}, ${this.lastIndex()}]`)
    const out: Entry[] = []
    let bytes = 0
    for (let i = lo; i < hi && out.length < maxCount; i++) {
      const e = this.entries[i - this.offset - 1]!
      bytes += e.data.length
      if (out.length > 0 && bytes > maxBytes) break
      out.push(e)
    }
    return out
  }

  /** The leader's own proposals. */
  append(entries: readonly Entry[]): void {
    for (const e of entries) {
      if (!(e.index === this.lastIndex() + 1 && e.term >= this.lastTerm())) assert(false, `append ${e.index}/${e.term} after ${this.lastIndex()}/${this.lastTerm()}`)
      this.entries.push(e)
    }
  }

  /**
   * 5.3: a follower's append. When the log holds prevIndex at prevTerm, drops any conflicting
   * suffix, appends what is new and returns the index of the last entry the leader sent;
   * otherwise returns null and changes nothing.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[]): number | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null
    const last = prevIndex + entries.length
    for (const e of entries) {
      if (e.index <= this.offset) continue // covered by our snapshot already
      const existing = this.term(e.index)
      if (existing === e.term) continue
      // A conflict (or the end of our log): everything from here comes from the leader. A
      // committed entry never conflicts (Log Matching plus Leader Completeness).
      if (!(e.index > this.committed)) assert(false, `conflict at committed index ${e.index}`)
      this.entries.length = e.index - this.offset - 1
      this.stable = Math.min(this.stable, e.index - 1)
      this.entries.push(e)
    }
    this.check()
    return last
  }

  /**
   * Where a rejected append can resume: the largest index <= index whose term is <= term (the
   * etcd "findConflictByTerm" optimisation: one round trip per term, not per entry).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex())
    for (;;) {
      const t = this.term(i)
      if (t === undefined) return { index: this.offset, term: this.offsetTerm }
      if (t <= term) return { index: i, term: t }
      i--
    }
  }

  commitTo(i: number): boolean {
    if (i <= this.committed) return false
    if (!(i <= this.lastIndex())) assert(false, `commit ${i} beyond the log (${this.lastIndex()})`)
    this.committed = i
    return true
  }

  /** Entries not yet on disk. */
  unstable(): Entry[] {
    return this.stable >= this.lastIndex() ? [] : this.slice(Math.max(this.stable + 1, this.firstIndex()), this.lastIndex() + 1)
  }

  /** The driver persisted through (i, t); ignored if the log changed there since. */
  stableTo(i: number, t: number): void {
    if (i > this.stable && this.term(i) === t) this.stable = i
  }

  /** Committed entries not yet handed out to apply; they are persisted first by the driver. */
  nextCommitted(maxCount = Infinity): Entry[] {
    const hi = Math.min(this.committed, this.lastIndex())
    if (hi <= this.applied) return []
    return this.slice(Math.max(this.applied + 1, this.firstIndex()), hi + 1, maxCount)
  }

  appliedTo(i: number): void {
    if (!(i <= this.committed)) assert(false, `applied ${i} beyond commit ${this.committed}`)
    if (i > this.applied) this.applied = i
  }

  /** Replaces the whole log with a snapshot that is ahead of it (7). */
  restore(index: number, term: number): void {
    this.entries = []
    this.offset = index
    this.offsetTerm = term
    this.stable = index
    this.committed = index
    this.applied = index
    this.check()
  }

  /** Drops entries up to index, which a saved snapshot now covers. */
  compact(index: number): void {
    if (index <= this.offset) return
    assert(index <= this.applied, `compact ${index} beyond applied ${this.applied}`)
    const term = this.term(index)!
    this.entries = this.entries.slice(index - this.offset)
    this.offset = index
    this.offsetTerm = term
    this.check()
  }

  private check(): void {
    if (!(this.offset <= this.applied && this.applied <= this.committed && this.committed <= this.lastIndex())) {
      assert(false, `log indexes out of order: ${this.describe()}`)
    }
    if (!(this.stable <= this.lastIndex())) assert(false, `stable beyond the log: ${this.describe()}`)
  }

  describe(): string {
    return `offset ${this.offset}/${this.offsetTerm} applied ${this.applied} committed ${this.committed} stable ${this.stable} last ${this.lastIndex()}/${this.lastTerm()}`
  }
}
