// The Raft core: a pure state machine in the style of etcd-io/raft. step(message) and tick()
// change state; ready() hands back what to persist, send and apply; advance() says it was done.
// It never reads a clock, draws its own randomness, awaits, or touches disk or network: the
// driver (cp/node) and the simulator (test/sim) feed it, so both run the same decisions.

import { assert } from '../../core/assert.js'
import { RaftLog } from './log.js'
import { Progress } from './progress.js'
import type { ConfigChange, Entry, HardState, Membership, Message, NodeId, ReadState, Ready, Role, SnapshotMeta, SoftState } from './types.js'

export interface RaftOptions {
  readonly id: NodeId
  /** Election timeout in ticks; each node draws its own from [electionTicks, 2 * electionTicks) (5.2). */
  readonly electionTicks?: number
  readonly heartbeatTicks?: number
  /** A random number in [0, 1): injected, so a seed reproduces every election. */
  readonly random: () => number
  /** Appends in flight to one follower at most (pipelining bound). */
  readonly maxInflight?: number
  readonly maxEntriesPerAppend?: number
  readonly maxBytesPerAppend?: number
  /** Reads waiting for the leader's first commit of its term, at most. */
  readonly maxPendingReads?: number
  readonly preVote?: boolean
  readonly checkQuorum?: boolean
}

/** What the driver loaded from disk. */
export interface RaftStart {
  readonly hardState: HardState
  readonly snapshot: SnapshotMeta | null
  /** The entries after the snapshot, in order. */
  readonly entries: readonly Entry[]
  /** The membership of a new cluster, used when neither the snapshot nor the log has one. */
  readonly bootstrap: Membership
}

export type RaftErrorReason = 'notLeader' | 'transferring' | 'configPending' | 'invalidChange' | 'tooManyReads'

/** A refusal the caller can act on: retry at the leader, or later. */
export class RaftError extends Error {
  constructor(
    readonly reason: RaftErrorReason,
    readonly leader: NodeId | null,
    message: string,
  ) {
    super(message)
    this.name = 'RaftError'
  }
}

interface PendingRead {
  readonly id: number
  readonly index: number
  readonly context: number
  readonly acks: Set<NodeId>
}

export class Raft {
  readonly id: NodeId
  private readonly electionTicks: number
  private readonly heartbeatTicks: number
  private readonly random: () => number
  private readonly maxInflight: number
  private readonly maxEntries: number
  private readonly maxBytes: number
  private readonly maxPendingReads: number
  private readonly preVote: boolean
  private readonly checkQuorum: boolean

  private term: number
  private vote: NodeId | null
  private role: Role = 'follower'
  /** Campaigning in the PreVote phase: votes are asked for term + 1 without taking it. */
  private preCandidate = false
  private leader: NodeId | null = null
  readonly log: RaftLog

  /** The membership in force: the latest config entry in the log, else the snapshot's. */
  private membership: Membership
  private baseMembership: Membership
  private configIndexes: number[] = []
  /** The latest config entry this leader appended; one change at a time (thesis 4.1). */
  private pendingConfIndex = 0

  private readonly progress = new Map<NodeId, Progress>()
  private readonly votes = new Map<NodeId, boolean>()
  private electionElapsed = 0
  private heartbeatElapsed = 0
  private randomizedElectionTimeout = 0
  private leadTransferee: NodeId | null = null
  private transferElapsed = 0

  private msgs: Message[] = []
  private readStates: ReadState[] = []
  private readQueue: PendingRead[] = []
  private readsBeforeCommit: number[] = []
  private readContext = 0
  /** A snapshot received from the leader, for the driver to install. */
  private pendingSnapshot: SnapshotMeta | null = null
  /** The latest snapshot, which is what a follower too far behind is sent. */
  private snapshotMeta: SnapshotMeta | null
  private persisted: HardState
  /** New entries wait for ready() to be sent, so that a burst of proposals shares appends. */
  private broadcastPending = false

