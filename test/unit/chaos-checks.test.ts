// The chaos harness's own logic, without processes: the schedule and the AP checker.

import t from 'tap'
import type { Ack, ApClient, ViewSample } from '../chaos/ap-workload.js'
import { checkAp, Impairments, RECOVERY_ALLOWANCE_MS, viewsAgree } from '../chaos/checks.js'
import { FAULT_KINDS, parseFaults, planFaults } from '../chaos/schedule.js'

t.test('the schedule is a function of the seed and covers the time asked for', async (t) => {
  const a = planFaults(7, [...FAULT_KINDS], 600_000)
  t.same(planFaults(7, [...FAULT_KINDS], 600_000), a, 'same seed, same faults')
  t.not(JSON.stringify(planFaults(8, [...FAULT_KINDS], 600_000)), JSON.stringify(a), 'another seed, other faults')
  t.ok(a.reduce((s, f) => s + f.gapMs + f.holdMs, 0) >= 600_000)
  t.same(new Set(a.map((f) => f.kind)), new Set(FAULT_KINDS), 'ten minutes draws every kind')
  t.same(planFaults(7, [], 600_000), [])
  t.same(parseFaults('kill,pause'), ['kill', 'pause'])
  t.throws(() => parseFaults('kill,meteor'), /unknown fault "meteor"/)
})

const clients: ApClient[] = [{ id: 'c1', ip: '10.2.0.1' }]
const beats = (node: string, from: number, to: number): Ack[] => {
  const out: Ack[] = [{ client: 'c1', node, atMs: from, kind: 'register' }]
  for (let t = from + 1000; t <= to; t += 1000) out.push({ client: 'c1', node, atMs: t, kind: 'beat' })
  return out
}
const sample = (node: string, at: number, present: boolean): ViewSample => ({ node, startMs: at, endMs: at + 5, instances: new Map(present ? [['10.2.0.1', true]] : []) })

t.test('a live client missing from a sound node is an anomaly', async (t) => {
  const acks = beats('n1', 0, 60_000)
  const found = checkAp(clients, acks, [], [sample('n2', 40_000, false), sample('n2', 41_000, true)], new Impairments(), new Map([['c1', 0]]))
  t.equal(found.length, 1)
  t.equal(found[0]!.kind, 'missing')
  t.equal(found[0]!.node, 'n2')
})

t.test('an impaired node, a just-registered client, or a silent client is not held to it', async (t) => {
  const imp = new Impairments()
  imp.open('n2', 35_000)
  imp.close('n2', 39_000)
  const acks = beats('n1', 0, 60_000)
  t.same(checkAp(clients, acks, [], [sample('n2', 40_000, false)], imp, new Map([['c1', 0]])), [], 'within the recovery allowance')
  t.equal(checkAp(clients, acks, [], [sample('n2', 39_000 + RECOVERY_ALLOWANCE_MS + 1, false)], imp, new Map([['c1', 0]])).length, 1, 'after it')
  t.same(checkAp(clients, acks, [], [sample('n2', 1_000, false)], new Impairments(), new Map([['c1', 0]])), [], 'registered a moment ago')
  const silent = beats('n1', 0, 20_000)
  t.same(checkAp(clients, silent, [], [sample('n2', 45_000, false)], new Impairments(), new Map([['c1', 0]])), [], 'stopped beating at 20 s')
  const viaImpaired = new Impairments()
  viaImpaired.open('n1', 10_000)
  t.same(checkAp(clients, beats('n1', 0, 60_000), [], [sample('n2', 50_000, false)], viaImpaired, new Map([['c1', 0]])), [], 'its beats reached only an impaired node')
})

t.test('"not registered" for a live client is an anomaly', async (t) => {
  const found = checkAp(clients, beats('n1', 0, 60_000), [{ client: 'c1', node: 'n3', atMs: 30_000 }], [], new Impairments(), new Map([['c1', 0]]))
  t.equal(found.length, 1)
  t.equal(found[0]!.kind, 'lost')
})

t.test('views agree when every node lists every client with the same health', async (t) => {
  t.ok(viewsAgree([sample('n1', 0, true), sample('n2', 0, true)], clients))
  t.notOk(viewsAgree([sample('n1', 0, true), sample('n2', 0, false)], clients))
  t.notOk(viewsAgree([sample('n1', 0, false), sample('n2', 0, false)], clients), 'agreeing on nothing is not enough')
  t.notOk(viewsAgree([sample('n1', 0, true), { node: 'n2', startMs: 0, endMs: 1, instances: new Map([['10.2.0.1', false]]) }], clients))
})
