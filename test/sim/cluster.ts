// A deterministic simulation of a Raft cluster that runs the production core (src/cp/raft) on
// simulated time, disks and network, in the manner of TigerBeetle's VOPR and FoundationDB's
// simulator: one event queue ordered by (time, sequence), every random choice drawn from one seed,
// so any run, and any failure, replays exactly from its seed.
//
// What is simulated, and how it can fail:
// - time: each node ticks every TICK_MS (give or take a per-node skew); nothing else moves time;
// - disks: per node, what the driver persisted (hard state, log, snapshot) apart from what is only
//   in memory; a write takes a random fsync latency, so the core keeps stepping and ticking
//   between ready() and advance(); a crash loses memory, and a write in flight lands or not;
// - network: per-message delay (so reordering), loss, duplication, partitions that can be
//   one-way, and healing; messages to a node that is down are lost;
// - snapshots: nodes compact every K applied entries; a leader's snapshot is streamed (a copy of
//   its state machine) to a follower after a delay, and the outcome reported to the leader;
// - clients: a few processes run put, get and compare-and-set on a small set of keys against the
//   node they think leads, with timeouts, and record a history for the linearizability checker;
// - an operator that changes membership one server at a time and moves leadership.
//
// The driver follows the Ready contract of src/cp/raft/types.ts to the letter: persist hard
// state, entries and snapshot; then send; then apply and answer reads; then advance.

import { TimeQueue } from '../../src/core/time-queue.js'
import { Raft, RaftError } from '../../src/cp/raft/raft.js'
import type { ConfigChange, Entry, HardState, Membership, Message, NodeId, Ready, SnapshotMeta } from '../../src/cp/raft/types.js'
import { type CheckedNode, InvariantChecker, SafetyViolation } from './checkers.js'
import { type HistoryOp, type KvInput, type Outcome, checkLinearizable, formatOp } from './linearizability.js'
import { Random } from './random.js'

export const TICK_MS = 10

type Range = readonly [number, number]

export type FaultKind =
  | 'isolate'
  | 'isolateLeader'
  | 'split'
  | 'oneWay'
  | 'deafLeader'
  | 'heal'
  | 'crash'
  | 'crashLeader'
  | 'crashMany'
  | 'nextLeader'
  | 'transfer'
  | 'slowDisk'

export interface Profile {
  readonly name: string
  readonly description: string
  /** Initial cluster sizes to pick from. */
  readonly voters: readonly number[]
  /** How long faults go on; an afterHeal profile then has RECOVERY_MS without faults. */
  readonly durationMs: number
  /** Delay of one message, in ms. */
  readonly delay: Range
  /** Probability of losing, and of duplicating, a message: a range to pick each run's from. */
  readonly drop: Range
  readonly dup: Range
  readonly fsync: Range
  /** Time between faults; null: no faults. */
  readonly faultEveryMs: Range | null
  readonly faults: readonly FaultKind[]
  /** Compact every K applied entries (K picked per node from the range); null: never. */
  readonly snapshotEvery: Range | null
  readonly membership: boolean
  readonly clients: number
  /**
   * strict: no faults at all, so a leader must come within a bound and every operation succeed;
   * afterHeal: once faults stop (and crashed nodes restart), writes must commit again.
   */
  readonly liveness: 'strict' | 'afterHeal'
}

const ALL_PARTITIONS: FaultKind[] = ['isolate', 'isolateLeader', 'split', 'oneWay', 'deafLeader', 'nextLeader', 'heal']
const ALL_CRASHES: FaultKind[] = ['crash', 'crashLeader', 'crashMany', 'nextLeader']

export const PROFILES: Record<string, Profile> = {
  clean: {
    name: 'clean',
    description: 'no faults: a leader within a bound, every operation succeeds',
    voters: [3, 5],
    durationMs: 3000,
    delay: [1, 8],
    drop: [0, 0],
    dup: [0, 0],
    fsync: [1, 6],
    faultEveryMs: null,
    faults: [],
    snapshotEvery: null,
    membership: false,
    clients: 3,
    liveness: 'strict',
  },
  lossy: {
    name: 'lossy',
    description: 'messages lost, duplicated and reordered (wide delays)',
    voters: [3, 5],
    durationMs: 2000,
    delay: [1, 40],
    drop: [0.02, 0.2],
    dup: [0, 0.1],
    fsync: [1, 10],
    faultEveryMs: null,
    faults: [],
    snapshotEvery: null,
    membership: false,
    clients: 3,
    liveness: 'afterHeal',
  },
  partitions: {
    name: 'partitions',
    description: 'symmetric and one-way partitions, an isolated or deaf leader, healing',
    voters: [3, 5],
    durationMs: 2000,
    delay: [1, 15],
    drop: [0, 0.02],
    dup: [0, 0.02],
    fsync: [1, 8],
    faultEveryMs: [80, 400],
    faults: ALL_PARTITIONS,
    snapshotEvery: null,
    membership: false,
    clients: 3,
    liveness: 'afterHeal',
  },
  crashes: {
    name: 'crashes',
    description: 'nodes crash (losing what is not on disk) and restart; slow disks',
    voters: [3, 5],
    durationMs: 2000,
    delay: [1, 10],
    drop: [0, 0.02],
    dup: [0, 0.02],
    fsync: [1, 15],
    faultEveryMs: [80, 400],
    faults: [...ALL_CRASHES, 'slowDisk'],
    snapshotEvery: null,
    membership: false,
    clients: 3,
    liveness: 'afterHeal',
  },
  snapshots: {
    name: 'snapshots',
    description: 'frequent compaction, so lagging or restarted followers need snapshots; partitions and crashes',
    voters: [3, 5],
    durationMs: 2000,
    delay: [1, 15],
    drop: [0, 0.05],
    dup: [0, 0.03],
    fsync: [1, 10],
    faultEveryMs: [100, 400],
    faults: ['isolate', 'isolateLeader', 'split', 'crash', 'crashLeader', 'nextLeader'],
    snapshotEvery: [2, 20],
    membership: false,
    clients: 3,
    liveness: 'afterHeal',
  },
  membership: {
    name: 'membership',
    description: 'learners added, promoted and removed one at a time, leadership moved, under partitions and crashes',
    voters: [3],
    durationMs: 2500,
    delay: [1, 10],
    drop: [0, 0.03],
    dup: [0, 0.02],
    fsync: [1, 8],
    faultEveryMs: [100, 500],
    faults: ['isolate', 'isolateLeader', 'oneWay', 'crash', 'crashLeader', 'nextLeader', 'transfer', 'transfer'],
    snapshotEvery: [5, 40],
    membership: true,
    clients: 3,
    liveness: 'afterHeal',
  },
  chaos: {
    name: 'chaos',
    description: 'everything at once',
    voters: [3, 5],
    durationMs: 2500,
    delay: [1, 30],
    drop: [0, 0.1],
    dup: [0, 0.05],
    fsync: [1, 15],
    faultEveryMs: [60, 300],
    faults: [...ALL_PARTITIONS, ...ALL_CRASHES, 'transfer', 'slowDisk'],
    snapshotEvery: [3, 30],
    membership: true,
    clients: 4,
    liveness: 'afterHeal',
  },
}

export const PROFILE_NAMES = Object.keys(PROFILES)