  constructor(opts: RaftOptions, start: RaftStart) {
    this.id = opts.id
    this.electionTicks = opts.electionTicks ?? 10
    this.heartbeatTicks = opts.heartbeatTicks ?? 1
    this.random = opts.random
    this.maxInflight = opts.maxInflight ?? 64
    this.maxEntries = opts.maxEntriesPerAppend ?? 256
    this.maxBytes = opts.maxBytesPerAppend ?? 1024 * 1024
    this.maxPendingReads = opts.maxPendingReads ?? 4096
    this.preVote = opts.preVote ?? true
    this.checkQuorum = opts.checkQuorum ?? true
    assert(this.heartbeatTicks < this.electionTicks, 'heartbeats must come more often than election timeouts')

    const snap = start.snapshot
    this.log = new RaftLog(snap?.index ?? 0, snap?.term ?? 0, start.entries, start.hardState.commit)
    this.term = start.hardState.term
    this.vote = start.hardState.vote
    this.persisted = start.hardState
    this.snapshotMeta = snap
    this.baseMembership = snap?.membership ?? start.bootstrap
    this.membership = this.baseMembership
    for (const e of start.entries) if (e.type === 'config') this.configIndexes.push(e.index)
    this.refreshMembership()
    this.becomeFollower(this.term, null)
  }

  // ---- inputs -------------------------------------------------------------------------------

  /** One unit of logical time: elections and heartbeats are counted in ticks. */
  tick(): void {
    if (this.role === 'leader') this.tickLeader()
    else this.tickElection()
  }

  /** Appends commands; returns the index of the first. Throws RaftError where not leader. */
  propose(data: readonly string[]): number {
    this.checkLeader()
    if (this.leadTransferee !== null) throw new RaftError('transferring', this.leader, `leadership is moving to ${this.leadTransferee}`)
    const first = this.log.lastIndex() + 1
    this.appendEntries(data.map((d, i) => ({ index: first + i, term: this.term, type: 'normal', data: d })))
    return first
  }

  /**
   * One membership change. The leader takes it only when it has committed an entry of its own
   * term (Ongaro, raft-dev 2015: without this, a change can be lost across leaders) and every
   * earlier change is committed.
   */
  proposeConfigChange(change: ConfigChange): number {
    this.checkLeader()
    if (this.leadTransferee !== null) throw new RaftError('transferring', this.leader, 'leadership is moving')
    if (this.log.term(this.log.committed) !== this.term) {
      throw new RaftError('configPending', this.leader, 'the leader has not committed an entry of its term yet')
    }
    if (this.pendingConfIndex > this.log.committed) throw new RaftError('configPending', this.leader, 'a membership change is still in progress')
    const next = applyChange(this.membership, change)
    const index = this.log.lastIndex() + 1
    this.appendEntries([{ index, term: this.term, type: 'config', data: JSON.stringify(next) }])
    return index
  }

  /**
   * Starts an election now rather than at the next timeout: a single-voter cluster (standalone)
   * then leads at once, instead of after an election timeout.
   */
  campaignNow(): void {
    if (this.role !== 'leader' && this.promotable()) this.campaign(this.preVote)
  }

  /** A read point with no round trip, when this leader alone is the quorum; else null. */
  soleVoterReadIndex(): number | null {
    const alone = this.role === 'leader' && this.quorum() === 1 && this.membership.voters.includes(this.id)
    return alone && this.log.term(this.log.committed) === this.term ? this.log.committed : null
  }

  /** Moves leadership to a caught-up voter (thesis 3.10). */
  transferLeadership(to: NodeId): void {
    this.checkLeader()
    if (to === this.id) return
    if (!this.membership.voters.includes(to)) throw new RaftError('invalidChange', this.leader, `${to} is not a voter`)
    this.leadTransferee = to
    this.transferElapsed = 0
    const pr = this.progress.get(to)!
    if (pr.match === this.log.lastIndex()) this.send({ type: 'timeoutNow', from: this.id, to, term: this.term })
    else this.sendAppend(to)
  }

