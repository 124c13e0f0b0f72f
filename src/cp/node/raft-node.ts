// The Raft driver: runs the pure core (cp/raft) against real time, LevelDB and the peer
// transport, and offers the CP contract (ReplicatedLog) to the layers above. For each Ready it
// persists entries and hard state before sending what depends on them (a leader may send its
// appends first: its own log counts only once on disk), applies committed entries to the state
// machine (a leader while its write is in flight: they are durable on a quorum already),
// answers proposals and reads, then advances.
//
// One LevelDB write per Ready. The state machine's writes (with the applied index, in the same
// batch) are not written when they are applied: they wait in memory and go in the next batch
// the log writes anyway, synced with its entries. The log holds every entry they come from, so
// a crash loses nothing that replay does not rebuild; and a write of their own would cost a
// second trip through LevelDB's thread pool, WAL write and wake-up per round. When no log write
// comes within FLUSH_DELAY_MS (an idle cluster), when settled() asks, before compaction deletes
// entries, and on close, they are written on their own, unsynced.

import type { Cancel, Clock } from '../../core/clock.js'
import { ERROR_CODES, type ErrorCode, GraceError, isGraceError } from '../../core/errors.js'
import { LIMITS } from '../../core/limits.js'
import type { Logger } from '../../core/logger.js'
import type { BatchOp, Database } from '../../storage/db.js'
import type { CpCommand, CpStatus, LogEntry, ReplicatedLog, StateMachine } from '../log.js'
import { Raft, RaftError } from '../raft/raft.js'
import type { ConfigChange, Entry, HardState, Membership, Message, NodeId, Ready, SnapshotMeta } from '../raft/types.js'
import {
  APPLIED_KEY,
  HARD_STATE_KEY,
  INSTALLING_KEY,
  SNAPSHOT_KEY,
  STAGE_PREFIX,
  LogSegments,
  isStateMachineKey,
  loadRaftState,
} from './raft-storage.js'
import { prefixRange, PREFIX, writeBatch } from '../../storage/db.js'

/** What the driver needs from the peer transport (cluster/transport.ts provides it). */
export interface RaftTransport {
  sendRaft(to: NodeId, m: Message): void
  /** Writes the messages handed over so far now, not at the end of the event-loop turn. */
  flushRaft?(): void
  onRaft(handler: (m: Message) => void): void
  call(to: NodeId, method: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>
  onCall(method: string, handler: (from: NodeId, payload: Uint8Array) => Promise<Uint8Array>): void
  onUnreachable(handler: (peer: NodeId) => void): void
  /** The peers to talk to (every member but this node), kept in step with the membership. */
  setPeers?(peers: ReadonlyMap<NodeId, string>): void
}

export interface RaftNodeOptions {
  id: NodeId
  db: Database
  stateMachine: StateMachine
  clock: Clock
  logger: Logger
  random: () => number
  /** The membership of a new cluster; ignored once the log or a snapshot has one. */
  bootstrap: Membership
  /** Absent for a standalone node. */
  transport?: RaftTransport
  tickMs?: number
  electionTicks?: number
  /** How long a write or read may wait for the cluster before it fails (never hangs). */
  requestTimeoutMs?: number
  /** Compact the log when this many entries are applied past the last compaction. */
  compactEvery?: number
  /** Entries kept behind the compaction point, for followers that are a little behind. */
  retainEntries?: number
  /** Writes waiting for the log at most; more are refused with UNAVAILABLE. */
  maxPendingProposals?: number
  /**
   * Peer addresses this node was started with (--members). Members added later bring theirs in
   * the membership; these serve the first configuration, and a joining node until it is added.
   */
  peerAddresses?: ReadonlyMap<NodeId, string>
}

interface PendingProposal {
  term: number
  resolve(value: unknown): void
  reject(err: Error): void
  /** The timer of the proposal's batch, shared by all of its proposals. */
  timer: ProposalTimer
}

/** One request timeout for a batch of proposals, cancelled when the last of them is answered. */
interface ProposalTimer {
  pending: number
  cancel: Cancel
}

function settle(timer: ProposalTimer): void {
  if (--timer.pending === 0) timer.cancel()
}

interface PendingRead {
  resolve(): void
  reject(err: Error): void
  cancelTimer: Cancel
}

interface PendingReadIndex {
  resolve(index: number): void
  reject(err: Error): void
  cancelTimer: Cancel
}

const PROPOSE = 'raft.propose'
/** Pauses before sending a forwarded request again that could not leave this node. */
const FORWARD_RETRY_FIRST_MS = 25
const FORWARD_RETRY_MAX_MS = 400
const CHANGE_MEMBERSHIP = 'raft.changeMembership'
/** How long the leader keeps trying a membership change it cannot take yet, and how often. */
const CONFIG_RETRY_MS = 2_000
const CONFIG_RETRY_PAUSE_MS = 25
const TRANSFER_LEADERSHIP = 'raft.transferLeadership'
const READ_INDEX = 'raft.readIndex'
const SNAPSHOT_CHUNK = 'raft.snapshotChunk'
/**
 * The election timeout, in ticks of 100 ms: each node draws its own from [8, 16) ticks. A leader's
 * death is noticed 0.8 to 1.6 s after its last heartbeat, and with PreVote and the vote (two round
 * trips) writes resume within 2 s of a crash (issue 5), while a pause of the event loop must
 * still last 0.8 s to start an election needlessly.
 */
export const DEFAULT_ELECTION_TICKS = 8

/** Snapshot data per call: far below the transport's frame limit, large enough to move fast. */
const SNAPSHOT_CHUNK_BYTES = 1024 * 1024
const INSTALL_BATCH_OPS = 10_000
/** How long new writes may wait for the last batch to commit, to go in the next one together. */
const BATCH_WAIT_MS = 20
/**
 * Once its last batch committed, how long a leader waits at most for the writers it answers to
 * write again (see holdForReturn; never longer than that batch took to commit), and the pause in
 * new writes that ends the wait sooner.
 */
const RETURN_WAIT_MS = 10
const RETURN_GAP_MS = 2
/** How long applied state machine writes wait for a log write to ride with (see the top). */
const FLUSH_DELAY_MS = 50
/** Applied writes held in memory at most; past this many ops they are written at once. */
const MAX_UNSTORED_OPS = 10_000

interface SnapshotChunk {
  readonly id: string
  readonly seq: number
  readonly pairs: [string, string][]
  /** On the last chunk: the snapshot's point, and the leader's term for the message. */
  readonly meta?: SnapshotMeta
  readonly term?: number
}
const encoder = new TextEncoder()
const decoder = new TextDecoder()

export class RaftNode implements ReplicatedLog {
  private readonly raft: Raft
  private readonly db: Database
  private readonly sm: StateMachine
  private readonly clock: Clock
  private readonly logger: Logger
  private readonly transport: RaftTransport | undefined
  private readonly tickMs: number
  private readonly requestTimeoutMs: number
  private readonly compactEvery: number
  private readonly retainEntries: number
  private readonly maxPending: number

