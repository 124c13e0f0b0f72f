// Self-preservation, after Eureka: when a large share of a node's ephemeral clients stop beating
// at once, the likelier cause is a fault between the clients and the registry (a network blip, a
// stalled registry process) than that they all died together. Expiring them would hand consumers
// empty or gutted lists for a fault of the registry's own, so expiry pauses until the beats
// come back.
//
// The decision is pure: the sweep (naming/leases.ts) passes the time and its counts, and this
// answers whether expiry may go ahead. Counting works per window:
//
// - `expired`: clients whose first expiry step (unhealthy, or removed) happened within the
//   window;
// - `expiring`: clients that have not expired yet but have missed a beat and will expire within
//   one beat interval unless one comes (silent for longer than their first timeout less one
//   interval), or expire in this very sweep.
//
// Counting the clients that are about to expire, not only those that did, catches a blip
// before it marks anything: when every client goes silent at once, they all miss a beat (10 s
// of silence at the defaults) before the first of them reaches its 15 s timeout.
//
// Expiry pauses when expired + expiring is more than `share` of the population (the node's
// clients now, plus those it removed by expiry within the window), provided the node has at
// least `minClients`. It resumes at the first sweep where that no longer holds: the beats came
// back, or enough of the window passed and enough new clients registered that the silent ones
// are a share the node may expire. On resuming, every client gets a full timeout from that
// moment (the pause stopped the clocks; a client may not have had its turn to beat since the
// fault healed), so nothing expires at the moment of resuming, and the clients that really are
// gone expire one timeout later, no more of them than the share.
//
// If more than the share of a node's clients really did die at once and nothing replaces
// them, expiry stays paused and their instances stay listed: the Eureka trade-off. The log
// and /v1/cluster/status say so; an operator can raise the share (1 turns it off).
//
// This is not the Distro rule in ap/distro/takeover.ts (expiryAllowed): that one stops expiry on
// a node that cannot see a majority of the cluster's members, whatever its clients do; this one
// looks only at the node's own clients, and works on a standalone node too. Either one pausing
// is enough to pause.

export interface SelfPreservationSettings {
  /** Share of the clients, in (0, 1], that may expire within one window; 1 turns it off. */
  readonly share: number
  /** The window over which expiries are counted, in ms. */
  readonly windowMs: number
  /** Below this many clients the node never pauses: with few clients, a few deaths are a large share. */
  readonly minClients: number
}

export const SELF_PRESERVATION_DEFAULTS: SelfPreservationSettings = { share: 0.5, windowMs: 60_000, minClients: 10 }

export interface SelfPreservationStatus {
  /** False when share is 1. */
  readonly enabled: boolean
  /** Expiry is paused now. */
  readonly active: boolean
  /** When it was paused (ms since the epoch), or null. */
  readonly since: number | null
  readonly share: number
  readonly windowMs: number
  readonly minClients: number
  /** At the last sweep: the population, the clients expired or expiring, and how many may be. */
  readonly clients: number
  readonly expiring: number
  readonly allowed: number
}

export type Transition = 'paused' | 'resumed' | null

export class SelfPreservation {
  /** Times of expiries and of removals by expiry within the window, oldest first. */
  private readonly expiries: number[] = []
  private readonly removals: number[] = []
  private active = false
  private since: number | null = null
  private last = { clients: 0, expiring: 0, allowed: 0 }

  constructor(readonly settings: SelfPreservationSettings) {
    if (!(settings.share > 0 && settings.share <= 1)) throw new RangeError('self-preservation share must be in (0, 1]')
    if (!(settings.windowMs > 0)) throw new RangeError('self-preservation window must be positive')
  }

  enabled(): boolean {
    return this.settings.share < 1
  }

  /**
   * One sweep: `clients` is how many clients the node holds leases for, `expiring` how many of
   * them have not expired but are about to (see above). Answers whether the sweep may expire
   * anything, and whether the state just changed.
   */
  decide(now: number, clients: number, expiring: number): { allowed: boolean; transition: Transition } {
    this.prune(now)
    const population = clients + this.removals.length
    const pressure = this.expiries.length + expiring
    const allowed = Math.floor(this.settings.share * population)
    this.last = { clients: population, expiring: pressure, allowed }
    const pause = this.enabled() && population >= this.settings.minClients && pressure > allowed
    let transition: Transition = null
    if (pause && !this.active) {
      this.active = true
      this.since = now
      transition = 'paused'
    } else if (!pause && this.active) {
      this.active = false
      this.since = null
      transition = 'resumed'
    }
    return { allowed: !pause, transition }
  }

  /** What the sweep expired: clients that took their first expiry step, and clients removed. */
  recordExpired(now: number, expired: number, removed: number): void {
    for (let i = 0; i < expired; i++) this.expiries.push(now)
    for (let i = 0; i < removed; i++) this.removals.push(now)
  }

  status(): SelfPreservationStatus {
    const { share, windowMs, minClients } = this.settings
    return { enabled: this.enabled(), active: this.active, since: this.since, share, windowMs, minClients, ...this.last }
  }

  private prune(now: number): void {
    const from = now - this.settings.windowMs
    dropBefore(this.expiries, from)
    dropBefore(this.removals, from)
  }
}

/** Removes the leading times older than `from` (the array is in time order). */
function dropBefore(times: number[], from: number): void {
  let n = 0
  while (n < times.length && times[n]! <= from) n++
  if (n > 0) times.splice(0, n)
}
