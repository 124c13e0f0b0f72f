// The config state machine: what apply decides, what it writes, and that load() after a restart
// rebuilds exactly the state the writes left.

import { createHash } from 'node:crypto'
import t from 'tap'
import { ManualClock } from '../../../src/core/clock.js'
import type { CpCommand, LogEntry } from '../../../src/cp/log.js'
import { PUBLISH, REMOVE } from '../../../src/config/commands.js'
import { configDbKey, historyDbKey } from '../../../src/config/keys.js'
import { type Config, type ConfigKey, configKeyString } from '../../../src/config/model.js'
import { parsePublish, parseRemove } from '../../../src/config/requests.js'
import { ConfigStateMachine } from '../../../src/config/state-machine.js'
import { type BatchOp, PREFIX } from '../../../src/storage/db.js'
import { type Teardown, openConfigStore, tempDb, throwsGrace } from '../../helpers/config-store.js'

const T0 = 1_700_000_000_000
const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex')
const KEY: ConfigKey = { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'app.yaml' }

function publish(index: number, fields: Record<string, unknown>): LogEntry {
  return { index, ts: T0 + index, command: { type: PUBLISH, request: parsePublish({ ...KEY, ...fields }) } as CpCommand }
}

function remove(index: number, fields: Record<string, unknown> = {}): LogEntry {
  return { index, ts: T0 + index, command: { type: REMOVE, request: parseRemove({ ...KEY, ...fields }) } as CpCommand }
}

/** A state machine on a throwaway database that apply never touches (it only pushes ops). */
async function machine(t: Teardown, opts: { maxConfigs?: number; maxHistoryPerConfig?: number } = {}): Promise<ConfigStateMachine> {
  const tdb = await tempDb(t)
  const sm = new ConfigStateMachine({ db: tdb.db, ...opts })
  await sm.load()
  return sm
}

t.test('publish stores the config with md5, revision and time from the entry', async (t) => {
  const sm = await machine(t)
  const ops: BatchOp[] = []
  const result = sm.apply(publish(7, { content: 'a: 1\nb: ü' }), ops)
  const expected: Config = { ...KEY, content: 'a: 1\nb: ü', type: 'text', md5: md5('a: 1\nb: ü'), revision: 7, modifiedAt: T0 + 7 }
  t.same(result, { md5: expected.md5, revision: 7 })
  t.same(sm.get(KEY), expected)
  t.equal(sm.md5Of(KEY), expected.md5)
  t.same(sm.historyIdsOf(KEY), [7])
  const key = configKeyString(KEY)
  t.same(
    ops.map((o) => [o.type, o.key]),
    [
      ['put', configDbKey(key)],
      ['put', historyDbKey(key, 7)],
    ],
  )
  t.same(JSON.parse((ops[0] as { value: string }).value), expected)
  t.same(JSON.parse((ops[1] as { value: string }).value), { id: 7, op: 'publish', content: expected.content, type: 'text', md5: expected.md5, modifiedAt: T0 + 7 })

  sm.apply(publish(9, { content: '{}', type: 'json' }), ops)
  t.same(sm.get(KEY), { ...KEY, content: '{}', type: 'json', md5: md5('{}'), revision: 9, modifiedAt: T0 + 9 })
  t.same(sm.historyIdsOf(KEY), [7, 9])
  t.equal(sm.size, 1)
})

t.test('CAS: a matching casMd5 publishes, a different one is rejected with nothing changed', async (t) => {
  const sm = await machine(t)
  sm.apply(publish(1, { content: 'v1' }), [])
  const ops: BatchOp[] = [{ type: 'put', key: 'someone/else', value: 'x' }]

  throwsGrace(t, () => sm.apply(publish(2, { content: 'v2', casMd5: md5('other') }), ops), 'CAS_MISMATCH', new RegExp(`expected md5 ${md5('other')} but found md5 ${md5('v1')}`))
  t.equal(ops.length, 1, 'no ops pushed')
  t.equal(sm.get(KEY)?.content, 'v1')
  t.same(sm.historyIdsOf(KEY), [1])

  // Upper-case hex is the same md5.
  const result = sm.apply(publish(3, { content: 'v2', casMd5: md5('v1').toUpperCase() }), ops)
  t.same(result, { md5: md5('v2'), revision: 3 })
  t.equal(sm.get(KEY)?.content, 'v2')
})

t.test("CAS: casMd5 '' creates only when absent; a non-empty casMd5 on an absent config fails", async (t) => {
  const sm = await machine(t)
  throwsGrace(t, () => sm.apply(publish(1, { content: 'v1', casMd5: md5('v0') }), []), 'CAS_MISMATCH', /found no config/)
  t.equal(sm.get(KEY), undefined)
  t.same(sm.historyIdsOf(KEY), [])

  t.same(sm.apply(publish(2, { content: 'v1', casMd5: '' }), []), { md5: md5('v1'), revision: 2 })
  const ops: BatchOp[] = []
  throwsGrace(t, () => sm.apply(publish(3, { content: 'v2', casMd5: '' }), ops), 'CAS_MISMATCH', /expected no config but found md5/)
  t.equal(ops.length, 0)
  t.equal(sm.get(KEY)?.content, 'v1')
})

