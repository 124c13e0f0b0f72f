// A deterministic simulation of a Distro cluster (issue 4, item 8) running the production AP
// stack of every node (distro-stack.ts): an EphemeralCluster (its DistroNode store, ownership,
// forwarding, leases moving with ownership, self-preservation), a NamingService with its
// NamingView and ClientLeases, wired exactly as createGraceNode (src/node.ts) wires them. The CP
// log is a stub: only ephemeral data is exercised. Everything runs on one ManualClock and a seeded in-memory network
// (distro-network.ts); the clock moves in STEP_MS steps and every promise continuation runs
// between steps, so a seed replays exactly.
//
// What one seed does:
// 1. Boots 3 nodes (sometimes 4 or 5), all at once, fully connected.
// 2. Runs 6 to 12 clients, each with a clientId and 1 to 3 instances spread over a few services.
//    Each registers its instances one at a time (retrying on errors), then beats every 5 s (one
//    beat per instance, naming the client and the instance; an answer `registered: false` makes it
//    register that instance again, as the SDK does). Half the clients send each request through a
//    random node; the other half, as the SDK does, through one node they keep until a request
//    through it fails (so a client cut off with a node beats that node alone). Some clients die
//    (stop everything) at a random time; some deregister (stop beating, deregister every
//    instance, retrying on errors).
// 3. Meanwhile, for 100 to 150 s, a random schedule of faults: one node isolated, 2|1, 2|2, 2|3,
//    1|2|2 splits, heals, node crashes with restarts 1 to 40 s later (a restarted node starts
//    empty with a fresh EphemeralCluster/NamingService stack and loads from a peer), periods of
//    message loss and of long delays (reordering).
// 4. Heals everything (restarts the nodes that are down, no loss, short delays) and runs 90 s
//    more, quiet but for the clients still beating: enough for dead clients' leases to run out
//    after any takeover grace, and for several verification rounds.
// 5. Stops the clients, lets 2 s pass, and checks convergence (distro-checkers.ts, checker 1).
// Checker 2 (no LIVE client's instance removed) watches every store change the whole time and
// fails the run at the end of the step where a violation happened.
//
// Any failure names the seed and the command that replays it with a full trace:
//
//   node dist/test/sim/distro-run.js --seed 12345 --trace

import { createHash } from 'node:crypto'
import type { ChangeOrigin } from '../../src/ap/node/distro-node.js'
import type { ClientRecord } from '../../src/ap/store.js'
import type { Membership } from '../../src/cluster/membership.js'
import type { EphemeralCluster } from '../../src/consistency/ephemeral-cluster.js'
import { ManualClock } from '../../src/core/clock.js'
import type { Logger } from '../../src/core/logger.js'
import type { ClientLeases } from '../../src/naming/leases.js'
import { type Instance, type ServiceName, DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE } from '../../src/naming/model.js'
import type { NamingService } from '../../src/naming/service.js'
import type { NamingView } from '../../src/naming/view.js'
import { Liveness, NoLiveRemovalChecker, SETTLE_MS, convergenceProblems, instanceKey } from './distro-checkers.js'
import { SimNetwork } from './distro-network.js'
import { buildDistroStack, startStack, stopStack } from './distro-stack.js'
import { Random } from './random.js'

export const STEP_MS = 10
const BEAT_MS = 5_000
const RETRY_MS = 1_000
const QUIET_MS = 90_000
const SETTLE_AFTER_CLIENTS_STOP_MS = 2_000
const SERVICES: readonly ServiceName[] = ['orders', 'payments', 'stock'].map((service) => ({ namespace: DEFAULT_NAMESPACE, group: DEFAULT_GROUP, service }))

export interface DistroSimOptions {
  /** 'print': every trace line as it happens; otherwise the last traceKeep lines go in a failure. */
  trace?: 'print' | 'ring'
  traceKeep?: number
  /**
   * false: every client sends each request through a random node, and no draw decides it, so a
   * seed runs exactly as it did before sticky clients (the regression seeds found then).
   */
  stickyClients?: boolean
}

