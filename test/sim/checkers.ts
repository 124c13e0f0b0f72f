// Raft's safety properties (Ongaro and Ousterhout, figure 3), checked by the simulator after every
// step of a run, over every live node's in-memory state, plus what each node applied and persisted:
//
// - Election Safety (5.2): at most one leader per term, over the whole run.
// - Log Matching (5.3): if two logs hold an entry with the same index and term, the logs are
//   identical up to it. Checked as an induction over a run-wide registry of every entry any log
//   ever held, keyed by (index, term): the same key must always carry the same command and follow
//   the same previous term. Two logs that agree at (i, t) then agree at i - 1, and so on down.
// - Leader Completeness (5.4): an entry committed in term t is in the log of every leader of a
//   later term, at the same index and term (or below its snapshot, which only covers committed
//   entries). "Committed in term t" is observed: a node whose commit index covers the entry while
//   it is in term t saw it committed by a leader of term t or earlier.
// - State Machine Safety (5.4.3): no two nodes apply different entries at an index; checked on
//   the command and on a fingerprint of the whole state after it, so a bad snapshot shows too.
// - Durability of the hard state (5.1, figure 2: "updated on stable storage before responding"):
//   a node's persisted term never goes back, nor does its commit index, and a vote once
//   persisted in a term is never changed; a granted vote or a successful append is only sent
//   after what it promises is on disk (or the node's disk has moved on to a later term); and
//   (in cluster.ts) an entry is applied only once it is on disk.
//
// Each check costs time in proportion to what changed: a log is walked from its end only back to
// the first entry object the previous check already saw.

import type { Raft } from '../../src/cp/raft/raft.js'
import type { Entry, HardState, Message, NodeId, SnapshotMeta } from '../../src/cp/raft/types.js'

export class SafetyViolation extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'SafetyViolation'
  }
}

/** What the checker reads of a simulated node. */
export interface CheckedNode {
  readonly id: NodeId
  readonly raft: Raft
}

/** What a node has on disk, for the checks on messages. */
export interface DiskView {
  readonly hardState: HardState
  readonly snapshotIndex: number
  readonly lastIndex: number
}

interface RegisteredEntry {
  readonly type: Entry['type']
  readonly data: string
  readonly prevTerm: number
  readonly node: NodeId
}

interface CommittedEntry {
  readonly term: number
  /** The lowest term in which some node saw this entry committed. */
  obsTerm: number
}

interface AppliedEntry {
  readonly term: number
  readonly data: string
  readonly state: string
  readonly node: NodeId
}

interface NodeCache {
  /** The entry objects this node's log held at the last check, by index. */
  entries: (Entry | undefined)[]
  commit: number
  snapshotIndex: number
}

export class InvariantChecker {
  private readonly leaders = new Map<number, NodeId>()
  private readonly registry = new Map<string, RegisteredEntry>()
  private readonly committed: (CommittedEntry | undefined)[] = []
  private readonly applied: (AppliedEntry | undefined)[] = []
  private readonly caches = new Map<NodeId, NodeCache>()
  private maxCommitted = 0

  /** `where` prefixes every violation with the simulated time and seed. */
  constructor(private readonly where: () => string) {}

  /** Terms that had a leader, for statistics. */
  leaderTerms(): number {
    return this.leaders.size
  }

  /** The highest index any node has seen committed. */
  highestCommitted(): number {
    return this.maxCommitted
  }

  private fail(message: string): never {
    throw new SafetyViolation(`${this.where()}: ${message}`)
  }

  /** A node restarted from disk: its in-memory state is new. */
  onRestart(id: NodeId): void {
    this.caches.delete(id)
  }

  /** After every simulation step, over the nodes that are up. */
  afterStep(nodes: readonly CheckedNode[]): void {
    const leaders: CheckedNode[] = []
    for (const n of nodes) {
      this.checkLog(n)
      if (n.raft.softState().role === 'leader') leaders.push(n)
    }
    for (const n of leaders) this.checkLeader(n)
    for (const n of nodes) this.checkCommit(n, leaders)
  }