  /** Index of the last entry stored on disk. */
  private storedLast: number
  private readonly segments: LogSegments
  /** What the state machine has applied (may run ahead of the core's view after a restart). */
  private applied: number
  private compactedTo: number
  private proposals = new Map<number, PendingProposal>()
  private queued: { command: CpCommand; resolve(v: unknown): void; reject(e: Error): void }[] = []
  private reads = new Map<number, PendingReadIndex>()
  /** Reads confirmed by a quorum, waiting for the state machine to reach their index. */
  private readsAwaitingApply: { index: number; read: PendingRead }[] = []
  private nextReadId = 1
  private running: Promise<void> | null = null
  private again = false
  private cancelTick: Cancel | null = null
  private closed = false
  private broken: Error | null = null
  private readonly id: NodeId
  private readonly baseAddresses: ReadonlyMap<NodeId, string>
  /** The membership (and leader) the transport's peers were last set from. */
  private peersFrom: Membership | null = null
  private peersUncommitted = 0
  private peersLeader: NodeId | null = null
  /** The latest address each node had in a configuration this node saw, for a leader outside its own. */
  private readonly seenAddresses = new Map<NodeId, string>()
  private promoting = false
  private transferWaiters: { to: NodeId; resolve(leader: NodeId): void; reject(err: Error): void; cancelTimer: Cancel }[] = []

  /**
   * The last batch this leader proposed (see holdForBatch and holdForReturn): its last index, when,
   * how many writes; once committed, when that was seen and how many writes to wait for.
   */
  private lastBatch = { last: 0, at: 0, size: 0, committedAt: -1, expect: 0, wait: 0 }
  /** True while the loop takes writes in the run that saw the last batch commit (endWait). */
  private atCommit = false
  /** The last batch whose writers' wait ended (endWait), and the last one whose writes then went. */
  private releasing: object | null = null
  private released: object | null = null
  /** When this leader last took a write or answered some (clock ms): the start of a pause in writes. */
  private lastActivity = 0
  private batchTimer: Cancel | null = null
  private batchTimerAt = 0
  /** State machine writes applied in memory, not yet in storage (see the top). */
  private unstored: BatchOp[] = []
  /** The applied index storage reaches once `unstored` is written; 0 while nothing waits. */
  private unstoredApplied = 0
  /** When `unstored` last went from empty to waiting (clock ms). */
  private unstoredSince = 0
  private flushTimer: Cancel | null = null
  /** Write `unstored` on its own once the Ready loop has nothing else to do. */
  private flushDue = false
  /** The applied index storage holds the state machine's data for. */
  private storedApplied: number
  /** settled() calls waiting for storage to reach an applied index. */
  private settledWaiters: { index: number; resolve(): void; reject(err: Error): void }[] = []

  private constructor(opts: RaftNodeOptions, state: Awaited<ReturnType<typeof loadRaftState>>) {
    this.db = opts.db
    this.sm = opts.stateMachine
    this.clock = opts.clock
    this.logger = opts.logger
    this.transport = opts.transport
    this.id = opts.id
    this.baseAddresses = opts.peerAddresses ?? new Map()
    this.tickMs = opts.tickMs ?? 100
    this.requestTimeoutMs = opts.requestTimeoutMs ?? 5_000
    this.compactEvery = opts.compactEvery ?? 10_000
    this.retainEntries = opts.retainEntries ?? 5_000
    this.maxPending = opts.maxPendingProposals ?? LIMITS.maxPendingProposals
    this.storedLast = state.snapshot?.index ?? 0
    if (state.entries.length > 0) this.storedLast = state.entries[state.entries.length - 1]!.index
    this.segments = new LogSegments(state.segments)
    this.applied = state.applied
    this.storedApplied = state.applied
    this.compactedTo = state.snapshot?.index ?? 0
    this.raft = new Raft(
      { id: opts.id, random: opts.random, electionTicks: opts.electionTicks ?? DEFAULT_ELECTION_TICKS, heartbeatTicks: 1, maxInflight: 64 },
      { hardState: state.hardState, snapshot: state.snapshot, entries: state.entries, bootstrap: opts.bootstrap },
    )
  }

  /** Loads the stored state, rebuilds the state machine, and starts ticking. */
  static async open(opts: RaftNodeOptions): Promise<RaftNode> {
    // A crash in the middle of installing a snapshot: finish it from the staged copy.
    const installing = await opts.db.get(INSTALLING_KEY)
    if (installing) await installStaged(opts.db, JSON.parse(installing) as SnapshotMeta)
    const state = await loadRaftState(opts.db)
    await opts.stateMachine.load()
    const node = new RaftNode(opts, state)
    node.start()
    // Replays committed entries the state machine had not applied before the restart, and
    // stores what they changed before the node serves.
    node.flushDue = true
    node.kick()
    while (node.running) await node.running
    opts.logger.info({ id: opts.id, appliedIndex: node.applied, lastIndex: node.storedLast, term: state.hardState.term }, 'raft node started')
    return node
  }

  private start(): void {
    this.transport?.onRaft((m) => {
      if (this.closed) return
      this.raft.step(m)
      this.kick()
    })
    this.transport?.onUnreachable((peer) => this.raft.reportUnreachable(peer))
    this.transport?.onCall(PROPOSE, async (_from, payload) => {
      const { command } = JSON.parse(decoder.decode(payload)) as { command: CpCommand }
      const result = await this.proposeLocally(command)
      return encoder.encode(JSON.stringify({ result: result ?? null }))
    })
    this.transport?.onCall(CHANGE_MEMBERSHIP, async (_from, payload) => {
      const { change } = JSON.parse(decoder.decode(payload)) as { change: ConfigChange }
      const membership = await this.changeMembershipLocally(change)
      return encoder.encode(JSON.stringify({ membership }))
    })
    this.transport?.onCall(TRANSFER_LEADERSHIP, async (_from, payload) => {
      const { to } = JSON.parse(decoder.decode(payload)) as { to: NodeId }
      const leaderId = await this.transferLocally(to)
      return encoder.encode(JSON.stringify({ leaderId }))
    })
    this.transport?.onCall(SNAPSHOT_CHUNK, async (from, payload) => {
      await this.receiveSnapshotChunk(from, JSON.parse(decoder.decode(payload)) as SnapshotChunk)
      return new Uint8Array(0)
    })
    this.transport?.onCall(READ_INDEX, async () => {
      const index = await this.leaderReadIndex()
      return encoder.encode(JSON.stringify({ index }))
    })
    const loop = () => {
      if (this.closed) return
      this.raft.tick()
      this.promoteCaughtUpLearner()
      this.kick()
      this.cancelTick = this.clock.setTimer(this.tickMs, loop)
    }
    this.cancelTick = this.clock.setTimer(this.tickMs, loop)
    this.syncPeers()
    // Alone in the cluster, there is nobody to wait for.
    this.raft.campaignNow()
  }