export interface DistroSimStats {
  nodes: number
  clients: number
  simMs: number
  faults: number
  crashes: number
  partitions: number
  registrations: number
  beats: number
  countedBeats: number
  beatErrors: number
  unregisteredAnswers: number
  deregistrations: number
  loads: number
  messages: number
  dropped: number
  removals: number
  removalsWhileBeating: number
  unhealthyWhileLive: number
  lateRemovals: number
  /** Clients a node wrote again over another's removal, having heard from them since (DistroNode.restoreIfHeard). */
  restored: number
}

export interface DistroSimResult {
  readonly seed: number
  readonly stats: DistroSimStats
  /** A hash of every node's final records: equal runs give equal digests. */
  readonly digest: string
  readonly settings: string
}

export class DistroSimFailure extends Error {
  constructor(
    readonly seed: number,
    readonly reason: string,
    readonly trace: readonly string[],
  ) {
    super(`${reason}\n  seed ${seed}\n  replay: ${distroReplayCommand(seed)}`)
    this.name = 'DistroSimFailure'
  }
}

export function distroReplayCommand(seed: number): string {
  return `node dist/test/sim/distro-run.js --seed ${seed} --trace`
}

/** Lets every promise continuation run (microtasks, then one macrotask turn). */
function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

class SimNode {
  incarnation = 0
  up = false
  ready = false
  cluster!: EphemeralCluster
  membership!: Membership
  naming!: NamingService
  leases!: ClientLeases
  view!: NamingView
  constructor(readonly id: string) {}
}

type Fate = 'live' | 'die' | 'deregister'
type Phase = 'idle' | 'registering' | 'beating' | 'deregistering' | 'stopped'

class SimClient {
  phase: Phase = 'idle'
  readonly acked = new Set<string>()
  readonly queue: Instance[] = []
  busy = false
  /** A sticky client's node, until a request through it fails or it goes down; null: pick one. */
  home: SimNode | null = null
  constructor(
    readonly id: string,
    readonly instances: readonly Instance[],
    readonly fate: Fate,
    readonly startAt: number,
    readonly endAt: number,
    /** Sends every request through one node (`home`), as the SDK does, rather than a random one each time. */
    readonly sticky: boolean,
  ) {}
}

class Simulation {
  readonly clock = new ManualClock()
  readonly rnd: Random
  readonly net: SimNetwork
  readonly nodes: SimNode[] = []
  readonly clients: SimClient[] = []
  readonly liveness = new Liveness()
  readonly checker: NoLiveRemovalChecker
  readonly stats: DistroSimStats
  private readonly traceLines: string[] = []
  private readonly start = this.clock.now()
  private topologyChangedAt = this.start
  private readonly baseLatency: readonly [number, number]
  private readonly baseDrop: number
  private episode = { drop: 0, delay: 0 }
  private failures: string[] = []
  /** `${clientId}@${version}` -> the node that wrote it, and whether it then saw a majority. */
  private readonly writes = new Map<string, string>()
  readonly settings: string
  private readonly faultPhaseMs: number

