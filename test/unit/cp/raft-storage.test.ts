// The stored Raft log: segments (one key per write), replaced from where a later segment
// starts, deleted behind a snapshot, and read back as exactly the log that was written; stores
// made before segments (one JSON entry per key) still load. And writeBatch, the log's fast path
// into LevelDB.

import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { LogSegments, SNAPSHOT_KEY, decodeSegment, encodeSegment, entryKey, loadRaftState } from '../../../src/cp/node/raft-storage.js'
import type { Entry } from '../../../src/cp/raft/types.js'
import { type BatchOp, type Database, PREFIX, WRITE_BUFFER_BYTES, openDatabase, prefixRange, writeBatch } from '../../../src/storage/db.js'

async function setup(t: Test): Promise<Database> {
  const dir = mkdtempSync(join(tmpdir(), 'grace-raft-storage-'))
  const db = await openDatabase(dir)
  t.teardown(async () => {
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  return db
}

/** Entries from..to at term, with data naming the index and term. */
function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) out.push({ index: i, term, type: 'normal', data: JSON.stringify({ i, term, s: 'a "quoted" 1 2 3 word' }) })
  return out
}

const summary = (list: Entry[]) => list.map((e) => `${e.index}/${e.term}`)

t.test('a segment round-trips entries of every type and any data, byte for byte', (t) => {
  const list: Entry[] = [
    { index: 7, term: 3, type: 'noop', data: '' },
    { index: 8, term: 3, type: 'normal', data: '{"a":"b c  d"}' },
    { index: 9, term: 3, type: 'config', data: '{"voters":["n1"],"learners":[]}' },
    { index: 10, term: 4, type: 'normal', data: 'ünïcødé 🙂 and "12 34" ' },
    { index: 11, term: 4, type: 'normal', data: ' ' },
  ]
  t.same(decodeSegment(7, encodeSegment(list)), list)
  t.same(decodeSegment(5, JSON.stringify({ index: 5, term: 1, type: 'normal', data: 'x' })), [{ index: 5, term: 1, type: 'normal', data: 'x' }], 'one JSON entry, as stores before segments hold it')
  t.throws(() => decodeSegment(7, '3 normal 99 short'), /malformed/)
  t.throws(() => decodeSegment(7, '3 strange 1 x'), /malformed/)
  t.end()
})

t.test('appends, a conflicting suffix (5.3), compaction, and a restart see the same log', async (t) => {
  const db = await setup(t)
  const log = new LogSegments([])
  const write = (ops: BatchOp[]) => writeBatch(db, ops, true)
  await write(log.appendOps(entries(1, 5, 1)))
  await write(log.appendOps(entries(6, 6, 1)))
  await write(log.appendOps(entries(7, 10, 1)))
  t.same(summary((await loadRaftState(db)).entries), summary(entries(1, 10, 1)))

  // A new leader's entries from 4 on replace 4..10: inside the first segment, and past it.
  await write(log.appendOps(entries(4, 5, 2)))
  let state = await loadRaftState(db)
  t.same(summary(state.entries), summary([...entries(1, 3, 1), ...entries(4, 5, 2)]))
  t.same(state.segments, [1, 4], 'the segments at 6 and 7 are gone, the one at 1 stays')

  await write(log.appendOps(entries(6, 8, 2)))
  // Replacing exactly from a segment's start overwrites it.
  await write(log.appendOps(entries(6, 7, 3)))
  state = await loadRaftState(db)
  t.same(summary(state.entries), summary([...entries(1, 3, 1), ...entries(4, 5, 2), ...entries(6, 7, 3)]))
  t.same(state.segments, [1, 4, 6])

  // A snapshot at 4: the segment at 1 holds only entries up to 3 now, so it goes; the one at 4
  // holds 5 too, so it stays, and loading skips its 4.
  await write([{ type: 'put', key: SNAPSHOT_KEY, value: JSON.stringify({ index: 4, term: 2, membership: { voters: ['n1'], learners: [] } }) }, ...log.compactOps(4)])
  state = await loadRaftState(db)
  t.same(state.segments, [4, 6])
  t.same(summary(state.entries), summary([...entries(5, 5, 2), ...entries(6, 7, 3)]))

  // The segments known after a restart work the same.
  const reloaded = new LogSegments(state.segments)
  await write(reloaded.appendOps(entries(5, 9, 4)))
  state = await loadRaftState(db)
  t.same(state.segments, [4, 5])
  t.same(summary(state.entries), summary(entries(5, 9, 4)))
  // A snapshot past every segment but the last: the last stays, its covered entries skipped.
  await write([{ type: 'put', key: SNAPSHOT_KEY, value: JSON.stringify({ index: 7, term: 4, membership: { voters: ['n1'], learners: [] } }) }, ...reloaded.compactOps(7)])
  state = await loadRaftState(db)
  t.same(state.segments, [5])
  t.same(summary(state.entries), summary(entries(8, 9, 4)))
})

