// Where the Raft driver keeps its state in the node's LevelDB, next to the state machine data:
//   cp/meta/hardstate  {term, vote, commit}          synced before any message depends on it
//   cp/meta/snapshot   {index, term, membership}     the point the log was compacted to
//   cp/meta/applied    index                         written in one batch with the data it covers
//   cp/log/<index>     {index, term, type, data}     entries after the snapshot

import { assert } from '../../core/assert.js'
import { type BatchOp, type Database, PREFIX, indexKey, prefixRange } from '../../storage/db.js'
import type { Entry, HardState, SnapshotMeta } from '../raft/types.js'

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

export function entryKey(index: number): string {
  return PREFIX.cpLog + indexKey(index)
}

export interface StoredRaftState {
  hardState: HardState
  snapshot: SnapshotMeta | null
  entries: Entry[]
  applied: number
}

export async function loadRaftState(db: Database): Promise<StoredRaftState> {
  const hard = await db.get(HARD_STATE_KEY)
  const snap = await db.get(SNAPSHOT_KEY)
  const applied = Number((await db.get(APPLIED_KEY)) ?? 0)
  const snapshot = snap ? (JSON.parse(snap) as SnapshotMeta) : null
  const entries: Entry[] = []
  const from = snapshot?.index ?? 0
  for await (const value of db.values({ gt: entryKey(from), lt: prefixRange(PREFIX.cpLog).lt })) {
    const e = JSON.parse(value) as Entry
    assert(e.index === from + entries.length + 1, `log gap: expected ${from + entries.length + 1}, found ${e.index}`)
    entries.push(e)
  }
  const hardState = hard ? (JSON.parse(hard) as HardState) : { term: 0, vote: null, commit: 0 }
  return { hardState, snapshot, entries, applied: Math.max(applied, snapshot?.index ?? 0) }
}

/** The writes that append entries, replacing any stored ones from entries[0].index on. */
export function appendOps(entries: readonly Entry[], storedLast: number): BatchOp[] {
  const ops: BatchOp[] = []
  if (entries.length === 0) return ops
  const last = entries[entries.length - 1]!.index
  // A conflicting suffix beyond the new entries must go too (5.3).
  for (let i = last + 1; i <= storedLast; i++) ops.push({ type: 'del', key: entryKey(i) })
  for (const e of entries) ops.push({ type: 'put', key: entryKey(e.index), value: JSON.stringify(e) })
  return ops
}
