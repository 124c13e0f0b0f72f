// Ephemeral clients stay registered while they beat. Each client is a lease: registering or
// beating renews it, and a periodic sweep marks its instances unhealthy once a beat is overdue
// by the instance's timeout, and removes them once overdue by its delete timeout. The clock is
// injected, so tests drive expiry by moving a ManualClock.
//
// Two rules can hold expiry back: mayExpire (Distro: this node sees no majority of the members)
// and self-preservation (too many of this node's own clients stopped beating at once;
// self-preservation.ts), which is off until configure() turns it on.

import type { ClientRecord, EphemeralStore } from '../ap/store.js'
import type { Cancel, Clock } from '../core/clock.js'
import { type Logger, silentLogger } from '../core/logger.js'
import { BEAT_DEFAULTS, BEAT_METADATA, type Instance, withHealth } from './model.js'
import { SelfPreservation, type SelfPreservationSettings, type SelfPreservationStatus } from './self-preservation.js'

/** How often the sweep looks for overdue clients; the health answer lags a beat by at most this. */
export const SWEEP_INTERVAL_MS = 1_000

/**
 * The most clients a sweep expires in one turn of the event loop; more wait for the next turns.
 * A wave of clients that stopped together (a deployment, a benchmark's registrations, every
 * silent client of a self-preservation pause that ended) expired at once held this node's event
 * loop for the whole wave, tens of milliseconds per thousand clients, while requests waited.
 */
export const SWEEP_CHUNK = 256

/**
 * The most leases a sweep's scan reads in one turn of the event loop; the scan of more goes on in
 * the next turns. The scan reads every owned client each second, about 0.16 µs per client: at
 * 17,000 clients a node (the AP benchmark's silent register clients while self-preservation
 * pauses their expiry, every second of the heartbeat runs) one turn held the node's event loop
 * about 3 ms, in the tail of the requests' latency.
 */
export const SCAN_CHUNK = 2048

/** An instance's beat interval and timeouts: the defaults, or what its metadata overrides. */
interface BeatTimes {
  readonly intervalMs: number
  readonly unhealthyAfterMs: number
  readonly removeAfterMs: number
}

/**
 * The beat times of an instance. The sweep asks for every instance of every client that changes,
 * so the common case, metadata without overrides, reads three known keys (a key picked at run
 * time from a map of keys was a tenth of an expiry wave) and allocates nothing.
 */
function beatTimesOf(instance: Instance): BeatTimes {
  const md = instance.metadata
  const interval = md[BEAT_METADATA.intervalMs]
  const unhealthy = md[BEAT_METADATA.unhealthyAfterMs]
  const remove = md[BEAT_METADATA.removeAfterMs]
  if (interval === undefined && unhealthy === undefined && remove === undefined) return BEAT_DEFAULTS
  return { intervalMs: msOr(interval, BEAT_DEFAULTS.intervalMs), unhealthyAfterMs: msOr(unhealthy, BEAT_DEFAULTS.unhealthyAfterMs), removeAfterMs: msOr(remove, BEAT_DEFAULTS.removeAfterMs) }
}

// Validated at registration; a bad value from an older version falls back to the default.
function msOr(value: string | undefined, fallback: number): number {
  const ms = value === undefined ? NaN : Number(value)
  return Number.isFinite(ms) && ms > 0 ? ms : fallback
}

/** The interval a client should beat at: the shortest any of its instances asks for. */
export function beatIntervalOf(instances: readonly Instance[]): number {
  let interval = Infinity
  for (const i of instances) interval = Math.min(interval, beatTimesOf(i).intervalMs)
  return interval === Infinity ? BEAT_DEFAULTS.intervalMs : interval
}

/**
 * How long a client may be silent before it counts as about to expire (for self-preservation):
 * its first timeout less one beat interval, i.e. it has missed a beat and will expire within one
 * interval unless a beat comes; at least half the timeout, whatever the metadata says.
 */
function suspectAfter(instances: readonly Instance[]): number {
  let first = Infinity
  for (const i of instances) {
    const times = beatTimesOf(i)
    first = Math.min(first, times.unhealthyAfterMs, times.removeAfterMs)
  }
  if (first === Infinity) return Infinity
  return Math.max(first - beatIntervalOf(instances), first / 2)
}

/**
 * The silences that leave the record as it is (expire() returns it unchanged): above `after` and
 * at most `upTo`. Each instance stays as it is while silent no longer than its delete timeout,
 * and, if healthy, no longer than its unhealthy timeout; if unhealthy, longer than it (a shorter
 * silence, after a takeover's fresh lease, makes it healthy again).
 */
