// Core bugs the simulator found, pinned as small hand-driven scenarios on the production core, so
// that they stay covered however the simulator's random runs change.

import t from 'tap'
import { Raft, type RaftOptions } from '../../src/cp/raft/raft.js'
import type { Message, NodeId } from '../../src/cp/raft/types.js'

/** Nodes whose Readys are "persisted" at once, and a network the test can drop messages from. */
function cluster(ids: NodeId[], opts: Partial<RaftOptions> = {}) {
  const nodes = new Map<NodeId, Raft>()
  for (const id of ids) {
    nodes.set(
      id,
      new Raft(
        { id, random: () => 0, preVote: false, ...opts },
        { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [], bootstrap: { voters: ids, learners: [] } },
      ),
    )
  }
  const node = (id: NodeId): Raft => nodes.get(id)!
  /** Runs every node's Ready loop and delivers messages until the cluster is quiet. */
  const flush = (drop: (m: Message) => boolean = () => false): void => {
    for (let round = 0; round < 100; round++) {
      const msgs: Message[] = []
      for (const r of nodes.values()) {
        while (r.hasReady()) {
          const rd = r.ready()
          msgs.push(...rd.messages)
          r.advance(rd)
        }
      }
      if (msgs.length === 0) return
      for (const m of msgs) if (!drop(m)) node(m.to).step(m)
    }
    throw new Error('the cluster did not settle')
  }
  const elect = (id: NodeId): void => {
    for (let i = 0; i < 10 && node(id).softState().role !== 'candidate'; i++) node(id).tick()
    flush()
    if (node(id).softState().role !== 'leader') throw new Error(`${id} did not win`)
  }
  return { node, flush, elect }
}

t.test('5.3 a leader that steps down before ready() sends no appends (found by the simulator)', async (t) => {
  const c = cluster(['n1', 'n2', 'n3'])
  c.elect('n1')
  const n1 = c.node('n1')
  const term = n1.softState().term
  n1.propose(['x'])
  // Before ready() hands the proposal out, a leader of a later term is heard from.
  n1.step({ type: 'heartbeat', from: 'n2', to: 'n1', term: term + 1, commit: 0, context: 0 })
  t.equal(n1.softState().role, 'follower')
  const rd = n1.ready()
  const appends = rd.messages.filter((m) => m.type === 'append')
  t.same(appends, [], 'no appends from a node that no longer leads (they would carry its new term and a stale log)')
})

t.test('5.3 a follower whose window of appends was all lost catches up (found by the simulator)', async (t) => {
  const c = cluster(['n1', 'n2', 'n3'], { maxInflight: 1 })
  c.elect('n1')
  const n1 = c.node('n1')
  const n2 = c.node('n2')
  n1.propose(['x'])
  // The one append in n2's window is lost; n3 gets it, so the entry commits.
  c.flush((m) => m.type === 'append' && m.to === 'n2' && m.entries.length > 0)
  t.ok(n2.log.lastIndex() < n1.log.lastIndex(), 'n2 is behind')
  for (let i = 0; i < 5; i++) {
    n1.tick() // heartbeats; the answers must get the follower going again
    c.flush()
  }
  t.equal(n2.log.lastIndex(), n1.log.lastIndex(), 'n2 has the whole log')
  t.equal(n2.log.committed, n1.log.committed, 'and knows it is committed')
})
