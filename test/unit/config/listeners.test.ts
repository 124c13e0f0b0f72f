// Long-poll listeners, on a ManualClock: when they answer, with what, and that every way out
// (change, timeout, abort, release) leaves nothing behind.

import { createHash } from 'node:crypto'
import t from 'tap'
import { ManualClock } from '../../../src/core/clock.js'
import { LIMITS } from '../../../src/core/limits.js'
import { ListenerRegistry } from '../../../src/config/listeners.js'
import type { ConfigKey } from '../../../src/config/model.js'
import { openConfigStore, rejectsGrace, settle, tempDb, throwsGrace } from '../../helpers/config-store.js'

const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex')
const A: ConfigKey = { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'a' }
const B: ConfigKey = { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'b' }

/** Tracks a promise so a test can see whether it settled yet without awaiting it. */
function track<T>(promise: Promise<T>): { readonly done: boolean; readonly value: T | undefined; readonly promise: Promise<T> } {
  const state = { done: false, value: undefined as T | undefined, promise }
  promise.then((v) => {
    state.done = true
    state.value = v
  })
  return state
}

t.test('service: answers at once when an md5 differs, absent configs counting as md5 ""', async (t) => {
  const tdb = await tempDb(t)
  const { service } = await openConfigStore(tdb, new ManualClock())
  await service.publish({ ...A, content: 'v1' })

  t.same(await service.listen({ items: [{ ...A, md5: '' }] }), [A], 'the client has nothing, the server has v1')
  t.same(await service.listen({ items: [{ ...A, md5: md5('old') }] }), [A], 'a stale md5')
  t.same(await service.listen({ items: [{ ...B, md5: md5('v1') }] }), [B], 'the client has b, the server none')
  t.same(
    await service.listen({ items: [{ ...A, md5: md5('v1') }, { ...B, md5: md5('x') }, { ...B, md5: md5('y') }] }),
    [B],
    'only the changed keys, each once',
  )
  t.same(await service.listen({ items: [{ ...A, md5: md5('v1') }], timeoutMs: 0 }), [], 'timeout 0 answers at once')
  t.equal(service.listenerCount(), 0, 'none of these was held')
})

t.test('service: a held listener answers when one of its configs changes', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock()
  const { service } = await openConfigStore(tdb, clock)
  // The log ticks on the same clock: count only the listeners' timers.
  const baseTimers = clock.pendingTimers()
  await service.publish({ ...A, content: 'v1' })

  const held = track(service.listen({ items: [{ ...A, md5: md5('v1') }, { ...B, md5: '' }], timeoutMs: 10_000 }))
  await settle()
  t.notOk(held.done, 'nothing changed: held')
  t.equal(service.listenerCount(), 1)

  await service.publish({ ...A, content: 'v1', type: 'yaml' })
  await settle()
  t.notOk(held.done, 'same content, same md5: still held')

  await service.publish({ ...B, content: 'new' })
  t.same(await held.promise, [B])
  t.equal(service.listenerCount(), 0, 'released after answering')
  t.equal(clock.pendingTimers(), baseTimers, 'its timer was cancelled')
})

t.test('service: a removed config wakes its listener', async (t) => {
  const tdb = await tempDb(t)
  const { service } = await openConfigStore(tdb, new ManualClock())
  await service.publish({ ...A, content: 'v1' })
  const held = track(service.listen({ items: [{ ...A, md5: md5('v1') }] }))
  await settle()
  t.notOk(held.done)
  await service.remove({ ...A })
  t.same(await held.promise, [A])
  t.same(await service.listen({ items: [{ ...A, md5: '' }], timeoutMs: 0 }), [], 'and it now matches md5 ""')
})

t.test('service: a held listener answers [] at its timeout, by default after 30 s', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock()
  const { service } = await openConfigStore(tdb, clock)

  const short = track(service.listen({ items: [{ ...A, md5: '' }], timeoutMs: 500 }))
  const long = track(service.listen({ items: [{ ...A, md5: '' }] }))
  await settle()
  clock.advance(499)
  await settle()
  t.notOk(short.done, 'not before its time')
  clock.advance(1)
  t.same(await short.promise, [])
  clock.advance(LIMITS.defaultListenTimeoutMs - 501)
  await settle()
  t.notOk(long.done, 'the default is 30 s')
  clock.advance(1)
  t.same(await long.promise, [])
  t.equal(service.listenerCount(), 0)
})