/** The profile a seed runs under when none is named: the profiles in turn. */
export function profileForSeed(seed: number): string {
  return PROFILE_NAMES[seed % PROFILE_NAMES.length]!
}

export interface SimOptions {
  readonly seed: number
  readonly profile: string
  /** Stop after this many events (the run is then cut short; liveness is not judged). */
  readonly maxSteps?: number
  /** Keep the last `traceLines` lines of a trace of the run; or print them all (`print`). */
  readonly trace?: { readonly keep: number } | 'print'
  /** With a trace: every message delivered, too. */
  readonly traceMessages?: boolean
  /**
   * A deliberately broken driver, to show that the checkers catch what it breaks (the tests of
   * the checkers themselves): forgetVote persists the hard state without the vote; ackEarly
   * sends every message before the fsync, so acknowledgements can outrun the disk.
   */
  readonly mutant?: 'forgetVote' | 'ackEarly'
  /** Overrides the Raft options drawn from the seed (for tests that need a given setting). */
  readonly raft?: { readonly preVote?: boolean; readonly checkQuorum?: boolean; readonly maxInflight?: number; readonly maxEntriesPerAppend?: number }
}

export interface SimStats {
  steps: number
  simMs: number
  messages: number
  dropped: number
  leaderTerms: number
  committed: number
  crashes: number
  snapshotsSent: number
  snapshotsInstalled: number
  compactions: number
  configChanges: number
  transfers: number
  ok: number
  fail: number
  unknown: number
  linearizabilitySteps: number
}

export interface SimResult {
  readonly seed: number
  readonly profile: string
  readonly stats: SimStats
  readonly history: readonly HistoryOp[]
  /** A digest of the run, to show that a seed replays exactly. */
  readonly digest: string
  readonly settings: string
}

export class SimFailure extends Error {
  constructor(
    readonly seed: number,
    readonly profile: string,
    readonly reason: string,
    readonly trace: readonly string[],
  ) {
    super(`${reason}\n  seed ${seed}, profile ${profile}\n  replay: ${replayCommand(seed, profile)}`)
    this.name = 'SimFailure'
  }
}

export function replayCommand(seed: number, profile: string): string {
  return `node dist/test/sim/run.js --seed ${seed} --profile ${profile} --trace`
}

/** A broken liveness expectation (as opposed to a safety violation). */
class LivenessFailure extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'LivenessFailure'
  }
}

// ---- the state machine ------------------------------------------------------------------------

interface Command {
  readonly op: number
  readonly input: KvInput
}

interface KvSnapshot {
  readonly index: number
  readonly pairs: readonly (readonly [string, string])[]
  readonly results: readonly (readonly [number, boolean | undefined])[]
}

/**
 * The replicated key-value store: put, and compare-and-set (reads go through ReadIndex). It
 * remembers each command's result by operation id, so that a command a client retried and that
 * got into the log twice takes effect once (thesis 6.3: the state machine filters duplicates).
 */
class Kv {
  data = new Map<string, string>()
  results = new Map<number, boolean | undefined>()
  applied = 0

  static from(snap: KvSnapshot | null): Kv {
    const kv = new Kv()
    if (snap) {
      kv.data = new Map(snap.pairs)
      kv.results = new Map(snap.results)
      kv.applied = snap.index
    }
    return kv
  }

  /** Applies an entry; returns the command and what it returned (cas: swapped). */
  apply(e: Entry): { cmd: Command | null; output: boolean | undefined } {
    this.applied = e.index
    if (e.type !== 'normal') return { cmd: null, output: undefined }
    const cmd = JSON.parse(e.data) as Command
    if (this.results.has(cmd.op)) return { cmd, output: this.results.get(cmd.op) }
    const i = cmd.input
    let output: boolean | undefined
    if (i.kind === 'put') {
      if (i.value === null) this.data.delete(i.key)
      else this.data.set(i.key, i.value)
    } else if (i.kind === 'cas') {
      output = (this.data.get(i.key) ?? null) === i.expect
      if (output) this.data.set(i.key, i.value)
    } else throw new Error(`a read in the log: ${e.data}`)
    this.results.set(cmd.op, output)
    return { cmd, output }
  }

  get(key: string): string | null {
    return this.data.get(key) ?? null
  }

  snapshot(): KvSnapshot {
    return { index: this.applied, pairs: [...this.data.entries()], results: [...this.results.entries()] }
  }

  fingerprint(): string {
    return [...this.data.entries()]
      .sort((a, b) => (a[0] < b[0] ? -1 : 1))
      .map(([k, v]) => `${k}=${v}`)
      .join(',')
  }
}

// ---- nodes --------------------------------------------------------------------------------------

interface Disk {
  hardState: HardState
  snapshot: { readonly meta: SnapshotMeta; readonly data: KvSnapshot } | null
  /** The entries after the snapshot, in order. */
  entries: Entry[]
}

interface PendingWrite {
  readonly op: ClientOp
  readonly index: number
}

interface SimNode extends CheckedNode {
  readonly id: NodeId
  readonly disk: Disk
  readonly bootstrap: Membership
  raft: Raft
  alive: boolean
  /** Bumped at every crash, so that events meant for an earlier life are ignored. */
  incarnation: number
  decommissioned: boolean
  kv: Kv
  /** The Ready being persisted, between ready() and advance(). */
  inflight: Ready | null
  /** Messages of the in-flight Ready already sent (a leader may send before its fsync). */
  sentEarly: Set<Message>
  /** Snapshot data received from a leader, by `index/term`, waiting for the core to install it. */
  staged: Map<string, KvSnapshot>
  proposals: Map<number, PendingWrite[]>
  /** Reads waiting for their ReadState, by read id. */
  reads: Map<number, ClientOp>
  /** Reads with a read point, waiting for the state machine to reach it. */
  readyReads: { op: ClientOp; index: number }[]
  tickMs: number
  snapshotEvery: number
  /** Multiplies fsync latency (a slow disk). */
  diskFactor: number
  random: Random
}

// ---- clients ------------------------------------------------------------------------------------

interface ClientOp {
  readonly id: number
  readonly client: Client
  readonly input: KvInput
  readonly invoke: number
  readonly invokeTime: number
  attempt: number
  /** How many times a node put it in its log, and how many of those entries were overwritten. */
  proposals: number
  failed: number
  done: boolean
  outcome?: Outcome
  output?: string | null | boolean
  complete?: number
  completeTime?: number
}

interface Client {
  readonly id: number
  /** The share of its operations that are reads: some clients mostly read. */
  readonly reads: number
  leaderGuess: NodeId | null
  /** Values this client wrote or read, per key: what its compare-and-sets expect. */
  readonly seen: Map<string, string | null>
}

type Response =
  | { readonly kind: 'ok'; readonly output?: string | null | boolean }
  | { readonly kind: 'fail' }
  | { readonly kind: 'retry'; readonly leader: NodeId | null; readonly why: string }

// ---- the event queue ----------------------------------------------------------------------------

interface SimEvent {
  readonly time: number
  readonly run: () => void
}

// ---- the simulation -----------------------------------------------------------------------------

const OP_TIMEOUT_MS = 1000
/** A client gives up on one node after this long, and tries another. */
const ATTEMPT_TIMEOUT: Range = [100, 250]
const RECOVERY_MS = 4000
const CATCH_UP_MS = 1000
const CLIENT_DELAY: Range = [1, 4]
const KEYS = ['a', 'b', 'c', 'd']