export function unchangedRange(instances: readonly Instance[]): { after: number; upTo: number } {
  let after = -Infinity
  let upTo = Infinity
  for (const i of instances) {
    const { unhealthyAfterMs, removeAfterMs } = beatTimesOf(i)
    upTo = Math.min(upTo, removeAfterMs)
    if (i.healthy) upTo = Math.min(upTo, unhealthyAfterMs)
    else after = Math.max(after, unhealthyAfterMs)
  }
  return { after, upTo }
}

/**
 * One client's lease. The sweep visits every owned client each second, so what it needs of the
 * client's record (immutable; a change is a new object) is worked out once per record and kept
 * here: with tens of thousands of clients, redoing it per sweep was a tenth of the server's CPU
 * on the benchmark's register run (docs/benchmarks.md).
 */
class Lease {
  /**
   * The record the limits below were worked out for; undefined: not yet, or the client's record
   * changed since (the store tells ClientLeases), so the sweep looks it up again. Sweeps of
   * clients that only beat so do without a store lookup each.
   */
  record: ClientRecord | undefined = undefined
  /** expire() changes the record only for a silence at most unchangedAfter or above unchangedUpTo. */
  unchangedAfter = 0
  unchangedUpTo = 0
  suspectAfter = 0
  /**
   * The ownersVersion under which the sweep last found this node responsible for the client
   * (-1: not yet). Ownership moves only when the members do, so the sweep asks again only then.
   */
  ownedUnder = -1
  /**
   * The client took its first expiry step (its instances marked unhealthy) since its last beat:
   * self-preservation counts a client once per silence. A field, not a set of client ids: the
   * sweep reads it for every silent client each second, and every beat clears it.
   */
  expiredStep = false

  constructor(
    /** Its client, so that a scan can go over the leases alone (sweep: no [id, lease] pairs). */
    readonly clientId: string,
    public last: number,
  ) {}

  /** Brings the limits up to date with the client's current record. */
  track(record: ClientRecord): void {
    if (this.record === record) return
    this.record = record
    const range = unchangedRange(record.instances)
    this.unchangedAfter = range.after
    this.unchangedUpTo = range.upTo
    this.suspectAfter = suspectAfter(record.instances)
  }

  /** Whether expire(record, silentMs) would change the tracked record. */
  changesAt(silentMs: number): boolean {
    return silentMs <= this.unchangedAfter || silentMs > this.unchangedUpTo
  }
}

/** A sweep's scan in progress: where it is, and what it counted and collected so far. */
interface Scan {
  readonly now: number
  readonly preservation: SelfPreservation | null
  readonly ownersVersion: number
  readonly leases: IterableIterator<Lease>
  clients: number
  expiring: number
  readonly due: string[]
}

export class ClientLeases {
  /** The leases of the owned clients, with their last beat. */
  private readonly leases = new Map<string, Lease>()
  private preservation: SelfPreservation | null = null
  private logger: Logger = silentLogger
  private cancelSweep: Cancel | null = null
  /** The rest of a sweep's scan or expiries waiting for the next turn (SCAN_CHUNK, SWEEP_CHUNK); null when none. */
  private cancelRest: Cancel | null = null
  /** Runs a sweep's changes to the store; the naming view makes them one change per service. */
  private applyBulk: (apply: () => void) => void = (apply) => apply()

  constructor(
    private readonly store: EphemeralStore,
    private readonly clock: Clock,
    /**
     * False while expiry must wait (Distro: this node sees too few members to tell a dead client
     * from a partition, so it expires nothing, as Eureka's self-preservation).
     */
    private readonly mayExpire: () => boolean = () => true,
    /**
     * Whether this node is responsible for a client now (Distro: its owner). Only the owner
     * expires a client; a lease held for a client owned elsewhere is dropped at the sweep, so a
     * client that comes back to this node starts a fresh grace (takeOver) rather than an old lease.
     */
    private readonly owns: (clientId: string) => boolean = () => true,
    /**
     * Changes whenever the answers of `owns` may have (Distro: the view of the members changed).
     * The sweep asks `owns` about a lease once per value, not every second: with tens of
     * thousands of leases the question, a lookup in the store's map of every client, was two
     * thirds of a sweep (test/bench/ap-micro.ts --only sweep).
     */
    private readonly ownersVersion: () => number = () => 0,
  ) {
    store.subscribe((clientId) => {
      const lease = this.leases.get(clientId)
      if (lease) lease.record = undefined
    })
  }