t.test('remove deletes the config, keeps its content in history, and says whether it deleted', async (t) => {
  const sm = await machine(t)
  sm.apply(publish(1, { content: 'v1', type: 'yaml' }), [])

  throwsGrace(t, () => sm.apply(remove(2, { casMd5: md5('nope') }), []), 'CAS_MISMATCH')
  t.equal(sm.get(KEY)?.content, 'v1', 'a mismatched remove leaves the config')

  const ops: BatchOp[] = []
  t.same(sm.apply(remove(3, { casMd5: md5('v1') }), ops), { deleted: true })
  t.equal(sm.get(KEY), undefined)
  t.equal(sm.md5Of(KEY), '')
  t.equal(sm.size, 0)
  t.same(sm.historyIdsOf(KEY), [1, 3], 'a removed config keeps its history')
  const key = configKeyString(KEY)
  t.same(ops[0], { type: 'del', key: configDbKey(key) })
  t.same(JSON.parse((ops[1] as { value: string }).value), { id: 3, op: 'remove', content: 'v1', type: 'yaml', md5: md5('v1'), modifiedAt: T0 + 3 })

  const again: BatchOp[] = []
  t.same(sm.apply(remove(4), again), { deleted: false })
  t.equal(again.length, 0, 'removing nothing writes nothing')
  t.same(sm.historyIdsOf(KEY), [1, 3])
  // '' on remove means "expect no config": true here, so it is a no-op rather than a conflict.
  t.same(sm.apply(remove(5, { casMd5: '' }), []), { deleted: false })
})

t.test('history keeps the newest maxHistoryPerConfig entries, deleting the oldest in the same ops', async (t) => {
  const sm = await machine(t, { maxHistoryPerConfig: 3 })
  for (let i = 1; i <= 3; i++) sm.apply(publish(i, { content: `v${i}` }), [])
  const ops: BatchOp[] = []
  sm.apply(publish(4, { content: 'v4' }), ops)
  const key = configKeyString(KEY)
  t.same(
    ops.map((o) => [o.type, o.key]),
    [
      ['put', configDbKey(key)],
      ['put', historyDbKey(key, 4)],
      ['del', historyDbKey(key, 1)],
    ],
  )
  t.same(sm.historyIdsOf(KEY), [2, 3, 4])
  sm.apply(remove(5), [])
  t.same(sm.historyIdsOf(KEY), [3, 4, 5])
})

t.test('maxConfigs bounds new configs only', async (t) => {
  const sm = await machine(t, { maxConfigs: 2 })
  sm.apply(publish(1, { dataId: 'a', content: 'x' }), [])
  sm.apply(publish(2, { dataId: 'b', content: 'x' }), [])
  const ops: BatchOp[] = []
  throwsGrace(t, () => sm.apply(publish(3, { dataId: 'c', content: 'x' }), ops), 'LIMIT_EXCEEDED')
  t.equal(ops.length, 0)
  t.equal(sm.size, 2)
  t.same(sm.historyIdsOf({ ...KEY, dataId: 'c' }), [])
  t.same(sm.apply(publish(4, { dataId: 'a', content: 'y' }), []), { md5: md5('y'), revision: 4 }, 'updating an existing one is fine')
  sm.apply(remove(5, { dataId: 'b' }), [])
  t.same(sm.apply(publish(6, { dataId: 'c', content: 'x' }), []), { md5: md5('x'), revision: 6 }, 'room again after a remove')
})

t.test('commands are checked again at apply: malformed or unknown ones are rejected', async (t) => {
  const sm = await machine(t)
  const ops: BatchOp[] = []
  const raw = (index: number, command: object): LogEntry => ({ index, ts: T0, command: command as CpCommand })
  throwsGrace(t, () => sm.apply(raw(1, { type: PUBLISH, request: { ...KEY, content: '' } }), ops), 'INVALID_ARGUMENT', /content/)
  throwsGrace(t, () => sm.apply(raw(2, { type: PUBLISH, request: { ...KEY, dataId: 'bad\n', content: 'x' } }), ops), 'INVALID_NAME')
  throwsGrace(t, () => sm.apply(raw(3, { type: PUBLISH }), ops), 'INVALID_NAME', /dataId is required/)
  throwsGrace(t, () => sm.apply(raw(4, { type: REMOVE, request: { ...KEY, casMd5: 'zz' } }), ops), 'INVALID_ARGUMENT', /casMd5/)
  throwsGrace(t, () => sm.apply(raw(5, { type: 'config.rename', request: KEY }), ops), 'INVALID_ARGUMENT', /unknown config command/)
  t.equal(ops.length, 0)
  t.equal(sm.size, 0)
})

