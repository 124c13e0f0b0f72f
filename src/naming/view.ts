// The in-memory registry every query reads: services with their persistent instances (fed by
// the CP state machine) and their ephemeral instances (fed by the AP store). Each service has a
// revision that grows on every change, and caches its query answers until the next change.
//
// A service that loses its last instance and has no service record (metadata) stays, empty, for
// EMPTY_SERVICE_TTL_MS and is then dropped by sweepEmpty: a service whose only instance restarts
// does not vanish and come back in between. An empty service holds no stored data (its record
// would keep it), so each node drops it from its own memory, without a log entry.

import { createHash } from 'node:crypto'
import { type Instance, type ProbeCheck, type ServiceMeta, type ServiceName, instanceIdOf, sameSlot, serviceKey, storedInstanceId } from './model.js'
import type { InstanceQuery } from './validate.js'

/** How long a service with no instances and no record is kept. */
export const EMPTY_SERVICE_TTL_MS = 60_000

/** A persistent instance whose cluster the server probes, with the check that applies. */
export interface ProbeTarget {
  /** Unique per instance: service and instance identity. */
  readonly key: string
  readonly instance: Instance
  readonly check: ProbeCheck
}

export interface InstanceList extends ServiceName {
  readonly revision: number
  /** md5 over the listed instances, so a client can tell whether its copy is the same. */
  readonly checksum: string
  readonly instances: readonly Instance[]
  readonly protectThresholdReached: boolean
}

export class ServiceEntry {
  meta: ServiceMeta | undefined = undefined
  readonly persistent = new Map<string, Instance>()
  readonly ephemeral = new Map<string, Instance>()
  revision = 0
  /** Query answers for this revision, by filter. */
  readonly answers = new Map<string, InstanceList>()
  /** When the service became empty (no record, no instances); undefined while it is not. */
  emptySince: number | undefined = undefined
  /** The kind it had when it last had instances or a record, for an empty service's summary. */
  lastKind: boolean | undefined = undefined

  constructor(readonly name: ServiceName) {}

  /** true: ephemeral, false: persistent, undefined: not decided (no metadata, no instances). */
  kind(): boolean | undefined {
    if (this.meta) return this.meta.ephemeral
    if (this.persistent.size > 0) return false
    if (this.ephemeral.size > 0) return true
    return undefined
  }

  instanceCount(): number {
    return this.persistent.size + this.ephemeral.size
  }

  healthyCount(): number {
    let n = 0
    for (const i of this.persistent.values()) if (i.healthy && i.enabled) n++
    for (const i of this.ephemeral.values()) if (i.healthy && i.enabled) n++
    return n
  }

  isEmpty(): boolean {
    return !this.meta && this.instanceCount() === 0
  }

  find(id: string): Instance | undefined {
    return this.persistent.get(id) ?? this.ephemeral.get(id)
  }
}

export class NamingView {
  private readonly services = new Map<string, ServiceEntry>()
  private lastRevision: number
  /** Keys of the empty services waiting for sweepEmpty. */
  private readonly empty = new Set<string>()
  /** Keys of the services with at least one probed cluster. */
  private readonly probed = new Set<string>()
  /** Grows on every change to persistent instances or service records (what probing depends on). */
  private durable = 0
  private readonly changeListeners: ((name: ServiceName, revision: number) => void)[] = []
  /** While batch() runs: the services changed so far, each to get one revision when it ends. */
  private pending: Set<ServiceEntry> | null = null
  /**
   * The service looked up last: a registration, and each change a peer's sync batch carries,
   * names a service; most of them the same one as the change before. Found here by comparing
   * the three names, without building the joined key and hashing it (two strings per lookup,
   * and two lookups per change). Cleared when its service is dropped.
   */
  private last: ServiceEntry | undefined = undefined

  /**
   * Revisions start from the clock in microseconds, so that they keep growing across restarts
   * and a client's cached revision is never reused for different content. `now` stamps when a
   * service became empty (milliseconds).
   */
  constructor(
    startRevision: number,
    private readonly now: () => number = () => 0,
  ) {
    this.lastRevision = startRevision
  }

  /** Grows whenever persistent instances or service records change. */
  durableRevision(): number {
    return this.durable
  }

