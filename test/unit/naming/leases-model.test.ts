// ClientLeases looks at a lease only when its silence may have crossed a threshold or it changed
// (leases.ts). This checks it against the plain rule it must keep, a reference that reads every
// lease at every sweep (as ClientLeases did before): random beats, record changes, removals,
// takeovers, handovers, ownership changes, expiry held back and self-preservation, with sweeps at
// random times, and after every sweep both must have left the same records, the same leases and
// the same self-preservation status. A failure prints the seed that reproduces it.

import t from 'tap'
import type { ClientRecord, EphemeralStore } from '../../../src/ap/store.js'
import { MemoryEphemeralStore } from '../../../src/ap/node/memory-store.js'
import { ManualClock } from '../../../src/core/clock.js'
import { ClientLeases, expire, unchangedRange } from '../../../src/naming/leases.js'
import { BEAT_DEFAULTS, BEAT_METADATA, type Instance, withHealth } from '../../../src/naming/model.js'
import { SelfPreservation, type SelfPreservationStatus } from '../../../src/naming/self-preservation.js'
import { mulberry32 } from '../ap/distro/fixtures.js'

/** The rule: every sweep reads every lease and judges it from its record and silence now. */
class ScanningLeases {
  private readonly leases = new Map<string, { last: number; expiredStep: boolean; ownedUnder: number }>()
  private readonly preservation: SelfPreservation

  constructor(
    private readonly store: EphemeralStore,
    private readonly clock: ManualClock,
    private readonly mayExpire: () => boolean,
    private readonly owns: (id: string) => boolean,
    private readonly ownersVersion: () => number,
    settings: ConstructorParameters<typeof SelfPreservation>[0],
  ) {
    this.preservation = new SelfPreservation(settings)
  }

  status(): SelfPreservationStatus {
    return this.preservation.status()
  }

  lastBeatOf(id: string): number | undefined {
    return this.leases.get(id)?.last
  }

  renew(id: string): void {
    const lease = this.leases.get(id)
    if (lease) {
      lease.last = this.clock.now()
      lease.expiredStep = false
    } else this.leases.set(id, { last: this.clock.now(), expiredStep: false, ownedUnder: -1 })
    const record = this.store.get(id)
    if (record && record.instances.some((i) => !i.healthy)) {
      this.store.put({ ...record, version: record.version + 1, instances: record.instances.map((i) => (i.healthy ? i : withHealth(i, true))) })
    }
  }

  forget(id: string): void {
    this.leases.delete(id)
  }

  takeOver(ids: string[]): void {
    for (const id of ids) if (!this.leases.has(id) && this.store.get(id)) this.leases.set(id, { last: this.clock.now(), expiredStep: false, ownedUnder: -1 })
  }

  refreshAll(ids: string[]): void {
    const now = this.clock.now()
    for (const id of ids) {
      if (!this.store.get(id)) continue
      const lease = this.leases.get(id)
      if (lease) lease.last = Math.max(lease.last, now)
      else this.leases.set(id, { last: now, expiredStep: false, ownedUnder: -1 })
    }
  }

  sweep(): void {
    if (!this.mayExpire()) return
    const now = this.clock.now()
    const version = this.ownersVersion()
    let clients = 0
    let expiring = 0
    const due: string[] = []
    for (const [id, lease] of [...this.leases]) {
      const record = this.store.get(id)
      if (!record || (lease.ownedUnder !== version && !this.owns(id))) {
        this.leases.delete(id)
        continue
      }
      lease.ownedUnder = version
      clients++
      const silent = now - lease.last
      const range = unchangedRange(record.instances)
      const changes = silent <= range.after || silent > range.upTo
      if (changes) due.push(id)
      if ((changes || silent > suspectAfter(record.instances)) && !lease.expiredStep) expiring++
    }
    const { allowed, transition } = this.preservation.enabled() ? this.preservation.decide(now, clients, expiring) : { allowed: true, transition: null }
    if (!allowed) return
    if (transition === 'resumed') {
      for (const lease of this.leases.values()) lease.last = now
      return
    }
    let expired = 0
    let removed = 0
    for (const id of due) {
      const lease = this.leases.get(id)!
      const record = this.store.get(id)!
      const next = expire(record, now - lease.last)
      if (next === record) continue
      if (!lease.expiredStep) expired++
      lease.expiredStep = true
      if (next.instances.length === 0) {
        this.store.remove(id)
        this.leases.delete(id)
        removed++
      } else this.store.put(next)
    }
    if (this.preservation.enabled()) this.preservation.recordExpired(now, expired, removed)
  }
}

