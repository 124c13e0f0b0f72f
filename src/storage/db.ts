// One LevelDB per node. Each subsystem owns a key prefix, so that one atomic batch can cover
// the CP log's applied index and the state machine data it produced.

import { Level } from 'level'

export type Database = Level<string, string>

/** A put or del in a batch; keys carry their subsystem's prefix. */
export type BatchOp = { type: 'put'; key: string; value: string } | { type: 'del'; key: string }

/** Key prefixes, one per subsystem. A prefix never is the prefix of another. */
export const PREFIX = {
  cpLog: 'cp/log/',
  cpMeta: 'cp/meta/',
  namingService: 'ns/svc/',
  namingInstance: 'ns/ins/',
  config: 'cs/cfg/',
  configHistory: 'cs/his/',
} as const

export async function openDatabase(dir: string): Promise<Database> {
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8' })
  await db.open({ createIfMissing: true })
  return db
}

/** Fixed-width decimal, so that LevelDB's byte order is numeric order. */
export function indexKey(n: number): string {
  return n.toString().padStart(16, '0')
}

/** The upper bound for a range over every key that starts with prefix. */
export function prefixEnd(prefix: string): string {
  return prefix + '\uffff'
}