  /**
   * A linearizable read (thesis 6.4): once a quorum confirms this node still leads, ready() gives
   * ReadState{id, index}; state applied through index may serve the read.
   */
  readIndex(id: number): void {
    this.checkLeader()
    if (this.log.term(this.log.committed) !== this.term) {
      // The commit index is not known to be current before the first commit of the term.
      if (this.readsBeforeCommit.length >= this.maxPendingReads) throw new RaftError('tooManyReads', this.leader, 'too many reads waiting')
      this.readsBeforeCommit.push(id)
      return
    }
    if (this.quorum() === 1 && this.membership.voters.includes(this.id)) {
      this.readStates.push({ id, index: this.log.committed })
      return
    }
    if (this.readQueue.length >= this.maxPendingReads) throw new RaftError('tooManyReads', this.leader, 'too many reads waiting')
    const context = ++this.readContext
    this.readQueue.push({ id, index: this.log.committed, context, acks: new Set([this.id]) })
    for (const to of this.peers()) this.sendHeartbeat(to, context)
  }

  step(m: Message): void {
    if (m.term > this.term) {
      if (m.type === 'preVote' || m.type === 'vote') {
        // 6.2 and 9.6: a node that hears from a live leader ignores elections for the rest of
        // its election timeout, so a partitioned or flapping node cannot depose a healthy leader.
        // A vote after TimeoutNow is deliberate and passes.
        const transfer = m.type === 'vote' && m.transfer
        if (!transfer && this.inLease()) return
      }
      if (m.type === 'preVote' || (m.type === 'preVoteResp' && m.granted)) {
        // A PreVote is for a term nobody has taken yet: it changes no one's term.
      } else {
        const fromLeader = m.type === 'append' || m.type === 'heartbeat' || m.type === 'snapshot'
        this.becomeFollower(m.term, fromLeader ? m.from : null)
      }
    } else if (m.term < this.term) {
      if (m.type === 'append' || m.type === 'heartbeat') {
        // A deposed leader: tell it the term, so that it steps down (with PreVote, it would
        // otherwise never hear a higher term from us).
        this.send({ type: 'appendResp', from: this.id, to: m.from, term: this.term, success: false, index: 0, hintIndex: 0, hintTerm: 0 })
      } else if (m.type === 'preVote') {
        this.send({ type: 'preVoteResp', from: this.id, to: m.from, term: this.term, granted: false })
      }
      return
    }

    switch (m.type) {
      case 'preVote':
      case 'vote':
        return this.handleVoteRequest(m)
      case 'preVoteResp':
      case 'voteResp':
        return this.handleVoteResponse(m)
      case 'append':
        return this.handleAppend(m)
      case 'appendResp':
        return this.handleAppendResponse(m)
      case 'heartbeat':
        return this.handleHeartbeat(m)
      case 'heartbeatResp':
        return this.handleHeartbeatResponse(m)
      case 'snapshot':
        return this.handleSnapshot(m)
      case 'timeoutNow':
        if (this.promotable()) this.campaign(false, true)
        return
    }
  }

  /** The driver finished (or failed) streaming a snapshot to a follower. */
  reportSnapshot(to: NodeId, ok: boolean): void {
    const pr = this.progress.get(to)
    if (!pr || pr.state !== 'snapshot' || this.role !== 'leader') return
    if (!ok) pr.pendingSnapshot = 0
    pr.becomeProbe()
  }

  /** The driver could not reach a follower: stop pipelining to it until it answers again. */
  reportUnreachable(to: NodeId): void {
    const pr = this.progress.get(to)
    if (pr && pr.state === 'replicate') pr.becomeProbe()
  }

  /** The driver saved a snapshot through meta.index (<= applied): forget the entries it covers. */
  compact(meta: SnapshotMeta): void {
    if (meta.index <= this.log.snapshotIndex()) return
    assert(this.log.term(meta.index) === meta.term, `snapshot ${meta.index}/${meta.term} does not match the log`)
    this.log.compact(meta.index)
    this.snapshotMeta = meta
    this.baseMembership = meta.membership
    this.configIndexes = this.configIndexes.filter((i) => i > meta.index)
  }

  /** The membership as of index (for the snapshot that covers it). */
  membershipAt(index: number): Membership {
    let found = this.baseMembership
    for (const i of this.configIndexes) {
      if (i > index) break
      found = JSON.parse(this.log.entry(i)!.data) as Membership
    }
    return found
  }