export class Simulation {
  readonly profile: Profile
  private readonly rng: Random
  private readonly netRng: Random
  private readonly clientRng: Random
  private readonly faultRng: Random
  private readonly queue = new TimeQueue<SimEvent>()
  private now = 0
  private steps = 0
  private readonly nodes = new Map<NodeId, SimNode>()
  private liveNodes: SimNode[] = []
  private readonly checker: InvariantChecker
  /** Directed links that are cut (`from>to`), with how many partitions cut each. */
  private readonly cut = new Map<string, number>()
  /** Clients that cannot reach a node: `c1>n2`. */
  private readonly clientCut = new Map<string, number>()
  /** Bumped by every heal, so that the end of an earlier partition does not undo a later one. */
  private partitionEpoch = 0
  private nextLeaderFault: 'crash' | 'isolate' | null = null
  private lastLeaderTerm = 0
  private readonly clients: Client[] = []
  private readonly ops: ClientOp[] = []
  private historyClock = 0
  private nextOpId = 1
  private nextReadId = 1
  private nextNodeNumber = 1
  /** Faults stop here, crashed nodes restart and the network heals; then writes must commit. */
  private readonly healAt: number
  private readonly endAt: number
  /** Clients stop starting operations here, so that all of them finish before the end. */
  private readonly clientsStopAt: number
  private healed = false
  private joining: NodeId | null = null
  private lastConfigApplied = 0
  /** The membership of the latest committed config entry. */
  private committedMembership: Membership
  private catchUpTarget = 0
  private firstLeaderAt: number | null = null
  private readonly traceLines: string[] = []
  private readonly traceKeep: number
  private readonly tracePrint: boolean
  private readonly traceMessages: boolean
  readonly stats: SimStats = {
    steps: 0,
    simMs: 0,
    messages: 0,
    dropped: 0,
    leaderTerms: 0,
    committed: 0,
    crashes: 0,
    snapshotsSent: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    configChanges: 0,
    transfers: 0,
    ok: 0,
    fail: 0,
    unknown: 0,
    linearizabilitySteps: 0,
  }

  // Per-run settings, drawn from the seed.
  private readonly drop: number
  private readonly dup: number
  private readonly raftOptions: { electionTicks: number; heartbeatTicks: number; maxInflight: number; maxEntriesPerAppend: number; preVote: boolean; checkQuorum: boolean }
  private readonly leaderSendsEarly: boolean
  /** Messages between two nodes arrive in order (a TCP connection), or in any order (datagrams). */
  private readonly fifo: boolean
  private readonly linkClock = new Map<string, number>()
  private readonly keys: readonly string[]
  readonly settings: string

  constructor(private readonly opts: SimOptions) {
    const profile = PROFILES[opts.profile]
    if (!profile) throw new Error(`unknown profile ${opts.profile} (one of ${Object.keys(PROFILES).join(', ')})`)
    this.profile = profile
    this.rng = new Random(opts.seed)
    this.netRng = this.rng.fork()
    this.clientRng = this.rng.fork()
    this.faultRng = this.rng.fork()
    this.traceKeep = opts.trace === 'print' ? 0 : (opts.trace?.keep ?? 0)
    this.tracePrint = opts.trace === 'print'
    this.traceMessages = (this.traceKeep > 0 || this.tracePrint) && opts.traceMessages === true
    this.checker = new InvariantChecker(() => `t=${this.now}ms step ${this.steps}`)

    const r = this.rng
    this.drop = profile.drop[0] + r.float() * (profile.drop[1] - profile.drop[0])
    this.dup = profile.dup[0] + r.float() * (profile.dup[1] - profile.dup[0])
    this.raftOptions = {
      electionTicks: 10,
      heartbeatTicks: r.int(1, 3),
      maxInflight: r.pick([1, 4, 64]),
      maxEntriesPerAppend: r.pick([1, 3, 16, 256]),
      preVote: r.chance(0.8),
      checkQuorum: r.chance(0.8),
    }
    if (opts.raft) Object.assign(this.raftOptions, opts.raft)
    this.leaderSendsEarly = r.chance(0.3)
    this.fifo = profile.name !== 'lossy' && r.chance(0.5)
    this.keys = KEYS.slice(0, r.int(1, KEYS.length))
    // After the heal: time to elect a leader (without PreVote and CheckQuorum, stale candidates
    // can disrupt elections for several hundred ms) and for new operations to commit, then a
    // quiet tail in which every operation finishes and every member catches up.
    this.healAt = profile.liveness === 'strict' ? 0 : profile.durationMs
    this.endAt = profile.durationMs + (profile.liveness === 'strict' ? 0 : RECOVERY_MS)
    this.clientsStopAt = this.endAt - OP_TIMEOUT_MS - 100
    const voters = r.pick(profile.voters)
    this.settings =
      `${voters} voters, drop ${this.drop.toFixed(3)}, dup ${this.dup.toFixed(3)}, ` +
      `heartbeat ${this.raftOptions.heartbeatTicks} ticks, maxInflight ${this.raftOptions.maxInflight}, ` +
      `maxEntries ${this.raftOptions.maxEntriesPerAppend}, preVote ${this.raftOptions.preVote}, checkQuorum ${this.raftOptions.checkQuorum}, ` +
      `leaderSendsEarly ${this.leaderSendsEarly}, ${this.fifo ? 'fifo' : 'reordering'}, keys ${this.keys.length}`

    const ids: NodeId[] = []
    for (let i = 0; i < voters; i++) ids.push(this.newNodeId())
    const bootstrap: Membership = { voters: ids, learners: [] }
    this.committedMembership = bootstrap
    for (const id of ids) this.addNode(id, bootstrap)
    for (let c = 0; c < profile.clients; c++) {
      this.clients.push({ id: c + 1, reads: this.clientRng.pick([0.2, 0.4, 0.9]), leaderGuess: null, seen: new Map() })
    }
  }

  // ---- running ----------------------------------------------------------------------------------

  run(): SimResult {
    this.trace(`settings: ${this.settings}`)
    for (const n of this.nodes.values()) this.start(n)
    for (const c of this.clients) this.at(this.clientRng.int(0, 50), () => this.nextOp(c))
    if (this.profile.faultEveryMs) this.at(this.faultRng.int(...this.profile.faultEveryMs), () => this.nemesis())
    if (this.profile.membership) this.at(this.faultRng.int(200, 500), () => this.operator())
    if (this.healAt > 0) this.at(this.healAt, () => this.heal())
    this.at(this.endAt - CATCH_UP_MS, () => {
      this.catchUpTarget = this.checker.highestCommitted()
    })

    const maxSteps = this.opts.maxSteps ?? Infinity
    for (;;) {
      const ev = this.queue.pop()
      if (!ev || ev.time > this.endAt) break
      if (this.steps >= maxSteps) break
      this.now = ev.time
      this.steps++
      ev.run()
      this.checker.afterStep(this.liveNodes)
    }
    const cutShort = this.steps >= maxSteps
    // Operations still open at the end: the client never heard back.
    for (const op of this.ops) if (!op.done) this.complete(op, op.input.kind === 'get' || op.proposals > op.failed ? 'unknown' : 'fail')

    this.stats.steps = this.steps
    this.stats.simMs = this.now
    this.stats.leaderTerms = this.checker.leaderTerms()
    this.stats.committed = this.checker.highestCommitted()
    const history = this.history()
    if (!cutShort) this.checkLiveness(history)
    const lin = checkLinearizable(history)
    this.stats.linearizabilitySteps = lin.steps
    if (!lin.ok) throw new SafetyViolation(lin.inconclusive ? `linearizability check inconclusive: ${lin.explanation}` : `not linearizable: ${lin.explanation}`)
    return { seed: this.opts.seed, profile: this.profile.name, stats: this.stats, history, digest: this.digest(history), settings: this.settings }
  }

