// Scenario tests of the Raft core, named after the sections of the Raft paper (Ongaro and
// Ousterhout, extended version) and Ongaro's thesis they check, plus the known pitfalls.

import t, { type Test } from 'tap'
import { Raft, RaftError, applyChange } from '../../../src/cp/raft/raft.js'
import type { Entry, Message } from '../../../src/cp/raft/types.js'
import { RaftNet } from '../../helpers/raft-net.js'

const ABC = ['a', 'b', 'c']

function throwsReason(t: Test, fn: () => unknown, reason: string): void {
  try {
    fn()
    t.fail(`expected a RaftError ${reason}`)
  } catch (err) {
    t.equal((err as RaftError).reason, reason)
  }
}

/** Ticks everyone until a leader other than `old` is elected. */
function electOther(net: RaftNet, old: string): string {
  for (let i = 0; i < 300; i++) {
    net.tick()
    const fresh = net.leaders().find((id) => id !== old)
    if (fresh) return fresh
  }
  throw new Error('no new leader')
}

t.test('5.2 leader election: one leader, elected by a majority, in a new term', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  t.equal(net.leaders().length, 1)
  const term = net.node(leader).raft.softState().term
  t.ok(term >= 1)
  for (const id of ABC) t.equal(net.node(id).raft.softState().leader, leader, `${id} follows the leader`)
  // Quiet heartbeats keep the leader; no new elections.
  net.tick(undefined, 100)
  t.same(net.leaders(), [leader])
  t.equal(net.node(leader).raft.softState().term, term)
})

t.test('5.2 a vote is persisted before it is sent', async (t) => {
  const net = new RaftNet(ABC)
  net.elect()
  for (const id of ABC) {
    for (const rd of net.node(id).readys) {
      for (const m of rd.messages) {
        if (m.type !== 'voteResp' || !m.granted) continue
        // The same Ready carries the vote in its hard state, which the driver writes first.
        t.equal(rd.hardState?.vote, m.to, `${id}'s grant to ${m.to} is in the hard state it persists first`)
        t.equal(rd.hardState?.term, m.term)
      }
    }
  }
})

t.test('5.2 a node restarted after voting does not vote twice in the term', async (t) => {
  const net = new RaftNet(ABC)
  // a campaigns; b grants; then b crashes and restarts from disk.
  net.filter = (m) => !(m.type === 'voteResp' && m.to === 'a') // a never hears, so it stays candidate
  net.campaign('a', 30)
  const vote = net.node('b').disk.hardState.vote
  t.equal(vote, 'a', 'b voted for a and persisted it')
  net.crash('b')
  net.restart('b')
  const term = net.node('b').raft.softState().term
  net.filter = null
  // c campaigns in the same term (forced by stepping a vote request directly).
  net.node('b').raft.step({ type: 'vote', from: 'c', to: 'b', term, lastIndex: 99, lastTerm: 99, transfer: true })
  const rd = net.node('b').raft.ready()
  const answer = rd.messages.find((m) => m.type === 'voteResp')
  t.equal(answer && 'granted' in answer && answer.granted, false, 'the persisted vote for a stands')
})

t.test('5.3 log replication: every node applies the same entries in the same order', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  for (let i = 0; i < 20; i++) net.propose(leader, `cmd-${i}`)
  net.tick(undefined, 3)
  const expected = Array.from({ length: 20 }, (_, i) => `cmd-${i}`)
  for (const id of ABC) t.same(net.appliedData(id), expected, `${id} applied all 20 in order`)
})

t.test('5.3 a follower with a conflicting suffix is repaired, skipping a term per round trip', async (t) => {
  const net = new RaftNet(ABC)
  const first = net.elect()
  const [x, y] = ABC.filter((id) => id !== first) as [string, string]
  net.propose(first, 'committed-1')
  // The old leader, cut off, takes proposals that can never commit.
  net.isolate(first)
  for (let i = 0; i < 30; i++) net.node(first).raft.propose([`lost-${i}`])
  net.pump()
  const second = electOther(net, first)
  for (let i = 0; i < 5; i++) net.propose(second, `new-${i}`)
  net.heal()
  net.tick(undefined, 20)
  t.same(net.leaders(), [second], 'the old leader rejoined as a follower')
  for (const id of [first, x, y]) {
    t.same(net.appliedData(id), ['committed-1', 'new-0', 'new-1', 'new-2', 'new-3', 'new-4'], `${id} holds the new leader's log`)
    t.notOk(net.node(id).disk.entries.some((e) => e.data.startsWith('lost-')), `${id} has no lost entry on disk`)
  }
  const rejections = net.delivered.filter((m) => m.type === 'appendResp' && !m.success && m.from === first && m.index > 0)
  t.ok(rejections.length <= 3, `30 conflicting entries were repaired in ${rejections.length} rejections`)
})