  // ---- the hand-off -------------------------------------------------------------------------

  hasReady(): boolean {
    return (
      this.broadcastPending ||
      this.msgs.length > 0 ||
      this.readStates.length > 0 ||
      this.pendingSnapshot !== null ||
      this.log.stable < this.log.lastIndex() ||
      Math.min(this.log.committed, this.log.lastIndex()) > this.log.applied ||
      this.hardStateChanged()
    )
  }

  ready(): Ready {
    if (this.broadcastPending) {
      this.broadcastPending = false
      // Only a leader sends appends (5.3). A leader that proposed and then stepped down before
      // this ready() (CheckQuorum, a higher term) would otherwise send appends from stale
      // progress, in whatever term it is now in, from a log that may since have been
      // overwritten. Found by the simulator (test/sim); test/sim/regressions.test.ts pins it.
      if (this.role === 'leader') this.broadcastAppend()
    }
    const rd: Ready = {
      hardState: this.hardStateChanged() ? this.hardState() : null,
      entries: this.log.unstable(),
      snapshot: this.pendingSnapshot,
      messages: this.msgs,
      committed: this.log.nextCommitted(),
      readStates: this.readStates,
    }
    this.msgs = []
    this.readStates = []
    return rd
  }

  advance(rd: Ready): void {
    if (rd.hardState) this.persisted = rd.hardState
    if (rd.snapshot && this.pendingSnapshot === rd.snapshot) this.pendingSnapshot = null
    const lastEntry = rd.entries[rd.entries.length - 1]
    if (lastEntry) {
      this.log.stableTo(lastEntry.index, lastEntry.term)
      // The leader's own log counts toward a quorum only once it is on disk.
      if (this.role === 'leader' && this.maybeCommit()) this.broadcastPending = true
    }
    const lastApplied = rd.committed[rd.committed.length - 1]
    if (lastApplied) {
      this.log.appliedTo(lastApplied.index)
      if (this.role === 'leader' && !this.membership.voters.includes(this.id) && this.pendingConfIndex <= lastApplied.index) {
        // 4.2.2: a leader removed from the cluster steps down once the change is committed.
        this.becomeFollower(this.term, null)
      }
    }
  }

  softState(): SoftState {
    return { role: this.role, leader: this.leader, term: this.term }
  }

  /** The leader of the current term as far as this node knows, without softState()'s object. */
  leaderId(): NodeId | null {
    return this.leader
  }

  /** The membership in force: the latest configuration entry in the log, committed or not. */
  currentMembership(): Membership {
    return this.membership
  }

  /**
   * The index of the latest configuration entry while it is not committed, else 0. Until it
   * commits, the members of the configuration before it still take part: a member it removes
   * (the leader itself, thesis 4.2.2) replicates the change and needs the others' answers to
   * commit it. membershipAt(index - 1) is that configuration.
   */
  uncommittedConfigIndex(): number {
    const latest = this.configIndexes[this.configIndexes.length - 1]
    return latest !== undefined && latest > this.log.committed ? latest : 0
  }

