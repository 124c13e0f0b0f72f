// Ephemeral clients stay registered while they beat. Each client is a lease: registering or
// beating renews it, and a periodic sweep marks its instances unhealthy once a beat is overdue
// by the instance's timeout, and removes them once overdue by its delete timeout. The clock is
// injected, so tests drive expiry by moving a ManualClock.

import type { ClientRecord, EphemeralStore } from '../ap/store.js'
import type { Cancel, Clock } from '../core/clock.js'
import { BEAT_DEFAULTS, BEAT_METADATA, type Instance } from './model.js'

/** How often the sweep looks for overdue clients; the health answer lags a beat by at most this. */
export const SWEEP_INTERVAL_MS = 1_000

function override(instance: Instance, key: keyof typeof BEAT_METADATA): number {
  const value = instance.metadata[BEAT_METADATA[key]]
  // Validated at registration; a bad value from an older version falls back to the default.
  const ms = value === undefined ? NaN : Number(value)
  return Number.isFinite(ms) && ms > 0 ? ms : BEAT_DEFAULTS[key]
}

/** The interval a client should beat at: the shortest any of its instances asks for. */
export function beatIntervalOf(instances: readonly Instance[]): number {
  let interval = Infinity
  for (const i of instances) interval = Math.min(interval, override(i, 'intervalMs'))
  return interval === Infinity ? BEAT_DEFAULTS.intervalMs : interval
}

export class ClientLeases {
  private readonly lastBeat = new Map<string, number>()
  private cancelSweep: Cancel | null = null

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
  ) {}

  /**
   * Every owned client gets at least a full timeout from now: after a time without a majority,
   * when beats may have gone to the other side of a partition and this node's leases tell
   * nothing about whether a client lives.
   */
  refreshAll(clientIds: Iterable<string>): void {
    const now = this.clock.now()
    for (const id of clientIds) if (this.store.get(id)) this.lastBeat.set(id, Math.max(this.lastBeat.get(id) ?? now, now))
  }

  /**
   * Clients this node became responsible for (a member left or joined): their beats went to
   * another node until now, so each gets one full timeout from now before it can expire. No
   * live instance is dropped by a takeover. A client already beating here keeps its lease.
   */
  takeOver(clientIds: Iterable<string>): void {
    const now = this.clock.now()
    for (const id of clientIds) if (!this.lastBeat.has(id) && this.store.get(id)) this.lastBeat.set(id, now)
  }

  /** Clients another node is now responsible for: it expires them, this node no longer does. */
  handOver(clientIds: Iterable<string>): void {
    for (const id of clientIds) this.lastBeat.delete(id)
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
  }

  /** Renews the client's lease; instances marked unhealthy by a missed beat are healthy again. */
  renew(clientId: string): void {
    this.lastBeat.set(clientId, this.clock.now())
    const record = this.store.get(clientId)
    if (record && record.instances.some((i) => !i.healthy)) {
      this.store.put({ ...record, version: record.version + 1, instances: record.instances.map((i) => (i.healthy ? i : { ...i, healthy: true })) })
    }
  }

  forget(clientId: string): void {
    this.lastBeat.delete(clientId)
  }

  /** Applies overdue beats: unhealthy past the timeout, removed past the delete timeout. */
  sweep(): void {
    if (!this.mayExpire()) return
    const now = this.clock.now()
    for (const [clientId, last] of this.lastBeat) {
      const record = this.store.get(clientId)
      if (!record || !this.owns(clientId)) {
        this.lastBeat.delete(clientId)
        continue
      }
      const next = expire(record, now - last)
      if (next === record) continue
      if (next.instances.length === 0) {
        this.store.remove(clientId)
        this.lastBeat.delete(clientId)
      } else {
        this.store.put(next)
      }
    }
  }
}

/** The record after `silentMs` without a beat; the same object when nothing changes. */
function expire(record: ClientRecord, silentMs: number): ClientRecord {
  let changed = false
  const instances: Instance[] = []
  for (const i of record.instances) {
    if (silentMs > override(i, 'removeAfterMs')) {
      changed = true
      continue
    }
    const healthy = silentMs <= override(i, 'unhealthyAfterMs')
    if (healthy === i.healthy) instances.push(i)
    else {
      changed = true
      instances.push({ ...i, healthy })
    }
  }
  return changed ? { ...record, version: record.version + 1, instances } : record
}
