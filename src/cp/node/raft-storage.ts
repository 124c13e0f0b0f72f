// Where the Raft driver keeps its state in the node's LevelDB, next to the state machine data:
//   cp/meta/hardstate  {term, vote, commit}          synced before any message depends on a
//                                                    change of term or vote; a commit index
//                                                    alone rides along with a later write
//   cp/meta/snapshot   {index, term, membership}     the point the log was compacted to
//   cp/meta/applied    index                         written in one batch with the data it covers
//   cp/log/<index>     a segment: the entries one    entries after the snapshot
//                      write appended, from index on
//
// The log is stored a segment per write, not an entry per key: the driver keeps every entry
// after the snapshot in memory and reads the stored log only at startup, and LevelDB's cost per
// key (the binding's conversions, a memtable insert, a tombstone at compaction) came to more
// than the bytes. A segment that starts at index replaces whatever an earlier segment held from
// index on (a conflicting suffix, 5.3), and segments that start after it are deleted in the same
// batch; loading applies the segments in key order, so it rebuilds exactly the log that was
// written. A segment is deleted once a snapshot covers all it holds.
//
// A segment's value is its entries one after another, each as "<term> <type> <length> <data>"
// (length: of data, in UTF-16 code units), the index being the key's plus the position: unlike
// JSON the data (itself JSON, mostly quotes) goes in as it is, neither escaped on the way in nor
// unescaped on the way out. Stores written before segments hold one entry per key as JSON, which
// is read as a segment of one.

import { assert } from '../../core/assert.js'
import { type BatchOp, type Database, PREFIX, indexKey, prefixRange } from '../../storage/db.js'
import type { Entry, EntryType, HardState, SnapshotMeta } from '../raft/types.js'

export const HARD_STATE_KEY = PREFIX.cpMeta + 'hardstate'
export const SNAPSHOT_KEY = PREFIX.cpMeta + 'snapshot'
export const APPLIED_KEY = PREFIX.cpMeta + 'applied'
/** Set while a received snapshot replaces the state machine's data; a restart finishes the job. */
export const INSTALLING_KEY = PREFIX.cpMeta + 'installing'
/** Where a snapshot from the leader is staged, chunk by chunk, before it is installed. */
export const STAGE_PREFIX = PREFIX.snapshotStage

/** Keys that belong to the state machine (what a snapshot carries). */
export function isStateMachineKey(key: string): boolean {
  return !key.startsWith('cp/') && !key.startsWith(STAGE_PREFIX)
}

/** The key of the segment whose first entry is index. */
export function entryKey(index: number): string {
  return PREFIX.cpLog + indexKey(index)
}

export interface StoredRaftState {
  hardState: HardState
  snapshot: SnapshotMeta | null
  /** The entries after the snapshot, in order. */
  entries: Entry[]
  applied: number
  /** Where each stored segment starts, ascending. */
  segments: number[]
}

export async function loadRaftState(db: Database): Promise<StoredRaftState> {
  const hard = await db.get(HARD_STATE_KEY)
  const snap = await db.get(SNAPSHOT_KEY)
  const applied = Number((await db.get(APPLIED_KEY)) ?? 0)
  const snapshot = snap ? (JSON.parse(snap) as SnapshotMeta) : null
  const from = snapshot?.index ?? 0
  let entries: Entry[] = []
  const segments: number[] = []
  for await (const [key, value] of db.iterator(prefixRange(PREFIX.cpLog))) {
    const start = Number(key.slice(PREFIX.cpLog.length))
    segments.push(start)
    // This segment replaces what earlier ones held from start on.
    if (entries.length > 0) {
      const first = entries[0]!.index
      if (start <= first) entries = []
      else entries.length = Math.min(entries.length, start - first)
      assert(entries.length === 0 || start === entries[entries.length - 1]!.index + 1, `log gap: a segment starts at ${start}, after ${entries[entries.length - 1]?.index}`)
    }
    for (const e of decodeSegment(start, value)) entries.push(e)
  }
  // The segment that holds the snapshot's point may hold entries it covers.
  const kept = entries.findIndex((e) => e.index > from)
  entries = kept < 0 ? [] : entries.slice(kept)
  assert(entries.length === 0 || entries[0]!.index === from + 1, `log gap: the snapshot ends at ${from}, the log starts at ${entries[0]?.index}`)
  const hardState = hard ? (JSON.parse(hard) as HardState) : { term: 0, vote: null, commit: 0 }
  return { hardState, snapshot, entries, applied: Math.max(applied, snapshot?.index ?? 0), segments }
}