  constructor(
    readonly seed: number,
    private readonly opts: DistroSimOptions,
  ) {
    this.rnd = new Random(seed)
    const n = this.rnd.pick([3, 3, 3, 3, 4, 5])
    this.baseLatency = [1, this.rnd.int(2, 10)]
    this.baseDrop = this.rnd.pick([0, 0, 0.01])
    this.net = new SimNetwork(this.clock, this.rnd.fork(), this.baseLatency)
    this.net.dropRate = this.baseDrop
    this.faultPhaseMs = this.rnd.int(100, 150) * 1000
    const clientCount = this.rnd.int(6, 12)
    for (let i = 1; i <= n; i++) this.nodes.push(new SimNode(`n${i}`))
    this.checker = new NoLiveRemovalChecker(
      this.liveness,
      () => this.clock.now(),
      (clientId, version) => {
        const w = this.writes.get(`${clientId}@${version}`)
        return w ? `, version ${version} written by ${w}` : ''
      },
    )
    this.stats = {
      nodes: n,
      clients: clientCount,
      simMs: 0,
      faults: 0,
      crashes: 0,
      partitions: 0,
      registrations: 0,
      beats: 0,
      countedBeats: 0,
      beatErrors: 0,
      unregisteredAnswers: 0,
      deregistrations: 0,
      loads: 0,
      messages: 0,
      dropped: 0,
      removals: 0,
      removalsWhileBeating: 0,
      unhealthyWhileLive: 0,
      lateRemovals: 0,
      restored: 0,
    }
    const clientRnd = this.rnd.fork()
    for (let c = 0; c < clientCount; c++) {
      const instances: Instance[] = []
      const count = clientRnd.int(1, 3)
      for (let k = 0; k < count; k++) {
        instances.push({
          ...clientRnd.pick(SERVICES),
          cluster: DEFAULT_CLUSTER,
          ip: `10.0.${c + 1}.${k + 1}`,
          port: 8080 + k,
          weight: 1,
          enabled: true,
          healthy: true,
          ephemeral: true,
          metadata: {},
          clientId: `client-${c + 1}`,
        })
      }
      const fate = clientRnd.pick<Fate>(['live', 'live', 'live', 'die', 'deregister'])
      const startAt = this.start + clientRnd.int(1_000, 30_000)
      const endAt = startAt + clientRnd.int(10_000, Math.max(10_000, this.faultPhaseMs - (startAt - this.start) - 1_000))
      const sticky = this.opts.stickyClients === false ? false : clientRnd.chance(0.5)
      this.clients.push(new SimClient(`client-${c + 1}`, instances, fate, startAt, fate === 'live' ? Infinity : endAt, sticky))
    }
    this.settings = `${n} nodes, ${clientCount} clients (${this.clients.filter((c) => c.fate === 'live').length} live, ${this.clients.filter((c) => c.sticky).length} sticky), latency ${this.baseLatency[0]}-${this.baseLatency[1]} ms, base loss ${this.baseDrop}, faults for ${this.faultPhaseMs / 1000} s`
  }

  // ---- trace -----------------------------------------------------------------------------------

  trace(line: string): void {
    const t = ((this.clock.now() - this.start) / 1000).toFixed(3).padStart(8)
    const s = `[${t}s] ${line}`
    if (this.opts.trace === 'print') console.log(s)
    else {
      this.traceLines.push(s)
      const keep = this.opts.traceKeep ?? 80
      if (this.traceLines.length > 2 * keep) this.traceLines.splice(0, this.traceLines.length - keep)
    }
  }

  private logger(node: SimNode, incarnation: number): Logger {
    const line = (level: string, obj: object | string, msg?: string) => {
      const text = typeof obj === 'string' ? obj : `${msg ?? ''} ${JSON.stringify(obj)}`
      this.trace(`${node.id}#${incarnation} ${level}: ${text}`)
    }
    return {
      info: (o, m) => line('info', o, m),
      warn: (o, m) => line('warn', o, m),
      error: (o, m) => {
        line('ERROR', o, m)
        // A store listener that threw, a peer handler that failed unexpectedly: a bug.
        this.failures.push(`${node.id} logged an error: ${typeof o === 'string' ? o : `${m} ${JSON.stringify(o)}`}`)
      },
    }
  }

  // ---- nodes -----------------------------------------------------------------------------------

  private topologyChanged(): void {
    this.topologyChangedAt = this.clock.now()
  }