  /**
   * Turns self-preservation on (settings with share 1: off), sets where its changes are logged,
   * and how a sweep's changes are applied together (NamingView.batch).
   */
  configure(opts: { selfPreservation?: SelfPreservationSettings; logger?: Logger; applyBulk?: (apply: () => void) => void }): void {
    if (opts.selfPreservation) this.preservation = new SelfPreservation(opts.selfPreservation)
    if (opts.logger) this.logger = opts.logger
    if (opts.applyBulk) this.applyBulk = opts.applyBulk
  }

  /** Self-preservation as of the last sweep; null when it was never configured. */
  selfPreservation(): SelfPreservationStatus | null {
    return this.preservation?.status() ?? null
  }

  /**
   * Every owned client gets at least a full timeout from now: after a time without a majority,
   * when beats may have gone to the other side of a partition and this node's leases tell
   * nothing about whether a client lives.
   */
  refreshAll(clientIds: Iterable<string>): void {
    const now = this.clock.now()
    for (const id of clientIds) {
      if (!this.store.get(id)) continue
      const lease = this.leases.get(id)
      if (lease) lease.last = Math.max(lease.last, now)
      else this.leases.set(id, new Lease(id, now))
    }
  }

  /**
   * Clients this node became responsible for (a member left or joined): their beats went to
   * another node until now, so each gets one full timeout from now before it can expire. No
   * live instance is dropped by a takeover. A client already beating here keeps its lease.
   */
  takeOver(clientIds: Iterable<string>): void {
    const now = this.clock.now()
    for (const id of clientIds) if (!this.leases.has(id) && this.store.get(id)) this.leases.set(id, new Lease(id, now))
  }

  /** Clients another node is now responsible for: it expires them, this node no longer does. */
  handOver(clientIds: Iterable<string>): void {
    for (const id of clientIds) this.leases.delete(id)
  }

  start(): void {
    const loop = () => {
      this.sweep()
      this.cancelSweep = this.clock.setTimer(SWEEP_INTERVAL_MS, loop)
    }
    this.cancelSweep = this.clock.setTimer(SWEEP_INTERVAL_MS, loop)
  }

  stop(): void {
    this.cancelSweep?.()
    this.cancelSweep = null
    this.cancelRest?.()
    this.cancelRest = null
  }

  /** Renews the client's lease; instances marked unhealthy by a missed beat are healthy again. */
  renew(clientId: string): void {
    const now = this.clock.now()
    const lease = this.leases.get(clientId)
    if (lease) {
      lease.last = now
      lease.expiredStep = false
    } else this.leases.set(clientId, new Lease(clientId, now))
    const record = this.store.get(clientId)
    if (record && record.instances.some((i) => !i.healthy)) {
      this.store.put({ ...record, version: record.version + 1, instances: record.instances.map((i) => (i.healthy ? i : withHealth(i, true))) })
    }
  }

  /** When the client last beat, as this node's lease says; undefined: no lease here. */
  lastBeatOf(clientId: string): number | undefined {
    return this.leases.get(clientId)?.last
  }

  forget(clientId: string): void {
    this.leases.delete(clientId)
  }

  /**
   * Applies overdue beats: unhealthy past the timeout, removed past the delete timeout; unless
   * expiry is held back (no majority), or self-preservation pauses it.
   */
  sweep(): void {
    // The last sweep's scan or expiries are still going on: this one would find the same clients.
    if (this.cancelRest !== null) return
    if (!this.mayExpire()) return
    const preservation = this.preservation?.enabled() ? this.preservation : null
    this.scan({ now: this.clock.now(), preservation, ownersVersion: this.ownersVersion(), leases: this.leases.values(), clients: 0, expiring: 0, due: [] })
  }

