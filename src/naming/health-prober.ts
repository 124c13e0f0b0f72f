// Server-side health probes of persistent instances (which cannot beat). A cluster of a
// persistent service may have a check (a TCP connect, or an HTTP GET that must answer an
// expected status; see model.ts); every persistent instance in such a cluster is probed at the
// check's interval, with jitter, by one node: the Raft leader.
//
// Why the leader: a verdict must be written through the CP log anyway, so that every node
// agrees, and only the leader appends to it; the leader is one node for the whole cluster at any
// time (Raft elects at most one per term, and with CheckQuorum a leader that loses its majority
// steps down within an election timeout), so each instance is probed by one node; and when the
// leader dies the new one takes over by itself, with no ownership map to agree on. The cost is
// that all probing falls on one node; at the 1,000 targets measured in docs/benchmarks.md it is
// small. During a leadership change two nodes may probe for a moment; their verdicts are real
// observations and the writes are idempotent, so nothing goes wrong.
//
// A verdict flips an instance's health only after FLIP_AFTER results in a row disagree with
// it, so one lost packet does not take an instance out. A node that starts probing (a new
// leader) starts its counts at zero.
//
// The decisions are pure: time, randomness, the probe itself and the write are injected, and the
// scheduler never blocks (probes are promises; at most `concurrency` run at once; each has a
// timeout, and a backstop on the injected clock counts a probe that never settles as failed).

