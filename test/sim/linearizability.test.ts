// The linearizability checker on small hand-made histories whose verdict is known, and on
// generated histories that are linearizable by construction (Herlihy and Wing, 1990).

import t from 'tap'
import { type HistoryOp, type KvInput, type Outcome, checkLinearizable } from './linearizability.js'
import { Random } from './random.js'

let nextId = 1
function op(client: number, input: KvInput, invoke: number, complete: number, outcome: Outcome = 'ok', output?: string | null | boolean): HistoryOp {
  return { id: nextId++, client, input, invoke, complete, outcome, output }
}
const put = (key: string, value: string): KvInput => ({ kind: 'put', key, value })
const get = (key: string): KvInput => ({ kind: 'get', key })
const cas = (key: string, expect: string | null, value: string): KvInput => ({ kind: 'cas', key, expect, value })

t.test('histories that must pass', async (t) => {
  const cases: [string, HistoryOp[]][] = [
    ['empty', []],
    ['a read of a key never written sees null', [op(1, get('x'), 0, 10, 'ok', null)]],
    ['sequential put then get', [op(1, put('x', 'a'), 0, 10), op(1, get('x'), 20, 30, 'ok', 'a')]],
    ['a get overlapping a put may see the old value', [op(1, put('x', 'a'), 0, 100), op(2, get('x'), 10, 20, 'ok', null)]],
    ['a get overlapping a put may see the new value', [op(1, put('x', 'a'), 0, 100), op(2, get('x'), 10, 20, 'ok', 'a')]],
    [
      'two overlapping puts, then reads agree on one order',
      [op(1, put('x', 'a'), 0, 50), op(2, put('x', 'b'), 10, 60), op(3, get('x'), 70, 80, 'ok', 'a'), op(3, get('x'), 90, 95, 'ok', 'a')],
    ],
    [
      'cas swaps once, and a second cas on the old value fails',
      [op(1, put('x', 'a'), 0, 10), op(1, cas('x', 'a', 'b'), 20, 30, 'ok', true), op(2, cas('x', 'a', 'c'), 40, 50, 'ok', false), op(2, get('x'), 60, 70, 'ok', 'b')],
    ],
    ['cas on an absent key expecting null', [op(1, cas('x', null, 'a'), 0, 10, 'ok', true), op(1, get('x'), 20, 30, 'ok', 'a')]],
    ['an unknown put may take effect after its client gave up', [op(1, put('x', 'a'), 0, 10, 'unknown'), op(2, get('x'), 500, 510, 'ok', 'a')]],
    ['an unknown put may never take effect', [op(1, put('x', 'a'), 0, 10, 'unknown'), op(2, get('x'), 500, 510, 'ok', null)]],
    [
      'an unknown cas that swapped',
      [op(1, put('x', 'a'), 0, 10), op(1, cas('x', 'a', 'b'), 20, 30, 'unknown'), op(2, get('x'), 40, 50, 'ok', 'b')],
    ],
    ['a failed put never happened', [op(1, put('x', 'a'), 0, 10, 'fail'), op(2, get('x'), 20, 30, 'ok', null)]],
    ['an unknown get constrains nothing', [op(1, put('x', 'a'), 0, 10), op(2, get('x'), 20, 30, 'unknown')]],
    ['keys are independent', [op(1, put('x', 'a'), 0, 10), op(2, put('y', 'b'), 20, 30), op(1, get('x'), 40, 50, 'ok', 'a'), op(2, get('y'), 40, 50, 'ok', 'b')]],
    ['touching intervals count as overlapping', [op(1, put('x', 'a'), 0, 10), op(2, get('x'), 10, 20, 'ok', null)]],
  ]
  for (const [name, history] of cases) {
    const r = checkLinearizable(history)
    t.ok(r.ok, `${name}${r.explanation ? `\n${r.explanation}` : ''}`)
  }
})

