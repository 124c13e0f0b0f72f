// Ephemeral clients stay registered while they beat. Each client is a lease: registering or
// beating renews it, and a periodic sweep marks its instances unhealthy once a beat is overdue
// by the instance's timeout, and removes them once overdue by its delete timeout. The clock is
// injected, so tests drive expiry by moving a ManualClock.
//
// Two rules can hold expiry back: mayExpire (Distro: this node sees no majority of the members)
// and self-preservation (too many of this node's own clients stopped beating at once;
// self-preservation.ts), which is off until configure() turns it on. And in a cluster a removal
// waits for the other members to say that none of them heard from the client (PeerSilence).

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
 * The most leases a sweep looks at in one turn of the event loop; it goes on with more in the
 * next turns. Most sweeps look at a few; some look at many: every lease when the members change,
 * or a wave of clients registered together that crosses a threshold together. A look is about
 * 0.2 µs: 17,000 in one turn held a node's event loop about 3 ms, in the tail of the requests'
 * latency.
 */
export const SCAN_CHUNK = 2048

/**
 * Asks the other members whether any of them heard from these clients: for each client that some
 * member heard from recently (silences()), the least time (ms) since. Rejects when a member that
 * had to answer did not.
 *
 * Why: members can disagree about who is UP. Heartbeats between nodes lost one way make one node
 * count another as down while that one still counts it as up, and each takes the client as its
 * own. The client's beats then renew a lease on one of them while the other, which hears nothing,
 * would remove the client from every node (seed 143679 of the Distro simulator). A removal cannot
 * be taken back, so before one the owner asks.
 */
export type PeerSilence = (clientIds: readonly string[]) => Promise<ReadonlyMap<string, number>>

/** The most clients a node remembers hearing from without holding their lease (ClientLeases.heardWithoutLease). */
const MAX_HEARD_WITHOUT_LEASE = 200_000

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