  // ---- membership (thesis 4): one server at a time, through the log --------------------------

  /**
   * Adds a learner, promotes one, or removes a member; answers the membership once the change
   * is committed and applied. Sent to any node: a follower forwards it to the leader.
   */
  async changeMembership(change: ConfigChange): Promise<Membership> {
    this.checkOpen()
    if (!this.transport) throw new GraceError('MEMBERSHIP_CONFLICT', 'this node runs standalone (no --members): its membership cannot change')
    await this.knownLeader()
    const soft = this.raft.softState()
    if (soft.role === 'leader') return this.changeMembershipLocally(change)
    return this.forward(soft.leader, CHANGE_MEMBERSHIP, { change }, (body) => (body as { membership: Membership }).membership)
  }

  /** Moves leadership to a caught-up voter (thesis 3.10); answers the new leader's id. */
  async transferLeadership(to: NodeId): Promise<NodeId> {
    this.checkOpen()
    await this.knownLeader()
    const soft = this.raft.softState()
    if (soft.role === 'leader') return this.transferLocally(to)
    return this.forward(soft.leader, TRANSFER_LEADERSHIP, { to }, (body) => (body as { leaderId: NodeId }).leaderId)
  }

  /** Every member's peer address, as this node knows it. */
  memberAddresses(): Record<NodeId, string> {
    return Object.fromEntries(this.addressesOf(this.raft.currentMembership()))
  }

  /**
   * A change the leader cannot take yet because it has not committed an entry of its term (just
   * elected, or just handed the leadership) or another change is still committing: both clear
   * within a round trip or two, so the leader tries again for a while (CONFIG_RETRY_MS) rather
   * than answer 503 to a request that would succeed a moment later.
   */
  private async changeMembershipLocally(change: ConfigChange): Promise<Membership> {
    const deadline = this.clock.now() + Math.min(CONFIG_RETRY_MS, this.requestTimeoutMs)
    for (;;) {
      try {
        return await this.proposeMembership(change)
      } catch (err) {
        const pending = err instanceof GraceError && (err as GraceError & { raftReason?: string }).raftReason === 'configPending'
        if (!pending || this.closed || this.clock.now() + CONFIG_RETRY_PAUSE_MS >= deadline) throw err
        await new Promise<void>((resolve) => this.clock.setTimer(CONFIG_RETRY_PAUSE_MS, resolve))
        if (this.raft.softState().role !== 'leader') throw unavailable('leadership changed while the membership change waited; retry')
      }
    }
  }

  private proposeMembership(change: ConfigChange): Promise<Membership> {
    this.checkOpen()
    if (change.op === 'addLearner' || change.op === 'setAddress') {
      const current = this.raft.currentMembership()
      const known = this.addressesOf(current)
      // Asked again after an answer that was lost: nothing to change.
      if (change.op === 'setAddress' && known.get(change.id) === change.address) return Promise.resolve(current)
      // Two members at one address would each be dialled at the other's port.
      for (const [id, address] of known) {
        if (id !== change.id && address === change.address) {
          return Promise.reject(new GraceError('MEMBERSHIP_CONFLICT', `${change.address} is the peer address of member ${id}`))
        }
      }
    }
    let index: number
    try {
      index = this.raft.proposeConfigChange(change)
    } catch (err) {
      const mapped = toGraceError(err)
      if (err instanceof RaftError) Object.assign(mapped, { raftReason: err.reason })
      return Promise.reject(mapped)
    }
    const term = this.raft.softState().term
    return new Promise((resolve, reject) => {
      const timer: ProposalTimer = { pending: 1, cancel: () => {} }
      timer.cancel = this.timeout(() => {
        this.proposals.delete(index)
        reject(unavailable('the membership change was not committed in time; it may or may not take effect'))
      })
      this.track(index, { term, resolve: () => resolve(this.raft.currentMembership()), reject, timer })
      this.kick()
    })
  }