t.test('histories that must fail', async (t) => {
  const cases: [string, HistoryOp[]][] = [
    ['a stale read after a completed write', [op(1, put('x', 'a'), 0, 10), op(1, put('x', 'b'), 20, 30), op(2, get('x'), 40, 50, 'ok', 'a')]],
    ['a read of a value never written', [op(1, put('x', 'a'), 0, 10), op(2, get('x'), 20, 30, 'ok', 'z')]],
    ['a read of null after a completed write', [op(1, put('x', 'a'), 0, 10), op(2, get('x'), 20, 30, 'ok', null)]],
    [
      'a read goes back in time (new value, then old) while a put is in flight',
      [op(1, put('x', 'a'), 0, 100), op(2, get('x'), 10, 20, 'ok', 'a'), op(3, get('x'), 30, 40, 'ok', null)],
    ],
    [
      'two cas on the same value both swap',
      [op(1, put('x', 'a'), 0, 10), op(1, cas('x', 'a', 'b'), 20, 30, 'ok', true), op(2, cas('x', 'a', 'c'), 40, 50, 'ok', true)],
    ],
    ['a cas that should have swapped says it did not', [op(1, put('x', 'a'), 0, 10), op(1, cas('x', 'a', 'b'), 20, 30, 'ok', false)]],
    ['an unknown put cannot take effect before it is invoked', [op(1, get('x'), 0, 10, 'ok', 'a'), op(2, put('x', 'a'), 20, 30, 'unknown')]],
    ['a failed put never happened', [op(1, put('x', 'a'), 0, 10, 'fail'), op(2, get('x'), 20, 30, 'ok', 'a')]],
    [
      'an unknown cas cannot undo a later write',
      [op(1, put('x', 'a'), 0, 10), op(1, cas('x', 'a', 'b'), 20, 30, 'unknown'), op(2, get('x'), 40, 50, 'ok', 'b'), op(2, get('x'), 60, 70, 'ok', 'a')],
    ],
    [
      'writes seen in different orders by two readers',
      [
        op(1, put('x', 'a'), 0, 100),
        op(2, put('x', 'b'), 0, 100),
        op(3, get('x'), 110, 120, 'ok', 'a'),
        op(4, get('x'), 130, 140, 'ok', 'b'),
        op(3, get('x'), 150, 160, 'ok', 'a'),
      ],
    ],
  ]
  for (const [name, history] of cases) {
    const r = checkLinearizable(history)
    t.notOk(r.ok, name)
    t.notOk(r.inconclusive, `${name}: decided, not out of budget`)
    t.match(r.explanation ?? '', /not linearizable/, `${name}: explained`)
  }
})

t.test('the explanation names the key and the operations that do not fit', async (t) => {
  const r = checkLinearizable([op(1, put('k', 'a'), 0, 10), op(1, put('k', 'b'), 20, 30), op(2, get('k'), 40, 50, 'ok', 'a')])
  t.equal(r.key, 'k')
  t.match(r.explanation!, /get\(k\) -> "a"/)
})

/**
 * A history linearizable by construction: each op takes effect at a random instant inside its
 * interval, and its output is computed in the order of those instants. Some ops are then reported
 * unknown (their effect stays), and some never happen and are reported fail or unknown.
 */
function generate(rng: Random, clients: number, opsPerClient: number, keys: string[]): HistoryOp[] {
  interface Pending {
    op: { id: number; client: number; input: KvInput; invoke: number; complete: number; outcome: Outcome; output?: string | null | boolean }
    at: number
    happens: boolean
  }
  const all: Pending[] = []
  let id = 1
  for (let c = 0; c < clients; c++) {
    let time = rng.int(0, 20)
    for (let k = 0; k < opsPerClient; k++) {
      const invoke = time
      const complete = invoke + rng.int(2, 60)
      const key = rng.pick(keys)
      const r = rng.float()
      const input: KvInput = r < 0.4 ? get(key) : r < 0.8 ? put(key, `v${id}`) : cas(key, rng.chance(0.2) ? null : `v${rng.int(1, id)}`, `v${id}`)
      let outcome: Outcome = 'ok'
      let happens = true
      if (input.kind !== 'get' && rng.chance(0.1)) {
        outcome = rng.chance(0.5) ? 'unknown' : 'fail'
        happens = outcome === 'unknown' && rng.chance(0.5)
      }
      // An unknown op may take effect after its client gave up.
      const at = outcome === 'unknown' ? invoke + rng.int(1, 200) : rng.int(invoke + 1, complete - 1)
      all.push({ op: { id: id++, client: c, input, invoke: invoke * 10, complete: complete * 10 + 1, outcome }, at: at * 10 + 5, happens })
      time = complete + rng.int(0, 10)
    }
  }
  const state = new Map<string, string | null>()
  for (const p of [...all].sort((a, b) => a.at - b.at)) {
    if (!p.happens) continue
    const i = p.op.input
    const cur = state.get(i.key) ?? null
    if (i.kind === 'put') state.set(i.key, i.value)
    else if (i.kind === 'get') p.op.output = cur
    else {
      p.op.output = cur === i.expect
      if (cur === i.expect) state.set(i.key, i.value)
    }
  }
  return all.map((p) => p.op)
}

t.test('generated linearizable histories pass, and one corrupted read makes them fail', async (t) => {
  const rng = new Random(42)
  for (let round = 0; round < 40; round++) {
    const history = generate(rng, rng.int(2, 6), rng.int(5, 40), ['a', 'b', 'c'].slice(0, rng.int(1, 3)))
    const r = checkLinearizable(history)
    t.ok(r.ok, `round ${round}: ${r.explanation ?? ''}`)
    // A read that returns a value no one ever wrote cannot be linearized.
    const reads = history.filter((o) => o.input.kind === 'get' && o.outcome === 'ok')
    if (reads.length > 0) {
      const victim = rng.pick(reads)
      const corrupted = history.map((o) => (o === victim ? { ...o, output: 'never-written' } : o))
      t.notOk(checkLinearizable(corrupted).ok, `round ${round}: corrupted read of #${victim.id}`)
    }
  }
})

t.test('a long, highly concurrent history is checked quickly', async (t) => {
  const rng = new Random(7)
  const history = generate(rng, 8, 80, ['a'])
  const started = Date.now()
  const r = checkLinearizable(history)
  t.ok(r.ok, r.explanation ?? '')
  t.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms for ${history.length} operations on one key`)
})
