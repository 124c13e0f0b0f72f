// How this node sees each member of its cluster: UP, SUSPICIOUS or DOWN, decided from the server
// heartbeats it exchanges with them and from the state of its connection to them. Pure: no
// timers, no sockets, no clock of its own. Every input and every question carries `now`, so unit
// tests and the simulator drive it with a ManualClock; membership.ts is the driver that feeds it.
//
// The states (P is the heartbeat period, 5 s by default):
//
//   UP          heard from within 1.5 P (one heartbeat, with half a period of slack for timers
//               and round trips), its connection is up, and no heartbeat call to it has failed
//               without it being heard from since that call was sent.
//   SUSPICIOUS  not UP, but heard from within 3 P: one heartbeat missed, or a heartbeat call to it
//               failed (refused, or unanswered for a period) and nothing came from it since the
//               call was sent, or the connection to it is down. A member never heard from since
//               this node began tracking it is SUSPICIOUS for its first 3 P.
//   DOWN        nothing heard for 3 P (15 s by default, the instance heartbeat timeout users know
//               from Nacos), or never heard from and tracked for that long.
//
// A member returns to UP as soon as it is heard from again (a heartbeat it sent, or the answer to
// one this node sent) while the connection to it is up. "Heard from" is either direction: each
// heartbeat is a call whose request carries the sender's status and whose answer carries the
// receiver's, so both ends learn of each other every period.
//
// Why a broken connection or a failed call makes a member SUSPICIOUS at once, and not after a
// missed period: Distro's ownership uses only UP members (consistency/ephemeral-cluster.ts), and a
// node that died usually closes its sockets (or misses the transport's 1 s pings for 5 s) long
// before a heartbeat period passes. Waiting three periods for DOWN before moving its clients would
// leave their changes failing for 15 s. DOWN is for people and for clients choosing a server: a
// member that is DOWN has been gone long enough to stop sending it anything.

import type { NodeId, Role } from '../cp/raft/types.js'

export type MemberState = 'UP' | 'SUSPICIOUS' | 'DOWN'

/** What a member says of itself in every heartbeat (and in the answer to one). */
export interface MemberReport {
  readonly id: NodeId
  /** Where clients reach its HTTP API (host:port); null until it listens. */
  readonly clientAddress: string | null
  /** Where it listens for peers (host:port), as it was started. */
  readonly peerAddress: string | null
  readonly role: Role
  readonly term: number
  readonly leaderId: NodeId | null
  readonly commitIndex: number
  readonly appliedIndex: number
  /** It serves clients: started, ephemeral data loaded, not shutting down. */
  readonly ready: boolean
  /** Its Distro replica: loaded, how many clients it holds, how many changes wait to be synced. */
  readonly distro: { readonly loaded: boolean; readonly clients: number; readonly queuedSyncs: number } | null
}

export interface MemberThresholds {
  /** How often each member sends each other member a heartbeat. */
  readonly periodMs: number
  /** Nothing heard for longer than this: SUSPICIOUS. */
  readonly suspectAfterMs: number
  /** Nothing heard for this long: DOWN. */
  readonly downAfterMs: number
  /** How often the driver judges the members and sends the heartbeats that are due. */
  readonly checkMs: number
}

export const DEFAULT_HEARTBEAT_MS = 5_000
export const MIN_HEARTBEAT_MS = 100
export const MAX_HEARTBEAT_MS = 60_000

/** SUSPICIOUS after one missed heartbeat (1.5 periods), DOWN after three periods. */
export function thresholdsFor(periodMs: number): MemberThresholds {
  if (!(Number.isInteger(periodMs) && periodMs >= MIN_HEARTBEAT_MS && periodMs <= MAX_HEARTBEAT_MS)) {
    throw new Error(`heartbeat period must be a whole number of milliseconds in ${MIN_HEARTBEAT_MS}..${MAX_HEARTBEAT_MS}`)
  }
  // Checks a quarter period apart (at most a second): a heartbeat leaves within an eighth of a
  // period of when it is due, never a whole check late.
  return { periodMs, suspectAfterMs: Math.round(periodMs * 1.5), downAfterMs: periodMs * 3, checkMs: Math.min(1_000, Math.floor(periodMs / 4)) }
}

/** One member as this node sees it at a moment. */
export interface MemberView {
  readonly id: NodeId
  readonly self: boolean
  readonly state: MemberState
  /** Milliseconds since it was last heard from; null if never (or for this node itself). */
  readonly lastHeardAgoMs: number | null
  /** Its latest report; null until heard from (this node's own for itself). */
  readonly report: MemberReport | null
  /** Why it is not UP, for operators; null when UP. */
  readonly reason: string | null
}

/** A change of a member's state, for the log and for listeners. */
export interface StateChange {
  readonly id: NodeId
  readonly from: MemberState
  readonly to: MemberState
  readonly reason: string | null
}

interface Entry {
  /** When this node began tracking the member (it became a member, or this node started). */
  readonly trackedSince: number
  lastHeard: number | null
  report: MemberReport | null
  /** When the last failed heartbeat call to it was sent, if any. */
  failedAt: number | null
  failure: string | null
  connected: boolean
  /** The state last reported by transitions(), to tell changes. */
  lastState: MemberState
}

export class MemberTable {
  readonly self: NodeId
  readonly thresholds: MemberThresholds
  private readonly entries = new Map<NodeId, Entry>()

