// The driver of the member table (members.ts): sends each member a server heartbeat every period
// over the authenticated peer transport, answers theirs, polls the transport's connections, and
// tells listeners when a member's state changes (Distro's ownership is one). Time and the network
// come in through the Clock and the transport interface, so the simulator can run it.
//
// One heartbeat call per member at a time: a call times out after one period, so a member that
// does not answer is SUSPICIOUS after one period at the latest, and calls never pile up.

import type { Cancel, Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import type { NodeId } from '../cp/raft/types.js'
import { HEARTBEAT_METHOD, decodeReport, encodeReport } from './heartbeat.js'
import { DEFAULT_HEARTBEAT_MS, type MemberReport, type MemberState, MemberTable, type MemberView, type StateChange, thresholdsFor } from './members.js'

/** What the driver needs from the peer transport (cluster/transport.ts provides it). */
export interface MembershipTransport {
  call(to: NodeId, method: string, payload: Uint8Array, timeoutMs: number): Promise<Uint8Array>
  onCall(method: string, handler: (from: NodeId, payload: Uint8Array) => Promise<Uint8Array>): void
}

export interface MembershipOptions {
  self: NodeId
  transport: MembershipTransport
  clock: Clock
  logger: Logger
  /** The heartbeat period; default 5 s. */
  periodMs?: number
  /**
   * The members to track, this node's id among them or not: the Raft voters and learners, or for
   * a node waiting to join, the members it was started with. Read on every check.
   */
  members(): readonly NodeId[]
  /** Whether this node's connection to a peer is up now (the transport's authenticated link). */
  connected(peer: NodeId): boolean
  /** This node's own report, sent with every heartbeat and every answer. */
  report(): MemberReport
}

export type MembershipListener = (changes: readonly StateChange[]) => void

export class Membership {
  readonly periodMs: number
  private readonly table: MemberTable
  private readonly opts: MembershipOptions
  /** How often states are judged again and due heartbeats sent (a quarter period, at most 1 s). */
  private readonly checkMs: number
  private readonly lastSent = new Map<NodeId, number>()
  private readonly inFlight = new Set<NodeId>()
  /** Members to send another heartbeat as soon as the one in flight settles (announce()). */
  private readonly sendAgain = new Set<NodeId>()
  private readonly listeners: MembershipListener[] = []
  private cancelTick: Cancel | null = null
  private running = false
  private stopped = false

  constructor(opts: MembershipOptions) {
    this.opts = opts
    this.periodMs = opts.periodMs ?? DEFAULT_HEARTBEAT_MS
    this.table = new MemberTable(opts.self, thresholdsFor(this.periodMs))
    this.checkMs = this.table.thresholds.checkMs
    this.table.setMembers(opts.members(), opts.clock.now())
    // Registered now, before the transport takes traffic: a peer's first heartbeat is answered.
    opts.transport.onCall(HEARTBEAT_METHOD, async (from, payload) => {
      const report = decodeReport(payload, from)
      if (!this.stopped) {
        this.table.heard(from, report, this.opts.clock.now())
        this.table.connection(from, this.opts.connected(from))
        this.evaluate()
      }
      return encodeReport(this.opts.report())
    })
  }

  /** Starts heartbeating: the first heartbeats go out at once. */
  start(): void {
    if (this.running || this.stopped) return
    this.running = true
    const loop = () => {
      if (!this.running) return
      this.check()
      this.cancelTick = this.opts.clock.setTimer(this.checkMs, loop)
    }
    loop()
  }

  stop(): void {
    this.running = false
    this.stopped = true
    this.cancelTick?.()
    this.cancelTick = null
  }

  /** Told of every change of a member's state, as soon as it is seen (a check, a heartbeat, a refresh). */
  onChange(listener: MembershipListener): void {
    this.listeners.push(listener)
  }

  /**
   * Judges the members again now, without waiting for the next check: the transport calls this
   * when a connection drops, so a dead member stops being UP within a moment.
   */
  refresh(): void {
    if (!this.running) return
    this.pollConnections()
    this.evaluate()
  }

  /**
   * Sends every member a heartbeat now rather than at its next period: this node's report
   * changed in a way the others should know at once (it became ready, it listens for clients).
   */
  announce(): void {
    if (!this.running) return
    const now = this.opts.clock.now()
    for (const id of this.table.members()) {
      if (this.inFlight.has(id)) this.sendAgain.add(id)
      else this.send(id, now)
    }
  }

  isUp(peer: NodeId): boolean {
    return this.table.isUp(peer, this.opts.clock.now())
  }

  state(peer: NodeId): MemberState {
    return this.table.state(peer, this.opts.clock.now())
  }

  /** The members other than this node, as it sees them now. */
  views(): MemberView[] {
    return this.table.views(this.opts.clock.now())
  }

  thresholds() {
    return this.table.thresholds
  }

  private check(): void {
    const now = this.opts.clock.now()
    this.table.setMembers(this.opts.members(), now)
    for (const id of [...this.lastSent.keys()]) if (!this.table.has(id)) this.lastSent.delete(id)
    this.pollConnections()
    for (const id of this.table.members()) {
      if (!this.inFlight.has(id) && this.table.heartbeatDue(id, this.lastSent.get(id) ?? null, now)) this.send(id, now)
    }
    this.evaluate()
  }

  private pollConnections(): void {
    for (const id of this.table.members()) this.table.connection(id, this.opts.connected(id))
  }

  private send(to: NodeId, now: number): void {
    this.inFlight.add(to)
    this.lastSent.set(to, now)
    let payload: Uint8Array
    try {
      payload = encodeReport(this.opts.report())
    } catch (err) {
      this.inFlight.delete(to)
      this.opts.logger.error({ err: (err as Error).message }, 'membership: cannot build this node\'s heartbeat')
      return
    }
    this.opts.transport.call(to, HEARTBEAT_METHOD, payload, this.periodMs).then(
      (answer) => {
        this.settled(to)
        if (this.stopped) return
        let report: MemberReport
        try {
          report = decodeReport(answer, to)
        } catch (err) {
          this.table.failed(to, (err as Error).message, now)
          this.evaluate()
          return
        }
        this.table.heard(to, report, this.opts.clock.now())
        this.table.connection(to, this.opts.connected(to))
        this.evaluate()
      },
      (err: unknown) => {
        this.settled(to)
        if (this.stopped) return
        const e = err as { code?: string; message?: string }
        this.table.failed(to, `${e.code ?? 'ERROR'}: ${e.message ?? String(err)}`, now)
        this.evaluate()
      },
    )
  }

  /** A heartbeat call to `to` is over; one asked for meanwhile goes out now (after this turn). */
  private settled(to: NodeId): void {
    this.inFlight.delete(to)
    if (!this.sendAgain.delete(to) || !this.running) return
    queueMicrotask(() => {
      if (this.running && !this.inFlight.has(to) && this.table.has(to)) this.send(to, this.opts.clock.now())
    })
  }

  /** Logs and hands on the state changes since the last evaluation. */
  private evaluate(): void {
    const changes = this.table.transitions(this.opts.clock.now())
    if (changes.length === 0) return
    for (const c of changes) {
      const line = { member: c.id, from: c.from, to: c.to, ...(c.reason ? { reason: c.reason } : {}) }
      if (c.to === 'UP') this.opts.logger.info(line, `member ${c.id} is UP`)
      else this.opts.logger.warn(line, `member ${c.id} is ${c.to}`)
    }
    for (const listener of this.listeners) {
      try {
        listener(changes)
      } catch (err) {
        this.opts.logger.error({ err: (err as Error).message }, 'membership: a state listener threw')
      }
    }
  }
}
