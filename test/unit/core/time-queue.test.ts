// The time queue the prober and the simulator schedule with: earliest first, equal times in the
// order they were pushed (the simulator's determinism depends on it).

import t from 'tap'
import { TimeQueue } from '../../../src/core/time-queue.js'

t.test('pops in time order, ties in push order', async (t) => {
  const q = new TimeQueue<string>()
  const times = [5, 1, 3, 1, 5, 0, 3, 1]
  times.forEach((time, i) => q.push(time, `${time}:${i}`))
  t.equal(q.size, times.length)
  const out: string[] = []
  for (let v = q.pop(); v !== undefined; v = q.pop()) out.push(v)
  t.same(out, ['0:5', '1:1', '1:3', '1:7', '3:2', '3:6', '5:0', '5:4'])
  t.equal(q.pop(), undefined)
})

t.test('popDue takes only what is due; clear empties', async (t) => {
  const q = new TimeQueue<number>()
  for (let i = 0; i < 100; i++) q.push((i * 37) % 100, i)
  let last = -1
  let taken = 0
  for (let v = q.popDue(49); v !== undefined; v = q.popDue(49)) {
    const time = (v * 37) % 100
    t.ok(time >= last && time <= 49, `due time ${time} in order`)
    last = time
    taken++
  }
  t.equal(taken, 50)
  t.equal(q.size, 50)
  q.clear()
  t.equal(q.size, 0)
  t.equal(q.popDue(Infinity), undefined)
})