  private cache(n: CheckedNode): NodeCache {
    let c = this.caches.get(n.id)
    if (!c) this.caches.set(n.id, (c = { entries: [], commit: 0, snapshotIndex: -1 }))
    return c
  }

  /** Log Matching, by induction over the registry of (index, term). */
  private checkLog(n: CheckedNode): void {
    const log = n.raft.log
    const c = this.cache(n)
    const first = log.firstIndex()
    const last = log.lastIndex()
    for (let i = last; i >= first; i--) {
      const e = log.entry(i)!
      if (c.entries[i] === e) break
      if (e.index !== i) this.fail(`${n.id}'s log holds entry ${e.index}/${e.term} at index ${i}`)
      const prevTerm = log.term(i - 1)!
      if (e.term < prevTerm) this.fail(`${n.id}'s log goes back in term at ${i}: ${prevTerm} then ${e.term}`)
      const key = `${i}/${e.term}`
      const seen = this.registry.get(key)
      if (!seen) this.registry.set(key, { type: e.type, data: e.data, prevTerm, node: n.id })
      else if (seen.type !== e.type || seen.data !== e.data || seen.prevTerm !== prevTerm) {
        this.fail(
          `Log Matching (5.3) violated at ${key}: ${n.id} holds ${e.type} ${JSON.stringify(e.data)} after term ${prevTerm}, ` +
            `${seen.node} held ${seen.type} ${JSON.stringify(seen.data)} after term ${seen.prevTerm}`,
        )
      }
      c.entries[i] = e
    }
    c.entries.length = last + 1
    const snapIndex = log.snapshotIndex()
    if (snapIndex !== c.snapshotIndex) {
      c.snapshotIndex = snapIndex
      const known = this.committed[snapIndex]
      if (snapIndex > 0 && known && known.term !== log.snapshotTerm()) {
        this.fail(`${n.id}'s snapshot ends at ${snapIndex}/${log.snapshotTerm()}, but ${snapIndex}/${known.term} was committed`)
      }
    }
  }

  /** Election Safety; and, the first time a leader is seen, Leader Completeness for all it must hold. */
  private checkLeader(n: CheckedNode): void {
    const term = n.raft.softState().term
    const prior = this.leaders.get(term)
    if (prior !== undefined && prior !== n.id) this.fail(`Election Safety (5.2) violated: ${prior} and ${n.id} both led term ${term}`)
    if (prior !== undefined) return
    this.leaders.set(term, n.id)
    for (let i = 1; i <= this.maxCommitted; i++) {
      const ce = this.committed[i]
      if (ce && ce.obsTerm < term) this.checkHolds(n, i, ce)
    }
  }

  private checkHolds(leader: CheckedNode, i: number, ce: CommittedEntry): void {
    const log = leader.raft.log
    if (i < log.snapshotIndex()) return
    const t = log.term(i)
    if (t !== ce.term) {
      const term = leader.raft.softState().term
      this.fail(
        `Leader Completeness (5.4) violated: ${i}/${ce.term} was committed in term ${ce.obsTerm}, but the leader of term ${term}, ${leader.id}, ` +
          `has ${t === undefined ? 'no entry' : `term ${t}`} there (${log.describe()})`,
      )
    }
  }

  private checkCommit(n: CheckedNode, leaders: readonly CheckedNode[]): void {
    const log = n.raft.log
    const c = this.cache(n)
    const commit = log.committed
    if (commit < c.commit) this.fail(`${n.id}'s commit index went back from ${c.commit} to ${commit} without a restart`)
    if (commit === c.commit) return
    const term = n.raft.softState().term
    for (let i = Math.max(c.commit + 1, log.snapshotIndex()); i <= commit; i++) {
      const t = log.term(i)
      if (t === undefined) continue
      const ce = this.committed[i]
      if (ce && ce.term !== t) this.fail(`two entries committed at index ${i}: term ${ce.term}, and term ${t} at ${n.id}`)
      if (ce) {
        if (term < ce.obsTerm) ce.obsTerm = term
        continue
      }
      const fresh: CommittedEntry = { term: t, obsTerm: term }
      this.committed[i] = fresh
      if (i > this.maxCommitted) this.maxCommitted = i
      for (const l of leaders) if (l.raft.softState().term > term) this.checkHolds(l, i, fresh)
    }
    c.commit = commit
  }