import type { Cancel, Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { LIMITS } from '../core/limits.js'
import { TimeQueue } from '../core/time-queue.js'
import type { Instance, ProbeCheck } from './model.js'
import type { ProbeTarget } from './view.js'

/** Results in a row that must disagree with an instance's health before it flips. */
export const FLIP_AFTER = 3
/** How often the scheduler looks for due probes and for a change of leadership or targets. */
export const PROBE_TICK_MS = 200
/** Each interval is stretched or shrunk by up to this share at random, so probes do not bunch. */
export const PROBE_JITTER = 0.1
/** Past a probe's own timeout, how long before the scheduler counts it failed regardless. */
export const PROBE_BACKSTOP_MS = 1_000
export const DEFAULT_PROBE_CONCURRENCY = 64
/**
 * Probes started in one turn of the event loop; more that are due start in the next turn. Opening
 * and closing a socket is synchronous work (about 0.1 ms on loopback), so starting 64 at once, or
 * starting the next ones in the turn where many finished, holds the loop for several ms
 * (docs/benchmarks.md: the 1 s phase's event-loop delay p99 went from ~15 to ~5 ms).
 */
export const PROBE_BURST = 8

export interface ProbeOutcome {
  readonly ok: boolean
  /** Why not, for the log: "connection refused", "status 503", "timed out after 2000 ms". */
  readonly detail: string
}

/** Probes ip:port with the check, settling within check.timeoutMs; never rejects. */
export type ProbeFn = (ip: string, port: number, check: ProbeCheck) => Promise<ProbeOutcome>

/** Where the targets come from (the naming view). */
export interface ProbeSource {
  /** Grows whenever the targets may have changed. */
  durableRevision(): number
  probeTargets(): Iterable<ProbeTarget>
  /** The instance as it is now, or undefined when it is gone. */
  current(target: ProbeTarget): Instance | undefined
}

export interface HealthProberOptions {
  clock: Clock
  random: () => number
  probe: ProbeFn
  source: ProbeSource
  /** True while this node runs the probes (the Raft leader). */
  isProber(): boolean
  /** Writes a verdict through the CP log; resolves once applied. */
  write(instance: Instance, healthy: boolean): Promise<void>
  /** Probes in flight at once, 1..LIMITS.maxProbeConcurrency. */
  concurrency?: number
  logger: Logger
}

export interface HealthProberStatus {
  /** This node runs the probes now. */
  readonly prober: boolean
  readonly targets: number
  readonly inFlight: number
  readonly concurrency: number
  /** Since this node started: probes finished, and verdicts written (health flips). */
  readonly probes: number
  readonly flips: number
  /** Targets left out because there were more than LIMITS.maxProbeTargets. */
  readonly skipped: number
}

/**
 * The count of disagreeing results after one more result, and whether the instance's health
 * should now flip. A result that agrees with the health starts the count again.
 */
export function afterResult(streak: number, ok: boolean, healthy: boolean): { streak: number; flip: boolean } {
  if (ok === healthy) return { streak: 0, flip: false }
  return { streak: streak + 1, flip: streak + 1 >= FLIP_AFTER }
}

/** The next interval, jittered by up to ±PROBE_JITTER. */
export function jittered(intervalMs: number, random: () => number): number {
  return Math.round(intervalMs * (1 + PROBE_JITTER * (2 * random() - 1)))
}

interface Scheduled {
  target: ProbeTarget
  /** The check and address the probe uses: a change restarts the target's counts. */
  readonly signature: string
  due: number
  streak: number
  inFlight: boolean
  writing: boolean
  removed: boolean
}

export class HealthProber {
  private readonly targets = new Map<string, Scheduled>()
  /** Scheduled targets by due time; entries of removed or in-flight targets are skipped. */
  private readonly queue = new TimeQueue<Scheduled>()
  private readonly concurrency: number
  private active = false
  private syncedRevision = -1
  private inFlight = 0
  private probes = 0
  private flips = 0
  private skipped = 0
  private cancelTick: Cancel | null = null
  /** A pump scheduled for the next turn, when one turn's burst was not enough. */
  private cancelPump: Cancel | null = null
  /** Probes and writes not settled yet, for settled(). */
  private readonly pending = new Set<Promise<unknown>>()

  constructor(private readonly opts: HealthProberOptions) {
    const c = opts.concurrency ?? DEFAULT_PROBE_CONCURRENCY
    if (!Number.isInteger(c) || c < 1 || c > LIMITS.maxProbeConcurrency) throw new RangeError(`probe concurrency must be in 1..${LIMITS.maxProbeConcurrency}`)
    this.concurrency = c
  }

  start(): void {
    const loop = () => {
      this.tick()
      this.cancelTick = this.opts.clock.setTimer(PROBE_TICK_MS, loop)
    }
    this.cancelTick = this.opts.clock.setTimer(PROBE_TICK_MS, loop)
  }

  stop(): void {
    this.cancelTick?.()
    this.cancelTick = null
    this.cancelPump?.()
    this.cancelPump = null
    this.deactivate()
  }

  status(): HealthProberStatus {
    return { prober: this.active, targets: this.targets.size, inFlight: this.inFlight, concurrency: this.concurrency, probes: this.probes, flips: this.flips, skipped: this.skipped }
  }

  /** Resolves once no probe or write is in flight (for tests). */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.allSettled([...this.pending])
  }

  /** One turn: follow leadership, pick up changed targets, start the probes that are due. */
  tick(): void {
    if (!this.opts.isProber()) {
      if (this.active) {
        this.opts.logger.info({ targets: this.targets.size }, 'health probes: this node no longer leads; stopping its probes')
        this.deactivate()
      }
      return
    }
    if (!this.active) {
      this.active = true
      this.syncedRevision = -1
    }
    if (this.opts.source.durableRevision() !== this.syncedRevision) this.sync()
    this.pump()
  }

  private deactivate(): void {
    this.active = false
    for (const s of this.targets.values()) s.removed = true
    this.targets.clear()
    this.queue.clear()
  }

  /** Brings the scheduled targets in line with the source; unchanged targets keep their counts. */
  private sync(): void {
    const first = this.syncedRevision === -1
    this.syncedRevision = this.opts.source.durableRevision()
    const now = this.opts.clock.now()
    const seen = new Set<string>()
    let skipped = 0
    for (const target of this.opts.source.probeTargets()) {
      const existing = this.targets.get(target.key)
      const signature = signatureOf(target)
      if (existing && existing.signature === signature) {
        existing.target = target
        seen.add(target.key)
        continue
      }
      if (!existing && this.targets.size >= LIMITS.maxProbeTargets) {
        skipped++
        continue
      }
      if (existing) existing.removed = true
      // The first probe of a target falls anywhere in its first interval, so that a thousand
      // targets found at once are not probed at once.
      const s: Scheduled = { target, signature, due: now + Math.floor(this.opts.random() * target.check.intervalMs), streak: 0, inFlight: false, writing: false, removed: false }
      this.targets.set(target.key, s)
      this.queue.push(s.due, s)
      seen.add(target.key)
    }
    for (const [key, s] of this.targets) {
      if (seen.has(key)) continue
      s.removed = true
      this.targets.delete(key)
    }
    if (skipped > 0 && skipped !== this.skipped) {
      this.opts.logger.warn({ skipped, limit: LIMITS.maxProbeTargets }, 'health probes: more targets than the limit; the rest are not probed')
    }
    this.skipped = skipped
    if (first) this.opts.logger.info({ targets: this.targets.size }, 'health probes: this node leads and runs the probes')
  }

  /**
   * Starts due probes while fewer than `concurrency` are in flight, at most PROBE_BURST in this
   * turn; if more are due, the rest start in the next turn.
   */
  private pump(): void {
    if (!this.active) return
    const now = this.opts.clock.now()
    let started = 0
    while (this.inFlight < this.concurrency) {
      if (started === PROBE_BURST) {
        this.pumpNextTurn()
        return
      }
      const s = this.queue.popDue(now)
      if (!s) return
      if (s.removed || s.inFlight) continue
      this.run(s)
      started++
    }
  }

  /** Runs pump() in a later turn of the event loop (once, however often it is asked). */
  private pumpNextTurn(): void {
    this.cancelPump ??= this.opts.clock.setTimer(0, () => {
      this.cancelPump = null
      this.pump()
    })
  }

  private run(s: Scheduled): void {
    const { instance, check } = s.target
    s.inFlight = true
    this.inFlight++
    let done = false
    let cancelBackstop: Cancel = () => {}
    let release: () => void = () => {}
    const finished = new Promise<void>((resolve) => (release = resolve))
    this.pending.add(finished)
    const finish = (outcome: ProbeOutcome) => {
      if (done) return
      done = true
      cancelBackstop()
      this.inFlight--
      this.probes++
      s.inFlight = false
      this.pending.delete(finished)
      release()
      if (!s.removed && this.active) {
        this.record(s, outcome)
        s.due = this.opts.clock.now() + jittered(check.intervalMs, this.opts.random)
        this.queue.push(s.due, s)
      }
      // Not at once: many probes finish in one turn (their sockets were polled together), and
      // opening the next ones in that same turn would add up to a long one.
      this.pumpNextTurn()
    }
    cancelBackstop = this.opts.clock.setTimer(check.timeoutMs + PROBE_BACKSTOP_MS, () => finish({ ok: false, detail: `no answer within ${check.timeoutMs} ms` }))
    let probing: Promise<ProbeOutcome>
    try {
      probing = this.opts.probe(instance.ip, check.port || instance.port, check)
    } catch (err) {
      probing = Promise.resolve({ ok: false, detail: String(err) })
    }
    probing.then(finish, (err: unknown) => finish({ ok: false, detail: String(err) }))
  }

  private record(s: Scheduled, outcome: ProbeOutcome): void {
    const current = this.opts.source.current(s.target)
    if (!current) return
    const { streak, flip } = afterResult(s.streak, outcome.ok, current.healthy)
    s.streak = streak
    if (!flip || s.writing) return
    const healthy = !current.healthy
    s.writing = true
    this.opts.logger.info(
      { namespace: current.namespace, group: current.group, service: current.service, cluster: current.cluster, ip: current.ip, port: current.port, healthy, detail: outcome.detail },
      healthy ? 'health probes: instance is healthy again' : 'health probes: instance is unhealthy',
    )
    const writing = this.opts.write(current, healthy).then(
      () => {
        this.flips++
        s.streak = 0
      },
      (err: unknown) => {
        // Left at FLIP_AFTER or more: the next result that still disagrees writes again.
        this.opts.logger.warn({ err: String(err), service: current.service, ip: current.ip, port: current.port }, 'health probes: could not write a verdict; will retry')
      },
    )
    const tracked = writing.finally(() => {
      s.writing = false
      this.pending.delete(tracked)
    })
    this.pending.add(tracked)
  }
}

function signatureOf(t: ProbeTarget): string {
  // Checks are shared by every instance of their cluster and immutable: encoded once each.
  let check = checkSignatures.get(t.check)
  if (check === undefined) checkSignatures.set(t.check, (check = JSON.stringify(t.check)))
  return `${check} ${t.instance.ip} ${t.instance.port}`
}

const checkSignatures = new WeakMap<ProbeCheck, string>()