  private transferLocally(to: NodeId): Promise<NodeId> {
    if (to === this.id) return Promise.resolve(to)
    try {
      this.raft.transferLeadership(to)
    } catch (err) {
      return Promise.reject(toGraceError(err))
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        to,
        resolve,
        reject,
        cancelTimer: this.timeout(() => {
          this.transferWaiters = this.transferWaiters.filter((w) => w !== waiter)
          reject(unavailable(`leadership did not move to ${to} in time`))
        }),
      }
      this.transferWaiters.push(waiter)
      this.kick()
    })
  }

  /**
   * A learner joins to become a voter: once it holds everything committed, the leader proposes
   * its promotion. One at a time, and only when no other change is pending (the core refuses
   * otherwise, and the next tick tries again).
   */
  private promoteCaughtUpLearner(): void {
    if (this.promoting || this.closed) return
    const s = this.raft.status()
    if (s.role !== 'leader' || s.membership.learners.length === 0) return
    const ready = s.progress.find((p) => s.membership.learners.includes(p.id) && p.match >= s.commitIndex)
    if (!ready) return
    this.promoting = true
    this.changeMembershipLocally({ op: 'promote', id: ready.id })
      .then(
        () => this.logger.info({ id: ready.id }, 'learner caught up and promoted to voter'),
        // Usually another change in flight or a leader change: the next tick tries again.
        (err: Error) => this.logger.info({ id: ready.id, err: err.message }, 'learner not promoted yet'),
      )
      .finally(() => (this.promoting = false))
  }

  /**
   * Keeps the transport's peers equal to the members (other than this node) and their addresses:
   * those of the latest configuration and, while it is uncommitted, of the one before it. A
   * member being removed stays a peer until its removal commits: when it is the leader, the
   * others' answers are what commits the change.
   *
   * The leader is a peer even when this node's configuration does not list it. That happens to a
   * node catching up through a log in which the leader was removed and later added back: between
   * the two entries, this node must still answer the leader's appends, or it never receives the
   * entry that adds the leader back (it stayed a candidate of a stale configuration for good).
   */
  private syncPeers(): void {
    if (!this.transport?.setPeers) return
    const membership = this.raft.currentMembership()
    const uncommitted = this.raft.uncommittedConfigIndex()
    const leader = this.raft.leaderId()
    if (membership === this.peersFrom && uncommitted === this.peersUncommitted && leader === this.peersLeader) return
    this.peersFrom = membership
    this.peersUncommitted = uncommitted
    this.peersLeader = leader
    // A node waiting to join has no membership yet: it listens to the nodes it was started with.
    const peers = membership.voters.length === 0 ? new Map(this.baseAddresses) : this.addressesOf(membership)
    if (uncommitted > 0) {
      for (const [id, address] of this.addressesOf(this.raft.membershipAt(uncommitted - 1))) if (!peers.has(id)) peers.set(id, address)
    }
    for (const [id, address] of peers) this.seenAddresses.set(id, address)
    if (leader !== null && !peers.has(leader)) {
      // The address this node was started with first: a node replaying an old log was started
      // recently, and its --members is newer than the configurations it has reached so far.
      const address = this.baseAddresses.get(leader) ?? this.seenAddresses.get(leader)
      if (address !== undefined) peers.set(leader, address)
      else this.logger.warn({ leader }, 'the leader is not in this node\'s configuration and its address is unknown; start this node with it in --members')
    }
    peers.delete(this.id)
    this.transport.setPeers(peers)
  }

  private addressesOf(m: Membership): Map<NodeId, string> {
    const out = new Map<NodeId, string>()
    for (const id of [...m.voters, ...m.learners]) {
      const address = m.addresses?.[id] ?? this.baseAddresses.get(id)
      if (address !== undefined) out.set(id, address)
      else if (id !== this.id) this.logger.warn({ id }, 'no address known for a member; start this node with it in --members')
    }
    return out
  }

  private wakeTransferWaiters(): void {
    if (this.transferWaiters.length === 0) return
    const leader = this.raft.softState().leader
    this.transferWaiters = this.transferWaiters.filter((w) => {
      if (w.to !== leader) return true
      w.cancelTimer()
      w.resolve(leader)
      return false
    })
  }

  // ---- ReplicatedLog ------------------------------------------------------------------------

  propose(command: CpCommand): Promise<unknown> {
    // A leader's own writes, most of them, skip proposeAnywhere's two promises and turns.
    if (!this.closed && !this.broken && this.raft.softState().role === 'leader') return this.proposeLocally(command)
    return this.proposeAnywhere(command)
  }

  private async proposeAnywhere(command: CpCommand): Promise<unknown> {
    this.checkOpen()
    await this.knownLeader()
    const soft = this.raft.softState()
    if (soft.role === 'leader') return this.proposeLocally(command)
    return this.forward(soft.leader, PROPOSE, { command }, (body) => (body as { result: unknown }).result)
  }

  async readBarrier(): Promise<void> {
    this.checkOpen()
    const alone = this.raft.soleVoterReadIndex()
    if (alone !== null && this.applied >= alone) return
    await this.knownLeader()
    const soft = this.raft.softState()
    const index =
      soft.role === 'leader'
        ? await this.leaderReadIndex()
        : await this.forward(soft.leader, READ_INDEX, {}, (body) => (body as { index: number }).index)
    if (this.applied >= index) return
    await new Promise<void>((resolve, reject) => {
      const read: PendingRead = { resolve, reject, cancelTimer: this.timeout(() => reject(unavailable('timed out waiting for this node to catch up'))) }
      this.readsAwaitingApply.push({ index, read })
    })
  }

  /** Resolves once the state machine's storage holds everything applied so far. */
  settled(): Promise<void> {
    if (this.broken) return Promise.reject(unavailable('storage failed; the server must be restarted'))
    const index = this.applied
    if (this.storedApplied >= index) return Promise.resolve()
    if (this.closed && !this.running) return Promise.reject(unavailable('the server is shutting down'))
    return new Promise((resolve, reject) => {
      this.settledWaiters.push({ index, resolve, reject })
      this.flushDue = true
      this.kick()
    })
  }

  status(): CpStatus & { id: NodeId; term: number; leaderId: NodeId | null; lastIndex: number; membership: Membership } {
    const s = this.raft.status()
    return { id: s.id, role: s.role, term: s.term, leaderId: s.leader, commitIndex: s.commitIndex, appliedIndex: this.applied, lastIndex: s.lastIndex, membership: s.membership }
  }

  async close(): Promise<void> {
    this.closed = true
    this.cancelTick?.()
    this.flushTimer?.()
    this.flushTimer = null
    this.batchTimer?.()
    this.batchTimer = null
    // What is applied goes to storage (replay would rebuild it, but need not).
    this.flushDue = true
    this.kick()
    while (this.running) await this.running
    const closing = unavailable('the server is shutting down')
    for (const w of this.settledWaiters.splice(0)) w.reject(closing)
    for (const p of this.proposals.values()) {
      settle(p.timer)
      p.reject(closing)
    }
    this.proposals.clear()
    for (const q of this.queued.splice(0)) q.reject(closing)
    for (const r of this.reads.values()) r.reject(closing)
    this.reads.clear()
    for (const { read } of this.readsAwaitingApply.splice(0)) read.reject(closing)
    for (const w of [...this.leaderWaiters.splice(0), ...this.transferWaiters.splice(0)]) {
      w.cancelTimer()
      w.reject(closing)
    }
  }

  // ---- proposals and reads ------------------------------------------------------------------

  private proposeLocally(command: CpCommand): Promise<unknown> {
    this.checkOpen()
    if (this.proposals.size + this.queued.length >= this.maxPending) {
      return Promise.reject(unavailable('too many writes waiting for the cluster; retry'))
    }
    return new Promise((resolve, reject) => {
      // Queued until the loop runs, so that everything proposed meanwhile becomes one batch.
      this.queued.push({ command, resolve, reject })
      this.lastActivity = this.clock.now()
      this.kick()
    })
  }

  private leaderReadIndex(): Promise<number> {
    const id = this.nextReadId++
    return new Promise<number>((resolve, reject) => {
      const read: PendingReadIndex = {
        resolve,
        reject,
        cancelTimer: this.timeout(() => {
          this.reads.delete(id)
          reject(unavailable('no quorum confirmed the leader in time'))
        }),
      }
      this.reads.set(id, read)
      try {
        this.raft.readIndex(id)
      } catch (err) {
        this.reads.delete(id)
        read.cancelTimer()
        reject(toGraceError(err))
        return
      }
      this.kick()
    })
  }

  /**
   * Sends a request to the leader and answers its answer. A request that certainly never left
   * (this node's connection to the leader is still being set up, or being redialled after a
   * blip) is sent again, to the leader of the moment, until the request timeout: the leader
   * may well be up while this node's dial backs off. One that may have been sent is never
   * repeated: the leader could have carried it out.
   */
  private async forward<T>(leader: NodeId | null, method: string, body: object, pick: (body: unknown) => T): Promise<T> {
    if (leader === null || !this.transport) throw unavailable('there is no leader right now; retry')
    const payload = encoder.encode(JSON.stringify(body))
    const deadline = this.clock.now() + this.requestTimeoutMs
    for (let pause = FORWARD_RETRY_FIRST_MS; ; pause = Math.min(pause * 2, FORWARD_RETRY_MAX_MS)) {
      let answer: Uint8Array
      try {
        answer = await this.transport.call(leader, method, payload, Math.max(1, deadline - this.clock.now()))
      } catch (err) {
        const unsent = (err as { sent?: boolean }).sent === false
        if (!unsent || this.closed || this.clock.now() + pause >= deadline) throw fromRemote(err, leader)
        await new Promise<void>((resolve) => this.clock.setTimer(pause, resolve))
        const now = this.raft.softState().leader
        if (now === this.id || now === null) throw unavailable('leadership changed while the request waited; retry')
        leader = now
        continue
      }
      return pick(JSON.parse(decoder.decode(answer)))
    }
  }

  private leaderWaiters: { resolve(leader: NodeId): void; reject(err: Error): void; cancelTimer: Cancel }[] = []

  /**
   * Just after an election a follower may not have heard from the new leader yet: wait for one
   * (within the request timeout) rather than fail a request that would succeed a tick later.
   */
  private async knownLeader(): Promise<void> {
    if (this.transport && this.raft.softState().leader === null) await this.leaderSoon()
  }

  private leaderSoon(): Promise<NodeId> {
    return new Promise((resolve, reject) => {
      const waiter = {
        resolve,
        reject,
        cancelTimer: this.timeout(() => {
          this.leaderWaiters = this.leaderWaiters.filter((w) => w !== waiter)
          reject(unavailable('there is no leader right now; retry'))
        }),
      }
      this.leaderWaiters.push(waiter)
    })
  }

  private wakeLeaderWaiters(): void {
    const leader = this.raft.softState().leader
    if (leader === null || this.leaderWaiters.length === 0) return
    for (const w of this.leaderWaiters.splice(0)) {
      w.cancelTimer()
      w.resolve(leader)
    }
  }

  // ---- the Ready loop -----------------------------------------------------------------------

  private kick(): void {
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.run().finally(() => {
      this.running = null
      if (this.again && !this.broken) {
        this.again = false
        this.kick()
      }
    })
  }

  private async run(): Promise<void> {
    try {
      for (;;) {
        this.again = false
        this.atCommit = this.noteCommit()
        this.takeQueued()
        this.wakeLeaderWaiters()
        this.wakeTransferWaiters()
        this.syncPeers()
        if (this.raft.hasReady() && !this.closed) {
          await this.handle(this.raft.ready())
          continue
        }
        if (!this.flushDue) break
        this.flushDue = false
        if (this.unstoredApplied > 0) await this.flushUnstored()
      }
    } catch (err) {
      this.broken = err as Error
      this.logger.error({ err }, 'raft driver failed; refusing further writes')
      const failed = unavailable('storage failed; the server must be restarted')
      for (const p of this.proposals.values()) {
        settle(p.timer)
        p.reject(failed)
      }
      this.proposals.clear()
      for (const w of this.settledWaiters.splice(0)) w.reject(failed)
    }
  }

  private takeQueued(): void {
    if (this.queued.length === 0) return
    if (this.holdForBatch()) return
    const batch = this.queued.splice(0, LIMITS.maxProposalsPerBatch)
    if (this.queued.length > 0) this.again = true
    let first: number
    try {
      const ts = this.clock.now()
      first = this.raft.propose(batch.map((q) => entryData(ts, q.command)))
    } catch (err) {
      for (const q of batch) q.reject(toGraceError(err))
      return
    }
    const term = this.raft.softState().term
    const last = first + batch.length - 1
    this.lastBatch = { last, at: this.clock.now(), size: batch.length, committedAt: -1, expect: 0, wait: 0 }
    const timer: ProposalTimer = { pending: batch.length, cancel: () => {} }
    timer.cancel = this.timeout(() => {
      for (let index = first; index <= last; index++) {
        const p = this.proposals.get(index)
        if (p?.timer !== timer) continue
        this.proposals.delete(index)
        p.reject(unavailable('the write was not committed in time; it may or may not be applied'))
      }
    })
    for (let i = 0; i < batch.length; i++) {
      const q = batch[i]!
      this.track(first + i, { term, resolve: q.resolve, reject: q.reject, timer })
    }
  }

  /**
   * Batching over pipelining: while the batch this leader proposed last is not committed yet
   * (for BATCH_WAIT_MS at most), writes that come in wait to go with the next batch instead of
   * starting a round of their own. A round costs every node an fsync, a LevelDB write and its
   * thread hop, and messages each way, whatever it carries; on a busy core, rounds that carry
   * more writes leave more of it for the writes. A write that finds nothing in flight (one
   * client, an idle cluster) goes at once, so this adds no latency there.
   */
  private holdForBatch(): boolean {
    if (this.queued.length >= LIMITS.maxProposalsPerBatch) return false
    // A wait that ended: the writes go once that turn's I/O is read (endWait).
    if (this.releasing === this.lastBatch) return this.released !== this.lastBatch
    if (this.raft.log.committed >= this.lastBatch.last) return this.holdForReturn()
    const waited = this.clock.now() - this.lastBatch.at
    if (waited >= BATCH_WAIT_MS) return this.endWait()
    // The commit of the last batch runs the loop again; this timer, if it never comes.
    this.wakeAt(this.lastBatch.at + BATCH_WAIT_MS)
    return true
  }

  /**
   * Records when the last batch is first seen committed, and how many writes to expect then.
   * Answers whether this call saw it.
   */
  private noteCommit(): boolean {
    const b = this.lastBatch
    if (b.committedAt >= 0 || b.size === 0 || this.raft.log.committed < b.last) return false
    b.committedAt = this.clock.now()
    b.expect = Math.min(LIMITS.maxProposalsPerBatch, b.size + this.queued.length)
    b.wait = Math.min(RETURN_WAIT_MS, b.committedAt - b.at)
    return true
  }

  /**
   * The writers a commit answers mostly write again at once (a client that registers or
   * publishes one thing after another, a benchmark's connections). Proposed at the commit, the
   * writes already waiting would start a round without them, and they would wait for that one
   * to commit: under load the writes split into a large round and a small one, often of a single
   * write (seen at 64 connections: rounds of 63 and of 1 in turn), and a round costs every node
   * the same fsync, thread hop and messages whatever it carries. So after a commit the waiting
   * writes wait for as many more as the batch had, to go together: until they came, until no
   * write came in for RETURN_GAP_MS since the leader last took or answered one (the writers
   * went quiet: fewer clients, or writes that do not follow answers), or after as long as the
   * batch took to commit, RETURN_WAIT_MS at most: waiting longer than the round it saves would
   * cost more than that round, and it bounds what writes that come in a steady stream, not after
   * answers, pay (at most a round's time more). A lone writer finds its own batch of one
   * answered and goes at once.
   */
  private holdForReturn(): boolean {
    const b = this.lastBatch
    if (b.committedAt < 0 || this.queued.length >= b.expect) return false
    const deadline = Math.min(b.committedAt + b.wait, this.lastActivity + RETURN_GAP_MS)
    if (this.clock.now() >= deadline) return this.endWait()
    this.wakeAt(deadline)
    return true
  }

  /**
   * The held writes go once their wait is over, but a wait found over while the loop reads I/O
   * (a write came in) or runs a timer lets them go only at the end of that turn of the event
   * loop (setImmediate runs after the poll phase), once what is waiting on the sockets has been
   * read. A leader that lost the core for a while (on one core, to its followers) found the wait
   * over at the first write it read, or at its timer, which runs before the loop polls: the
   * batch left with that write, and the requests of the other writers it waited for, already
   * in, went in a round of their own. (At 64 connections a quarter to a third of the rounds
   * carried 8 writes or fewer; a round costs every node the same fsync, thread hop and messages
   * whatever it carries.) At the commit of the last batch they go at once, with that commit's
   * Ready: the leader writes them while it answers the committed writes. Answers whether to
   * hold the writes still.
   */
  private endWait(): boolean {
    if (this.atCommit) return false
    const batch = this.lastBatch
    if (this.releasing === batch) return true
    this.releasing = batch
    setImmediate(() => {
      // Only for the batch it was set for: a round proposed meanwhile has its own wait.
      if (this.lastBatch !== batch) return
      this.released = batch
      this.kick()
    })
    return true
  }

  /** Runs the loop again at `at` (clock ms), or sooner if it already will. */
  private wakeAt(at: number): void {
    if (this.batchTimer) {
      if (this.batchTimerAt <= at) return
      this.batchTimer()
    }
    this.batchTimerAt = at
    this.batchTimer = this.clock.setTimer(Math.max(0, at - this.clock.now()), () => {
      this.batchTimer = null
      this.kick()
    })
  }

  /**
   * Waits for the entry this leader just appended at index. A proposal still waiting there is
   * from an earlier term of ours whose entry was overwritten (our log ended before index), so it
   * was never committed: it fails now rather than at its timeout.
   */
  private track(index: number, p: PendingProposal): void {
    const old = this.proposals.get(index)
    if (old) {
      settle(old.timer)
      old.reject(unavailable('leadership changed before the write committed; it was not applied'))
    }
    this.proposals.set(index, p)
  }

  private async handle(rd: Ready): Promise<void> {
    const leader = this.raft.softState().role === 'leader'
    // A leader sends in parallel with its own write; everyone else writes first (5.1: a vote or
    // an acknowledgement must never be sent for state that a crash could lose). The messages
    // leave at once (send flushes): the leader's before its own LevelDB write wakes a thread to
    // compete with the followers for the core, a follower's before its apply delays them.
    //
    // A leader also applies while its write is in flight: what it commits is durable on a
    // quorum already, and its own earlier writes have landed (one Ready at a time), so its
    // writers are answered at the commit rather than after its fsync of the next batch. (The
    // applied writes wait in memory for the write after this one.) A follower acknowledges
    // first: the leader waits for that, not for the follower's apply.
    if (leader && !rd.snapshot) {
      this.send(rd.messages)
      const persisting = this.persist(rd)
      try {
        this.applyReady(rd)
      } finally {
        await persisting
      }
    } else {
      if (leader) this.send(rd.messages)
      await this.persist(rd)
      if (!leader) this.send(rd.messages)
      this.applyReady(rd)
    }
    this.raft.advance(rd)
    await this.maybeCompact()
  }

  /** Applies a Ready's committed entries and answers the reads it confirms. */
  private applyReady(rd: Ready): void {
    this.apply(rd.committed)
    // Answering writes takes a while; their writers' next writes are read after it (holdForReturn).
    if (rd.committed.length > 0) this.lastActivity = this.clock.now()
    for (const rs of rd.readStates) {
      const read = this.reads.get(rs.id)
      if (!read) continue
      this.reads.delete(rs.id)
      read.cancelTimer()
      read.resolve(rs.index)
    }
  }

  /** Hands messages to the transport and has it write them now. */
  private send(messages: readonly Message[]): void {
    if (!this.transport || messages.length === 0) return
    for (const m of messages) {
      if (m.type === 'snapshot') this.streamSnapshot(m.to)
      else this.transport.sendRaft(m.to, m)
    }
    this.transport.flushRaft?.()
  }

  // ---- snapshots (7): the leader streams its state; the follower stages, then installs -------

  private snapshotsInFlight = new Set<NodeId>()
  private snapshotTransfers = 0
  private staging: { id: string; next: number } | null = null

  private streamSnapshot(to: NodeId): void {
    if (this.snapshotsInFlight.has(to)) return
    this.snapshotsInFlight.add(to)
    void this.sendSnapshotData(to).then((ok) => {
      this.snapshotsInFlight.delete(to)
      if (this.closed) return
      this.raft.reportSnapshot(to, ok)
      this.kick()
    })
  }

  /**
   * Streams the state machine's data as one consistent LevelDB view (an iterator sees the
   * database as of its creation), with the applied index read from the same view: the data and
   * that index are always written in one batch, so the pair is a snapshot at that index.
   */
  private async sendSnapshotData(to: NodeId): Promise<boolean> {
    const transport = this.transport!
    // Unique per transfer from this leader: the follower restarts staging when the id changes.
    const id = `${this.raft.status().id}-${this.raft.softState().term}-${this.clock.now()}-${++this.snapshotTransfers}`
    let seq = 0
    let pairs: [string, string][] = []
    let bytes = 0
    let applied = 0
    try {
      for await (const [key, value] of this.db.iterator()) {
        if (key === APPLIED_KEY) applied = Number(value)
        if (!isStateMachineKey(key)) continue
        pairs.push([key, value])
        bytes += key.length + value.length
        if (bytes >= SNAPSHOT_CHUNK_BYTES) {
          await transport.call(to, SNAPSHOT_CHUNK, encoder.encode(JSON.stringify({ id, seq: seq++, pairs })), this.requestTimeoutMs)
          pairs = []
          bytes = 0
        }
      }
      const term = this.raft.log.term(applied)
      if (term === undefined) throw new Error(`no term for applied index ${applied}`)
      const meta: SnapshotMeta = { index: applied, term, membership: this.raft.membershipAt(applied) }
      const last: SnapshotChunk = { id, seq, pairs, meta, term: this.raft.softState().term }
      await transport.call(to, SNAPSHOT_CHUNK, encoder.encode(JSON.stringify(last)), this.requestTimeoutMs)
      this.logger.info({ to, index: applied, chunks: seq + 1 }, 'snapshot sent')
      return true
    } catch (err) {
      this.logger.warn({ to, err: (err as Error).message }, 'snapshot transfer failed; will retry')
      return false
    }
  }

  private async receiveSnapshotChunk(from: NodeId, chunk: SnapshotChunk): Promise<void> {
    if (chunk.seq === 0) {
      await this.db.clear(prefixRange(STAGE_PREFIX))
      this.staging = { id: chunk.id, next: 0 }
    }
    if (!this.staging || this.staging.id !== chunk.id || this.staging.next !== chunk.seq) {
      throw new GraceError('UNAVAILABLE', 'snapshot chunk out of order; start again')
    }
    await this.db.batch(chunk.pairs.map(([k, v]) => ({ type: 'put' as const, key: STAGE_PREFIX + k, value: v })))
    this.staging.next++
    if (chunk.meta) {
      this.staging = null
      // The data is staged: now the core may take the snapshot (and ready() will say install it).
      this.raft.step({ type: 'snapshot', from, to: this.raft.status().id, term: chunk.term!, meta: chunk.meta })
      this.kick()
    }
  }

  private async installSnapshot(meta: SnapshotMeta): Promise<void> {
    // Applied writes still waiting come from entries the snapshot covers (it is ahead of our
    // commit index): it replaces them, and they must never be written over it.
    this.unstored = []
    this.unstoredApplied = 0
    await this.db.put(INSTALLING_KEY, JSON.stringify(meta), { sync: true })
    await installStaged(this.db, meta)
    this.segments.clear()
    await this.sm.load()
    this.applied = meta.index
    this.storedStateTo(meta.index)
    this.storedLast = meta.index
    this.compactedTo = meta.index
    this.logger.info({ index: meta.index, term: meta.term }, 'snapshot installed')
  }

  private async persist(rd: Ready): Promise<void> {
    if (rd.snapshot) await this.installSnapshot(rd.snapshot)
    const ops: BatchOp[] = this.segments.appendOps(rd.entries)
    const hs = rd.hardState
    if (hs && hs.term === this.persistedTermVote.term && hs.vote === this.persistedTermVote.vote) {
      // Only the commit index moved: it can be re-learned after a crash, so it rides along with
      // whatever is written next instead of costing a write of its own.
      this.commitToStore = hs
    } else if (hs) {
      ops.push({ type: 'put', key: HARD_STATE_KEY, value: JSON.stringify(hs) })
      this.persistedTermVote = { term: hs.term, vote: hs.vote }
      this.commitToStore = null
    }
    if (ops.length === 0) return
    // Entries, terms and votes must be durable before anything depends on them (5.1). Applied
    // state machine writes waiting in memory go in the same batch.
    await this.write(ops, true)
    if (rd.entries.length > 0) this.storedLast = rd.entries[rd.entries.length - 1]!.index
  }

  private persistedTermVote: { term: number; vote: string | null } = { term: -1, vote: null }
  private commitToStore: HardState | null = null

  /**
   * Writes ops in one batch with every applied write waiting in memory (and the applied index
   * and commit index they bring storage to). The only way the driver writes the log or the
   * state machine's data: the Ready loop calls it, one write at a time, so batches land in
   * LevelDB in the order they were made.
   */
  private async write(ops: BatchOp[], sync: boolean): Promise<void> {
    const through = this.unstoredApplied
    if (through > 0) {
      for (const op of this.unstored) ops.push(op)
      ops.push({ type: 'put', key: APPLIED_KEY, value: String(through) })
      this.unstored = []
      this.unstoredApplied = 0
    }
    if (this.commitToStore) {
      ops.push({ type: 'put', key: HARD_STATE_KEY, value: JSON.stringify(this.commitToStore) })
      this.commitToStore = null
    }
    await writeBatch(this.db, ops, sync)
    if (through > 0) this.storedStateTo(through)
  }

  private flushUnstored(): Promise<void> {
    return this.write([], false)
  }

  /** Storage now holds the state machine's data through applied index `index`. */
  private storedStateTo(index: number): void {
    if (index > this.storedApplied) this.storedApplied = index
    if (this.settledWaiters.length === 0) return
    this.settledWaiters = this.settledWaiters.filter((w) => {
      if (w.index > this.storedApplied) return true
      w.resolve()
      return false
    })
  }

  /**
   * Applies committed entries to the state machine's memory and answers their proposals. Their
   * storage writes wait in `unstored` for the next batch (see the top): the entries are
   * committed (durable on a majority, and in this node's log), so the writers are answered now.
   * `applied` counts what memory holds; reads of stored data wait for settled().
   */
  private apply(committed: readonly Entry[]): void {
    if (committed.length === 0) return
    const ops = this.unstored
    const from = this.applied
    for (const e of committed) {
      if (e.index <= this.applied) continue // applied before a restart
      let value: unknown = null
      let ok = true
      if (e.type === 'normal') {
        const { ts, command } = JSON.parse(e.data) as { ts: number; command: CpCommand }
        const entry: LogEntry = { index: e.index, ts, command, commandJson: commandJsonOf(e.data) }
        const mark = ops.length
        try {
          value = this.sm.apply(entry, ops)
        } catch (err) {
          if (!isGraceError(err)) throw err
          ops.length = mark
          ok = false
          value = err
        }
      }
      this.applied = e.index
      // Answered at once: a promise runs its callbacks later, when all of this batch is applied.
      const p = this.proposals.get(e.index)
      if (!p) continue
      this.proposals.delete(e.index)
      settle(p.timer)
      if (p.term !== e.term) p.reject(unavailable('leadership changed before the write committed; it was not applied'))
      else if (ok) p.resolve(value)
      else p.reject(value as Error)
    }
    if (this.applied === from) return
    if (this.unstoredApplied === 0) this.unstoredSince = this.clock.now()
    this.unstoredApplied = this.applied
    if (ops.length >= MAX_UNSTORED_OPS) this.flushDue = true
    else this.scheduleFlush()
    if (this.readsAwaitingApply.length === 0) return
    const ready = this.readsAwaitingApply.filter((r) => r.index <= this.applied)
    this.readsAwaitingApply = this.readsAwaitingApply.filter((r) => r.index > this.applied)
    for (const { read } of ready) {
      read.cancelTimer()
      read.resolve()
    }
  }

  /** Arms the timer that writes applied state once it has waited FLUSH_DELAY_MS for a log write. */
  private scheduleFlush(): void {
    if (this.flushTimer || this.closed) return
    const wait = Math.max(1, this.unstoredSince + FLUSH_DELAY_MS - this.clock.now())
    this.flushTimer = this.clock.setTimer(wait, () => {
      this.flushTimer = null
      if (this.closed || this.unstoredApplied === 0) return
      if (this.clock.now() - this.unstoredSince >= FLUSH_DELAY_MS) {
        this.flushDue = true
        this.kick()
      } else {
        this.scheduleFlush()
      }
    })
  }

  /**
   * The state machine's data in LevelDB is itself the snapshot (written with its applied index),
   * so compaction only records the point and deletes log entries behind it, keeping a tail.
   */
  private async maybeCompact(): Promise<void> {
    if (this.applied - this.compactedTo < this.compactEvery + this.retainEntries) return
    const index = this.applied - this.retainEntries
    const term = this.raft.log.term(index)
    if (term === undefined) return
    const meta = { index, term, membership: this.raft.membershipAt(index) }
    const ops: BatchOp[] = [{ type: 'put', key: SNAPSHOT_KEY, value: JSON.stringify(meta) }, ...this.segments.compactOps(index)]
    // With the applied writes still waiting: the entries deleted here are what replays them.
    await this.write(ops, false)
    this.raft.compact(meta)
    this.compactedTo = index
  }

  // ---- helpers ------------------------------------------------------------------------------

  private timeout(fn: () => void): Cancel {
    return this.clock.setTimer(this.requestTimeoutMs, fn)
  }

  private checkOpen(): void {
    if (this.closed) throw unavailable('the server is shutting down')
    if (this.broken) throw unavailable('storage failed; the server must be restarted')
  }
}