  constructor(self: NodeId, thresholds: MemberThresholds) {
    this.self = self
    this.thresholds = thresholds
  }

  /**
   * The members to track, this node's id among them or not. New ones start SUSPICIOUS (not yet
   * heard), removed ones are forgotten; the others keep what is known of them.
   */
  setMembers(ids: readonly NodeId[], now: number): void {
    const wanted = new Set(ids.filter((id) => id !== this.self))
    for (const id of [...this.entries.keys()]) if (!wanted.has(id)) this.entries.delete(id)
    for (const id of wanted) {
      if (!this.entries.has(id)) {
        this.entries.set(id, { trackedSince: now, lastHeard: null, report: null, failedAt: null, failure: null, connected: false, lastState: 'SUSPICIOUS' })
      }
    }
  }

  /** The tracked members other than this node. */
  members(): NodeId[] {
    return [...this.entries.keys()]
  }

  has(id: NodeId): boolean {
    return this.entries.has(id)
  }

  /**
   * The member was heard from: a heartbeat it sent, or its answer to ours. Ignored for ids that
   * are not tracked (not, or no longer, members as this node knows them).
   */
  heard(id: NodeId, report: MemberReport, now: number): void {
    const e = this.entries.get(id)
    if (!e) return
    // Answers may arrive out of order; time only moves forward.
    if (e.lastHeard === null || now >= e.lastHeard) {
      e.lastHeard = now
      e.report = report
    }
  }

  /**
   * A heartbeat call to the member, sent at `sentAt`, failed (unreachable, timed out, refused).
   * It counts against the member only if nothing was heard from it since the call was sent: a
   * member whose own heartbeat arrived meanwhile is alive, and the call was lost on the way.
   */
  failed(id: NodeId, reason: string, sentAt: number): void {
    const e = this.entries.get(id)
    if (!e) return
    if (e.failedAt === null || sentAt >= e.failedAt) {
      e.failedAt = sentAt
      e.failure = reason
    }
  }

  /** Whether this node's connection to the member is up now (polled by the driver). */
  connection(id: NodeId, connected: boolean): void {
    const e = this.entries.get(id)
    if (e) e.connected = connected
  }

  state(id: NodeId, now: number): MemberState {
    if (id === this.self) return 'UP'
    const e = this.entries.get(id)
    return e ? this.judge(e, now).state : 'DOWN'
  }

  isUp(id: NodeId, now: number): boolean {
    return this.state(id, now) === 'UP'
  }

  /** Members (this node left out) that are UP now. */
  upMembers(now: number): NodeId[] {
    return this.members().filter((id) => this.state(id, now) === 'UP')
  }

  /** Every tracked member, this node excluded, as seen at `now`. */
  views(now: number): MemberView[] {
    return this.members().map((id) => {
      const e = this.entries.get(id)!
      const { state, reason } = this.judge(e, now)
      return { id, self: false, state, lastHeardAgoMs: e.lastHeard === null ? null : Math.max(0, now - e.lastHeard), report: e.report, reason }
    })
  }

  /**
   * Whether a heartbeat to the member is due at a check: a period since the last (give or take
   * half a check, so that checks and timers a millisecond off do not delay it a whole check), or
   * sooner while it is not UP.
   */
  heartbeatDue(id: NodeId, lastSentAt: number | null, now: number): boolean {
    if (lastSentAt === null) return true
    const since = now - lastSentAt
    if (since + this.thresholds.checkMs / 2 >= this.thresholds.periodMs) return true
    // A member coming back (its connection is up again) is probed at once rather than at the next
    // period, so that it is UP again within a round trip and a check, not up to a period later.
    const e = this.entries.get(id)
    return e !== undefined && e.connected && this.judge(e, now).state !== 'UP' && since >= Math.min(this.thresholds.periodMs, 1_000)
  }

  /** The members whose state changed since the last call, each once. */
  transitions(now: number): StateChange[] {
    const out: StateChange[] = []
    for (const [id, e] of this.entries) {
      const { state, reason } = this.judge(e, now)
      if (state !== e.lastState) {
        out.push({ id, from: e.lastState, to: state, reason })
        e.lastState = state
      }
    }
    return out
  }

  private judge(e: Entry, now: number): { state: MemberState; reason: string | null } {
    const { suspectAfterMs, downAfterMs, periodMs } = this.thresholds
    if (e.lastHeard === null) {
      const tracked = now - e.trackedSince
      const why = e.failure !== null ? `never heard from; last heartbeat failed: ${e.failure}` : e.connected ? 'not heard from yet' : 'never heard from; not connected'
      return { state: tracked >= downAfterMs ? 'DOWN' : 'SUSPICIOUS', reason: why }
    }
    const age = now - e.lastHeard
    if (age >= downAfterMs) return { state: 'DOWN', reason: `nothing heard for ${Math.floor(age / periodMs)} heartbeat periods (${age} ms)` }
    if (e.failedAt !== null && e.failedAt > e.lastHeard) return { state: 'SUSPICIOUS', reason: `heartbeat failed: ${e.failure}` }
    if (!e.connected) return { state: 'SUSPICIOUS', reason: 'not connected' }
    if (age > suspectAfterMs) return { state: 'SUSPICIOUS', reason: `no heartbeat for ${age} ms` }
    return { state: 'UP', reason: null }
  }
}
