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
  /** A snapshot received from the Raft leader, staged before it is installed. */
  snapshotStage: 'snap/',
} as const

/**
 * LevelDB's write buffer (its memtable), 32 MiB where LevelDB's default is 4. The Raft log is
 * written a segment per round and deleted a compaction interval later (--snapshot-every plus
 * --snapshot-retain entries: about 9 MB of registrations at the defaults). A memtable that holds
 * that much flushes a segment and its deletion mostly into the same level-0 table, and both go
 * at its first compaction; with 4 MiB the segments went down to level 1 and were compacted again
 * before their deletions caught up. The CP write pattern replayed on LevelDB alone (200,000
 * registrations in rounds of 64, process CPU of all threads; see the commit message): 39 MB of compaction reads and writes with 4 MiB, 9 MB with 32, and about
 * 17.7 -> 12.4 µs of CPU per registration. The cost is memory (up to two memtables, while one is
 * flushed) and a longer write-ahead log to replay when a node restarts.
 */
export const WRITE_BUFFER_BYTES = 32 * 1024 * 1024

export async function openDatabase(dir: string): Promise<Database> {
  const db = new Level<string, string>(dir, { keyEncoding: 'utf8', valueEncoding: 'utf8', writeBufferSize: WRITE_BUFFER_BYTES })
  await db.open({ createIfMissing: true })
  return db
}

/** Fixed-width decimal, so that LevelDB's byte order is numeric order. */
export function indexKey(n: number): string {
  return n.toString().padStart(16, '0')
}

/**
 * A range over every key that starts with prefix. The bound bumps the prefix's last character
 * rather than appending U+FFFF: names may hold code points above U+FFFF, whose UTF-8 bytes sort
 * after U+FFFF's, and keys holding them would fall outside such a range.
 */
export function prefixRange(prefix: string): { gte: string; lt: string } {
  const last = prefix.charCodeAt(prefix.length - 1)
  if (prefix.length === 0 || last >= 0xd7ff) throw new Error('a key prefix must end in a plain BMP character')
  return { gte: prefix, lt: prefix.slice(0, -1) + String.fromCharCode(last + 1) }
}

/** classic-level's own chained batch: each op is one call into the binding with the key and value. */
interface RawChainedBatch {
  _put(key: string, value: string): void
  _del(key: string): void
  _write(options: { sync: boolean }): Promise<void>
}
type Internals = { _chainedBatch?: () => RawChainedBatch; detachResource?: (resource: unknown) => void }

const SYNC = { sync: true } as const
const NO_SYNC = { sync: false } as const

/**
 * Writes ops in one atomic batch, fsynced when sync: the same as db.batch(ops, { sync }), for
 * the CP log's hot path.
 *
 * batch() clones every op, checks it and runs it through the key and value encodings before the
 * store's own _batch sees it, which cost more than LevelDB's write itself (about 2.5x for the
 * log's batches). And _batch hands the binding the array of op objects, whose C++ side reads each
 * op's type, key and value as named properties through N-API, each name made into a V8 string
 * and looked up in the string table every time: about half of what an op cost on the main
 * thread (1.6 µs an op against 0.76 µs through the chained batch, in a batch of a round of 64
 * registrations). So the ops go into the
 * store's own chained batch, one binding call per op with the key and value as arguments, and
 * that batch is written: the same leveldb::WriteBatch, written by the same DB::Write with the
 * same sync flag.
 *
 * Here the ops are this module's: string keys and values, which the utf8 encodings pass through
 * unchanged, on a database with no hooks or sublevels. So they skip the encodings when the
 * database is open and its batch is the store's own; otherwise (a wrapped database in a test,
 * one that is opening or closed) they go through batch(), which also gives the errors their
 * usual codes.
 */
export function writeBatch(db: Database, ops: BatchOp[], sync: boolean): Promise<void> {
  const internals = db as unknown as Internals
  if (
    ops.length === 0 ||
    db.status !== 'open' ||
    typeof internals._chainedBatch !== 'function' ||
    typeof internals.detachResource !== 'function' ||
    db.batch !== Level.prototype.batch
  ) {
    return db.batch(ops, sync ? SYNC : NO_SYNC)
  }
  try {
    const batch = internals._chainedBatch()
    // The abstract batch's constructor registered it to be closed with the database; it is
    // written here, never through its public write(), so nothing else would unregister it. The
    // native batch is freed with the object, as classic-level does for every chained batch.
    internals.detachResource(batch)
    for (const op of ops) {
      if (op.type === 'put') batch._put(op.key, op.value)
      else batch._del(op.key)
    }
    return batch._write(sync ? SYNC : NO_SYNC)
  } catch (err) {
    return Promise.reject(err)
  }
}
