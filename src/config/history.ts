// Reads a config's history from LevelDB, newest first. The state machine's in-memory ids say
// which entries exist, so a page is one multi-get of at most pageSize keys, never a scan.

import type { Database } from '../storage/db.js'
import { historyDbKey } from './keys.js'
import type { HistoryEntry } from './model.js'

export interface HistoryPage {
  /** Entries kept for the config (at most LIMITS.maxHistoryPerConfig). */
  readonly count: number
  readonly pageNo: number
  readonly pageSize: number
  readonly items: readonly HistoryEntry[]
}

/**
 * One page of history. `ids` is the state machine's list for the config, oldest first. An entry
 * applied a moment ago may not be written yet, and one trimmed a moment ago may be gone: such
 * entries are left out of the page rather than failing the read.
 */
export async function readHistory(db: Database, key: string, ids: readonly number[], pageNo: number, pageSize: number): Promise<HistoryPage> {
  const pageIds: number[] = []
  for (let i = ids.length - 1 - (pageNo - 1) * pageSize; i >= 0 && pageIds.length < pageSize; i--) pageIds.push(ids[i]!)
  const values = pageIds.length === 0 ? [] : await db.getMany(pageIds.map((id) => historyDbKey(key, id)))
  const items = values.filter((v): v is string => v !== undefined).map((v) => JSON.parse(v) as HistoryEntry)
  return { count: ids.length, pageNo, pageSize, items }
}