t.test('5.4.1 a candidate with a stale log is not elected', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  const stale = ABC.find((id) => id !== leader)!
  net.isolate(stale)
  net.propose(leader, 'x')
  net.heal()
  // The stale node campaigns at a higher term: the others must refuse (their logs are longer).
  const r = net.node(stale).raft
  const term = net.node(leader).raft.softState().term + 5
  for (const other of ABC.filter((id) => id !== stale)) {
    net.node(other).raft.step({ type: 'vote', from: stale, to: other, term, lastIndex: r.log.lastIndex(), lastTerm: r.log.lastTerm(), transfer: true })
  }
  const answers = ABC.filter((id) => id !== stale).flatMap((id) => net.node(id).raft.ready().messages)
  t.ok(answers.every((m) => m.type !== 'voteResp' || !m.granted), 'no vote for a log missing a committed entry')
})

t.test('5.4.2 a leader commits entries of earlier terms only by committing one of its own', async (t) => {
  // a restarts as a candidate holding two entries of term 1 that were never committed.
  const entries: Entry[] = [
    { index: 1, term: 1, type: 'normal', data: 'old-1' },
    { index: 2, term: 1, type: 'normal', data: 'old-2' },
  ]
  const a = new Raft({ id: 'a', random: () => 0, electionTicks: 10 }, { hardState: { term: 1, vote: 'a', commit: 0 }, snapshot: null, entries, bootstrap: { voters: ABC, learners: [] } })
  for (let i = 0; i < 20 && a.softState().role !== 'candidate'; i++) a.tick()
  // PreVote, then the vote: grant both from b.
  a.step({ type: 'preVoteResp', from: 'b', to: 'a', term: 2, granted: true })
  a.step({ type: 'voteResp', from: 'b', to: 'a', term: 2, granted: true })
  t.equal(a.softState().role, 'leader')
  t.equal(a.softState().term, 2)
  const rd = a.ready()
  a.advance(rd) // a's own log (with the term-2 no-op at index 3) is now on disk
  // b holds the old entries (a quorum: a and b), but not the no-op yet.
  a.step({ type: 'appendResp', from: 'b', to: 'a', term: 2, success: true, index: 2, hintIndex: 0, hintTerm: 0 })
  t.equal(a.status().commitIndex, 0, 'index 2 (term 1) is on a quorum but is not committed by counting')
  a.step({ type: 'appendResp', from: 'b', to: 'a', term: 2, success: true, index: 3, hintIndex: 0, hintTerm: 0 })
  t.equal(a.status().commitIndex, 3, 'the term-2 entry commits, and the term-1 entries with it')
})

t.test('6 membership: a learner joins, catches up, is promoted; a node is removed; one change at a time', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  for (let i = 0; i < 10; i++) net.propose(leader, `before-${i}`)
  const d = net.add('d', { voters: [], learners: [] })
  t.equal(d.raft.softState().role, 'follower')
  net.node(leader).raft.proposeConfigChange({ op: 'addLearner', id: 'd' })
  // One change at a time: the next waits for this one to commit.
  throwsReason(t, () => net.node(leader).raft.proposeConfigChange({ op: 'promote', id: 'd' }), 'configPending')
  net.pump()
  net.tick(undefined, 5)
  t.equal(d.raft.softState().role, 'learner')
  t.same(net.appliedData('d').slice(0, 10), Array.from({ length: 10 }, (_, i) => `before-${i}`), 'the learner received the log')
  // A learner never campaigns, however long it waits.
  net.isolate('d')
  net.tick(['d'], 100)
  t.equal(d.raft.softState().role, 'learner')
  net.heal()
  net.tick(undefined, 3)
  t.same(net.leaders(), [leader], 'the learner disturbed nobody')

  net.node(leader).raft.proposeConfigChange({ op: 'promote', id: 'd' })
  net.pump()
  net.tick(undefined, 3)
  t.same(net.node(leader).raft.status().membership, { voters: ['a', 'b', 'c', 'd'], learners: [] })
  t.equal(d.raft.softState().role, 'follower')

  const removed = ABC.find((id) => id !== leader)!
  net.node(leader).raft.proposeConfigChange({ op: 'remove', id: removed })
  net.pump()
  net.tick(undefined, 3)
  t.notOk(net.node(leader).raft.status().membership.voters.includes(removed))
  // The remaining three still commit with the removed node gone.
  net.crash(removed)
  net.propose(leader, 'after-removal')
  net.tick(undefined, 3)
  t.ok(net.appliedData('d').includes('after-removal'))
  throwsReason(t, () => net.node(leader).raft.proposeConfigChange({ op: 'promote', id: 'zz' }), 'invalidChange')
})