  /** Builds a fresh stack for the node (as createGraceNode does) and starts it: load, then serve. */
  boot(node: SimNode): void {
    const inc = ++node.incarnation
    const random = this.rnd.fork()
    const stack = buildDistroStack({
      id: node.id,
      incarnation: inc,
      ids: this.nodes.map((n) => n.id),
      net: this.net,
      clock: this.clock,
      logger: this.logger(node, inc),
      random: () => random.float(),
      ready: () => node.ready,
    })
    const { cluster, leases } = stack
    // The checker sees every change after the view has.
    cluster.store.subscribe((clientId: string, prev: ClientRecord | undefined, next: ClientRecord | undefined, origin: ChangeOrigin) => {
      if (node.incarnation !== inc) return
      const gone = (prev?.instances ?? []).filter((i) => !(next?.instances ?? []).some((j) => instanceKey(j) === instanceKey(i)))
      if (gone.length > 0) {
        // For the trace: who this node thinks owns the client, and the lease it holds for it.
        const lease = leases.lastBeatOf(clientId)
        this.trace(
          `${node.id}#${inc} ${origin === 'local' ? 'removes' : 'takes a removal of'} ${gone.map((i) => `${i.ip}:${i.port}`).join(', ')} of ${clientId} ` +
            `(v${prev?.version} -> ${next ? `v${next.version}` : 'gone'}; owner here ${cluster.store.ownerOf(clientId)}, lease here ${lease === undefined ? 'none' : `${((lease - this.start) / 1000).toFixed(3)}s`})`,
        )
      }
      const version = cluster.store.versionOf(clientId)
      if (origin === 'local' && version !== undefined) this.writes.set(`${clientId}@${version}`, `${node.id}#${inc}, which ${cluster.mayExpire() ? 'saw' : 'did NOT see'} a majority`)
      this.checker.onChange(node.id, clientId, prev, next, origin, version)
    })
    Object.assign(node, { ...stack, up: true, ready: false })
    this.topologyChanged()
    this.trace(`${node.id}#${inc} boots`)
    startStack(stack).then(
      () => {
        if (node.incarnation !== inc || !node.up) return
        node.ready = true
        this.stats.loads++
        this.topologyChanged()
        this.trace(`${node.id}#${inc} ready with ${cluster.store.size()} clients`)
      },
      (err: Error) => this.failures.push(`${node.id}#${inc} failed to start: ${err.stack ?? err.message}`),
    )
  }

  crash(node: SimNode): void {
    this.net.crash(node.id)
    node.up = false
    node.ready = false
    stopStack(node)
    this.stats.restored += node.cluster.store.stats().restored
    this.stats.crashes++
    this.topologyChanged()
    this.trace(`${node.id}#${node.incarnation} crashes`)
  }

  /** The up nodes linked to `node`, itself included. */
  component(node: SimNode): SimNode[] {
    return this.nodes.filter((n) => n.up && this.net.linked(node.id, n.id))
  }

  /** Whether a beat through `node` now would be a counted beat (distro-checkers.ts). */
  settledMajority(node: SimNode): boolean {
    if (!node.up || !node.ready || this.clock.now() - this.topologyChangedAt < SETTLE_MS) return false
    const comp = this.component(node)
    return 2 * comp.length > this.nodes.length && comp.every((n) => n.ready)
  }

  /** The node a client's next request goes through: its home while that is up and ready, else a random ready one (which a sticky client keeps). */
  private nodeFor(c: SimClient, rnd: Random): SimNode | null {
    if (c.sticky && c.home !== null && c.home.up && c.home.ready) return c.home
    const node = this.readyNode(rnd)
    if (c.sticky) c.home = node
    return node
  }

  /** A request through `node` failed: a sticky client moves to another node (the SDK's failover). */
  private failedVia(c: SimClient, node: SimNode): void {
    if (c.home === node) c.home = null
  }

  private readyNode(rnd: Random): SimNode | null {
    const ready = this.nodes.filter((n) => n.up && n.ready)
    return ready.length === 0 ? null : rnd.pick(ready)
  }

  // ---- faults ----------------------------------------------------------------------------------

  private scheduleFaults(rnd: Random): void {
    const end = this.start + this.faultPhaseMs
    let at = this.start + rnd.int(3_000, 15_000)
    while (at < end) {
      this.clock.setTimer(at - this.clock.now(), () => this.fault(rnd))
      at += rnd.int(4_000, 20_000)
    }
  }

