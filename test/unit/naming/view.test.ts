// The naming view: the protection threshold (Nacos) at its boundaries, and the cleanup of
// services left empty.

import t from 'tap'
import { type Instance, instanceId } from '../../../src/naming/model.js'
import { EMPTY_SERVICE_TTL_MS, NamingView } from '../../../src/naming/view.js'

const SVC = { namespace: 'public', group: 'DEFAULT_GROUP', service: 's' }

function instance(port: number, healthy: boolean, extra: Partial<Instance> = {}): Instance {
  return { ...SVC, cluster: 'DEFAULT', ip: '10.0.0.1', port, weight: 1, enabled: true, healthy, ephemeral: false, metadata: {}, clientId: '', ...extra }
}

function query(extra: { clusters?: string[]; healthyOnly?: boolean; includeDisabled?: boolean } = {}) {
  return { ...SVC, clusters: extra.clusters ?? [], healthyOnly: extra.healthyOnly ?? true, includeDisabled: extra.includeDisabled ?? false, stale: true }
}

function withThreshold(view: NamingView, protectThreshold: number) {
  view.setMeta(SVC, { ...SVC, ephemeral: false, protectThreshold, metadata: {} })
}

t.test('protection threshold: reached at or below the threshold, not above; 0 turns it off', async (t) => {
  const view = new NamingView(1)
  withThreshold(view, 0.5)
  view.putInstance(instance(1, true))
  view.putInstance(instance(2, true))
  view.putInstance(instance(3, true))
  view.putInstance(instance(4, false))
  let list = view.list(query())
  t.equal(list.protectThresholdReached, false, '3 of 4 healthy: above 0.5')
  t.same(list.instances.map((i) => i.port), [1, 2, 3], 'healthyOnly lists the healthy')
  view.putInstance(instance(3, false))
  list = view.list(query())
  t.equal(list.protectThresholdReached, true, '2 of 4: exactly at the threshold counts')
  t.same(list.instances.map((i) => [i.port, i.healthy]), [[1, true], [2, true], [3, false], [4, false]], 'all listed, with their true health')
  t.equal(view.list(query({ healthyOnly: false })).protectThresholdReached, true, 'a query without healthyOnly says so too')
  withThreshold(view, 0)
  list = view.list(query())
  t.equal(list.protectThresholdReached, false, 'threshold 0: off')
  t.same(list.instances.map((i) => i.port), [1, 2])
  withThreshold(view, 1)
  t.equal(view.list(query()).protectThresholdReached, true, 'threshold 1: reached whenever any is unhealthy')
  for (const p of [3, 4]) view.putInstance(instance(p, true))
  t.equal(view.list(query()).protectThresholdReached, true, 'threshold 1 and all healthy: 1 <= 1, all are listed anyway')
})

t.test('protection threshold counts the instances the query selects: its clusters, and enabled ones', async (t) => {
  const view = new NamingView(1)
  withThreshold(view, 0.5)
  view.putInstance(instance(1, true, { cluster: 'a' }))
  view.putInstance(instance(2, false, { cluster: 'a' }))
  view.putInstance(instance(3, false, { cluster: 'a' }))
  view.putInstance(instance(4, true, { cluster: 'b' }))
  view.putInstance(instance(5, true, { cluster: 'b' }))
  t.equal(view.list(query()).protectThresholdReached, false, 'over both clusters 3 of 5')
  const a = view.list(query({ clusters: ['a'] }))
  t.equal(a.protectThresholdReached, true, 'cluster a alone: 1 of 3')
  t.same(a.instances.map((i) => i.port), [1, 2, 3])
  const b = view.list(query({ clusters: ['b'] }))
  t.equal(b.protectThresholdReached, false)
  // Disabled instances are not handed out, so they do not count either.
  view.putInstance(instance(4, true, { cluster: 'b', enabled: false }))
  view.putInstance(instance(5, true, { cluster: 'b', enabled: false }))
  t.equal(view.list(query()).protectThresholdReached, true, 'enabled: 1 healthy of 3')
  t.same(view.list(query()).instances.map((i) => i.port), [1, 2, 3], 'disabled ones stay out even when protection lists all')
  t.equal(view.list(query({ clusters: ['b'] })).protectThresholdReached, false, 'nothing selected: not reached')
  t.same(view.list(query({ clusters: ['b'] })).instances, [])
})

