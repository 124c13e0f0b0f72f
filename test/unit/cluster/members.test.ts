// The member table (src/cluster/members.ts): the states UP, SUSPICIOUS and DOWN as functions of
// heartbeats heard, failed heartbeat calls, the connection, and time. Pure: every case drives the
// time by hand. Then the heartbeat's strict decoding (src/cluster/heartbeat.ts).

import t from 'tap'
import { decodeReport, encodeReport, MAX_HEARTBEAT_BYTES } from '../../../src/cluster/heartbeat.js'
import { type MemberReport, MemberTable, thresholdsFor } from '../../../src/cluster/members.js'

const P = 5_000
const T0 = 1_700_000_000_000

function report(id: string, over: Partial<MemberReport> = {}): MemberReport {
  return {
    id,
    clientAddress: '127.0.0.1:8848',
    peerAddress: '127.0.0.1:9848',
    role: 'follower',
    term: 3,
    leaderId: 'n1',
    commitIndex: 10,
    appliedIndex: 9,
    ready: true,
    distro: { loaded: true, clients: 4, queuedSyncs: 0 },
    ...over,
  }
}

/** A table on n1 tracking n2 and n3, both connected and heard from at T0. */
function upTable(): MemberTable {
  const m = new MemberTable('n1', thresholdsFor(P))
  m.setMembers(['n1', 'n2', 'n3'], T0)
  for (const id of ['n2', 'n3']) {
    m.connection(id, true)
    m.heard(id, report(id), T0)
  }
  return m
}

t.test('thresholds: SUSPICIOUS after one missed period (1.5 P), DOWN after three', async (t) => {
  t.same(thresholdsFor(5_000), { periodMs: 5_000, suspectAfterMs: 7_500, downAfterMs: 15_000, checkMs: 1_000 })
  t.same(thresholdsFor(1_000), { periodMs: 1_000, suspectAfterMs: 1_500, downAfterMs: 3_000, checkMs: 250 })
  t.same(thresholdsFor(100).checkMs, 25)
  for (const bad of [0, 99, 60_001, 1.5, NaN]) t.throws(() => thresholdsFor(bad), /heartbeat period/, `${bad} is refused`)
})

t.test('a member nobody has heard from is SUSPICIOUS, then DOWN after three periods', async (t) => {
  const m = new MemberTable('n1', thresholdsFor(P))
  m.setMembers(['n1', 'n2'], T0)
  t.same(m.members(), ['n2'], 'this node is not tracked: it is UP to itself')
  t.equal(m.state('n1', T0), 'UP')
  t.equal(m.state('n2', T0), 'SUSPICIOUS')
  m.connection('n2', true)
  t.equal(m.state('n2', T0 + 3 * P - 1), 'SUSPICIOUS', 'connected is not enough: it must be heard')
  t.equal(m.state('n2', T0 + 3 * P), 'DOWN')
  t.equal(m.state('nobody', T0), 'DOWN', 'an id that is not a member is DOWN')
  t.match(m.views(T0 + 3 * P)[0], { id: 'n2', state: 'DOWN', lastHeardAgoMs: null, report: null, reason: /not heard/ })
})

t.test('heard and connected: UP; silent: SUSPICIOUS after 1.5 P, DOWN at 3 P; UP again on the next heartbeat', async (t) => {
  const m = upTable()
  t.equal(m.state('n2', T0), 'UP')
  t.equal(m.state('n2', T0 + 7_500), 'UP', 'one period and a half of slack')
  t.equal(m.state('n2', T0 + 7_501), 'SUSPICIOUS')
  t.match(m.views(T0 + 7_501).find((v) => v.id === 'n2'), { state: 'SUSPICIOUS', lastHeardAgoMs: 7_501, reason: /no heartbeat for 7501 ms/ })
  t.equal(m.state('n2', T0 + 14_999), 'SUSPICIOUS')
  t.equal(m.state('n2', T0 + 15_000), 'DOWN')
  t.match(m.views(T0 + 15_000).find((v) => v.id === 'n2'), { state: 'DOWN', reason: /3 heartbeat periods/ })
  m.heard('n2', report('n2', { term: 4 }), T0 + 40_000)
  t.equal(m.state('n2', T0 + 40_000), 'UP', 'one heartbeat brings it back')
  t.equal(m.views(T0 + 40_000).find((v) => v.id === 'n2')!.report!.term, 4, 'with its latest report')
})

t.test('a dropped connection makes a member SUSPICIOUS at once; a failed call too, unless it was heard since', async (t) => {
  const m = upTable()
  m.connection('n2', false)
  t.equal(m.state('n2', T0 + 1), 'SUSPICIOUS', 'no waiting for a missed period')
  t.match(m.views(T0 + 1).find((v) => v.id === 'n2'), { reason: 'not connected' })
  t.equal(m.state('n2', T0 + 3 * P), 'DOWN', 'and DOWN three periods after it was last heard')
  m.connection('n2', true)
  m.heard('n2', report('n2'), T0 + 3 * P + 10)
  t.equal(m.state('n2', T0 + 3 * P + 10), 'UP')

  // A call sent at T0 + 100 that fails, with nothing heard since: SUSPICIOUS.
  m.failed('n3', 'TIMEOUT: no answer', T0 + 100)
  t.equal(m.state('n3', T0 + 100 + P), 'SUSPICIOUS')
  t.match(m.views(T0 + 200).find((v) => v.id === 'n3'), { reason: 'heartbeat failed: TIMEOUT: no answer' })
  m.heard('n3', report('n3'), T0 + 6_000)
  t.equal(m.state('n3', T0 + 6_000), 'UP', 'heard again: UP')
  // A call that failed while the member's own heartbeat arrived meanwhile: the call was lost, the member is fine.
  m.heard('n3', report('n3'), T0 + 8_000)
  m.failed('n3', 'TIMEOUT: no answer', T0 + 7_000)
  t.equal(m.state('n3', T0 + 12_000), 'UP')
  // An older failure reported late does not hide a newer one.
  m.failed('n3', 'UNREACHABLE', T0 + 9_000)
  m.failed('n3', 'TIMEOUT', T0 + 8_500)
  t.match(m.views(T0 + 9_000).find((v) => v.id === 'n3'), { state: 'SUSPICIOUS', reason: 'heartbeat failed: UNREACHABLE' })
})