  private at(delay: number, run: () => void): void {
    this.queue.push(this.now + delay, { time: this.now + delay, run })
  }

  traceTail(): string[] {
    return this.traceLines
  }

  private trace(line: string | (() => string)): void {
    if (!this.traceKeep && !this.tracePrint) return
    const text = `${String(this.now).padStart(5)}ms ${typeof line === 'string' ? line : line()}`
    if (this.tracePrint) console.log(text)
    else {
      this.traceLines.push(text)
      if (this.traceLines.length > this.traceKeep) this.traceLines.splice(0, this.traceLines.length - this.traceKeep)
    }
  }

  private history(): HistoryOp[] {
    return this.ops.map((op) => ({
      id: op.id,
      client: op.client.id,
      input: op.input,
      invoke: op.invoke,
      complete: op.complete!,
      outcome: op.outcome!,
      output: op.output,
      invokeTime: op.invokeTime,
      completeTime: op.completeTime,
    }))
  }

  private digest(history: readonly HistoryOp[]): string {
    let h = 0x811c9dc5
    const text = `${this.steps}|${this.now}|${this.stats.messages}|` + history.map((o) => `${o.id}:${o.outcome}:${o.complete}:${String(o.output)}`).join(';')
    for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193)
    return (h >>> 0).toString(16)
  }

  private checkLiveness(history: readonly HistoryOp[]): void {
    const p = this.profile
    if (p.liveness === 'strict') {
      if (this.firstLeaderAt === null || this.firstLeaderAt > 1000) {
        throw new LivenessFailure(`no leader within 1000ms of a fault-free start (first at ${this.firstLeaderAt ?? 'never'})`)
      }
      const bad = history.filter((o) => o.outcome !== 'ok')
      if (bad.length > 0) throw new LivenessFailure(`without faults every operation must succeed; these did not:\n  ${bad.slice(0, 10).map(formatOp).join('\n  ')}`)
      if (history.length < 20) throw new LivenessFailure(`only ${history.length} operations completed in ${this.endAt}ms`)
    } else {
      const after = history.filter((o) => o.outcome === 'ok' && o.input.kind !== 'get' && (o.invokeTime ?? 0) >= this.healAt)
      if (after.length === 0) throw new LivenessFailure(`no write committed after the faults healed at ${this.healAt}ms`)
    }
    // Every member catches up: what was committed CATCH_UP_MS before the end is applied
    // everywhere by the end (the network is whole and every member up by then).
    const target = this.catchUpTarget
    for (const id of [...this.committedMembership.voters, ...this.committedMembership.learners]) {
      const n = this.nodes.get(id)!
      if (!n.alive) throw new LivenessFailure(`${id} is a member but down at the end`)
      if (n.kv.applied < target) {
        throw new LivenessFailure(`${id} applied only through ${n.kv.applied} by the end, but ${target} was committed ${CATCH_UP_MS}ms before (${n.raft.log.describe()})`)
      }
    }
  }

  // ---- nodes ------------------------------------------------------------------------------------

  private newNodeId(): NodeId {
    return `n${this.nextNodeNumber++}`
  }

  private addNode(id: NodeId, bootstrap: Membership): SimNode {
    const r = this.rng.fork()
    const skew = this.profile.faults.length > 0 ? r.int(-1, 1) : 0
    const sr = this.profile.snapshotEvery
    const node: SimNode = {
      id,
      disk: { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] },
      bootstrap,
      raft: null as unknown as Raft,
      alive: false,
      incarnation: 0,
      decommissioned: false,
      kv: new Kv(),
      inflight: null,
      sentEarly: new Set(),
      staged: new Map(),
      proposals: new Map(),
      reads: new Map(),
      readyReads: [],
      tickMs: TICK_MS + skew,
      snapshotEvery: sr ? r.int(sr[0], sr[1]) : 0,
      diskFactor: 1,
      random: r,
    }
    this.nodes.set(id, node)
    return node
  }

  /** Boots a node from what its disk holds (everything in memory is rebuilt). */
  private start(n: SimNode): void {
    const d = n.disk
    n.incarnation++
    const electionRandom = n.random.fork()
    n.raft = new Raft(
      { id: n.id, random: () => electionRandom.float(), ...this.raftOptions },
      {
        hardState: { ...d.hardState },
        snapshot: d.snapshot ? cloneMeta(d.snapshot.meta) : null,
        entries: d.entries.map((e) => ({ ...e })),
        bootstrap: n.bootstrap,
      },
    )
    n.kv = Kv.from(d.snapshot?.data ?? null)
    n.alive = true
    n.inflight = null
    n.sentEarly = new Set()
    n.staged = new Map()
    n.proposals = new Map()
    n.reads = new Map()
    n.readyReads = []
    this.liveNodes = [...this.nodes.values()].filter((x) => x.alive)
    this.checker.onRestart(n.id)
    this.trace(`${n.id} starts: ${n.raft.log.describe()}, term ${d.hardState.term}, vote ${d.hardState.vote}`)
    const inc = n.incarnation
    this.at(n.random.int(1, n.tickMs), () => this.tick(n, inc))
    this.drive(n)
  }

  private crash(n: SimNode): void {
    if (!n.alive) return
    // A write in flight may or may not have reached the disk.
    const landed = n.inflight !== null && n.random.chance(0.5)
    if (n.inflight && landed) this.writeDisk(n, n.inflight)
    this.trace(`${n.id} crashes${n.inflight ? (landed ? ' (its write in flight landed)' : ' (its write in flight is lost)') : ''}`)
    n.alive = false
    n.incarnation++
    n.inflight = null
    this.stats.crashes++
    this.liveNodes = this.liveNodes.filter((x) => x !== n)
  }

  private tick(n: SimNode, inc: number): void {
    if (!n.alive || n.incarnation !== inc) return
    const before = n.raft.softState()
    n.raft.tick()
    const after = n.raft.softState()
    if (after.role !== before.role || after.term !== before.term) this.trace(() => `${n.id} tick: ${before.role}/${before.term} -> ${after.role}/${after.term}`)
    this.drive(n)
    this.at(n.tickMs, () => this.tick(n, inc))
  }

  /** Hands the core's next Ready to the disk, unless one is being persisted already. */
  private drive(n: SimNode): void {
    if (!n.alive || n.inflight || !n.raft.hasReady()) return
    const rd = n.raft.ready()
    n.inflight = rd
    n.sentEarly = new Set()
    const st = n.raft.softState()
    if (st.role === 'leader') {
      if (this.firstLeaderAt === null) this.firstLeaderAt = this.now
      if (st.term > this.lastLeaderTerm) {
        this.lastLeaderTerm = st.term
        this.onNewLeader(n)
      }
    }
    if (this.opts.mutant === 'ackEarly') {
      for (const m of rd.messages) {
        n.sentEarly.add(m)
        this.send(n, m)
      }
    } else if (this.leaderSendsEarly && st.role === 'leader') {
      // Thesis 10.2.1: a leader may send appends before its own fsync, since its own log counts
      // toward commitment only once advance() reports it stable. The term they carry must be on
      // disk already, though: otherwise a crash could let this node lead the same term twice.
      for (const m of rd.messages) {
        if ((m.type === 'append' || m.type === 'heartbeat') && m.term <= n.disk.hardState.term) {
          n.sentEarly.add(m)
          this.send(n, m)
        }
      }
    }
    const diskWork = rd.hardState !== null || rd.entries.length > 0 || rd.snapshot !== null
    const latency = diskWork ? Math.round(this.netRng.int(...this.profile.fsync) * n.diskFactor) : 0
    const inc = n.incarnation
    this.at(latency, () => this.persisted(n, inc, rd))
  }

  /** Step 1 of the Ready contract, on the simulated disk. */
  private writeDisk(n: SimNode, rd: Ready): void {
    const d = n.disk
    if (rd.snapshot) {
      const meta = rd.snapshot
      const data = n.staged.get(`${meta.index}/${meta.term}`)
      if (!data) throw new SafetyViolation(`${n.id}: the core asked to install snapshot ${meta.index}/${meta.term}, which the driver never received`)
      // The snapshot replaces the whole log (7).
      d.snapshot = { meta: cloneMeta(meta), data }
      d.entries = []
    }
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index
      const snapIndex = d.snapshot?.meta.index ?? 0
      const last = snapIndex + d.entries.length
      if (first <= snapIndex || first > last + 1) {
        throw new SafetyViolation(`${n.id}: Ready entries start at ${first}, but the disk holds (${snapIndex}, ${last}]: the log on disk would have a gap or rewrite the snapshot`)
      }
      // Truncate any conflicting suffix, then append (Ready contract, step 1).
      d.entries.length = first - snapIndex - 1
      for (const e of rd.entries) d.entries.push({ ...e })
    }
    if (rd.hardState) {
      this.checker.onPersist(n.id, d.hardState, rd.hardState)
      d.hardState = this.opts.mutant === 'forgetVote' ? { ...rd.hardState, vote: null } : { ...rd.hardState }
    }
    const lastOnDisk = (d.snapshot?.meta.index ?? 0) + d.entries.length
    if (d.hardState.commit > lastOnDisk) {
      throw new SafetyViolation(`${n.id}: persisted commit index ${d.hardState.commit} is beyond the log on disk (${lastOnDisk}): a restart could not load it`)
    }
  }

  /** The fsync finished: steps 2 to 4 of the Ready contract. */
  private persisted(n: SimNode, inc: number, rd: Ready): void {
    if (!n.alive || n.incarnation !== inc) return
    this.writeDisk(n, rd)
    if (rd.snapshot) {
      const meta = rd.snapshot
      n.kv = Kv.from(n.disk.snapshot!.data)
      // Staged snapshots up to this one are useless now; a later one may be on its way in.
      for (const [k, data] of n.staged) if (data.index <= meta.index) n.staged.delete(k)
      this.stats.snapshotsInstalled++
      this.checker.onSnapshotInstalled(n.id, meta, n.kv.fingerprint())
      this.trace(`${n.id} installs snapshot ${meta.index}/${meta.term}`)
    }
    const disk = { hardState: n.disk.hardState, snapshotIndex: n.disk.snapshot?.meta.index ?? 0, lastIndex: (n.disk.snapshot?.meta.index ?? 0) + n.disk.entries.length }
    for (const m of rd.messages) {
      if (this.opts.mutant !== 'ackEarly') this.checker.onSend(m, disk)
      if (!n.sentEarly.has(m)) this.send(n, m)
    }
    for (const e of rd.committed) this.applyEntry(n, e)
    for (const rs of rd.readStates) {
      const op = n.reads.get(rs.id)
      if (!op) continue
      n.reads.delete(rs.id)
      n.readyReads.push({ op, index: rs.index })
    }
    this.answerReads(n)
    n.raft.advance(rd)
    n.inflight = null
    n.sentEarly = new Set()
    this.maybeCompact(n)
    this.drive(n)
  }

  private applyEntry(n: SimNode, e: Entry): void {
    if (e.index !== n.kv.applied + 1) {
      throw new SafetyViolation(`${n.id}: the core handed out entry ${e.index} to apply, but the state machine is at ${n.kv.applied}`)
    }
    // Ready contract: entries are applied only once they are on disk (a crash must not undo an
    // application that a client may have seen).
    const d = n.disk
    const snapIndex = d.snapshot?.meta.index ?? 0
    if (e.index > snapIndex && d.entries[e.index - snapIndex - 1]?.term !== e.term) {
      throw new SafetyViolation(`${n.id}: the core handed out ${e.index}/${e.term} to apply, but it is not on disk`)
    }
    const { cmd, output } = n.kv.apply(e)
    this.checker.onApply(n.id, e, n.kv.fingerprint())
    const pending = n.proposals.get(e.index)
    if (pending) {
      n.proposals.delete(e.index)
      for (const p of pending) {
        // Another command committed where ours was: ours was overwritten and can never commit.
        if (cmd?.op === p.op.id) this.respond(n, p.op, { kind: 'ok', output })
        else {
          p.op.failed++
          this.respond(n, p.op, { kind: 'fail' })
        }
      }
    }
    if (e.type === 'config') this.onConfigApplied(n, e)
  }

  private answerReads(n: SimNode): void {
    if (n.readyReads.length === 0) return
    const waiting: { op: ClientOp; index: number }[] = []
    for (const r of n.readyReads) {
      if (r.index <= n.kv.applied) this.respond(n, r.op, { kind: 'ok', output: n.kv.get(r.op.input.key) })
      else waiting.push(r)
    }
    n.readyReads = waiting
  }

  /** Compacts the log behind a snapshot of the state machine every K applied entries. */
  private maybeCompact(n: SimNode): void {
    if (!n.snapshotEvery) return
    const base = n.disk.snapshot?.meta.index ?? 0
    const index = n.kv.applied
    if (index - base < n.snapshotEvery) return
    // A snapshot from the leader, restored in the core but not yet installed here, covers more.
    if (index <= n.raft.log.snapshotIndex()) return
    const term = n.raft.log.term(index)
    if (term === undefined) throw new SafetyViolation(`${n.id}: applied ${index}, but the core's log has no term there (${n.raft.log.describe()})`)
    const meta: SnapshotMeta = { index, term, membership: n.raft.membershipAt(index) }
    n.disk.snapshot = { meta, data: n.kv.snapshot() }
    n.disk.entries = n.disk.entries.filter((e) => e.index > index)
    n.raft.compact(meta)
    this.stats.compactions++
    this.trace(() => `${n.id} compacts through ${index}/${term}`)
  }

  // ---- network ----------------------------------------------------------------------------------

  private linkUp(from: NodeId, to: NodeId): boolean {
    return !this.cut.has(`${from}>${to}`)
  }

  private send(from: SimNode, m: Message): void {
    this.stats.messages++
    if (m.type === 'snapshot') return this.streamSnapshot(from, m)
    const to = this.nodes.get(m.to)
    if (!to || !this.linkUp(from.id, m.to) || !to.alive) {
      this.stats.dropped++
      // The transport notices a dead or unreachable peer; the core stops pipelining to it.
      if (m.type === 'append') {
        const inc = from.incarnation
        this.at(1, () => {
          if (!from.alive || from.incarnation !== inc) return
          from.raft.reportUnreachable(m.to)
          this.drive(from)
        })
      }
      return
    }
    if (this.netRng.chance(this.drop)) {
      this.stats.dropped++
      return
    }
    const copies = this.netRng.chance(this.dup) ? 2 : 1
    for (let k = 0; k < copies; k++) {
      const copy = cloneMessage(m)
      let delay = this.netRng.int(...this.profile.delay)
      if (this.fifo) {
        // One connection per pair of nodes: what is sent first arrives first.
        const link = `${m.from}>${m.to}`
        const at = Math.max(this.now + delay, this.linkClock.get(link) ?? 0)
        this.linkClock.set(link, at)
        delay = at - this.now
      }
      this.at(delay, () => this.deliver(copy))
    }
  }

  private deliver(m: Message): void {
    const to = this.nodes.get(m.to)
    if (!to || !to.alive || !this.linkUp(m.from, m.to)) {
      this.stats.dropped++
      return
    }
    this.step(to, m)
  }

  private step(n: SimNode, m: Message): void {
    if (this.traceMessages) this.trace(() => `${n.id} <- ${describeMessage(m)}`)
    const before = n.raft.softState()
    n.raft.step(m)
    const after = n.raft.softState()
    if (after.role !== before.role || after.term !== before.term) {
      this.trace(() => `${n.id} on ${m.type} from ${m.from} (term ${m.term}): ${before.role}/${before.term} -> ${after.role}/${after.term}`)
    }
    this.drive(n)
  }

  /**
   * The core names a snapshot; the driver streams the data. Here: a copy of the leader's
   * snapshot arrives after a delay, is staged, and only then is the message given to the
   * follower's core; the leader hears how it went.
   */
  private streamSnapshot(from: SimNode, m: Extract<Message, { type: 'snapshot' }>): void {
    const key = `${m.meta.index}/${m.meta.term}`
    const own = from.disk.snapshot
    const data = own && own.meta.index === m.meta.index && own.meta.term === m.meta.term ? own.data : from.staged.get(key)
    const inc = from.incarnation
    if (!data) {
      // The node compacted again between the core naming this snapshot and the send: the data
      // is gone. A driver reports the send failed; the core then picks the current snapshot.
      if (!own || own.meta.index <= m.meta.index) throw new SafetyViolation(`${from.id} sent snapshot ${key} to ${m.to}, but has no such snapshot`)
      this.trace(() => `${from.id} cannot stream snapshot ${key} (replaced by ${own.meta.index}/${own.meta.term})`)
      this.at(1, () => {
        if (!from.alive || from.incarnation !== inc) return
        from.raft.reportSnapshot(m.to, false)
        this.drive(from)
      })
      return
    }
    this.stats.snapshotsSent++
    const copy = cloneMessage(m)
    this.trace(() => `${from.id} streams snapshot ${key} to ${m.to}`)
    this.at(this.netRng.int(10, 60), () => {
      const to = this.nodes.get(m.to)
      const ok = !!to && to.alive && this.linkUp(from.id, m.to) && this.linkUp(m.to, from.id) && !this.netRng.chance(this.drop)
      if (ok) {
        to.staged.set(key, { index: data.index, pairs: data.pairs.map(([k, v]) => [k, v] as const), results: data.results.map(([k, v]) => [k, v] as const) })
        this.step(to, copy)
      }
      if (from.alive && from.incarnation === inc) {
        from.raft.reportSnapshot(m.to, ok)
        this.drive(from)
      }
    })
  }

  // ---- clients ----------------------------------------------------------------------------------

  private nextOp(c: Client): void {
    if (this.now >= this.clientsStopAt) return
    const r = this.clientRng
    const key = r.pick(this.keys)
    const x = r.float()
    const value = `v${this.nextOpId}`
    let input: KvInput
    if (x < c.reads) input = { kind: 'get', key }
    else if (x < c.reads + (1 - c.reads) * 0.6) input = { kind: 'put', key, value }
    else input = { kind: 'cas', key, expect: r.chance(0.15) ? null : (c.seen.get(key) ?? null), value }
    const op: ClientOp = { id: this.nextOpId++, client: c, input, invoke: ++this.historyClock, invokeTime: this.now, attempt: 0, proposals: 0, failed: 0, done: false }
    this.ops.push(op)
    this.at(OP_TIMEOUT_MS, () => {
      if (op.done) return
      // Requests still on their way are dropped on arrival (they carry the deadline), so an
      // operation none of whose entries can still commit definitely did not happen.
      this.complete(op, op.input.kind === 'get' || op.proposals > op.failed ? 'unknown' : 'fail')
    })
    this.attempt(op, c.leaderGuess ?? this.randomNode(r))
  }

  private randomNode(r: Random): NodeId {
    const candidates = [...this.nodes.values()].filter((n) => !n.decommissioned)
    return r.pick(candidates).id
  }

  private attempt(op: ClientOp, target: NodeId): void {
    const attempt = ++op.attempt
    if (this.clientCut.has(`c${op.client.id}>${target}`)) {
      // No route: the connection attempt times out.
      this.trace(() => `client ${op.client.id}: #${op.id} ${op.input.kind} -> ${target} (attempt ${attempt}, unreachable)`)
      this.at(this.netRng.int(20, 60), () => this.receive(op, attempt, { kind: 'retry', leader: null, why: 'unreachable' }))
      return
    }
    const delay = this.clientDelay()
    this.trace(() => `client ${op.client.id}: #${op.id} ${op.input.kind} -> ${target} (attempt ${attempt}, ${delay}ms)`)
    this.at(delay, () => this.serve(op, attempt, target))
    // No answer in time: try another node (the state machine drops a duplicate write). The
    // wait doubles with each attempt, so that retries cannot swamp a slow cluster.
    this.at(this.clientRng.int(...ATTEMPT_TIMEOUT) * 2 ** Math.min(attempt - 1, 4), () => {
      if (op.done || op.attempt !== attempt) return
      op.client.leaderGuess = null
      const others = this.members().filter((x) => x !== target)
      this.attempt(op, others.length > 0 ? this.clientRng.pick(others) : target)
    })
  }

  /**
   * Clients talk to nodes over TCP: a lost packet is retransmitted, so it shows as delay, not
   * loss. (Silent loss would leave the client unsure whether to retry a write it may have made.)
   */
  private clientDelay(): number {
    const d = this.netRng.int(...CLIENT_DELAY)
    return this.netRng.chance(this.drop) ? d + this.netRng.int(50, 200) : d
  }

  /** A node receives a client request. */
  private serve(op: ClientOp, attempt: number, id: NodeId): void {
    // The request carries its deadline: a node drops a request whose client gave up.
    if (op.done || attempt !== op.attempt) return
    const n = this.nodes.get(id)!
    if (!n.alive) return this.reply(op, attempt, id, { kind: 'retry', leader: null, why: 'refused' })
    try {
      if (op.input.kind === 'get') {
        const readId = this.nextReadId++
        n.raft.readIndex(readId)
        n.reads.set(readId, op)
      } else {
        const index = n.raft.propose([JSON.stringify({ op: op.id, input: op.input } satisfies Command)])
        op.proposals++
        let list = n.proposals.get(index)
        if (!list) n.proposals.set(index, (list = []))
        list.push({ op, index })
        this.trace(() => `${n.id} proposes #${op.id} at ${index}`)
      }
    } catch (err) {
      if (!(err instanceof RaftError)) throw err
      this.reply(op, attempt, id, { kind: 'retry', leader: err.leader, why: err.reason })
    }
    this.drive(n)
  }

  /** A node answers the request's current attempt (whatever node it is on). */
  private respond(n: SimNode, op: ClientOp, res: Response): void {
    this.reply(op, op.attempt, n.id, res)
  }

  private reply(op: ClientOp, attempt: number, from: NodeId, res: Response): void {
    if (op.done) return
    // A client cut off from the node never hears back, and times out.
    if (this.clientCut.has(`c${op.client.id}>${from}`)) return
    this.at(this.clientDelay(), () => this.receive(op, attempt, res))
  }

  private receive(op: ClientOp, attempt: number, res: Response): void {
    if (op.done) return
    const c = op.client
    if (res.kind === 'ok') {
      // From any attempt: the operation happened (once).
      if (op.input.kind === 'get') c.seen.set(op.input.key, res.output as string | null)
      else if (op.input.kind === 'put' || res.output === true) c.seen.set(op.input.key, op.input.value)
      this.complete(op, 'ok', res.output)
    } else if (res.kind === 'fail') {
      // Overwritten: final only when every entry the operation got into the log was.
      if (op.failed === op.proposals) this.complete(op, 'fail')
    } else if (attempt === op.attempt) {
      this.trace(() => `client ${c.id}: #${op.id} ${res.why}${res.leader ? `, leader ${res.leader}` : ''}`)
      if (res.leader) c.leaderGuess = res.leader
      else c.leaderGuess = null
      const next = res.leader ?? this.randomNode(this.clientRng)
      this.at(this.clientRng.int(2, 20), () => {
        if (!op.done) this.attempt(op, next)
      })
    }
  }

  private complete(op: ClientOp, outcome: Outcome, output?: string | null | boolean): void {
    op.done = true
    op.outcome = outcome
    op.output = output
    op.complete = outcome === 'ok' ? ++this.historyClock : Infinity
    op.completeTime = this.now
    this.stats[outcome]++
    this.trace(() => `client ${op.client.id}: ${formatOp({ ...op, client: op.client.id, complete: op.complete!, outcome })}`)
    const c = op.client
    this.at(this.clientRng.int(0, 20), () => this.nextOp(c))
  }

  // ---- faults, membership, healing --------------------------------------------------------------

  /** The leader of the highest term among live nodes, if any. */
  private leader(): SimNode | null {
    let best: SimNode | null = null
    for (const n of this.liveNodes) {
      const st = n.raft.softState()
      if (st.role === 'leader' && (!best || st.term > best.raft.softState().term)) best = n
    }
    return best
  }

  private members(): NodeId[] {
    return [...this.nodes.values()].filter((n) => !n.decommissioned).map((n) => n.id)
  }

  private nemesis(): void {
    if (this.healed) return
    const r = this.faultRng
    const kind = r.pick(this.profile.faults)
    const ids = this.members()
    const leader = this.leader()
    const lasting = (): number => r.int(50, 900)
    switch (kind) {
      case 'isolate':
      case 'isolateLeader': {
        const victim = kind === 'isolateLeader' && leader ? leader.id : r.pick(ids)
        this.isolate(victim, lasting())
        break
      }
      case 'split': {
        const shuffled = r.shuffle(ids)
        if (shuffled.length < 2) break
        const k = r.int(1, Math.floor(shuffled.length / 2))
        const a = shuffled.slice(0, k)
        const b = shuffled.slice(k)
        const cuts: string[] = []
        for (const x of a) {
          for (const y of b) cuts.push(`${x}>${y}`, `${y}>${x}`)
        }
        // Each client is on one side or the other, and cannot reach the other side.
        const clientCuts: string[] = []
        for (const c of this.clients) for (const x of r.chance(0.5) ? a : b) clientCuts.push(`c${c.id}>${x}`)
        this.partition(`split [${a}] | [${b}]`, cuts, clientCuts, lasting())
        break
      }
      case 'oneWay': {
        if (ids.length < 2) break
        const cuts: string[] = []
        for (let i = r.int(1, ids.length); i > 0; i--) {
          const from = r.pick(ids)
          cuts.push(`${from}>${r.pick(ids.filter((x) => x !== from))}`)
        }
        this.partition(`cut one way ${cuts.join(' ')}`, cuts, [], lasting())
        break
      }
      case 'deafLeader': {
        // The leader's heartbeats go out, but nothing comes back (CheckQuorum, 6.2).
        if (!leader) break
        const cuts = [...this.nodes.keys()].filter((x) => x !== leader.id).map((x) => `${x}>${leader.id}`)
        this.partition(`${leader.id} hears nothing`, cuts, [], lasting())
        break
      }
      case 'heal':
        this.cut.clear()
        this.clientCut.clear()
        this.partitionEpoch++
        this.trace('nemesis: heal the network')
        break
      case 'crash':
      case 'crashLeader':
      case 'crashMany': {
        const live = this.liveNodes
        if (live.length === 0) break
        const victims = kind === 'crashLeader' && leader ? [leader] : kind === 'crashMany' ? r.shuffle(live).slice(0, r.int(Math.min(2, live.length), live.length)) : [r.pick(live)]
        for (const v of victims) this.crashFor(v, r.int(10, 600))
        break
      }
      case 'nextLeader':
        // Strikes the next leader right after its election, before its first entry can
        // commit: the moment Figure 8 of the paper is about (5.4.2).
        this.nextLeaderFault = this.profile.faults.some((f) => f.startsWith('crash')) && r.chance(0.5) ? 'crash' : 'isolate'
        break
      case 'transfer': {
        if (!leader) break
        const voters = leader.raft.status().membership.voters.filter((x) => x !== leader.id)
        if (voters.length === 0) break
        const to = r.pick(voters)
        try {
          leader.raft.transferLeadership(to)
          this.stats.transfers++
          this.trace(`operator: move leadership from ${leader.id} to ${to}`)
        } catch (err) {
          if (!(err instanceof RaftError)) throw err
        }
        this.drive(leader)
        break
      }
      case 'slowDisk': {
        const v = r.pick([...this.nodes.values()])
        v.diskFactor = r.pick([1, 5, 20])
        this.trace(`nemesis: ${v.id}'s disk latency x${v.diskFactor}`)
        break
      }
    }
    this.at(r.int(...this.profile.faultEveryMs!), () => this.nemesis())
  }

  /** Cuts a node off from every other node, and from about half of the clients. */
  private isolate(victim: NodeId, ms: number): void {
    const cuts: string[] = []
    for (const other of this.nodes.keys()) if (other !== victim) cuts.push(`${victim}>${other}`, `${other}>${victim}`)
    const clientCuts = this.clients.filter(() => this.faultRng.chance(0.5)).map((c) => `c${c.id}>${victim}`)
    this.partition(`isolate ${victim}`, cuts, clientCuts, ms)
  }

  /** Cuts links for a while; a heal in between ends every partition at once. */
  private partition(what: string, cuts: readonly string[], clientCuts: readonly string[], ms: number): void {
    for (const c of cuts) this.cut.set(c, (this.cut.get(c) ?? 0) + 1)
    for (const c of clientCuts) this.clientCut.set(c, (this.clientCut.get(c) ?? 0) + 1)
    this.trace(`nemesis: ${what} for ${ms}ms${clientCuts.length ? ` (clients cut: ${clientCuts.join(' ')})` : ''}`)
    const epoch = this.partitionEpoch
    this.at(ms, () => {
      if (epoch !== this.partitionEpoch) return
      for (const c of cuts) release(this.cut, c)
      for (const c of clientCuts) release(this.clientCut, c)
      this.trace(`nemesis: end of ${what}`)
    })
  }

  private crashFor(n: SimNode, ms: number): void {
    if (!n.alive) return
    this.crash(n)
    this.at(ms, () => this.restart(n))
  }

  /** A node just became leader of a new term. */
  private onNewLeader(n: SimNode): void {
    const fault = this.nextLeaderFault
    if (!fault || this.healed) return
    this.nextLeaderFault = null
    const r = this.faultRng
    this.at(r.int(0, 15), () => {
      if (this.healed) return
      if (fault === 'crash') this.crashFor(n, r.int(10, 600))
      else this.isolate(n.id, r.int(50, 900))
    })
  }

  private restart(n: SimNode): void {
    if (n.alive || n.decommissioned || this.healed) return
    this.start(n)
  }

  /** The end of the faults: heal the network, restart every node, and let the cluster settle. */
  private heal(): void {
    this.healed = true
    this.cut.clear()
    this.clientCut.clear()
    this.partitionEpoch++
    for (const n of this.nodes.values()) {
      n.diskFactor = 1
      if (!n.alive && !n.decommissioned) this.start(n)
    }
    this.trace('heal: network whole, every node up')
  }

  /** Membership changes, one server at a time (thesis 4.1): add a learner, promote it, remove a node. */
  private operator(): void {
    if (this.healed) return
    const r = this.faultRng
    this.at(r.int(150, 500), () => this.operator())
    const leader = this.leader()
    if (!leader) return
    const m = leader.raft.status().membership
    let change: ConfigChange
    if (m.learners.length > 0 && r.chance(0.8)) change = { op: 'promote', id: r.pick(m.learners) }
    else if (m.voters.length < 5 && r.chance(0.6)) change = { op: 'addLearner', id: this.joining ?? this.newNodeId() }
    else if (m.voters.length > 3 || (m.voters.length === 3 && m.learners.length > 0 && r.chance(0.3))) {
      change = { op: 'remove', id: m.learners.length > 0 && r.chance(0.3) ? r.pick(m.learners) : r.pick(m.voters) }
    } else return
    if (change.op === 'addLearner' && !this.nodes.has(change.id)) {
      // A new server starts empty and learns the membership from the leader.
      this.start(this.addNode(change.id, { voters: [], learners: [] }))
    }
    try {
      leader.raft.proposeConfigChange(change)
      if (change.op === 'addLearner') this.joining = change.id
      this.trace(`operator: propose ${change.op} ${change.id} at ${leader.id}`)
    } catch (err) {
      if (!(err instanceof RaftError)) throw err
    }
    this.drive(leader)
  }

  /** A node applied a membership change: servers no longer in the cluster are shut down. */
  private onConfigApplied(_n: SimNode, e: Entry): void {
    // Committed, so any node's word is good; but only newer than the last one acted on.
    if (e.index <= this.lastConfigApplied) return
    this.lastConfigApplied = e.index
    this.stats.configChanges++
    const m = JSON.parse(e.data) as Membership
    this.committedMembership = m
    if (this.joining && m.learners.includes(this.joining)) this.joining = null
    for (const other of this.nodes.values()) {
      if (other.decommissioned || m.voters.includes(other.id) || m.learners.includes(other.id) || other.id === this.joining) continue
      // Wait a little, so that it hears of its removal (4.2.2), then turn it off for good.
      other.decommissioned = true
      this.trace(`operator: ${other.id} is out of the cluster (entry ${e.index}) and will be shut down`)
      this.at(this.faultRng.int(50, 300), () => this.crash(other))
    }
  }
}