t.test('6 membership carries the peer addresses of added nodes, and drops those of removed ones', async (t) => {
  const first = { voters: ['a', 'b', 'c'], learners: [] }
  const added = applyChange(first, { op: 'addLearner', id: 'd', address: '10.0.0.4:9848' })
  t.same(added, { voters: ['a', 'b', 'c'], learners: ['d'], addresses: { d: '10.0.0.4:9848' } })
  const promoted = applyChange(added, { op: 'promote', id: 'd' })
  t.same(promoted, { voters: ['a', 'b', 'c', 'd'], learners: [], addresses: { d: '10.0.0.4:9848' } }, 'promotion keeps the address')
  const withE = applyChange(promoted, { op: 'addLearner', id: 'e', address: '10.0.0.5:9848' })
  t.same(applyChange(withE, { op: 'remove', id: 'd' }), { voters: ['a', 'b', 'c'], learners: ['e'], addresses: { e: '10.0.0.5:9848' } })
  t.same(applyChange(promoted, { op: 'remove', id: 'd' }), { voters: ['a', 'b', 'c'], learners: [] }, 'no empty address map is left behind')
  t.same(added.addresses, { d: '10.0.0.4:9848' }, 'changes never modify the membership they start from')
  t.same(applyChange(first, { op: 'remove', id: 'a' }), { voters: ['b', 'c'], learners: [] }, 'members of the first configuration have no address in it')
})

t.test('6 (Ongaro 2015) no membership change before the leader commits an entry of its term', async (t) => {
  const a = new Raft({ id: 'a', random: () => 0 }, { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [], bootstrap: { voters: ABC, learners: [] } })
  for (let i = 0; i < 30 && a.softState().role !== 'candidate'; i++) a.tick()
  a.step({ type: 'preVoteResp', from: 'b', to: 'a', term: 1, granted: true })
  a.step({ type: 'voteResp', from: 'b', to: 'a', term: 1, granted: true })
  t.equal(a.softState().role, 'leader')
  throwsReason(t, () => a.proposeConfigChange({ op: 'addLearner', id: 'd' }), 'configPending')
  a.advance(a.ready())
  a.step({ type: 'appendResp', from: 'b', to: 'a', term: 1, success: true, index: 1, hintIndex: 0, hintTerm: 0 })
  t.doesNotThrow(() => a.proposeConfigChange({ op: 'addLearner', id: 'd' }))
})

t.test('7 log compaction: a follower too far behind receives the snapshot and catches up', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  const lagging = ABC.find((id) => id !== leader)!
  net.isolate(lagging)
  for (let i = 0; i < 50; i++) net.propose(leader, `e-${i}`)
  net.tick(ABC.filter((id) => id !== lagging), 2)
  const lr = net.node(leader).raft
  const index = lr.status().appliedIndex
  const meta = { index, term: lr.log.term(index)!, membership: lr.membershipAt(index) }
  lr.compact(meta)
  t.equal(lr.log.firstIndex(), index + 1, 'the leader dropped the entries the snapshot covers')
  net.heal()
  // The driver streams the snapshot's data; here it arrives with the message.
  net.tick(undefined, 3)
  const snapshotSent = net.delivered.some((m) => m.type === 'snapshot' && m.to === lagging)
  t.ok(snapshotSent, 'the leader sent a snapshot')
  lr.reportSnapshot(lagging, true)
  net.tick(undefined, 5)
  const ln = net.node(lagging)
  t.equal(ln.disk.snapshot?.index, index, 'the follower installed the snapshot')
  t.equal(ln.raft.status().commitIndex, lr.status().commitIndex, 'and caught up')
  net.propose(leader, 'after-snapshot')
  net.tick(undefined, 2)
  t.ok(net.appliedData(lagging).includes('after-snapshot'))
})