  status() {
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.leader,
      commitIndex: this.log.committed,
      appliedIndex: this.log.applied,
      lastIndex: this.log.lastIndex(),
      snapshotIndex: this.log.snapshotIndex(),
      membership: this.membership,
      progress: [...this.progress.values()].map((p) => ({ id: p.id, match: p.match, next: p.next, state: p.state })),
      leadTransferee: this.leadTransferee,
    }
  }

  // ---- roles --------------------------------------------------------------------------------

  private becomeFollower(term: number, leader: NodeId | null): void {
    if (term > this.term) {
      this.term = term
      this.vote = null
    }
    this.role = this.membership.learners.includes(this.id) ? 'learner' : 'follower'
    this.preCandidate = false
    this.leader = leader
    this.leadTransferee = null
    this.readQueue = []
    this.readsBeforeCommit = []
    this.resetTimers()
  }

  private campaign(pre: boolean, transfer = false): void {
    this.votes.clear()
    if (pre) {
      this.preCandidate = true
      this.role = 'candidate'
      this.leader = null
    } else {
      this.term++
      this.vote = this.id
      this.role = 'candidate'
      this.preCandidate = false
      this.leader = null
    }
    this.resetTimers()
    this.votes.set(this.id, true)
    if (this.tally().granted >= this.quorum()) return this.wonElection()
    const term = pre ? this.term + 1 : this.term
    for (const to of this.membership.voters) {
      if (to === this.id) continue
      const base = { from: this.id, to, term, lastIndex: this.log.lastIndex(), lastTerm: this.log.lastTerm() }
      this.send(pre ? { type: 'preVote', ...base } : { type: 'vote', ...base, transfer })
    }
  }

  private wonElection(): void {
    if (this.preCandidate) this.campaign(false)
    else this.becomeLeader()
  }

  private becomeLeader(): void {
    this.role = 'leader'
    this.leader = this.id
    this.preCandidate = false
    this.leadTransferee = null
    this.resetTimers()
    this.progress.clear()
    for (const id of this.members()) this.addProgress(id)
    // 8 and 5.4.2: an entry of the new term, so that earlier entries can commit (by counting
    // this one) and reads can be served once it commits. Config changes wait for it too.
    this.pendingConfIndex = this.log.lastIndex() + 1
    this.appendEntries([{ index: this.log.lastIndex() + 1, term: this.term, type: 'noop', data: '' }])
  }

  private tickElection(): void {
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.campaign(this.preVote)
    }
  }

  private tickLeader(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.leadTransferee !== null && ++this.transferElapsed >= this.electionTicks) this.leadTransferee = null
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0
      if (this.checkQuorum) {
        // 6.2: a leader that has not heard from a quorum for an election timeout steps down, so
        // that a minority leader stops serving (and stale reads stop) on its own.
        if (!this.quorumActive()) return this.becomeFollower(this.term, null)
        for (const pr of this.progress.values()) pr.recentActive = pr.id === this.id
      }
    }
    if (this.role === 'leader' && this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0
      for (const to of this.peers()) this.sendHeartbeat(to, 0)
    }
  }

  // ---- handlers -----------------------------------------------------------------------------

  private handleVoteRequest(m: Extract<Message, { type: 'preVote' | 'vote' }>): void {
    // 5.2, 5.4.1: one vote per term, only for a log at least as up to date as ours. A PreVote
    // for a later term may be granted freely: it commits this node to nothing.
    const canVote = this.vote === m.from || (this.vote === null && this.leader === null) || (m.type === 'preVote' && m.term > this.term)
    const granted = canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm)
    if (m.type === 'preVote') {
      this.send({ type: 'preVoteResp', from: this.id, to: m.from, term: granted ? m.term : this.term, granted })
      return
    }
    if (granted) {
      // The vote is in hardState, which the driver persists before sending this answer.
      this.vote = m.from
      this.electionElapsed = 0
    }
    this.send({ type: 'voteResp', from: this.id, to: m.from, term: this.term, granted })
  }

  private handleVoteResponse(m: Extract<Message, { type: 'preVoteResp' | 'voteResp' }>): void {
    if (this.role !== 'candidate' || this.preCandidate !== (m.type === 'preVoteResp')) return
    if (!this.membership.voters.includes(m.from)) return
    this.votes.set(m.from, m.granted)
    const { granted, rejected } = this.tally()
    if (granted >= this.quorum()) this.wonElection()
    else if (rejected >= this.quorum()) this.becomeFollower(this.term, null)
  }

  private handleAppend(m: Extract<Message, { type: 'append' }>): void {
    this.acceptLeader(m.from)
    if (m.prevIndex < this.log.committed) {
      this.send({ type: 'appendResp', from: this.id, to: m.from, term: this.term, success: true, index: this.log.committed, hintIndex: 0, hintTerm: 0 })
      return
    }
    const last = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.entries)
    if (last === null) {
      const hint = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm)
      this.send({ type: 'appendResp', from: this.id, to: m.from, term: this.term, success: false, index: m.prevIndex, hintIndex: hint.index, hintTerm: hint.term })
      return
    }
    // The membership changes only if a config entry came, or one after prevIndex may have gone
    // with a conflicting suffix; otherwise the recomputation is skipped (it runs per append).
    const lastConfig = this.configIndexes.length > 0 ? this.configIndexes[this.configIndexes.length - 1]! : 0
    let changed = lastConfig > m.prevIndex
    for (const e of m.entries) {
      if (e.type !== 'config') continue
      this.configIndexes.push(e.index)
      changed = true
    }
    if (changed) this.refreshMembership()
    this.log.commitTo(Math.min(m.commit, last))
    this.send({ type: 'appendResp', from: this.id, to: m.from, term: this.term, success: true, index: last, hintIndex: 0, hintTerm: 0 })
  }

  private handleAppendResponse(m: Extract<Message, { type: 'appendResp' }>): void {
    if (this.role !== 'leader') return
    const pr = this.progress.get(m.from)
    if (!pr) return
    pr.recentActive = true
    if (!m.success) {
      const resume = m.hintTerm > 0 ? this.log.findConflictByTerm(m.hintIndex, m.hintTerm).index : m.hintIndex
      if (pr.maybeDecrease(m.index, resume)) {
        if (pr.state === 'replicate') pr.becomeProbe()
        this.sendAppend(m.from)
      }
      return
    }
    const wasPaused = pr.isPaused()
    if (!pr.maybeUpdate(m.index)) {
      if (wasPaused && !pr.isPaused()) this.sendAppend(m.from)
      return
    }
    if (pr.state === 'probe') pr.becomeReplicate()
    else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshot) pr.becomeProbe()
    if (this.maybeCommit()) this.broadcastAppend()
    else while (this.sendAppend(m.from)) {}
    if (this.leadTransferee === m.from && pr.match === this.log.lastIndex()) {
      this.send({ type: 'timeoutNow', from: this.id, to: m.from, term: this.term })
    }
  }

  private handleHeartbeat(m: Extract<Message, { type: 'heartbeat' }>): void {
    this.acceptLeader(m.from)
    // The leader sends min(our match, its commit), so this never passes our log's end.
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()))
    this.send({ type: 'heartbeatResp', from: this.id, to: m.from, term: this.term, context: m.context })
  }

  private handleHeartbeatResponse(m: Extract<Message, { type: 'heartbeatResp' }>): void {
    if (this.role !== 'leader') return
    const pr = this.progress.get(m.from)
    if (!pr) return
    pr.recentActive = true
    pr.probeSent = false
    // Even an empty append: if appends in flight were lost, only a rejection tells us where the
    // follower really is (otherwise a follower in replicate state with nothing new is never sent).
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true)
    if (m.context > 0 && this.membership.voters.includes(m.from)) {
      for (const read of this.readQueue) if (read.context <= m.context) read.acks.add(m.from)
      while (this.readQueue.length > 0 && this.readQueue[0]!.acks.size >= this.quorum()) {
        const read = this.readQueue.shift()!
        this.readStates.push({ id: read.id, index: read.index })
      }
    }
  }

  private handleSnapshot(m: Extract<Message, { type: 'snapshot' }>): void {
    this.acceptLeader(m.from)
    const meta = m.meta
    if (meta.index <= this.log.committed) {
      this.send({ type: 'appendResp', from: this.id, to: m.from, term: this.term, success: true, index: this.log.committed, hintIndex: 0, hintTerm: 0 })
      return
    }
    if (this.log.matchTerm(meta.index, meta.term)) {
      // We hold the entry already: no need to replace our state, only to commit up to it.
      this.log.commitTo(meta.index)
    } else {
      this.log.restore(meta.index, meta.term)
      this.snapshotMeta = meta
      this.baseMembership = meta.membership
      this.configIndexes = []
      this.refreshMembership()
      this.pendingSnapshot = meta
    }
    this.send({ type: 'appendResp', from: this.id, to: m.from, term: this.term, success: true, index: meta.index, hintIndex: 0, hintTerm: 0 })
  }

  // ---- replication --------------------------------------------------------------------------

  private appendEntries(entries: Entry[]): void {
    this.log.append(entries)
    let changed = false
    for (const e of entries) {
      if (e.type !== 'config') continue
      this.configIndexes.push(e.index)
      this.pendingConfIndex = e.index
      changed = true
    }
    // A leader's own append removes nothing from its log: only a config entry changes membership.
    if (changed) this.refreshMembership()
    this.broadcastPending = true
  }

  private broadcastAppend(): void {
    for (const to of this.peers()) this.sendAppend(to)
  }

  /** Sends the next append to `to` if its progress allows; false when nothing was sent. */
  private sendAppend(to: NodeId, evenIfEmpty = false): boolean {
    const pr = this.progress.get(to)
    if (!pr) return false
    // 5.3: "the leader retries AppendEntries RPCs indefinitely". When every append in a full
    // window was lost, no answer ever frees the window; so a heartbeat response (evenIfEmpty)
    // still sends an empty append at `next`, whose answer frees the window (accepted) or sends
    // the follower back to probing (rejected). Found by the simulator (test/sim, maxInflight 1:
    // a follower stalled for good after one lost append); test/sim/regressions.test.ts pins it.
    const windowFull = pr.state === 'replicate' && pr.isPaused()
    if (pr.isPaused() && !(evenIfEmpty && windowFull)) return false
    const prevIndex = pr.next - 1
    const prevTerm = this.log.term(prevIndex)
    if (prevTerm === undefined) return this.sendSnapshot(pr)
    const last = this.log.lastIndex()
    const entries = pr.next <= last && !windowFull ? this.log.slice(pr.next, last + 1, this.maxEntries, this.maxBytes) : []
    // A follower in step gets appends only when there is something new; heartbeats carry the rest.
    if (entries.length === 0 && pr.state === 'replicate' && !evenIfEmpty) return false
    this.send({ type: 'append', from: this.id, to, term: this.term, prevIndex, prevTerm, entries, commit: this.log.committed })
    pr.sent(prevIndex + entries.length, entries.length)
    return true
  }

  private sendSnapshot(pr: Progress): boolean {
    const meta = this.snapshotMeta
    assert(meta !== null && pr.next <= meta.index, `${pr.id} needs entries below the log (${pr.next}) but there is no snapshot`)
    pr.becomeSnapshot(meta.index)
    this.send({ type: 'snapshot', from: this.id, to: pr.id, term: this.term, meta })
    return true
  }

  private sendHeartbeat(to: NodeId, context: number): void {
    const pr = this.progress.get(to)
    const commit = Math.min(pr?.match ?? 0, this.log.committed)
    this.send({ type: 'heartbeat', from: this.id, to, term: this.term, commit, context })
  }

  /** 5.3, 5.4.2: commit the highest index a quorum holds, if it is of this term. */
  private maybeCommit(): boolean {
    const matches = this.membership.voters.map((id) => (id === this.id ? this.log.stable : (this.progress.get(id)?.match ?? 0)))
    if (matches.length === 0) return false
    matches.sort((a, b) => b - a)
    const index = matches[this.quorum() - 1]!
    if (index <= this.log.committed || this.log.term(index) !== this.term) return false
    this.log.commitTo(index)
    this.afterCommit()
    return true
  }

  private afterCommit(): void {
    if (this.readsBeforeCommit.length > 0 && this.log.term(this.log.committed) === this.term) {
      const waiting = this.readsBeforeCommit
      this.readsBeforeCommit = []
      for (const id of waiting) this.readIndex(id)
    }
  }

  // ---- helpers ------------------------------------------------------------------------------

  private send(m: Message): void {
    this.msgs.push(m)
  }

  private acceptLeader(leader: NodeId): void {
    this.electionElapsed = 0
    this.leader = leader
    if (this.role === 'candidate') this.becomeFollower(this.term, leader)
  }

  private checkLeader(): void {
    if (this.role !== 'leader') throw new RaftError('notLeader', this.leader, this.leader ? `the leader is ${this.leader}` : 'there is no leader')
  }

  private inLease(): boolean {
    return this.checkQuorum && this.leader !== null && this.electionElapsed < this.electionTicks
  }

  private promotable(): boolean {
    return this.membership.voters.includes(this.id)
  }

  private quorum(): number {
    return Math.floor(this.membership.voters.length / 2) + 1
  }

  private quorumActive(): boolean {
    let active = 0
    for (const id of this.membership.voters) if (id === this.id || this.progress.get(id)?.recentActive) active++
    return active >= this.quorum()
  }

  private tally(): { granted: number; rejected: number } {
    let granted = 0
    let rejected = 0
    for (const id of this.membership.voters) {
      const v = this.votes.get(id)
      if (v === true) granted++
      else if (v === false) rejected++
    }
    return { granted, rejected }
  }

  private members(): NodeId[] {
    return [...this.membership.voters, ...this.membership.learners]
  }

  private peers(): NodeId[] {
    return this.members().filter((id) => id !== this.id)
  }

  private addProgress(id: NodeId): void {
    const pr = new Progress(id, this.log.lastIndex() + 1, this.maxInflight)
    if (id === this.id) pr.match = this.log.stable
    pr.recentActive = true
    this.progress.set(id, pr)
  }

  /** Recomputes the membership from the latest config entry still in the log (thesis 4.1). */
  private refreshMembership(): void {
    this.configIndexes = this.configIndexes.filter((i) => this.log.entry(i)?.type === 'config')
    const latest = this.configIndexes[this.configIndexes.length - 1]
    this.membership = latest === undefined ? this.baseMembership : (JSON.parse(this.log.entry(latest)!.data) as Membership)
    if (this.role === 'leader') {
      for (const id of this.members()) if (!this.progress.has(id)) this.addProgress(id)
      for (const id of [...this.progress.keys()]) if (!this.members().includes(id)) this.progress.delete(id)
    } else {
      this.role = this.membership.learners.includes(this.id) ? 'learner' : this.role === 'learner' ? 'follower' : this.role
    }
  }

  private resetTimers(): void {
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.randomizedElectionTimeout = this.electionTicks + Math.floor(this.random() * this.electionTicks)
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed }
  }

  private hardStateChanged(): boolean {
    return this.persisted.term !== this.term || this.persisted.vote !== this.vote || this.persisted.commit !== this.log.committed
  }
}