t.test('a service left without instances and without a record is dropped 60 s later; one with a record stays', async (t) => {
  let now = 1_000_000
  const view = new NamingView(1, () => now)
  const eph = { ...SVC, service: 'e' }
  const inst: Instance = { ...eph, cluster: 'DEFAULT', ip: '10.0.0.1', port: 1, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId: 'c' }
  view.applyClientChange('c', [], [inst])
  view.applyClientChange('c', [inst], [])
  const empty = view.get(eph)
  t.ok(empty, 'still there, empty')
  t.equal(empty!.instanceCount(), 0)
  t.equal(empty!.lastKind, true, 'remembers it was ephemeral')
  now += EMPTY_SERVICE_TTL_MS - 1
  t.equal(view.sweepEmpty(now), 0)
  t.ok(view.get(eph))
  now += 1
  t.equal(view.sweepEmpty(now), 1)
  t.notOk(view.get(eph), 'dropped after 60 s')

  // An instance that comes back in time keeps the service, and its clock starts again.
  view.applyClientChange('c', [], [inst])
  view.applyClientChange('c', [inst], [])
  now += 30_000
  view.applyClientChange('c', [], [inst])
  now += 60_000
  view.sweepEmpty(now)
  t.ok(view.get(eph), 'has an instance again: kept')
  view.applyClientChange('c', [inst], [])
  now += 59_000
  view.sweepEmpty(now)
  t.ok(view.get(eph), 'empty again: a new 60 s')

  // A service with a record (created, or given metadata or cluster settings) is kept.
  const kept = { ...SVC, service: 'kept' }
  view.setMeta(kept, { ...kept, ephemeral: false, protectThreshold: 0, metadata: {} })
  view.putInstance(instance(1, true, { service: 'kept' }))
  view.removeInstance(kept, '\u001f', false)
  view.removeInstance(kept, ['DEFAULT', '10.0.0.1', '1'].join('\u001f'), false)
  now += 10 * EMPTY_SERVICE_TTL_MS
  view.sweepEmpty(now)
  t.ok(view.get(kept), 'a service with a record stays')
  view.setMeta(kept, undefined)
  t.notOk(view.get(kept), 'deleting the record of an empty service drops it at once')
})

t.test('a batch gives each service it changed one new revision and one notification, with every change in it', async (t) => {
  const view = new NamingView(100)
  const other = { ...SVC, service: 'other' }
  view.putInstance(instance(1, true))
  view.putInstance({ ...instance(1, true), ...other })
  const cached = view.list(query())
  const before = view.get(SVC)!.revision
  const otherBefore = view.get(other)!.revision
  const notified: string[] = []
  view.onChange((name, revision) => notified.push(`${name.service}@${revision}`))
  view.batch(() => {
    view.putInstance(instance(1, false))
    view.putInstance(instance(2, true))
    view.batch(() => view.putInstance(instance(3, true)))
    view.removeInstance(SVC, instanceId('DEFAULT', '10.0.0.1', 2), false)
    t.same(notified, [], 'nobody is told before the batch ends')
  })
  const after = view.get(SVC)!.revision
  t.ok(after > before, 'the service has a new revision')
  t.same(notified, [`s@${after}`], 'one notification, for the changed service only')
  t.equal(view.get(other)!.revision, otherBefore, 'a service the batch did not touch keeps its revision')
  const list = view.list(query({ healthyOnly: false }))
  t.not(list, cached, 'the cached answer of the old revision is not served')
  t.same(list.instances.map((i) => [i.port, i.healthy]), [[1, false], [3, true]], 'every change of the batch is in the answer')
  t.equal(list.revision, after)

  notified.length = 0
  view.batch(() => {
    view.putInstance(instance(4, true))
    for (const port of [1, 3, 4]) view.removeInstance(SVC, instanceId('DEFAULT', '10.0.0.1', port), false)
    view.setMeta(SVC, undefined)
  })
  t.equal(view.get(SVC), undefined, 'a service deleted within a batch is gone at once')
  t.equal(notified.length, 1, 'and notified once, for its deletion: the batch does not touch it again at its end')
})

t.test('a batch that throws still gives its changes a revision', async (t) => {
  const view = new NamingView(1)
  const notified: number[] = []
  view.onChange((_name, revision) => notified.push(revision))
  t.throws(() =>
    view.batch(() => {
      view.putInstance(instance(1, true))
      throw new Error('boom')
    }),
  )
  t.equal(notified.length, 1)
  t.equal(view.list(query()).instances.length, 1)
})

t.test('lookups by name (the last service found is kept for the next): a dropped service is not found, one made again is the new one', async (t) => {
  let now = 1_000_000
  const view = new NamingView(1, () => now)
  const a = { ...SVC, service: 'a' }
  const b = { ...SVC, service: 'b' }
  const inst = (svc: typeof a, port: number): Instance => ({ ...svc, cluster: 'DEFAULT', ip: '10.0.0.1', port, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId: 'c' })
  view.applyClientChange('c', [], [inst(a, 1)])
  view.applyClientChange('c', [], [inst(b, 2)])
  // Equal names in other string objects find the same service.
  t.equal(view.get({ namespace: 'pub' + 'lic', group: 'DEFAULT_' + 'GROUP', service: 'a' }), view.get(a))
  t.not(view.get(a), view.get(b))
  t.equal(view.get({ ...a, group: 'other' }), undefined, 'another group: another service')
  view.applyClientChange('c', [inst(a, 1)], [])
  t.ok(view.get(a), 'looked up last, empty')
  now += EMPTY_SERVICE_TTL_MS
  t.equal(view.sweepEmpty(now), 1)
  t.equal(view.get(a), undefined, 'dropped: not found, though it was the last one looked up')
  view.applyClientChange('c', [], [inst(a, 3)])
  const again = view.get(a)!
  t.same([...again.ephemeral.values()].map((i) => i.port), [3], 'made again: the new service holds the new instance')
  t.equal(view.list(query({ healthyOnly: false })).instances.length, 0, 'service s is untouched')
  t.same(view.list({ ...query(), service: 'a' }).instances.map((i) => i.port), [3])
  view.setMeta(b, { ...b, ephemeral: true, protectThreshold: 0, metadata: {} })
  view.applyClientChange('c', [inst(b, 2)], [])
  view.setMeta(b, undefined)
  t.equal(view.get(b), undefined, 'deleted at once: not found')
})