/**
 * Replaces the state machine's data and the log with a staged snapshot, in bounded batches.
 * INSTALLING_KEY marks the work as unfinished until the last batch clears it, so a crash midway
 * is finished at the next start (the staged copy stays until then).
 */
async function installStaged(db: Database, meta: SnapshotMeta): Promise<void> {
  let ops: BatchOp[] = []
  const flush = async () => {
    if (ops.length > 0) await db.batch(ops)
    ops = []
  }
  for await (const key of db.keys()) {
    if (isStateMachineKey(key) || key.startsWith(PREFIX.cpLog)) ops.push({ type: 'del', key })
    if (ops.length >= INSTALL_BATCH_OPS) await flush()
  }
  // The staged copy stays until the install is marked done: a crash in this loop redoes it all.
  for await (const [key, value] of db.iterator(prefixRange(STAGE_PREFIX))) {
    ops.push({ type: 'put', key: key.slice(STAGE_PREFIX.length), value })
    if (ops.length >= INSTALL_BATCH_OPS) await flush()
  }
  ops.push({ type: 'put', key: SNAPSHOT_KEY, value: JSON.stringify(meta) })
  ops.push({ type: 'put', key: APPLIED_KEY, value: String(meta.index) })
  ops.push({ type: 'del', key: INSTALLING_KEY })
  await flush()
  await db.clear(prefixRange(STAGE_PREFIX))
}

