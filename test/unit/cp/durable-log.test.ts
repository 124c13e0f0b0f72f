// The single-member CP log: durability before acknowledgement, group commit, replay on restart.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ManualClock } from '../../../src/core/clock.js'
import { GraceError } from '../../../src/core/errors.js'
import { silentLogger } from '../../../src/core/logger.js'
import type { LogEntry, StateMachine } from '../../../src/cp/log.js'
import { DurableLog } from '../../../src/cp/node/durable-log.js'
import { type BatchOp, type Database, PREFIX, indexKey, openDatabase } from '../../../src/storage/db.js'

/** A key-value state machine: {type:'kv.put', key, value} and {type:'kv.fail'} (always rejected). */
class KvMachine implements StateMachine {
  readonly data = new Map<string, string>()
  readonly applied: number[] = []
  constructor(private readonly db: Database) {}
  async load(): Promise<void> {
    for await (const [k, v] of this.db.iterator({ gte: 'kv/', lt: 'kv/\uffff' })) this.data.set(k.slice(3), v)
  }
  apply(entry: LogEntry, ops: BatchOp[]): unknown {
    const cmd = entry.command as { type: string; key?: string; value?: string }
    if (cmd.type === 'kv.fail') throw new GraceError('CAS_MISMATCH', 'rejected on purpose')
    ops.push({ type: 'put', key: `kv/${cmd.key}`, value: cmd.value! })
    this.data.set(cmd.key!, cmd.value!)
    this.applied.push(entry.index)
    return { index: entry.index }
  }
}

/** Counts synced batches: each is one fsync. */
function countingDb(db: Database): { db: Database; syncs: () => number } {
  let syncs = 0
  const batch = (ops: unknown, options?: { sync?: boolean }) => {
    if (options?.sync) syncs++
    return (db.batch as (o: unknown, p?: unknown) => Promise<void>).call(db, ops, options)
  }
  // A Proxy whose methods run on the real db: LevelDB classes use private fields.
  const wrapped = new Proxy(db, {
    get(target, prop) {
      if (prop === 'batch') return batch
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
  return { db: wrapped, syncs: () => syncs }
}

async function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-log-'))
  let db = await openDatabase(dir)
  t.teardown(async () => {
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })
  const open = async () => {
    const sm = new KvMachine(db)
    const log = await DurableLog.open({ db, stateMachine: sm, clock: new ManualClock(), logger: silentLogger })
    return { sm, log }
  }
  const restart = async () => {
    await db.close()
    db = await openDatabase(dir)
    return open()
  }
  return { db: () => db, open, restart }
}

t.test('a proposal resolves with the result after it is stored, and is applied once', async (t) => {
  const s = await setup(t)
  const { sm, log } = await s.open()
  t.same(await log.propose({ type: 'kv.put', key: 'a', value: '1' } as never), { index: 1 })
  t.equal(await s.db().get(PREFIX.cpLog + indexKey(1)) !== undefined, true, 'the entry is in the log')
  t.equal(await s.db().get('kv/a'), '1', 'the state is stored')
  t.same(sm.applied, [1])
  t.match(log.status(), { commitIndex: 1, appliedIndex: 1 })
})

t.test('group commit: concurrent proposals share fsyncs, and keep their order', async (t) => {
  const s = await setup(t)
  const counted = countingDb(s.db())
  const sm = new KvMachine(counted.db)
  const log = await DurableLog.open({ db: counted.db, stateMachine: sm, clock: new ManualClock(), logger: silentLogger })
  const results = await Promise.all(Array.from({ length: 200 }, (_, i) => log.propose({ type: 'kv.put', key: `k${i}`, value: String(i) } as never)))
  t.same(results.map((r) => (r as { index: number }).index), Array.from({ length: 200 }, (_, i) => i + 1))
  t.ok(counted.syncs() <= 3, `200 proposals took ${counted.syncs()} fsyncs`)
  t.same(sm.applied, Array.from({ length: 200 }, (_, i) => i + 1))
})

t.test('a rejected command fails alone; the rest of its batch commits', async (t) => {
  const s = await setup(t)
  const { sm, log } = await s.open()
  const [a, b, c] = await Promise.allSettled([
    log.propose({ type: 'kv.put', key: 'a', value: '1' } as never),
    log.propose({ type: 'kv.fail' } as never),
    log.propose({ type: 'kv.put', key: 'c', value: '3' } as never),
  ])
  t.equal(a.status, 'fulfilled')
  t.equal(b.status, 'rejected')
  t.equal((b as PromiseRejectedResult).reason.code, 'CAS_MISMATCH')
  t.equal(c.status, 'fulfilled')
  t.same([...sm.data.keys()], ['a', 'c'])
})

t.test('restart: state is loaded, and entries logged but not applied are replayed', async (t) => {
  const s = await setup(t)
  const first = await s.open()
  await first.log.propose({ type: 'kv.put', key: 'a', value: '1' } as never)
  await first.log.close()
  // A crash between the synced log write and the state write leaves entries 2 and 3 unapplied.
  for (const [index, key] of [[2, 'b'], [3, 'c']] as const) {
    await s.db().put(PREFIX.cpLog + indexKey(index), JSON.stringify({ index, ts: 0, command: { type: 'kv.put', key, value: String(index) } }))
  }
  const second = await s.restart()
  t.same(Object.fromEntries(second.sm.data), { a: '1', b: '2', c: '3' })
  t.same(second.sm.applied, [2, 3], 'only the unapplied entries are applied again')
  t.same(await second.log.propose({ type: 'kv.put', key: 'd', value: '4' } as never), { index: 4 }, 'new entries follow the replayed ones')
})

t.test('after close, proposals are refused with UNAVAILABLE and nothing is written', async (t) => {
  const s = await setup(t)
  const { log } = await s.open()
  await log.close()
  await t.rejects(log.propose({ type: 'kv.put', key: 'a', value: '1' } as never), { code: 'UNAVAILABLE' })
  t.equal(await s.db().get('kv/a'), undefined)
})

t.test('a full queue pushes back with UNAVAILABLE instead of growing', async (t) => {
  const s = await setup(t)
  const sm = new KvMachine(s.db())
  const log = await DurableLog.open({ db: s.db(), stateMachine: sm, clock: new ManualClock(), logger: silentLogger, maxPendingProposals: 4, maxProposalsPerBatch: 2 })
  const results = await Promise.allSettled(Array.from({ length: 10 }, (_, i) => log.propose({ type: 'kv.put', key: `k${i}`, value: 'v' } as never)))
  const refused = results.filter((r) => r.status === 'rejected')
  t.ok(refused.length > 0, 'some proposals were refused')
  for (const r of refused) t.equal((r as PromiseRejectedResult).reason.code, 'UNAVAILABLE')
  t.equal(sm.data.size, results.length - refused.length, 'every accepted proposal was applied')
})

t.test('old entries are compacted behind the applied index, a bounded number per write', async (t) => {
  const s = await setup(t)
  const { log } = await s.open()
  for (let round = 0; round < 12; round++) {
    await Promise.all(Array.from({ length: 1000 }, (_, i) => log.propose({ type: 'kv.put', key: `k${i}`, value: String(round) } as never)))
  }
  t.equal(await s.db().get(PREFIX.cpLog + indexKey(1)), undefined, 'the oldest entry is gone')
  t.not(await s.db().get(PREFIX.cpLog + indexKey(12_000 - 9_999)), undefined, 'the last 10,000 are kept')
  const reopened = await (async () => {
    await log.close()
    return s.restart()
  })()
  t.equal(reopened.sm.data.get('k999'), '11', 'state is intact after compaction and restart')
})