  private fault(rnd: Random): void {
    this.stats.faults++
    const ids = this.nodes.map((n) => n.id)
    const kind = rnd.pick(['isolate', 'isolate', 'split', 'split', 'heal', 'heal', 'crash', 'crash', 'loss', 'delay'])
    switch (kind) {
      case 'isolate': {
        const x = rnd.pick(ids)
        this.net.partition([[x], ids.filter((id) => id !== x)])
        this.stats.partitions++
        this.topologyChanged()
        this.trace(`fault: isolate ${x}`)
        break
      }
      case 'split': {
        const order = rnd.shuffle(ids)
        let groups: string[][]
        if (ids.length === 3) groups = [order.slice(0, 2), order.slice(2)]
        else if (ids.length === 4) groups = rnd.chance(0.7) ? [order.slice(0, 2), order.slice(2)] : [order.slice(0, 1), order.slice(1)]
        else groups = rnd.chance(0.5) ? [order.slice(0, 2), order.slice(2)] : [order.slice(0, 1), order.slice(1, 3), order.slice(3)]
        this.net.partition(groups)
        this.stats.partitions++
        this.topologyChanged()
        this.trace(`fault: split ${groups.map((g) => g.join(',')).join(' | ')}`)
        break
      }
      case 'heal':
        this.net.heal()
        this.topologyChanged()
        this.trace('fault: heal the partitions')
        break
      case 'crash': {
        const up = this.nodes.filter((n) => n.up)
        if (up.length <= 1) return
        const node = rnd.pick(up)
        this.crash(node)
        const downFor = rnd.int(1_000, 40_000)
        const inc = node.incarnation
        this.clock.setTimer(downFor, () => {
          if (!node.up && node.incarnation === inc) this.boot(node)
        })
        break
      }
      case 'loss': {
        const e = ++this.episode.drop
        this.net.dropRate = rnd.int(2, 25) / 100
        const ms = rnd.int(5_000, 30_000)
        this.trace(`fault: lose ${Math.round(this.net.dropRate * 100)}% of messages for ${ms / 1000} s`)
        this.clock.setTimer(ms, () => {
          if (this.episode.drop === e) this.net.dropRate = this.baseDrop
        })
        break
      }
      case 'delay': {
        const e = ++this.episode.delay
        this.net.minLatencyMs = rnd.int(5, 50)
        this.net.maxLatencyMs = rnd.int(200, 1_500)
        const ms = rnd.int(3_000, 15_000)
        this.trace(`fault: delays of ${this.net.minLatencyMs}-${this.net.maxLatencyMs} ms for ${ms / 1000} s`)
        this.clock.setTimer(ms, () => {
          if (this.episode.delay !== e) return
          this.net.minLatencyMs = this.baseLatency[0]
          this.net.maxLatencyMs = this.baseLatency[1]
        })
        break
      }
    }
  }

  /** End of the fault phase: everything heals, every node is up. */
  private healAll(): void {
    this.episode.drop++
    this.episode.delay++
    this.net.dropRate = 0
    this.net.minLatencyMs = this.baseLatency[0]
    this.net.maxLatencyMs = this.baseLatency[1]
    this.net.heal()
    this.topologyChanged()
    this.trace('heal everything')
    for (const n of this.nodes) if (!n.up) this.boot(n)
  }

  // ---- clients ---------------------------------------------------------------------------------

  private runClient(c: SimClient, rnd: Random): void {
    this.clock.setTimer(c.startAt - this.clock.now(), () => {
      c.phase = 'registering'
      c.queue.push(...c.instances)
      this.trace(`${c.id} starts (${c.fate}): registers ${c.instances.map(instanceKey).join(', ')}`)
      this.pumpRegistrations(c, rnd)
    })
    if (c.endAt !== Infinity) {
      this.clock.setTimer(c.endAt - this.clock.now(), () => {
        this.liveness.stopBeating(c.id)
        if (c.fate === 'die') {
          c.phase = 'stopped'
          c.queue.length = 0
          this.trace(`${c.id} dies`)
          return
        }
        c.phase = 'deregistering'
        c.queue.length = 0
        this.trace(`${c.id} deregisters`)
        this.deregisterNext(c, rnd, [...c.instances])
      })
    }
  }