t.test('7 a restarted node recovers from snapshot plus log', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  for (let i = 0; i < 10; i++) net.propose(leader, `e-${i}`)
  net.tick(undefined, 2)
  const follower = ABC.find((id) => id !== leader)!
  const fr = net.node(follower).raft
  const index = fr.status().appliedIndex - 3
  const meta = { index, term: fr.log.term(index)!, membership: fr.membershipAt(index) }
  fr.compact(meta)
  const n = net.node(follower)
  n.disk.snapshot = meta
  n.disk.entries = n.disk.entries.filter((e) => e.index > index)
  net.crash(follower)
  net.restart(follower)
  net.tick(undefined, 3)
  t.equal(net.node(follower).raft.status().commitIndex, net.node(leader).raft.status().commitIndex)
  // Entries 1 (the no-op) and 2..11 (e-0..e-9); the snapshot covers up to 8, the log replays 9..11.
  t.same(net.node(follower).applied.filter((e) => e.index > index).map((e) => e.data), ['e-7', 'e-8', 'e-9'])
})

t.test('pitfall: a partitioned node that rejoins does not disrupt the leader (PreVote, CheckQuorum)', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  const term = net.node(leader).raft.softState().term
  const loner = ABC.find((id) => id !== leader)!
  net.isolate(loner)
  net.tick(undefined, 200) // the loner times out again and again
  t.equal(net.node(loner).raft.softState().term, term, 'PreVote kept the loner from raising its term')
  net.heal()
  net.tick(undefined, 20)
  t.same(net.leaders(), [leader], 'the leader stayed')
  t.equal(net.node(leader).raft.softState().term, term, 'and so did the term')
})

t.test('pitfall: a stale leader serves no reads, and steps down on its own', async (t) => {
  const net = new RaftNet(ABC)
  const old = net.elect()
  net.propose(old, 'x')
  net.isolate(old)
  net.node(old).raft.readIndex(1)
  net.pump()
  t.same(net.node(old).readStates, [], 'no quorum confirmed it: no read state')
  const fresh = electOther(net, old)
  net.tick(undefined, 25) // more than an election timeout: CheckQuorum has run at the old leader
  t.same(net.node(old).readStates, [], 'still no read state at the old leader')
  t.not(net.node(old).raft.softState().role, 'leader', 'CheckQuorum: the old leader stepped down')
  t.throws(() => net.node(old).raft.readIndex(2), RaftError)
  // Reads at the new leader are served once a quorum confirms it.
  net.node(fresh!).raft.readIndex(3)
  net.pump()
  t.equal(net.node(fresh!).readStates.length, 1)
  t.ok(net.node(fresh!).readStates[0]!.index >= 2, 'at or after the committed write')
})

t.test('3.10 leadership transfer to a caught-up voter', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  net.propose(leader, 'x')
  const target = ABC.find((id) => id !== leader)!
  net.node(leader).raft.transferLeadership(target)
  net.pump()
  net.tick(undefined, 2)
  t.same(net.leaders(), [target])
  throwsReason(t, () => net.node(leader).raft.propose(['y']), 'notLeader')
  net.propose(target, 'y')
  net.tick(undefined, 2)
  for (const id of ABC) t.same(net.appliedData(id), ['x', 'y'])
})

t.test('a follower refuses proposals and names the leader', async (t) => {
  const net = new RaftNet(ABC)
  const leader = net.elect()
  const follower = ABC.find((id) => id !== leader)!
  try {
    net.node(follower).raft.propose(['x'])
    t.fail('proposal accepted by a follower')
  } catch (err) {
    t.equal((err as RaftError).reason, 'notLeader')
    t.equal((err as RaftError).leader, leader)
  }
})

t.test('pipelining: appends in flight to one follower are bounded', async (t) => {
  const net = new RaftNet(ABC, { maxInflight: 4, maxEntriesPerAppend: 1 })
  const leader = net.elect()
  const slow = ABC.find((id) => id !== leader)!
  // Hold every append response from the slow follower: the leader must stop at 4 in flight.
  const held: Message[] = []
  net.filter = (m) => {
    if (m.type === 'appendResp' && m.from === slow) {
      held.push(m)
      return false
    }
    return true
  }
  for (let i = 0; i < 20; i++) net.propose(leader, `e-${i}`)
  const appendsToSlow = net.delivered.filter((m) => m.type === 'append' && m.to === slow && m.entries.length > 0).length
  t.ok(appendsToSlow <= 5, `${appendsToSlow} appends went out before any answer`)
  net.filter = null
  for (const m of held) net.node(leader).raft.step(m)
  net.pump()
  net.tick(undefined, 5)
  t.equal(net.appliedData(slow).length, 20, 'the slow follower caught up')
})