  /** Every persistent instance in a cluster with a probe check (tcp or http). */
  *probeTargets(): IterableIterator<ProbeTarget> {
    for (const key of this.probed) {
      const entry = this.services.get(key)
      if (!entry?.meta?.clusters || entry.persistent.size === 0) continue
      const checks = new Map<string, ProbeCheck>()
      for (const c of entry.meta.clusters) if (c.healthCheck.type !== 'none') checks.set(c.cluster, c.healthCheck)
      for (const [id, instance] of entry.persistent) {
        const check = checks.get(instance.cluster)
        if (check) yield { key: key + '\u001f' + id, instance, check }
      }
    }
  }

  /** Drops the services that have been empty for EMPTY_SERVICE_TTL_MS; answers how many. */
  sweepEmpty(now: number): number {
    let dropped = 0
    for (const key of this.empty) {
      const entry = this.services.get(key)
      if (entry && entry.isEmpty() && entry.emptySince !== undefined && now - entry.emptySince < EMPTY_SERVICE_TTL_MS) continue
      this.empty.delete(key)
      if (entry?.isEmpty()) {
        this.drop(key)
        dropped++
      }
    }
    return dropped
  }

  /** The newest revision handed to any service. */
  get revision(): number {
    return this.lastRevision
  }

  /**
   * Calls fn synchronously after every change of a service (its new revision; the service may be
   * gone). For watches and push (naming/push.ts): fn must be quick and must not throw.
   */
  onChange(fn: (name: ServiceName, revision: number) => void): void {
    this.changeListeners.push(fn)
  }

  /**
   * Runs fn, and gives each service it changed one new revision at the end instead of one per
   * change: for bulk changes such as an expiry sweep, where thousands of clients of one service
   * go unhealthy in one go, and a revision, a cleared answer cache and a round of watch and push
   * notifications per instance would be wasted work (nobody reads the view in between; fn is
   * synchronous). Nested calls join the outer batch.
   */
  batch(fn: () => void): void {
    if (this.pending) return fn()
    const pending = new Set<ServiceEntry>()
    this.pending = pending
    try {
      fn()
    } finally {
      this.pending = null
      for (const entry of pending) this.changed(entry)
    }
  }

  get(name: ServiceName): ServiceEntry | undefined {
    const last = this.last
    if (last !== undefined && last.name.service === name.service && last.name.group === name.group && last.name.namespace === name.namespace) return last
    const entry = this.services.get(serviceKey(name))
    if (entry !== undefined) this.last = entry
    return entry
  }

  size(): number {
    return this.services.size
  }

  entries(): IterableIterator<ServiceEntry> {
    return this.services.values()
  }

  putInstance(instance: Instance): void {
    const entry = this.entryFor(instance)
    const map = instance.ephemeral ? entry.ephemeral : entry.persistent
    map.set(storedInstanceId(instance), instance)
    if (!instance.ephemeral) this.durable++
    this.changed(entry)
  }

  /** Removes the instance; an ephemeral one only if it still belongs to clientId. */
  removeInstance(name: ServiceName, id: string, ephemeral: boolean, clientId = ''): boolean {
    const entry = this.get(name)
    if (!entry) return false
    const map = ephemeral ? entry.ephemeral : entry.persistent
    const current = map.get(id)
    if (!current || (ephemeral && clientId !== '' && current.clientId !== clientId)) return false
    map.delete(id)
    if (!ephemeral) this.durable++
    this.changed(entry)
    return true
  }

  /** Brings a client's ephemeral instances from prev to next: records are immutable, so unchanged instances are the same objects. */
  applyClientChange(clientId: string, prev: readonly Instance[], next: readonly Instance[]): void {
    // Most clients hold a few instances (every registration and beat comes here): comparing them
    // pairwise is cheaper than building a key string and a set for each; sets for large clients.
    const small = prev.length * next.length <= 64
    const staying = small ? undefined : new Set(next.map(slotKey))
    for (const i of prev) {
      if (!(staying ? staying.has(slotKey(i)) : holdsSlot(next, i))) this.removeInstance(i, instanceIdOf(i), true, clientId)
    }
    const unchanged = small ? undefined : new Set(prev)
    for (const i of next) if (!(unchanged ? unchanged.has(i) : prev.includes(i))) this.putInstance(i)
  }

  /** Sets or (undefined: the service was deleted) removes the service's record. */
  setMeta(name: ServiceName, meta: ServiceMeta | undefined): void {
    const entry = this.entryFor(name)
    entry.meta = meta
    const key = serviceKey(entry.name)
    if (meta?.clusters?.some((c) => c.healthCheck.type !== 'none')) this.probed.add(key)
    else this.probed.delete(key)
    this.durable++
    // A service deleted on purpose goes at once; the grace is for one whose instances came and went.
    this.changed(entry, meta === undefined)
  }