t.test('change handlers hear md5 changes only, after memory holds the new state', async (t) => {
  const sm = await machine(t)
  const heard: [string, string | undefined, string][] = []
  const off = sm.onChange((key, config) => heard.push([key.dataId, config?.content, sm.md5Of(key)]))
  sm.apply(publish(1, { content: 'v1' }), [])
  sm.apply(publish(2, { content: 'v1', type: 'yaml' }), []) // same content: md5 unchanged
  sm.apply(publish(3, { content: 'v2' }), [])
  try {
    sm.apply(publish(4, { content: 'v3', casMd5: '' }), [])
  } catch {
    // rejected: must not be heard
  }
  sm.apply(remove(5), [])
  t.same(heard, [
    ['app.yaml', 'v1', md5('v1')],
    ['app.yaml', 'v2', md5('v2')],
    ['app.yaml', undefined, ''],
  ])
  off()
  sm.apply(publish(6, { content: 'v4' }), [])
  t.equal(heard.length, 3, 'an unsubscribed handler hears nothing')
})

t.test('a throwing change handler cannot fail an applied write', async (t) => {
  const sm = await machine(t)
  sm.onChange(() => {
    throw new Error('listener bug')
  })
  t.same(sm.apply(publish(1, { content: 'v1' }), []), { md5: md5('v1'), revision: 1 })
  t.equal(sm.get(KEY)?.content, 'v1')
})

t.test('load() after a restart rebuilds the same configs and history', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock(T0)
  const first = await openConfigStore(tdb, clock, { maxHistoryPerConfig: 3 })
  const keys: ConfigKey[] = [
    KEY,
    { namespace: 'dev', group: 'G', dataId: 'a' },
    // 'a0' starts with 'a': their history ranges must not overlap.
    { namespace: 'dev', group: 'G', dataId: 'a0' },
    // Code points above U+FFFF sort after '\uffff' in LevelDB: load must still find them.
    { namespace: '😀', group: 'グループ', dataId: '𝒳.json' },
  ]
  for (let round = 1; round <= 5; round++) {
    for (const key of keys) {
      clock.advance(10)
      await first.service.publish({ ...key, content: `${key.dataId} round ${round}`, type: round % 2 ? 'text' : 'yaml' })
    }
  }
  await first.service.remove({ ...keys[2]! })
  const snapshot = (sm: ConfigStateMachine) => keys.map((k) => ({ config: sm.get(k), ids: sm.historyIdsOf(k) }))
  const before = snapshot(first.sm)
  t.equal(first.sm.size, 3)
  t.same(before[2]!.config, undefined)
  t.equal(before[2]!.ids.length, 3)
  const histories = await Promise.all(keys.map((k) => first.service.history({ ...k, pageSize: 10 })))

  await tdb.reopen()
  // load() alone, with no log replay: the state machine's own LevelDB data is complete.
  const loaded = new ConfigStateMachine({ db: tdb.db, maxHistoryPerConfig: 3 })
  await loaded.load()
  t.same(snapshot(loaded), before)
  t.equal(loaded.size, 3)

  // And through the log, as a node starts; history reads give what they gave before.
  const second = await openConfigStore(tdb, clock, { maxHistoryPerConfig: 3 })
  t.same(snapshot(second.sm), before)
  t.same(await Promise.all(keys.map((k) => second.service.history({ ...k, pageSize: 10 }))), histories)

  // Nothing stray was left in storage: exactly 3 configs and 4 × 3 history entries.
  let configs = 0
  let history = 0
  for await (const key of tdb.db.keys({ gte: 'cs/', lt: 'cs0' })) {
    if (key.startsWith(PREFIX.config)) configs++
    else if (key.startsWith(PREFIX.configHistory)) history++
  }
  t.equal(configs, 3)
  t.equal(history, 12)
})

t.test('a lowered history limit trims the backlog at the next write', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock(T0)
  const first = await openConfigStore(tdb, clock, { maxHistoryPerConfig: 5 })
  const ids: number[] = []
  for (let i = 1; i <= 5; i++) ids.push((await first.service.publish({ ...KEY, content: `v${i}` })).revision)
  await tdb.reopen()
  const second = await openConfigStore(tdb, clock, { maxHistoryPerConfig: 2 })
  t.same(second.sm.historyIdsOf(KEY), ids)
  const sixth = (await second.service.publish({ ...KEY, content: 'v6' })).revision
  t.same(second.sm.historyIdsOf(KEY), [ids[4], sixth])
  const page = await second.service.history({ ...KEY })
  t.same(
    page.items.map((i) => i.content),
    ['v6', 'v5'],
  )
})