function describeMessage(m: Message): string {
  const base = `${m.type} from ${m.from} t${m.term}`
  switch (m.type) {
    case 'append':
      return `${base} prev ${m.prevIndex}/${m.prevTerm} [${m.entries.map((e) => `${e.index}/${e.term}`).join(' ')}] commit ${m.commit}`
    case 'appendResp':
      return `${base} ${m.success ? 'ok' : 'reject'} ${m.index} hint ${m.hintIndex}/${m.hintTerm}`
    case 'heartbeat':
      return `${base} commit ${m.commit} ctx ${m.context}`
    case 'heartbeatResp':
      return `${base} ctx ${m.context}`
    case 'preVote':
    case 'vote':
      return `${base} last ${m.lastIndex}/${m.lastTerm}`
    case 'preVoteResp':
    case 'voteResp':
      return `${base} ${m.granted ? 'granted' : 'rejected'}`
    case 'snapshot':
      return `${base} ${m.meta.index}/${m.meta.term}`
    case 'timeoutNow':
      return base
  }
}

function release(counts: Map<string, number>, key: string): void {
  const n = (counts.get(key) ?? 0) - 1
  if (n > 0) counts.set(key, n)
  else counts.delete(key)
}

function cloneMeta(m: SnapshotMeta): SnapshotMeta {
  return { index: m.index, term: m.term, membership: { voters: [...m.membership.voters], learners: [...m.membership.learners] } }
}