/** A normal entry's data: the command and the proposer's clock, as JSON, `ts` first (commandJsonOf). */
function entryData(ts: number, command: CpCommand): string {
  return JSON.stringify({ ts, command })
}

const COMMAND_FIELD = ',"command":'

/**
 * The command's JSON text inside data entryData made: what follows `{"ts":<number>,"command":`,
 * less the closing brace. A number's text holds no `,"`, so the first COMMAND_FIELD is the key.
 */
function commandJsonOf(data: string): string | undefined {
  const at = data.indexOf(COMMAND_FIELD)
  if (at < 0 || !data.startsWith('{"ts":') || !data.endsWith('}')) return undefined
  return data.slice(at + COMMAND_FIELD.length, -1)
}

function unavailable(message: string): GraceError {
  return new GraceError('UNAVAILABLE', message)
}

/** A core refusal as the client sees it: 503, naming the leader when one is known. */
function toGraceError(err: unknown): Error {
  if (err instanceof RaftError && err.reason === 'invalidChange') return new GraceError('MEMBERSHIP_CONFLICT', err.message)
  if (err instanceof RaftError) {
    const leader = err.leader ? ` (leader: ${err.leader})` : ''
    return unavailable(`${err.message}${leader}; retry`)
  }
  return err as Error
}

/** An error from the leader: its GraceError code travels back; a broken link is UNAVAILABLE. */
function fromRemote(err: unknown, leader: NodeId): Error {
  const e = err as { code?: string; remoteCode?: string; message?: string }
  const code = e.remoteCode ?? e.code
  if (code !== undefined && code in ERROR_CODES) return new GraceError(code as ErrorCode, e.message ?? 'error at the leader')
  return unavailable(`the leader ${leader} did not answer (${e.message ?? String(err)}); retry`)
}