t.test('a store of one JSON entry per key (before segments) loads, and takes segments after it', async (t) => {
  const db = await setup(t)
  for (const e of entries(1, 4, 1)) await db.put(entryKey(e.index), JSON.stringify(e))
  let state = await loadRaftState(db)
  t.same(summary(state.entries), summary(entries(1, 4, 1)))
  const log = new LogSegments(state.segments)
  await writeBatch(db, log.appendOps(entries(3, 6, 2)), true)
  state = await loadRaftState(db)
  t.same(summary(state.entries), summary([...entries(1, 2, 1), ...entries(3, 6, 2)]))
  t.same(state.segments, [1, 2, 3], 'the old entry at 4 is deleted with the conflict')
})

t.test('a hole in the stored log is refused at load, not papered over', async (t) => {
  const db = await setup(t)
  await db.put(entryKey(1), encodeSegment(entries(1, 2, 1)))
  await db.put(entryKey(5), encodeSegment(entries(5, 6, 1)))
  await t.rejects(loadRaftState(db), /log gap/)
})

t.test('writeBatch writes atomically, on the fast path and through batch() alike', async (t) => {
  const db = await setup(t)
  await writeBatch(db, [
    { type: 'put', key: 'x/1', value: 'one' },
    { type: 'put', key: 'x/2', value: 'two' },
  ], true)
  await writeBatch(db, [
    { type: 'del', key: 'x/1' },
    { type: 'put', key: 'x/3', value: 'three' },
  ], false)
  t.same(await db.iterator(prefixRange('x/')).all(), [['x/2', 'two'], ['x/3', 'three']])
  // A wrapped database keeps its batch(): writeBatch goes through it.
  let calls = 0
  const wrapped = new Proxy(db, {
    get(target, prop) {
      if (prop === 'batch') {
        return (ops: BatchOp[], options: unknown) => {
          calls++
          return target.batch(ops, options as never)
        }
      }
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  await writeBatch(wrapped, [{ type: 'put', key: 'x/4', value: 'four' }], true)
  t.equal(calls, 1)
  t.equal(await db.get('x/4'), 'four')
  t.equal(PREFIX.cpLog, 'cp/log/')
  await db.close()
  await t.rejects(writeBatch(db, [{ type: 'put', key: 'x/5', value: 'five' }], true), { code: 'LEVEL_DATABASE_NOT_OPEN' }, 'a closed database fails as batch() does')
  await db.open()
})

t.test('writeBatch hands the ops to the store one call each (its chained batch), not as an array of op objects', async (t) => {
  const db = await setup(t)
  const store = db as unknown as { _batch: (...args: unknown[]) => unknown; _chainedBatch: () => Record<string, (...args: unknown[]) => unknown> }
  const calls: string[] = []
  const ownBatch = store._batch
  store._batch = (...args) => {
    calls.push('_batch')
    return ownBatch.apply(db, args)
  }
  const ownChained = store._chainedBatch
  store._chainedBatch = () => {
    const batch = ownChained.call(db)
    for (const method of ['_put', '_del', '_write']) {
      const own = batch[method]!
      batch[method] = (...args: unknown[]) => {
        calls.push(method)
        return own.apply(batch, args)
      }
    }
    return batch
  }
  t.teardown(() => {
    store._batch = ownBatch
    store._chainedBatch = ownChained
  })
  await db.put('y/0', 'gone')
  await writeBatch(db, [
    { type: 'put', key: 'y/1', value: 'one' },
    { type: 'del', key: 'y/0' },
    { type: 'put', key: 'y/2', value: 'ünï 🙂' },
  ], true)
  t.same(calls, ['_put', '_del', '_put', '_write'])
  t.same(await db.iterator(prefixRange('y/')).all(), [['y/1', 'one'], ['y/2', 'ünï 🙂']])
})

t.test('the database keeps 12 MiB of writes in its write buffer: no table file until 32 MiB', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-raft-storage-'))
  const db = await openDatabase(dir)
  t.teardown(async () => {
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  t.equal(WRITE_BUFFER_BYTES, 32 * 1024 * 1024)
  const value = 'v'.repeat(10 * 1024)
  for (let round = 0; round < 12; round++) {
    // With LevelDB's 4 MiB default, the third megabyte-sized round on would wait for a flush to a table.
    await writeBatch(db, Array.from({ length: 100 }, (_, i) => ({ type: 'put' as const, key: `z/${round}/${i}`, value })), false)
  }
  t.same(readdirSync(dir).filter((name) => name.endsWith('.ldb') || name.endsWith('.sst')), [], 'no table file')
  t.equal(await db.get('z/11/99'), value)
})