/** What the network carries is a copy: nothing is shared between nodes. */
function cloneMessage(m: Message): Message {
  if (m.type === 'append') return { ...m, entries: m.entries.map((e) => ({ ...e })) }
  if (m.type === 'snapshot') return { ...m, meta: cloneMeta(m.meta) }
  return { ...m }
}

/**
 * Runs one seed and checks everything: the invariants after every step, linearizability of the
 * clients' history, and liveness. On failure, runs the seed again with a trace and throws a
 * SimFailure that carries the seed, the last lines of the trace and the replay command.
 */
export function runSimulation(
  seed: number,
  profile: string,
  opts: { maxSteps?: number; traceKeep?: number; mutant?: SimOptions['mutant']; raft?: SimOptions['raft'] } = {},
): SimResult {
  try {
    return new Simulation({ seed, profile, maxSteps: opts.maxSteps, mutant: opts.mutant, raft: opts.raft }).run()
  } catch (err) {
    const reason = describeError(err)
    if (opts.traceKeep === 0) throw new SimFailure(seed, profile, reason, [])
    // Same seed, same run: this time with the trace on, to show what led up to the failure.
    const again = new Simulation({ seed, profile, maxSteps: opts.maxSteps, mutant: opts.mutant, raft: opts.raft, trace: { keep: opts.traceKeep ?? 60 } })
    try {
      again.run()
    } catch {
      // expected: the same failure
    }
    throw new SimFailure(seed, profile, reason, again.traceTail())
  }
}

function describeError(err: unknown): string {
  if (err instanceof SafetyViolation) return `safety: ${err.message}`
  if (err instanceof LivenessFailure) return `liveness: ${err.message}`
  if (err instanceof Error) return `${err.name} thrown during the run: ${err.message}\n${err.stack?.split('\n').slice(1, 8).join('\n')}`
  return String(err)
}