t.test('transitions are reported once each', async (t) => {
  const m = new MemberTable('n1', thresholdsFor(P))
  m.setMembers(['n1', 'n2'], T0)
  t.same(m.transitions(T0), [], 'new members start SUSPICIOUS, silently')
  m.connection('n2', true)
  m.heard('n2', report('n2'), T0 + 10)
  t.same(m.transitions(T0 + 10), [{ id: 'n2', from: 'SUSPICIOUS', to: 'UP', reason: null }])
  t.same(m.transitions(T0 + 20), [])
  t.match(m.transitions(T0 + 10 + 7_501), [{ id: 'n2', from: 'UP', to: 'SUSPICIOUS' }])
  t.match(m.transitions(T0 + 10 + 15_000), [{ id: 'n2', from: 'SUSPICIOUS', to: 'DOWN' }])
  t.same(m.transitions(T0 + 10 + 20_000), [])
})

t.test('membership changes: new members are tracked, removed ones forgotten, the rest kept', async (t) => {
  const m = upTable()
  m.setMembers(['n1', 'n2', 'n4'], T0 + 100)
  t.same(m.members().sort(), ['n2', 'n4'])
  t.equal(m.state('n2', T0 + 100), 'UP', 'what was known of n2 stays')
  t.equal(m.state('n3', T0 + 100), 'DOWN', 'n3 is no member any more')
  t.equal(m.state('n4', T0 + 100), 'SUSPICIOUS')
  t.same(m.upMembers(T0 + 100), ['n2'])
  m.heard('n3', report('n3'), T0 + 200)
  t.notOk(m.has('n3'), 'a heartbeat from a non-member is not recorded')
  // Answers that arrive out of order never move the last heartbeat back.
  m.heard('n2', report('n2', { term: 9 }), T0 + 5_000)
  m.heard('n2', report('n2', { term: 8 }), T0 + 4_000)
  t.equal(m.views(T0 + 5_000).find((v) => v.id === 'n2')!.report!.term, 9)
})

t.test('heartbeats are due every period, and every second to a connected member that is not UP', async (t) => {
  const m = upTable()
  t.ok(m.heartbeatDue('n2', null, T0), 'never sent: due')
  t.notOk(m.heartbeatDue('n2', T0, T0 + P - 501))
  t.ok(m.heartbeatDue('n2', T0, T0 + P - 500), 'due at the check nearest the period (checks are 1 s apart)')
  m.connection('n3', false)
  t.notOk(m.heartbeatDue('n3', T0, T0 + 1_000), 'not connected: the period')
  m.connection('n3', true)
  m.failed('n3', 'REMOTE', T0 + 10)
  t.notOk(m.heartbeatDue('n3', T0 + 10, T0 + 999))
  t.ok(m.heartbeatDue('n3', T0 + 10, T0 + 1_010), 'coming back: probed a second after the last try')
  const fast = new MemberTable('n1', thresholdsFor(200))
  fast.setMembers(['n2'], T0)
  fast.connection('n2', true)
  t.notOk(fast.heartbeatDue('n2', T0, T0 + 174))
  t.ok(fast.heartbeatDue('n2', T0, T0 + 175), 'a short period is kept')
})

t.test('a heartbeat decodes only whole and well-formed, in the name of the peer that sent it', async (t) => {
  const r = report('n2')
  t.same(decodeReport(encodeReport(r), 'n2'), r, 'round trip')
  t.same(decodeReport(encodeReport({ ...r, clientAddress: null, peerAddress: null, leaderId: null, distro: null }), 'n2').distro, null)
  t.same(decodeReport(encodeReport({ ...r, clientAddress: '[::1]:8848' }), 'n2').clientAddress, '[::1]:8848')
  const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v))
  const bad: [string, Uint8Array][] = [
    ['not JSON', new TextEncoder().encode('{')],
    ['not an object', enc([1])],
    ['another id', encodeReport(report('n3'))],
    ['a bad role', enc({ ...r, role: 'king' })],
    ['a negative term', enc({ ...r, term: -1 })],
    ['a fractional index', enc({ ...r, commitIndex: 1.5 })],
    ['a string index', enc({ ...r, appliedIndex: '9' })],
    ['a missing field', enc({ ...r, ready: undefined })],
    ['a bad address', enc({ ...r, clientAddress: 'nowhere' })],
    ['a bad leader', enc({ ...r, leaderId: 'no spaces' })],
    ['a bad distro', enc({ ...r, distro: { loaded: true, clients: -1, queuedSyncs: 0 } })],
    ['too large', new Uint8Array(MAX_HEARTBEAT_BYTES + 1)],
  ]
  for (const [what, payload] of bad) {
    t.throws(() => decodeReport(payload, 'n2'), { code: 'INVALID_ARGUMENT', message: /malformed heartbeat/ }, what)
  }
})