/** The stored log's segments, as the driver writes and compacts them (see the top). */
export class LogSegments {
  /** Where each stored segment starts, ascending. */
  private starts: number[]

  constructor(starts: readonly number[]) {
    this.starts = [...starts]
  }

  /** The writes that store entries (consecutive), replacing anything stored from entries[0].index on. */
  appendOps(entries: readonly Entry[]): BatchOp[] {
    const ops: BatchOp[] = []
    if (entries.length === 0) return ops
    const first = entries[0]!.index
    // A conflicting suffix must go (5.3): segments that start at first or after are replaced.
    while (this.starts.length > 0 && this.starts[this.starts.length - 1]! >= first) {
      const start = this.starts.pop()!
      if (start !== first) ops.push({ type: 'del', key: entryKey(start) })
    }
    ops.push({ type: 'put', key: entryKey(first), value: encodeSegment(entries) })
    this.starts.push(first)
    return ops
  }

  /**
   * The writes that delete segments holding nothing after index (a snapshot now covers them).
   * The last segment stays: where it ends is not known here, and loading skips what it holds
   * up to the snapshot.
   */
  compactOps(index: number): BatchOp[] {
    let n = 0
    while (n + 1 < this.starts.length && this.starts[n + 1]! <= index + 1) n++
    const ops: BatchOp[] = this.starts.slice(0, n).map((start) => ({ type: 'del', key: entryKey(start) }))
    this.starts.splice(0, n)
    return ops
  }

  /** A snapshot replaced the stored log (installStaged deleted every segment). */
  clear(): void {
    this.starts = []
  }

  count(): number {
    return this.starts.length
  }
}

export function encodeSegment(entries: readonly Entry[]): string {
  let out = ''
  for (const e of entries) out += `${e.term} ${e.type} ${e.data.length} ${e.data}`
  return out
}

const ENTRY_TYPES: ReadonlySet<string> = new Set<EntryType>(['normal', 'noop', 'config'])

/** The entries of the segment stored under key index `start`. */
export function decodeSegment(start: number, value: string): Entry[] {
  if (value.startsWith('{')) {
    // One entry as JSON, as stores written before segments hold it.
    const e = JSON.parse(value) as Entry
    assert(e.index === start, `log entry under index ${start} says it is ${e.index}`)
    return [e]
  }
  const out: Entry[] = []
  let pos = 0
  while (pos < value.length) {
    const index = start + out.length
    const a = value.indexOf(' ', pos)
    const b = a < 0 ? -1 : value.indexOf(' ', a + 1)
    const c = b < 0 ? -1 : value.indexOf(' ', b + 1)
    const term = Number(value.slice(pos, a))
    const type = value.slice(a + 1, b) as EntryType
    const length = Number(value.slice(b + 1, c))
    const end = c + 1 + length
    assert(
      c > b && b > a && a > pos && Number.isSafeInteger(term) && term > 0 && ENTRY_TYPES.has(type) && Number.isSafeInteger(length) && length >= 0 && end <= value.length,
      `log segment ${start}: entry ${index} is malformed`,
    )
    out.push({ index, term, type, data: value.slice(c + 1, end) })
    pos = end
  }
  return out
}