/** The membership after one change, or a RaftError saying why the change is not allowed. */
export function applyChange(m: Membership, change: ConfigChange): Membership {
  const isVoter = m.voters.includes(change.id)
  const isLearner = m.learners.includes(change.id)
  switch (change.op) {
    case 'addLearner': {
      if (isVoter || isLearner) throw new RaftError('invalidChange', null, `${change.id} is already a member`)
      const addresses = change.address === undefined ? m.addresses : Object.assign({}, m.addresses, { [change.id]: change.address })
      return withAddresses({ voters: m.voters, learners: [...m.learners, change.id] }, addresses)
    }
    case 'promote':
      if (!isLearner) throw new RaftError('invalidChange', null, `${change.id} is not a learner`)
      return withAddresses({ voters: [...m.voters, change.id], learners: m.learners.filter((id) => id !== change.id) }, m.addresses)
    case 'remove': {
      if (!isVoter && !isLearner) throw new RaftError('invalidChange', null, `${change.id} is not a member`)
      if (isVoter && m.voters.length === 1) throw new RaftError('invalidChange', null, 'cannot remove the last voter')
      let addresses = m.addresses
      if (addresses && change.id in addresses) {
        addresses = Object.assign({}, addresses)
        delete (addresses as Record<NodeId, string>)[change.id]
      }
      return withAddresses({ voters: m.voters.filter((id) => id !== change.id), learners: m.learners.filter((id) => id !== change.id) }, addresses)
    }
    case 'setAddress':
      if (!isVoter && !isLearner) throw new RaftError('invalidChange', null, `${change.id} is not a member`)
      return withAddresses({ voters: m.voters, learners: m.learners }, Object.assign({}, m.addresses, { [change.id]: change.address }))
  }
}

function withAddresses(m: Membership, addresses: Membership['addresses']): Membership {
  return addresses === undefined || Object.keys(addresses).length === 0 ? m : { voters: m.voters, learners: m.learners, addresses }
}
