// NamingPush on a view and a ManualClock: limits, leaks, the client going away, the delta log's bound.

import t from 'tap'
import { ManualClock } from '../../../src/core/clock.js'
import { GraceError } from '../../../src/core/errors.js'
import { LIMITS } from '../../../src/core/limits.js'
import type { Instance } from '../../../src/naming/model.js'
import { NamingPush, parseWatchRequest } from '../../../src/naming/push.js'
import { NamingView } from '../../../src/naming/view.js'

const EMPTY = 'd41d8cd98f00b204e9800998ecf8427e'

function instance(service: string, port: number, extra: Partial<Instance> = {}): Instance {
  return { namespace: 'public', group: 'DEFAULT_GROUP', service, cluster: 'DEFAULT', ip: '10.0.0.1', port, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId: 'c', ...extra }
}

t.test('a node holds 10,000 watches; one more is TOO_MANY_WATCHERS; a change answers all', async (t) => {
  const clock = new ManualClock()
  const view = new NamingView(1)
  const push = new NamingPush(view, { clock })
  const watches: Promise<unknown>[] = []
  for (let i = 0; i < LIMITS.maxWatchers; i++) {
    watches.push(push.watch(parseWatchRequest({ items: [{ service: `s${i % 100}`, checksum: EMPTY }, { service: 'shared', checksum: EMPTY }] })))
  }
  t.equal(push.size, 10_000)
  try {
    await push.watch(parseWatchRequest({ items: [{ service: 'x', checksum: EMPTY }] }))
    t.fail('one more watch was held')
  } catch (err) {
    t.ok(err instanceof GraceError && err.code === 'TOO_MANY_WATCHERS' && err.status === 429, String(err))
  }
  // Answered at once (something differs): no limit applies.
  const now = await push.watch(parseWatchRequest({ items: [{ service: 'x' }] }))
  t.equal(now.length, 1)
  view.putInstance(instance('shared', 1))
  const answers = (await Promise.all(watches)) as { service: string }[][]
  t.ok(answers.every((a) => a.length === 1 && a[0]!.service === 'shared'))
  t.equal(push.size, 0)
  t.equal(push.watchedServices, 0)
  t.equal(clock.pendingTimers(), 0, 'timers cancelled')
})

t.test('a client that goes away frees its watch; changes in one batch come in one answer', async (t) => {
  const clock = new ManualClock()
  const view = new NamingView(1)
  const push = new NamingPush(view, { clock, maxWatchers: 2 })
  const gone = new AbortController()
  const w = push.watch(parseWatchRequest({ items: [{ service: 'a', checksum: EMPTY }] }), gone.signal)
  t.equal(push.size, 1)
  gone.abort()
  t.same(await w, [])
  t.equal(push.size, 0)
  const both = push.watch(parseWatchRequest({ items: [{ service: 'a', checksum: EMPTY }, { service: 'b', checksum: EMPTY }] }))
  view.putInstance(instance('a', 1))
  view.putInstance(instance('b', 2))
  const got = (await both).map((c) => c.service).sort()
  t.same(got, ['a', 'b'])
})

t.test('an answer carries at most maxWatchAnswerInstances inline; the rest are named incomplete', async (t) => {
  const view = new NamingView(1)
  const push = new NamingPush(view, { clock: new ManualClock() })
  for (let i = 0; i < LIMITS.maxWatchAnswerInstances; i++) view.putInstance(instance('big', 1 + (i % 60000), { ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}` }))
  view.putInstance(instance('small', 1))
  const got = await push.watch(parseWatchRequest({ items: [{ service: 'big' }, { service: 'small' }] }))
  t.equal(got[0]!.complete, true)
  t.equal(got[0]!.instances.length, LIMITS.maxWatchAnswerInstances)
  t.equal(got[1]!.complete, false)
  t.same(got[1]!.instances, [])
})

t.test('the delta log is bounded: past it, a delta from before is answered in full', async (t) => {
  const view = new NamingView(1)
  const push = new NamingPush(view, { clock: new ManualClock(), maxDeltaChanges: 10 })
  view.putInstance(instance('a', 1))
  const start = push.delta('public', 0)
  for (let i = 0; i < 5; i++) view.putInstance(instance('b', 10 + i))
  t.equal(push.delta('public', start.revision).full, false)
  for (let i = 0; i < 10; i++) view.putInstance(instance('c', 10 + i))
  t.equal(push.delta('public', start.revision).full, true, 'the changes after it are partly forgotten')
  const recent = view.revision - 3
  const d = push.delta('public', recent)
  t.equal(d.full, false)
  t.same(d.services.map((s) => s.service), ['c'])
})