  /** Registers queued instances one at a time, each through a random node, retrying on errors. */
  private pumpRegistrations(c: SimClient, rnd: Random): void {
    if (c.busy || (c.phase !== 'registering' && c.phase !== 'beating')) return
    const instance = c.queue[0]
    if (!instance) {
      if (c.phase === 'registering') {
        c.phase = 'beating'
        this.liveness.startBeating(c.id)
        this.trace(`${c.id} registered; beating`)
        this.clock.setTimer(BEAT_MS, () => this.beat(c, rnd))
      }
      return
    }
    const node = this.nodeFor(c, rnd)
    if (!node) {
      this.clock.setTimer(RETRY_MS, () => this.pumpRegistrations(c, rnd))
      return
    }
    c.busy = true
    this.stats.registrations++
    Promise.resolve()
      .then(() => node.naming.register(instance))
      .then(
        () => {
          c.busy = false
          if (c.queue[0] === instance) c.queue.shift()
          c.acked.add(instanceKey(instance))
          this.pumpRegistrations(c, rnd)
        },
        (err: Error) => {
          c.busy = false
          this.failedVia(c, node)
          this.trace(`${c.id} register ${instanceKey(instance)} via ${node.id}: ${err.message}`)
          this.clock.setTimer(RETRY_MS, () => this.pumpRegistrations(c, rnd))
        },
      )
  }

  private beat(c: SimClient, rnd: Random): void {
    if (c.phase !== 'beating') return
    this.clock.setTimer(BEAT_MS, () => this.beat(c, rnd))
    const node = this.nodeFor(c, rnd)
    if (!node) return
    const sentAt = this.clock.now()
    const counts = this.settledMajority(node)
    for (const instance of c.instances) {
      if (!c.acked.has(instanceKey(instance))) continue
      this.stats.beats++
      Promise.resolve()
        .then(() => node.naming.beat({ clientId: c.id, instance }))
        .then(
          (r) => {
            if (c.phase !== 'beating') return
            // Every answer only in a printed trace: sweeps would pay for a line per beat.
            if (this.opts.trace === 'print') this.trace(`${c.id} beat ${instanceKey(instance)} via ${node.id} (owner there ${node.cluster.store.ownerOf(c.id)}): ${r.registered ? 'registered' : 'not registered'}${counts ? ', counted' : ''}`)
            if (r.registered) {
              if (counts) {
                this.stats.countedBeats++
                this.liveness.counted(c.id, sentAt)
              }
              return
            }
            this.stats.unregisteredAnswers++
            this.trace(`${c.id} beat ${instanceKey(instance)} via ${node.id}: not registered; registering again`)
            if (!c.queue.includes(instance)) c.queue.push(instance)
            this.pumpRegistrations(c, rnd)
          },
          (err: Error) => {
            this.stats.beatErrors++
            this.failedVia(c, node)
            this.trace(`${c.id} beat via ${node.id}: ${err.message}`)
          },
        )
    }
  }

  private deregisterNext(c: SimClient, rnd: Random, left: Instance[]): void {
    const instance = left[0]
    if (!instance) {
      c.phase = 'stopped'
      this.trace(`${c.id} deregistered`)
      return
    }
    const node = this.nodeFor(c, rnd)
    if (!node) {
      this.clock.setTimer(RETRY_MS, () => this.deregisterNext(c, rnd, left))
      return
    }
    this.stats.deregistrations++
    Promise.resolve()
      .then(() => node.naming.deregister(instance))
      .then(
        () => this.deregisterNext(c, rnd, left.slice(1)),
        (err: Error) => {
          this.failedVia(c, node)
          this.trace(`${c.id} deregister ${instanceKey(instance)} via ${node.id}: ${err.message}`)
          this.clock.setTimer(RETRY_MS, () => this.deregisterNext(c, rnd, left))
        },
      )
  }