// leases.ts's rule for "about to expire", restated: the first timeout less one beat interval,
// at least half the timeout.
function suspectAfter(instances: readonly Instance[]): number {
  let first = Infinity
  let interval = Infinity
  for (const i of instances) {
    const md = i.metadata
    const unhealthy = Number(md[BEAT_METADATA.unhealthyAfterMs] ?? BEAT_DEFAULTS.unhealthyAfterMs)
    const remove = Number(md[BEAT_METADATA.removeAfterMs] ?? BEAT_DEFAULTS.removeAfterMs)
    interval = Math.min(interval, Number(md[BEAT_METADATA.intervalMs] ?? BEAT_DEFAULTS.intervalMs))
    first = Math.min(first, unhealthy, remove)
  }
  return first === Infinity ? Infinity : Math.max(first - interval, first / 2)
}

const TIMEOUTS: Record<string, string>[] = [
  {},
  { [BEAT_METADATA.unhealthyAfterMs]: '3000', [BEAT_METADATA.removeAfterMs]: '6000', [BEAT_METADATA.intervalMs]: '1000' },
  { [BEAT_METADATA.unhealthyAfterMs]: '2500', [BEAT_METADATA.removeAfterMs]: '2500' },
  { [BEAT_METADATA.unhealthyAfterMs]: '8000', [BEAT_METADATA.removeAfterMs]: '4000', [BEAT_METADATA.intervalMs]: '700' },
]

function randomRecord(random: () => number, id: string, version: number): ClientRecord {
  const instances: Instance[] = []
  const n = 1 + Math.floor(random() * 2)
  for (let k = 0; k < n; k++) {
    const metadata = TIMEOUTS[Math.floor(random() * TIMEOUTS.length)]!
    instances.push({ namespace: 'public', group: 'DEFAULT_GROUP', service: 's', cluster: 'DEFAULT', ip: '10.0.0.1', port: 80 + k, weight: 1, enabled: true, healthy: random() < 0.85, ephemeral: true, metadata, clientId: id })
  }
  return { clientId: id, version, instances }
}