t.test('service: held listeners are limited; a freed slot can be reused', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock()
  const { service } = await openConfigStore(tdb, clock, { maxListeners: 2 })
  const first = track(service.listen({ items: [{ ...A, md5: '' }], timeoutMs: 100 }))
  track(service.listen({ items: [{ ...B, md5: '' }], timeoutMs: 1000 }))
  await settle()
  await rejectsGrace(t, service.listen({ items: [{ ...A, md5: '' }] }), 'TOO_MANY_LISTENERS')
  t.same(await service.listen({ items: [{ ...A, md5: md5('x') }] }), [A], 'an answer at once needs no slot')
  clock.advance(100)
  t.same(await first.promise, [])
  const third = track(service.listen({ items: [{ ...A, md5: '' }], timeoutMs: 100 }))
  await settle()
  t.equal(service.listenerCount(), 2, 'the freed slot was taken')
  clock.advance(1000)
  t.same(await third.promise, [])
})

t.test('service: an aborted listen is released at once', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock()
  const { service } = await openConfigStore(tdb, clock)
  // The log ticks on the same clock: count only the listeners' timers.
  const baseTimers = clock.pendingTimers()
  const gone = new AbortController()
  const held = track(service.listen({ items: [{ ...A, md5: '' }] }, gone.signal))
  await settle()
  t.equal(service.listenerCount(), 1)
  gone.abort()
  t.same(await held.promise, [])
  t.equal(service.listenerCount(), 0)
  t.equal(clock.pendingTimers(), baseTimers)

  const already = new AbortController()
  already.abort()
  t.same(await service.listen({ items: [{ ...A, md5: '' }] }, already.signal), [], 'aborted before it was held')
  t.equal(service.listenerCount(), 0)
})

t.test('service: releaseAll answers every held listener with [], and later ones at once', async (t) => {
  const tdb = await tempDb(t)
  const clock = new ManualClock()
  const { service } = await openConfigStore(tdb, clock)
  // The log ticks on the same clock: count only the listeners' timers.
  const baseTimers = clock.pendingTimers()
  const one = track(service.listen({ items: [{ ...A, md5: '' }] }))
  const two = track(service.listen({ items: [{ ...B, md5: '' }] }))
  await settle()
  t.equal(service.listenerCount(), 2)
  service.releaseAll()
  t.same(await one.promise, [])
  t.same(await two.promise, [])
  t.equal(service.listenerCount(), 0)
  t.equal(clock.pendingTimers(), baseTimers)
  t.same(await service.listen({ items: [{ ...A, md5: '' }] }), [])
  t.equal(service.listenerCount(), 0, 'nothing held after release')
})

t.test('registry: changes made in one synchronous run reach a listener in one answer', async (t) => {
  const clock = new ManualClock()
  const registry = new ListenerRegistry({ clock })
  const held = registry.hold([A, B, A], 1000)
  registry.changed(B)
  registry.changed(A)
  registry.changed(B)
  t.same(await held, [B, A])
  t.equal(registry.size, 0)
  t.equal(registry.watchedKeys, 0)
})

t.test('registry: a change wakes only the listeners of that key', async (t) => {
  const clock = new ManualClock()
  const registry = new ListenerRegistry({ clock })
  const onA = track(registry.hold([A], 1000))
  const onB = track(registry.hold([B], 1000))
  const onBoth = track(registry.hold([A, B], 1000))
  t.equal(registry.watchedKeys, 2)
  registry.changed(A)
  await settle()
  t.same(onA.value, [A])
  t.same(onBoth.value, [A])
  t.notOk(onB.done)
  t.equal(registry.size, 1)
  t.equal(registry.watchedKeys, 1, 'a key nobody waits on is forgotten')
  clock.advance(1000)
  t.same(await onB.promise, [])
  t.equal(registry.watchedKeys, 0)
})

t.test('registry: an abort between the change and its answer wins, and is answered once', async (t) => {
  const registry = new ListenerRegistry({ clock: new ManualClock() })
  const gone = new AbortController()
  const held = registry.hold([A], 1000, gone.signal)
  registry.changed(A)
  gone.abort()
  t.same(await held, [])
  t.equal(registry.size, 0)
})

t.test('registry: the limit is checked synchronously', async (t) => {
  const registry = new ListenerRegistry({ clock: new ManualClock(), maxListeners: 1 })
  void registry.hold([A], 1000)
  throwsGrace(t, () => registry.hold([B], 1000), 'TOO_MANY_LISTENERS', /holds 1 listeners/)
  registry.releaseAll()
  t.equal(registry.size, 0)
})