  /** Forgets the CP part (metadata, persistent instances), before it is loaded again. */
  clearDurable(): void {
    this.durable++
    this.probed.clear()
    for (const entry of [...this.services.values()]) {
      if (!entry.meta && entry.persistent.size === 0) continue
      entry.meta = undefined
      entry.persistent.clear()
      this.changed(entry, true)
    }
  }

  /** The answer to a query, built once per service revision and filter; `entry`: the caller looked the service up already. */
  list(query: InstanceQuery, entry: ServiceEntry | undefined = this.get(query)): InstanceList {
    if (!entry) {
      return { namespace: query.namespace, group: query.group, service: query.service, revision: 0, checksum: checksumOf([]), instances: [], protectThresholdReached: false }
    }
    const key = `${query.healthyOnly ? 1 : 0}${query.includeDisabled ? 1 : 0}${query.clusters.join(',')}`
    let answer = entry.answers.get(key)
    if (!answer) {
      const clusters = query.clusters.length > 0 ? new Set(query.clusters) : undefined
      let selected: Instance[] = []
      let healthy = 0
      for (const map of [entry.persistent, entry.ephemeral]) {
        for (const i of map.values()) {
          if (clusters && !clusters.has(i.cluster)) continue
          if (!query.includeDisabled && !i.enabled) continue
          selected.push(i)
          if (i.healthy) healthy++
        }
      }
      // Protection (as in Nacos): when too few are healthy, hand out all rather than pile every
      // caller onto the few that are left.
      const threshold = entry.meta?.protectThreshold ?? 0
      const protectThresholdReached = threshold > 0 && selected.length > 0 && healthy / selected.length <= threshold
      if (query.healthyOnly && !protectThresholdReached) selected = selected.filter((i) => i.healthy)
      // A stable order, so that equal registries give equal answers and checksums on every node.
      selected.sort(compareInstances)
      answer = { ...entry.name, revision: entry.revision, checksum: checksumOf(selected), instances: selected, protectThresholdReached }
      entry.answers.set(key, answer)
    }
    return answer
  }

  private entryFor(name: ServiceName): ServiceEntry {
    let entry = this.get(name)
    if (!entry) {
      entry = new ServiceEntry({ namespace: name.namespace, group: name.group, service: name.service })
      this.services.set(serviceKey(name), entry)
      this.last = entry
    }
    return entry
  }

  /** Forgets a service (and that it was looked up last). */
  private drop(key: string): void {
    if (this.last !== undefined && this.services.get(key) === this.last) this.last = undefined
    this.services.delete(key)
  }

  private changed(entry: ServiceEntry, dropIfEmpty = false): void {
    // Dropping a deleted service cannot wait: a later change in the batch must find it gone.
    if (this.pending) {
      if (!dropIfEmpty) {
        this.pending.add(entry)
        return
      }
      this.pending.delete(entry)
    }
    entry.revision = ++this.lastRevision
    entry.answers.clear()
    const kind = entry.kind()
    if (kind !== undefined) entry.lastKind = kind
    if (!entry.isEmpty()) {
      if (entry.emptySince !== undefined) {
        entry.emptySince = undefined
        this.empty.delete(serviceKey(entry.name))
      }
    } else if (dropIfEmpty) {
      this.drop(serviceKey(entry.name))
      this.empty.delete(serviceKey(entry.name))
    } else if (entry.emptySince === undefined) {
      entry.emptySince = this.now()
      this.empty.add(serviceKey(entry.name))
    }
    for (const fn of this.changeListeners) fn(entry.name, entry.revision)
  }
}

/** Where an instance sits: its service and its identity in it. */
function slotKey(i: Instance): string {
  return serviceKey(i) + '\u001f' + instanceIdOf(i)
}

/** Whether one of `list` sits where `i` does (slotKey equal, without building it). */
function holdsSlot(list: readonly Instance[], i: Instance): boolean {
  for (const o of list) if (sameSlot(o, i)) return true
  return false
}

function compareInstances(a: Instance, b: Instance): number {
  if (a.cluster !== b.cluster) return a.cluster < b.cluster ? -1 : 1
  if (a.ip !== b.ip) return a.ip < b.ip ? -1 : 1
  return a.port - b.port
}

function checksumOf(instances: readonly Instance[]): string {
  const hash = createHash('md5')
  for (const i of instances) {
    hash.update(JSON.stringify([i.cluster, i.ip, i.port, i.weight, i.enabled, i.healthy, i.ephemeral, i.metadata]))
  }
  return hash.digest('hex')
}