/** The longest delete timeout of a client's instances. */
function maxRemoveAfter(instances: readonly Instance[]): number {
  let most: number = BEAT_DEFAULTS.removeAfterMs
  for (const i of instances) most = Math.max(most, beatTimesOf(i).removeAfterMs)
  return most
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

/** Where a lease waits for its next look (Lease.where): a bucket's key (>= 0), or one of these. */
const DIRTY = -1
/** Past every threshold: nothing the sweep decides for it changes until it beats or changes. */
const IDLE = -2
/** Dropped: no longer in the map; entries left in lists are skipped. */
const GONE = -3

/**
 * One client's lease. What the sweep needs of the client's record (immutable; a change is a new
 * object) is worked out once per record and kept here: with tens of thousands of clients, redoing
 * it per sweep was a tenth of the server's CPU on the benchmark's register run
 * (docs/benchmarks.md).
 */
class Lease {
  /**
   * The record the limits below were worked out for; undefined: not yet, or the client's record
   * changed since (the store tells ClientLeases), so the next look reads it again.
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
   * self-preservation counts a client once per silence. Every beat clears it.
   */
  expiredStep = false
  /** Counted in ClientLeases.expiring: at its last look it was about to expire, or due. */
  counted = false
  /** Its record would change by expiry (changesAt) at its last look: it waits in ClientLeases.due. */
  due = false
  /** It has an entry in ClientLeases.due (one at most), valid while `due`. */
  queued = false
  /** The bucket that holds it, or DIRTY, IDLE, GONE. */
  where = DIRTY
  /**
   * The `last` for which the other members said that none of them heard from the client since
   * (PeerSilence); -1: never. A removal goes ahead only while `last` is still that.
   */
  silentFor = -1

  constructor(
    /** Its client, so that a pass can go over leases alone. */
    readonly clientId: string,
    /** The last beat, or the start of a grace (a takeover, a return to a majority): what expiry counts from. */
    public last: number,
    /**
     * The last time the client itself was heard from (a beat or a registration here, or one another
     * member reported); -Infinity: never. Unlike `last`, a grace does not move it: only this tells
     * the other members (PeerSilence, heardSince) that the client lived.
     */
    public heard: number,
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

  /**
   * The least threshold the silence has not passed yet, where what a look decides for this lease
   * (due, counted) can change once the silence is above it; Infinity: none is left.
   */
  nextThreshold(silentMs: number): number {
    let next = Infinity
    if (silentMs <= this.unchangedAfter) next = this.unchangedAfter
    if (silentMs <= this.suspectAfter && this.suspectAfter < next) next = this.suspectAfter
    if (silentMs <= this.unchangedUpTo && this.unchangedUpTo < next) next = this.unchangedUpTo
    return next
  }
}

/** A sweep's pass over the leases it must look at: where it is, and when it began. */
interface Pass {
  readonly now: number
  readonly preservation: SelfPreservation | null
  readonly ownersVersion: number
  /** Lists of leases and the `where` each lease must still have to be looked at from it. */
  readonly lists: { readonly key: number; readonly leases: readonly Lease[] }[]
  list: number
  index: number
}

/**
 * The leases of the clients this node owns, and their expiry.
 *
 * A sweep (every SWEEP_INTERVAL_MS) does not read every lease: a lease is looked at only when the
 * silence of its client may have crossed one of its thresholds (about to expire, unhealthy,
 * removed), or when it changed (new, its record changed, handed back). Each lease waits in a
 * bucket of the time of its next threshold, one bucket a sweep interval, and a sweep takes the
 * buckets whose time has come. A client that beats is looked at once per threshold period,
 * not once a second: reading all of 100k leases a second was 6 % of a cluster's CPU on the AP
 * benchmark's register run (perf), and in the tail of every request's latency. A beat only
 * moves the lease's last beat; the look its old bucket brings finds the silence short and files
 * it again. Self-preservation's counts are kept as leases change state, not recounted.
 */
export class ClientLeases {
  /** The leases of the owned clients, with their last beat. */
  private readonly leases = new Map<string, Lease>()
  /** Leases the next sweep looks at: new, changed, beaten while due, or not yet past a threshold whose bucket came. */
  private dirty: Lease[] = []
  /** Leases by the time of their next threshold: key floor((time - epoch) / SWEEP_INTERVAL_MS). */
  private readonly buckets = new Map<number, Lease[]>()
  /** Every bucket up to this key was taken by a sweep: a lease due there goes to `dirty`. */
  private takenUpTo = -1
  private readonly epoch: number
  /** Leases whose record expiry would change, waiting for a sweep that may expire them; entries whose lease is no longer due are skipped. */
  private due: Lease[] = []
  /** How many leases are counted (Lease.counted): self-preservation's clients about to expire. */
  private expiring = 0
  /** The ownersVersion the leases were last checked against; every lease is looked at when it changes. */
  private checkedOwners: number | undefined = undefined
  private preservation: SelfPreservation | null = null
  private logger: Logger = silentLogger
  private cancelSweep: Cancel | null = null
  /** The rest of a sweep's pass or expiries waiting for the next turn (SCAN_CHUNK, SWEEP_CHUNK); null when none. */
  private cancelRest: Cancel | null = null
  /** Runs a sweep's changes to the store; the naming view makes them one change per service. */
  private applyBulk: (apply: () => void) => void = (apply) => apply()
  /** Asked before a removal; null: nobody else could have heard from a client (a standalone node). */
  private peerSilence: PeerSilence | null = null
  /** A PeerSilence question is on its way: one at a time. */
  private asking = false
  /**
   * Clients this node heard from without holding their lease now: leases handed over to another
   * owner, and clients whose beats or registrations it forwarded to their owner. Each is kept for
   * as long as a removal could still be asked about (the client's delete timeout from when it was
   * heard): the owner may not have had those beats (another member, in a view of the members
   * this one did not share, may have taken them). Oldest first; at most MAX_HEARD_WITHOUT_LEASE.
   */
  private readonly heardWithoutLease = new Map<string, { readonly heard: number; readonly keepUntil: number }>()
  /** When remember() last pruned heardWithoutLease: at most once a sweep interval, as it runs for most forwarded beats. */
  private prunedAt = -Infinity

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
     * The sweep asks `owns` about a lease once per value: with tens of thousands of leases the
     * question, a lookup in the store's map of every client, was two thirds of a sweep that read
     * every lease (test/bench/ap-micro.ts --only sweep).
     */
    private readonly ownersVersion: () => number = () => 0,
  ) {
    this.epoch = clock.now()
    store.subscribe((clientId) => {
      const lease = this.leases.get(clientId)
      if (lease) {
        lease.record = undefined
        this.touch(lease)
      }
    })
  }

  /**
   * Turns self-preservation on (settings with share 1: off), sets where its changes are logged,
   * and how a sweep's changes are applied together (NamingView.batch).
   */
  configure(opts: { selfPreservation?: SelfPreservationSettings; logger?: Logger; applyBulk?: (apply: () => void) => void; peerSilence?: PeerSilence }): void {
    if (opts.selfPreservation) this.preservation = new SelfPreservation(opts.selfPreservation)
    if (opts.logger) this.logger = opts.logger
    if (opts.applyBulk) this.applyBulk = opts.applyBulk
    if (opts.peerSilence) this.peerSilence = opts.peerSilence
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
      if (lease) {
        lease.last = Math.max(lease.last, now)
        this.touch(lease)
      } else this.add(id, now, -Infinity)
    }
  }

  /**
   * Clients this node became responsible for (a member left or joined): their beats went to
   * another node until now, so each gets one full timeout from now before it can expire. No
   * live instance is dropped by a takeover. A client already beating here keeps its lease.
   */
  takeOver(clientIds: Iterable<string>): void {
    const now = this.clock.now()
    for (const id of clientIds) if (!this.leases.has(id) && this.store.get(id)) this.add(id, now, -Infinity)
  }

  /**
   * The client was heard from here, and its beat or registration forwarded to its owner: told
   * to an owner that asks before a removal, as a lease's beats are (seed 143138 of the Distro
   * simulator: a beat went to a member that then was cut off, and the owner that later took the
   * client asked only the others).
   */
  noteHeard(clientId: string): void {
    const record = this.store.get(clientId)
    this.remember(clientId, this.clock.now(), record ? maxRemoveAfter(record.instances) : BEAT_DEFAULTS.removeAfterMs)
  }

  /** Clients another node is now responsible for: it expires them, this node no longer does. */
  handOver(clientIds: Iterable<string>): void {
    for (const id of clientIds) {
      const lease = this.leases.get(id)
      if (lease) this.giveAway(lease)
    }
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
      lease.heard = now
      lease.expiredStep = false
      // Silent for no time now: not about to expire. One whose unhealthy instances make it count
      // (or due) gets a healthy record below, which the store's listener hands to the next look.
      this.uncount(lease)
      // Its bucket (if any) is earlier than its next threshold now, which is harmless: the look
      // it brings files it again. A lease waiting for expiry or past every threshold is in none.
      if (lease.due || lease.where === IDLE) this.touch(lease)
    } else this.add(clientId, now, now)
    const record = this.store.get(clientId)
    if (record && record.instances.some((i) => !i.healthy)) {
      this.store.put({ ...record, version: record.version + 1, instances: record.instances.map((i) => (i.healthy ? i : withHealth(i, true))) })
    }
  }

  /** When the client last beat, as this node's lease says; undefined: no lease here. */
  lastBeatOf(clientId: string): number | undefined {
    return this.leases.get(clientId)?.last
  }

  /**
   * What this node answers a PeerSilence question: ms since it last heard from each client (a
   * lease's grace is not a sign of life), for the clients it holds a lease for or heard from
   * recently without one.
   */
  silences(clientIds: readonly string[]): Map<string, number> {
    const now = this.clock.now()
    this.pruneHeardWithoutLease(now)
    const out = new Map<string, number>()
    for (const id of clientIds) {
      const heard = this.heardAt(id)
      if (heard !== undefined) out.set(id, Math.max(0, now - heard))
    }
    return out
  }

  /**
   * Whether this node heard from the client (itself, not a grace) after `sinceMs`: Distro asks it
   * before it applies another member's removal of a client (ap/node/distro-node.ts heardSince).
   */
  heardSince(clientId: string, sinceMs: number): boolean {
    this.pruneHeardWithoutLease(this.clock.now())
    const heard = this.heardAt(clientId)
    return heard !== undefined && heard > sinceMs
  }

  /** When this node last heard from the client, by its lease or heardWithoutLease; undefined: never, or forgotten. */
  private heardAt(clientId: string): number | undefined {
    const heard = Math.max(this.leases.get(clientId)?.heard ?? -Infinity, this.heardWithoutLease.get(clientId)?.heard ?? -Infinity)
    return heard === -Infinity ? undefined : heard
  }

  forget(clientId: string): void {
    const lease = this.leases.get(clientId)
    if (lease) this.drop(lease)
  }

  /**
   * Drops a lease whose client another node owns now, remembering when it last heard from the
   * client: a client that beat here while this node took it as its own (a view of the members the
   * owner did not share) must not be removed by the owner for a silence it only had there (Distro
   * simulator seed 3073).
   */
  private giveAway(lease: Lease): void {
    this.remember(lease.clientId, lease.heard, lease.record ? maxRemoveAfter(lease.record.instances) : BEAT_DEFAULTS.removeAfterMs)
    this.drop(lease)
  }

  /**
   * Keeps in heardWithoutLease that the client was heard from at `heard`, for `removeAfter` from
   * then, unless it already holds a later time: a lease handed over with only a grace in it (a
   * takeover undone a moment later) must not erase a beat heard before (Distro simulator seed 4957).
   */
  private remember(clientId: string, heard: number, removeAfter: number): void {
    const now = this.clock.now()
    if (now - this.prunedAt >= SWEEP_INTERVAL_MS) {
      this.prunedAt = now
      this.pruneHeardWithoutLease(now)
    }
    const held = this.heardWithoutLease.get(clientId)
    if (held !== undefined && held.heard >= heard) return
    if (heard + removeAfter <= now) return
    // Deleted first so that the entry moves to the young end: the map stays oldest first.
    this.heardWithoutLease.delete(clientId)
    this.heardWithoutLease.set(clientId, { heard, keepUntil: heard + removeAfter })
    if (this.heardWithoutLease.size > MAX_HEARD_WITHOUT_LEASE) this.heardWithoutLease.delete(this.heardWithoutLease.keys().next().value!)
  }

  /** Forgets the clients heard from without a lease past their time, from the oldest until one is not. */
  private pruneHeardWithoutLease(now: number): void {
    for (const [id, h] of this.heardWithoutLease) {
      if (h.keepUntil >= now) break
      this.heardWithoutLease.delete(id)
    }
  }

  private add(clientId: string, now: number, heard: number): void {
    const lease = new Lease(clientId, now, heard)
    this.leases.set(clientId, lease)
    this.markDirty(lease)
  }

  /** Has the next sweep look at the lease again; it waits for expiry no longer until then. */
  private touch(lease: Lease): void {
    lease.due = false
    if (lease.where === DIRTY || lease.where === GONE) return
    this.markDirty(lease)
  }

  private markDirty(lease: Lease): void {
    lease.where = DIRTY
    this.dirty.push(lease)
    // A lease is in `dirty` once at most, but a dropped one leaves its entry behind. Sweeps do
    // not run while expiry is held back (no majority), and a node cut off from the others keeps
    // taking registrations and deregistrations: keep the list within bounds of the leases.
    if (this.dirty.length > 2 * this.leases.size + 1024) this.dirty = this.dirty.filter((l) => l.where === DIRTY)
  }

  private drop(lease: Lease): void {
    this.uncount(lease)
    lease.due = false
    lease.where = GONE
    if (this.leases.get(lease.clientId) === lease) this.leases.delete(lease.clientId)
  }

  private uncount(lease: Lease): void {
    if (!lease.counted) return
    lease.counted = false
    this.expiring--
  }

  /**
   * Applies overdue beats: unhealthy past the timeout, removed past the delete timeout; unless
   * expiry is held back (no majority), or self-preservation pauses it.
   */
  sweep(): void {
    // The last sweep's pass or expiries are still going on: this one would find the same clients.
    if (this.cancelRest !== null) return
    if (!this.mayExpire()) return
    const now = this.clock.now()
    const ownersVersion = this.ownersVersion()
    if (ownersVersion !== this.checkedOwners) {
      this.checkedOwners = ownersVersion
      for (const lease of this.leases.values()) this.touch(lease)
    }
    const lists: Pass['lists'] = [{ key: DIRTY, leases: this.dirty }]
    this.dirty = []
    const upTo = Math.floor((now - this.epoch) / SWEEP_INTERVAL_MS)
    if (upTo - this.takenUpTo > this.buckets.size) {
      for (const [key, leases] of this.buckets) if (key <= upTo) lists.push({ key, leases })
    } else {
      for (let key = this.takenUpTo + 1; key <= upTo; key++) {
        const leases = this.buckets.get(key)
        if (leases) lists.push({ key, leases })
      }
    }
    for (let i = 1; i < lists.length; i++) this.buckets.delete(lists[i]!.key)
    this.takenUpTo = Math.max(this.takenUpTo, upTo)
    const preservation = this.preservation?.enabled() ? this.preservation : null
    this.pass({ now, preservation, ownersVersion, lists, list: 0, index: 0 })
  }

  /**
   * Looks at up to SCAN_CHUNK leases of the pass, then goes on in the next turn; at the end,
   * decides. A look only counts and collects: a sweep that self-preservation pauses builds no
   * expired records it would throw away. Leases that change while it goes on are fine: a changed
   * lease is looked at by the next sweep, and each client due is judged again from its lease when
   * it is expired (expireDue).
   */
  private pass(p: Pass): void {
    this.cancelRest = null
    let n = 0
    for (; p.list < p.lists.length; p.list++, p.index = 0) {
      const { key, leases } = p.lists[p.list]!
      while (p.index < leases.length) {
        const lease = leases[p.index++]!
        // Moved since it was put in this list (beaten while due, changed, dropped): looked at from where it is now.
        if (lease.where !== key) continue
        this.look(lease, p.now, p.ownersVersion)
        if (++n === SCAN_CHUNK) {
          this.cancelRest = this.clock.setTimer(0, () => this.pass(p))
          return
        }
      }
    }
    this.decide(p)
  }

  /** Works out whether the lease is due and counted now, and files it for its next threshold. */
  private look(lease: Lease, now: number, ownersVersion: number): void {
    const clientId = lease.clientId
    const record = lease.record ?? this.store.get(clientId)
    if (!record) {
      this.drop(lease)
      return
    }
    if (lease.ownedUnder !== ownersVersion && !this.owns(clientId)) {
      this.giveAway(lease)
      return
    }
    lease.ownedUnder = ownersVersion
    lease.track(record)
    const silent = now - lease.last
    const changes = lease.changesAt(silent)
    const counted = (changes || silent > lease.suspectAfter) && !lease.expiredStep
    if (counted !== lease.counted) {
      lease.counted = counted
      this.expiring += counted ? 1 : -1
    }
    lease.due = changes
    if (changes && !lease.queued) this.queueDue(lease)
    const next = lease.nextThreshold(silent)
    if (next === Infinity) lease.where = IDLE
    else this.file(lease, lease.last + next)
  }

  private queueDue(lease: Lease): void {
    lease.queued = true
    this.due.push(lease)
    // Entries of leases no longer due pile up while self-preservation pauses expiry (clients
    // that beat again or left): keep the list within bounds of the leases it is for.
    if (this.due.length > 2 * this.leases.size + 1024) {
      const kept: Lease[] = []
      for (const l of this.due) {
        if (l.due) kept.push(l)
        else l.queued = false
      }
      this.due = kept
    }
  }

  /** Puts the lease where the first sweep after `at` finds it. */
  private file(lease: Lease, at: number): void {
    const key = Math.floor((at - this.epoch) / SWEEP_INTERVAL_MS)
    if (key <= this.takenUpTo) {
      // Its bucket was taken (it falls within the current interval): the next sweep looks again.
      this.markDirty(lease)
      return
    }
    lease.where = key
    const bucket = this.buckets.get(key)
    if (bucket) bucket.push(lease)
    else this.buckets.set(key, [lease])
  }

  /** A pass's end: whether self-preservation lets expiry go ahead, then the expiries. */
  private decide(p: Pass): void {
    const { now, preservation } = p
    // Held back since the pass began (it may have taken several turns): as if it had not run.
    if (!this.mayExpire()) return
    if (preservation) {
      const { allowed, transition } = preservation.decide(now, this.leases.size, this.expiring)
      if (transition) this.logTransition(transition)
      if (!allowed) return
      // The pause stopped the clocks: a client still silent now may simply not have had its turn
      // to beat since the fault healed, so every client gets a full timeout from here.
      if (transition === 'resumed') {
        for (const lease of this.leases.values()) {
          lease.last = now
          this.touch(lease)
        }
        return
      }
    }
    if (this.due.length === 0) return
    const due = this.due
    this.due = []
    this.expireDue(due, 0)
  }

  /**
   * Expires due[from..from + SWEEP_CHUNK), then schedules the rest for the next turn. Each
   * client is judged again as it is expired, from its lease and record now: between turns a
   * client may have beaten or changed, been handed over, or been removed, and expiry may have
   * been held back (the rest then waits for a later sweep).
   */
  private expireDue(due: readonly Lease[], from: number): void {
    this.cancelRest = null
    if (!this.mayExpire()) {
      for (let k = from; k < due.length; k++) {
        const lease = due[k]!
        if (lease.due) this.due.push(lease)
        else lease.queued = false
      }
      return
    }
    const now = this.clock.now()
    const end = Math.min(due.length, from + SWEEP_CHUNK)
    const changes: { lease: Lease; next: ClientRecord }[] = []
    /** Due for a removal the other members have not cleared yet. */
    const unasked: Lease[] = []
    for (let k = from; k < end; k++) {
      const lease = due[k]!
      lease.queued = false
      // No longer due: beaten, changed or dropped since.
      if (!lease.due) continue
      lease.due = false
      const record = lease.record ?? this.store.get(lease.clientId)
      if (!record) {
        this.drop(lease)
        continue
      }
      const next = expire(record, now - lease.last)
      // Unchanged: it was due for unhealthy instances a beat would make healthy, and its silence
      // passed their timeout since; its look filed it for then, so it is looked at again.
      if (next === record) continue
      if (this.peerSilence && next.instances.length < record.instances.length && lease.silentFor !== lease.last) {
        unasked.push(lease)
        continue
      }
      changes.push({ lease, next })
    }
    if (unasked.length > 0) this.askPeers(unasked)
    let expired = 0
    let removed = 0
    this.applyBulk(() => {
      for (const { lease, next } of changes) {
        // Removed at its first expiry step (no unhealthy step before) counts as an expiry too.
        if (!lease.expiredStep) expired++
        lease.expiredStep = true
        if (next.instances.length === 0) {
          this.store.remove(next.clientId)
          this.drop(lease)
          removed++
        } else {
          // The store's listener has the next sweep look at the lease with its new record.
          this.store.put(next)
        }
      }
    })
    if (this.preservation?.enabled()) this.preservation.recordExpired(now, expired, removed)
    if (end < due.length) this.cancelRest = this.clock.setTimer(0, () => this.expireDue(due, end))
  }

  /**
   * Asks the other members about clients due for removal. Each lease is looked at again by the
   * next sweep: a beat another member had after this lease's last counts as a beat here; if none
   * had one and the client stayed silent here, its removal goes ahead then; if a member did not
   * answer, it is asked again.
   */
  private askPeers(leases: readonly Lease[]): void {
    if (this.asking) {
      for (const lease of leases) this.touch(lease)
      return
    }
    this.asking = true
    const asked = leases.map((lease) => ({ lease, last: lease.last }))
    this.peerSilence!(asked.map((a) => a.lease.clientId))
      .then(
        (heard) => {
          const now = this.clock.now()
          for (const { lease, last } of asked) {
            if (lease.where === GONE) continue
            const silence = heard.get(lease.clientId)
            // Only a beat newer than this lease's counts: one older (a stale lease elsewhere) must
            // not hold the removal back for as long as that node keeps it.
            const heardAt = silence === undefined ? -Infinity : now - silence
            if (heardAt > lease.last) {
              lease.last = heardAt
              lease.heard = Math.max(lease.heard, heardAt)
              lease.expiredStep = false
              this.uncount(lease)
            } else if (lease.last === last) lease.silentFor = last
            this.touch(lease)
          }
        },
        (err: Error) => {
          this.logger.warn({ clients: asked.length, err: err.message }, 'leases: could not ask every member whether it heard from clients due for removal; asking again at the next sweep')
          for (const { lease } of asked) if (lease.where !== GONE) this.touch(lease)
        },
      )
      .finally(() => {
        this.asking = false
      })
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