  // ---- the run ---------------------------------------------------------------------------------

  private fail(reason: string): never {
    throw new DistroSimFailure(this.seed, `${reason}\n  [${this.settings}]`, this.traceLines.slice(-(this.opts.traceKeep ?? 80)))
  }

  private async runUntil(end: number): Promise<void> {
    let steps = 0
    while (this.clock.now() < end) {
      this.clock.advance(STEP_MS)
      await flush()
      if (this.checker.violations.length > 0) this.fail(`checker "no live client's instance removed" failed:\n  ${this.checker.violations.join('\n  ')}`)
      if (this.failures.length > 0) this.fail(this.failures.join('\n  '))
      if (++steps % 100 === 0) for (const n of this.nodes) if (n.up) n.cluster.store.check()
    }
  }

  async run(): Promise<DistroSimResult> {
    this.trace(`seed ${this.seed}: ${this.settings}`)
    for (const n of this.nodes) this.boot(n)
    this.scheduleFaults(this.rnd.fork())
    for (const c of this.clients) this.runClient(c, this.rnd.fork())
    const healAt = this.start + this.faultPhaseMs
    await this.runUntil(healAt)
    this.healAll()
    await this.runUntil(healAt + QUIET_MS)
    for (const c of this.clients) {
      this.liveness.stopBeating(c.id)
      if (c.phase === 'beating' || c.phase === 'registering') c.phase = 'stopped'
    }
    this.trace('clients stop; waiting for the last syncs')
    await this.runUntil(this.clock.now() + SETTLE_AFTER_CLIENTS_STOP_MS)

    const notReady = this.nodes.filter((n) => !n.ready)
    if (notReady.length > 0) this.fail(`nodes ${notReady.map((n) => n.id).join(', ')} did not finish starting ${QUIET_MS / 1000} s after the heal`)
    const expected = new Map<string, readonly Instance[]>()
    for (const c of this.clients) if (c.fate === 'live') expected.set(c.id, c.instances)
    const problems = convergenceProblems(
      this.nodes.map((n) => ({ id: n.id, store: n.cluster.store, view: n.view })),
      expected,
      SERVICES,
    )
    if (problems.length > 0) this.fail(`checker "convergence after quiescence" failed:\n  ${problems.slice(0, 12).join('\n  ')}`)

    for (const n of this.nodes) {
      stopStack(n)
      if (n.up) this.stats.restored += n.cluster.store.stats().restored
    }
    const s = this.stats
    s.simMs = this.clock.now() - this.start
    s.messages = this.net.stats.messages
    s.dropped = this.net.stats.dropped
    s.removals = this.checker.stats.removals
    s.removalsWhileBeating = this.checker.stats.removalsWhileBeating
    s.unhealthyWhileLive = this.checker.stats.unhealthyWhileLive
    s.lateRemovals = this.checker.stats.lateRemovals
    const hash = createHash('sha256')
    for (const n of this.nodes) for (const r of [...n.cluster.store.clients()].sort((a, b) => (a.clientId < b.clientId ? -1 : 1))) hash.update(`${n.id} ${r.clientId} ${r.version}\n`)
    hash.update(JSON.stringify(s))
    return { seed: this.seed, stats: { ...s }, digest: hash.digest('hex'), settings: this.settings }
  }
}

/** Runs one seed; throws a DistroSimFailure (seed, reason, trace) when a checker fails. */
export async function runDistroSimulation(seed: number, opts: DistroSimOptions = {}): Promise<DistroSimResult> {
  const sim = new Simulation(seed, opts)
  try {
    return await sim.run()
  } catch (err) {
    if (err instanceof DistroSimFailure) throw err
    throw new DistroSimFailure(seed, `the simulation threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, [])
  }
}