function runSeed(seed: number, steps: number): string | null {
  const random = mulberry32(seed)
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!
  const ids = Array.from({ length: 40 }, (_, k) => `c${k}`)
  const clock = new ManualClock()
  const stores = [new MemoryEphemeralStore(), new MemoryEphemeralStore()] as const
  let allowed = true
  let ownersVersion = 0
  const elsewhere = new Set<string>()
  const owns = (id: string) => !elsewhere.has(id)
  // Half the seeds with self-preservation off, so that expiry is seldom paused in those.
  const settings = { share: seed % 2 === 0 ? 1 : 0.5, windowMs: 20_000, minClients: 6 }
  // The clients that keep beating: each beats before a sweep with probability one half. The
  // others are silent but for the single beats below; a client dies or comes back now and then.
  const alive = new Set(ids.filter(() => random() < 0.7))
  const reference = new ScanningLeases(stores[0], clock, () => allowed, owns, () => ownersVersion, settings)
  const leases = new ClientLeases(stores[1], clock, () => allowed, owns, () => ownersVersion)
  leases.configure({ selfPreservation: settings })
  const both = (f: (store: MemoryEphemeralStore, l: ScanningLeases | ClientLeases) => void) => {
    f(stores[0], reference)
    f(stores[1], leases)
  }
  for (let step = 0; step < steps; step++) {
    const id = pick(ids)
    const r = random()
    let op: string
    if (r < 0.04) {
      op = `${alive.has(id) ? 'dies' : 'comes back'} ${id}`
      if (!alive.delete(id)) alive.add(id)
    } else if (r < 0.25) {
      op = `beat ${id}`
      if (stores[0].get(id)) both((_s, l) => l.renew(id))
    } else if (r < 0.37) {
      op = `register ${id}`
      const next = randomRecord(random, id, (stores[0].get(id)?.version ?? 0) + 1)
      both((s, l) => {
        s.put(next)
        l.renew(id)
      })
    } else if (r < 0.45) {
      op = `change ${id}`
      const next = randomRecord(random, id, (stores[0].get(id)?.version ?? 0) + 1)
      both((s) => s.put(next))
    } else if (r < 0.5) {
      op = `deregister ${id}`
      both((s, l) => {
        s.remove(id)
        l.forget(id)
      })
    } else if (r < 0.53) {
      op = `removed elsewhere ${id}`
      both((s) => s.remove(id))
    } else if (r < 0.57) {
      const taken = ids.filter(() => random() < 0.2)
      op = `take over ${taken.length}`
      both((_s, l) => l.takeOver(taken))
    } else if (r < 0.59) {
      op = `hand over ${id}`
      both((_s, l) => (l instanceof ClientLeases ? l.handOver([id]) : l.forget(id)))
    } else if (r < 0.62) {
      op = 'members change'
      for (const x of ids) if (random() < 0.15) (elsewhere.has(x) ? elsewhere.delete(x) : elsewhere.add(x))
      ownersVersion++
    } else if (r < 0.64) {
      op = 'refresh all'
      const owned = ids.filter(owns)
      both((_s, l) => l.refreshAll(owned))
    } else if (r < 0.67) {
      allowed = !allowed
      op = `expiry ${allowed ? 'allowed' : 'held back'}`
    } else {
      const ms = pick([1, 250, 999, 1000, 1000, 1001, 1700, 3000, 6000])
      op = `sweep after ${ms} ms`
      for (const x of alive) if (random() < 0.5 && stores[0].get(x)) both((_s, l) => l.renew(x))
      clock.advance(ms)
      both((_s, l) => l.sweep())
      clock.advance(0)
      const problem = compare(stores, reference, leases, ids)
      if (problem) return `step ${step} (${op}): ${problem}`
    }
  }
  return null
}

function compare(stores: readonly [MemoryEphemeralStore, MemoryEphemeralStore], reference: ScanningLeases, leases: ClientLeases, ids: string[]): string | null {
  for (const id of ids) {
    const a = JSON.stringify(stores[0].get(id) ?? null)
    const b = JSON.stringify(stores[1].get(id) ?? null)
    if (a !== b) return `${id}'s record: expected ${a}, got ${b}`
    if (reference.lastBeatOf(id) !== leases.lastBeatOf(id)) return `${id}'s last beat: expected ${reference.lastBeatOf(id)}, got ${leases.lastBeatOf(id)}`
  }
  const want = reference.status()
  const got = leases.selfPreservation()!
  for (const k of ['active', 'clients', 'expiring', 'allowed'] as const) {
    if (want[k] !== got[k]) return `self-preservation ${k}: expected ${want[k]}, got ${got[k]}`
  }
  return null
}

t.test('the leases expire, count and drop exactly as a sweep that reads every lease would (300 seeds)', async (t) => {
  const failures: string[] = []
  for (let seed = 1; seed <= 300; seed++) {
    const problem = runSeed(seed, 600)
    if (problem) failures.push(`seed ${seed}: ${problem}`)
  }
  t.same(failures.slice(0, 5), [], `${failures.length} seeds differ from the reference`)
})