  /**
   * Reads up to SCAN_CHUNK leases, then goes on in the next turn; at the end, decides. The scan
   * only counts and collects: a sweep that self-preservation pauses (every second, as long as the
   * clients stay silent) builds no expired records it would throw away. Leases that change while
   * it goes on are fine: a Map iterator visits entries added meanwhile and skips deleted ones,
   * and each client due is judged again from its lease when it is expired (expireDue).
   */
  private scan(s: Scan): void {
    this.cancelRest = null
    let n = 0
    // Leaving this loop early leaves the iterator where it is (a Map iterator has no return()).
    // Over the leases, not the map's [id, lease] pairs: an iterator kept across turns makes V8
    // allocate each pair, which made a scan half as slow again.
    for (const lease of s.leases) {
      const clientId = lease.clientId
      const record = lease.record ?? this.store.get(clientId)
      if (!record || (lease.ownedUnder !== s.ownersVersion && !this.owns(clientId))) {
        this.leases.delete(clientId)
        continue
      }
      lease.ownedUnder = s.ownersVersion
      s.clients++
      lease.track(record)
      const silent = s.now - lease.last
      const changes = lease.changesAt(silent)
      if (changes) s.due.push(clientId)
      if (s.preservation && (changes || silent > lease.suspectAfter) && !lease.expiredStep) s.expiring++
      if (++n === SCAN_CHUNK) {
        this.cancelRest = this.clock.setTimer(0, () => this.scan(s))
        return
      }
    }
    this.decide(s)
  }

  /** A scan's end: whether self-preservation lets expiry go ahead, then the expiries. */
  private decide(s: Scan): void {
    const { now, preservation } = s
    // Held back since the scan began (it may have taken several turns): as if it had not run.
    if (!this.mayExpire()) return
    if (preservation) {
      const { allowed, transition } = preservation.decide(now, s.clients, s.expiring)
      if (transition) this.logTransition(transition)
      if (!allowed) return
      // The pause stopped the clocks: a client still silent now may simply not have had its turn
      // to beat since the fault healed, so every client gets a full timeout from here.
      if (transition === 'resumed') {
        for (const lease of this.leases.values()) lease.last = now
        return
      }
    }
    if (s.due.length > 0) this.expireDue(s.due, 0)
  }

  /**
   * Expires due[from..from + SWEEP_CHUNK), then schedules the rest for the next turn. Each
   * client is judged again as it is expired, from its lease and record now: between turns a
   * client may have beaten or changed, been handed over, or been removed, and expiry may have
   * been held back.
   */
  private expireDue(due: readonly string[], from: number): void {
    this.cancelRest = null
    if (!this.mayExpire()) return
    const now = this.clock.now()
    const end = Math.min(due.length, from + SWEEP_CHUNK)
    const changes: { lease: Lease; next: ClientRecord }[] = []
    for (let k = from; k < end; k++) {
      const lease = this.leases.get(due[k]!)
      const record = lease && (lease.record ?? this.store.get(due[k]!))
      if (!lease || !record) continue
      const next = expire(record, now - lease.last)
      if (next !== record) changes.push({ lease, next })
    }
    let expired = 0
    let removed = 0
    this.applyBulk(() => {
      for (const { lease, next } of changes) {
        // Removed at its first expiry step (no unhealthy step before) counts as an expiry too.
        if (!lease.expiredStep) expired++
        lease.expiredStep = true
        if (next.instances.length === 0) {
          this.store.remove(next.clientId)
          this.leases.delete(next.clientId)
          removed++
        } else {
          this.store.put(next)
        }
      }
    })
    if (this.preservation?.enabled()) this.preservation.recordExpired(now, expired, removed)
    if (end < due.length) this.cancelRest = this.clock.setTimer(0, () => this.expireDue(due, end))
  }

  private logTransition(transition: 'paused' | 'resumed'): void {
    const status = this.preservation!.status()
    const fields = { clients: status.clients, expiring: status.expiring, allowed: status.allowed, share: status.share, windowMs: status.windowMs }
    if (transition === 'paused') {
      this.logger.warn(fields, 'self-preservation: too many clients stopped beating within one window; expiry of ephemeral instances is paused until their beats return')
    } else {
      this.logger.info(fields, 'self-preservation: beats are back; expiry of ephemeral instances resumes')
    }
  }
}

/** The record after `silentMs` without a beat; the same object when nothing changes. */
export function expire(record: ClientRecord, silentMs: number): ClientRecord {
  let changed = false
  const instances: Instance[] = []
  for (const i of record.instances) {
    const times = beatTimesOf(i)
    if (silentMs > times.removeAfterMs) {
      changed = true
      continue
    }
    const healthy = silentMs <= times.unhealthyAfterMs
    if (healthy === i.healthy) instances.push(i)
    else {
      changed = true
      instances.push(withHealth(i, healthy))
    }
  }
  // A copy exactly as long (slice): the pushes left room for 17, kept with the record.
  return changed ? { ...record, version: record.version + 1, instances: instances.slice() } : record
}