  /** State Machine Safety: `state` fingerprints the whole state machine after the entry. */
  onApply(id: NodeId, e: Entry, state: string): void {
    const prior = this.applied[e.index]
    if (!prior) {
      this.applied[e.index] = { term: e.term, data: e.data, state, node: id }
      const ce = this.committed[e.index]
      if (ce && ce.term !== e.term) this.fail(`${id} applied ${e.index}/${e.term} but ${e.index}/${ce.term} was committed`)
      return
    }
    if (prior.term !== e.term || prior.data !== e.data) {
      this.fail(`State Machine Safety (5.4.3) violated at ${e.index}: ${id} applied ${e.index}/${e.term} ${JSON.stringify(e.data)}, ${prior.node} applied ${e.index}/${prior.term} ${JSON.stringify(prior.data)}`)
    }
    if (prior.state !== state) this.fail(`state machines diverge after ${e.index}: ${id} has ${state}, ${prior.node} had ${prior.state}`)
  }

  /** A node replaced its state machine with a snapshot through meta.index. */
  onSnapshotInstalled(id: NodeId, meta: SnapshotMeta, state: string): void {
    const prior = this.applied[meta.index]
    if (!prior) return
    if (prior.term !== meta.term) this.fail(`${id} installed a snapshot through ${meta.index}/${meta.term}, but ${prior.node} applied ${meta.index}/${prior.term}`)
    if (prior.state !== state) this.fail(`${id} installed a snapshot through ${meta.index} holding ${state}, but ${prior.node} had ${prior.state} there`)
  }

  /** A node's hard state reached disk. */
  onPersist(id: NodeId, prev: HardState, next: HardState): void {
    if (next.term < prev.term) this.fail(`${id}'s persisted term went back from ${prev.term} to ${next.term}`)
    if (next.term === prev.term && prev.vote !== null && next.vote !== prev.vote) {
      this.fail(`${id} changed its persisted vote in term ${next.term} from ${prev.vote} to ${next.vote} (5.2: one vote per term)`)
    }
    if (next.commit < prev.commit) this.fail(`${id}'s persisted commit index went back from ${prev.commit} to ${next.commit}`)
  }

  /** A message leaves a node: what it promises must already be on that node's disk. */
  onSend(m: Message, disk: DiskView): void {
    if (m.type === 'voteResp' && m.granted) {
      // Either the vote is on disk, or the disk is in a later term already: a node in a later
      // term never votes in this one again, so the grant cannot be repeated for someone else.
      if (disk.hardState.term < m.term || (disk.hardState.term === m.term && disk.hardState.vote !== m.to)) {
        this.fail(`${m.from} granted its vote in term ${m.term} to ${m.to} before persisting it (disk: term ${disk.hardState.term}, vote ${disk.hardState.vote})`)
      }
    } else if (m.type === 'appendResp' && m.success && disk.hardState.term === m.term) {
      // Only within the term: an acknowledgement queued in term t and sent after the node moved
      // to a later term (whose leader truncated the entries before they reached disk) is stale
      // but harmless, since that later leader could only be elected because no majority held
      // the truncated entries, so the acknowledgements cannot add up to a false commit.
      if (Math.max(disk.lastIndex, disk.snapshotIndex) < m.index) {
        this.fail(`${m.from} acknowledged entries through ${m.index} to ${m.to}, but its disk ends at ${disk.lastIndex}`)
      }
    }
    if (m.term > disk.hardState.term && m.type !== 'preVote' && !(m.type === 'preVoteResp' && m.granted)) {
      this.fail(`${m.from} sent ${m.type} in term ${m.term} before persisting that term (disk: term ${disk.hardState.term})`)
    }
  }
}
