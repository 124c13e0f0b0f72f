// The long-poll bookkeeping shared by config listeners and naming watches: each held request is
// answered exactly once, by whichever comes first, and leaves nothing behind.

import t from 'tap'
import { ManualClock } from '../../../src/core/clock.js'
import { type Held, HeldRequests } from '../../../src/core/held-requests.js'

function setup() {
  const clock = new ManualClock()
  const held = new HeldRequests<Held<string>, string>(clock, () => 'nothing')
  const answers: string[] = []
  const make = (...keys: string[]): Held<string> => ({ keys, resolve: (a) => answers.push(a) })
  return { clock, held, answers, make }
}

t.test('an answer goes out once; the timeout that follows finds nothing to do', async (t) => {
  const { clock, held, answers, make } = setup()
  const h = make('a', 'b')
  held.hold(h, 1000)
  t.same([...(held.following('a') ?? [])], [h])
  t.equal(held.keyCount, 2)
  held.answer(h, 'changed')
  held.answer(h, 'again')
  clock.advance(5000)
  t.same(answers, ['changed'])
  t.equal(held.size, 0)
  t.equal(held.keyCount, 0)
  t.equal(held.isHeld(h), false)
})

t.test('time running out answers nothing() and clears the index', async (t) => {
  const { clock, held, answers, make } = setup()
  const h1 = make('a')
  const h2 = make('a')
  held.hold(h1, 1000)
  held.hold(h2, 3000)
  clock.advance(1000)
  t.same(answers, ['nothing'])
  t.same([...(held.following('a') ?? [])], [h2])
  clock.advance(2000)
  t.same(answers, ['nothing', 'nothing'])
  t.equal(held.keyCount, 0)
})

t.test('an abort answers nothing() and detaches its listener; releaseAll answers the rest', async (t) => {
  const { held, answers, make } = setup()
  const ac = new AbortController()
  const h1 = make('a')
  held.hold(h1, 1000, ac.signal)
  held.hold(make('b'), 1000)
  ac.abort()
  t.same(answers, ['nothing'])
  held.releaseAll()
  t.same(answers, ['nothing', 'nothing'])
  t.equal(held.size, 0)
  t.equal(held.keyCount, 0)
})

t.test('an answer before the abort removes the abort listener', async (t) => {
  const { held, answers, make } = setup()
  const ac = new AbortController()
  let added = 0
  let removed = 0
  const signal = ac.signal
  const add = signal.addEventListener.bind(signal)
  const remove = signal.removeEventListener.bind(signal)
  signal.addEventListener = ((...args: Parameters<typeof add>) => (added++, add(...args))) as typeof add
  signal.removeEventListener = ((...args: Parameters<typeof remove>) => (removed++, remove(...args))) as typeof remove
  const h = make('a')
  held.hold(h, 1000, signal)
  held.answer(h, 'changed')
  ac.abort()
  t.same(answers, ['changed'])
  t.equal(added, 1)
  t.equal(removed, 1)
})
