// The in-memory registry every query reads: services with their persistent instances (fed by
// the CP state machine) and their ephemeral instances (fed by the AP store). Each service has a
// revision that grows on every change, and caches its query answers until the next change.

import { createHash } from 'node:crypto'
import { type Instance, type ServiceMeta, type ServiceName, instanceIdOf, serviceKey } from './model.js'
import type { InstanceQuery } from './validate.js'

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

  /**
   * Revisions start from the clock in microseconds, so that they keep growing across restarts
   * and a client's cached revision is never reused for different content.
   */
  constructor(startRevision: number) {
    this.lastRevision = startRevision
  }

  get(name: ServiceName): ServiceEntry | undefined {
    return this.services.get(serviceKey(name))
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
    map.set(instanceIdOf(instance), instance)
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
    this.changed(entry)
    return true
  }

  /** Brings a client's ephemeral instances from prev to next: records are immutable, so unchanged instances are the same objects. */
  applyClientChange(clientId: string, prev: readonly Instance[], next: readonly Instance[]): void {
    const staying = new Set(next.map((i) => serviceKey(i) + '\u001f' + instanceIdOf(i)))
    for (const i of prev) {
      if (!staying.has(serviceKey(i) + '\u001f' + instanceIdOf(i))) this.removeInstance(i, instanceIdOf(i), true, clientId)
    }
    const unchanged = new Set(prev)
    for (const i of next) if (!unchanged.has(i)) this.putInstance(i)
  }

  setMeta(name: ServiceName, meta: ServiceMeta | undefined): void {
    const entry = this.entryFor(name)
    entry.meta = meta
    this.changed(entry)
  }

  /** Forgets the CP part (metadata, persistent instances), before it is loaded again. */
  clearDurable(): void {
    for (const entry of [...this.services.values()]) {
      if (!entry.meta && entry.persistent.size === 0) continue
      entry.meta = undefined
      entry.persistent.clear()
      this.changed(entry)
    }
  }

  /** The answer to a query, built once per service revision and filter. */
  list(query: InstanceQuery): InstanceList {
    const entry = this.get(query)
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
    const key = serviceKey(name)
    let entry = this.services.get(key)
    if (!entry) {
      entry = new ServiceEntry({ namespace: name.namespace, group: name.group, service: name.service })
      this.services.set(key, entry)
    }
    return entry
  }

  private changed(entry: ServiceEntry): void {
    entry.revision = ++this.lastRevision
    entry.answers.clear()
    if (entry.isEmpty()) this.services.delete(serviceKey(entry.name))
  }
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
