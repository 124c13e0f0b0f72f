// Push for naming: multiplexed long-poll watches (POST /v1/ns/watch) and the delta fetch for
// gateways (GET /v1/ns/delta). Both hang off the view's change hook and only read the view.
//
// A watch names the services a client follows, each with the filter it reads them with and the
// checksum of the list it holds. Checksums, not revisions, decide whether a client is current:
// revisions come from a counter per node, so a client that moves to another node would compare
// numbers from two counters, while equal registries give equal checksums on every node.
//
// Changes are reported synchronously from the view; a held watch is looked at again in a
// microtask, so the changes of one applied batch (a Distro sync, a Raft apply) reach it in one
// answer, and a change that leaves the client's filtered list as it was (another cluster, an
// unhealthy instance for a healthyOnly watch) does not wake it at all.

import { createHash } from 'node:crypto'
import { assert } from '../core/assert.js'
import type { Clock } from '../core/clock.js'
import { fail, isGraceError } from '../core/errors.js'
import { type Held as HeldRequest, HeldRequests } from '../core/held-requests.js'
import { LIMITS } from '../core/limits.js'
import { type Fields, asFields, integer, optionalBool } from '../core/validate.js'
import { type ServiceName, serviceKey } from './model.js'
import { parseCluster, parseNamespace, parseServiceName } from './validate.js'
import type { InstanceList, NamingView } from './view.js'

export interface WatchItem extends ServiceName {
  /** Sorted, no duplicates; empty: every cluster. */
  readonly clusters: readonly string[]
  readonly healthyOnly: boolean
  readonly includeDisabled: boolean
  /** What the client holds: '' for nothing, else 32 lower-case hex digits. */
  readonly checksum: string
}

export interface WatchRequest {
  readonly items: readonly WatchItem[]
  readonly timeoutMs: number
}

/** A list that differs from the client's copy; `complete: false` carries no instances. */
export interface WatchChange extends InstanceList {
  readonly clusters: readonly string[]
  readonly healthyOnly: boolean
  readonly includeDisabled: boolean
  readonly complete: boolean
}

export function parseWatchRequest(fields: Fields): WatchRequest {
  const raw = fields.items
  if (raw === undefined || raw === null) fail('INVALID_ARGUMENT', 'items is required')
  if (!Array.isArray(raw)) fail('INVALID_ARGUMENT', 'items must be an array')
  if (raw.length === 0) fail('INVALID_ARGUMENT', 'items must not be empty')
  if (raw.length > LIMITS.maxWatchItems) fail('INVALID_ARGUMENT', `items has ${raw.length} entries, over the limit of ${LIMITS.maxWatchItems}`)
  const seen = new Set<string>()
  const items: WatchItem[] = []
  raw.forEach((value: unknown, i) => {
    const at = `items[${i}]`
    if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('INVALID_ARGUMENT', `${at} must be an object`)
    const f = asFields(value, at)
    let item: WatchItem
    try {
      item = {
        ...parseServiceName(f),
        clusters: parseClusters(f.clusters, 'clusters'),
        healthyOnly: optionalBool(f.healthyOnly, 'healthyOnly') ?? false,
        includeDisabled: optionalBool(f.includeDisabled, 'includeDisabled') ?? false,
        checksum: parseChecksum(f.checksum, 'checksum'),
      }
    } catch (err) {
      // Say which item: "items[3]: service is required".
      if (isGraceError(err)) fail(err.code, `${at}: ${err.message}`)
      throw err
    }
    // Duplicates count once (the first one's checksum).
    const key = itemKey(item)
    if (seen.has(key)) return
    seen.add(key)
    items.push(item)
  })
  const timeoutMs = integer(fields.timeoutMs, 'timeoutMs', 0, LIMITS.maxWatchTimeoutMs, LIMITS.defaultWatchTimeoutMs)
  return { items, timeoutMs }
}

function parseClusters(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return []
  // An array in JSON and protobuf; a comma-separated string is taken too, as GET takes it.
  const list = typeof value === 'string' ? value.split(',').filter((c) => c !== '') : value
  if (!Array.isArray(list)) fail('INVALID_ARGUMENT', `${field} must be an array of cluster names`)
  if (list.length > LIMITS.maxClusterFilter) fail('INVALID_ARGUMENT', `${field} names more than ${LIMITS.maxClusterFilter} clusters`)
  return [...new Set(list.map((c: unknown) => parseCluster(c === '' ? null : c)))].sort()
}

function parseChecksum(value: unknown, field: string): string {
  if (value === undefined || value === null || value === '') return ''
  if (typeof value !== 'string' || !/^[0-9a-fA-F]{32}$/.test(value)) fail('INVALID_ARGUMENT', `${field} must be "" or 32 hex digits`)
  return value.toLowerCase()
}

function itemKey(i: WatchItem): string {
  return `${serviceKey(i)}\u001f${i.clusters.join(',')}\u001f${i.healthyOnly ? 1 : 0}${i.includeDisabled ? 1 : 0}`
}

/** A held watch; its keys are the service keys of its items. */
interface Held extends HeldRequest<WatchChange[]> {
  readonly items: readonly WatchItem[]
  /** Services changed since the last look; set while a look is scheduled. */
  pending: Set<string> | null
}

export interface NamingPushOptions {
  clock: Clock
  /** For tests; production uses LIMITS. */
  maxWatchers?: number
  maxDeltaChanges?: number
}

export class NamingPush {
  private readonly maxWatchers: number
  private readonly held: HeldRequests<Held, WatchChange[]>
  private closed = false
  private readonly changes: DeltaLog

  constructor(
    private readonly view: NamingView,
    opts: NamingPushOptions,
  ) {
    this.held = new HeldRequests(opts.clock, () => [])
    this.maxWatchers = opts.maxWatchers ?? LIMITS.maxWatchers
    this.changes = new DeltaLog(view.revision, opts.maxDeltaChanges ?? LIMITS.maxDeltaChanges)
    view.onChange((name, revision) => this.changed(name, revision))
  }

  /** Watches held now. */
  get size(): number {
    return this.held.size
  }

  /** Services some held watch follows; with size, lets tests prove nothing leaks. */
  get watchedServices(): number {
    return this.held.keyCount
  }

  /**
   * The lists that differ from the client's copies now (at once), else holds until one does,
   * `timeoutMs` passes, the signal aborts or releaseAll runs (then []). TOO_MANY_WATCHERS when
   * the limit is reached and the watch would have to be held.
   */
  watch(request: WatchRequest, signal?: AbortSignal): Promise<WatchChange[]> {
    const now = this.differing(request.items)
    if (now.length > 0 || request.timeoutMs === 0 || this.closed || signal?.aborted) return Promise.resolve(now)
    if (this.held.size >= this.maxWatchers) {
      fail('TOO_MANY_WATCHERS', `this node holds ${this.held.size} watches, the most it allows; retry later or on another node`)
    }
    return new Promise((resolve) => {
      const keys = [...new Set(request.items.map((i) => serviceKey(i)))]
      this.held.hold({ items: request.items, keys, resolve, pending: null }, request.timeoutMs, signal)
    })
  }

  /** Answers every held watch with [] and later ones at once: for shutdown. */
  releaseAll(): void {
    this.closed = true
    this.held.releaseAll()
  }

  /**
   * GET /v1/ns/delta: the services of `namespace` changed since `since` (a revision of this
   * node), with the ones gone; or every service (`full`) when `since` is 0, older than what this
   * node remembers, or not one of its revisions. `hash` is over every service of the namespace,
   * so a client that applied the answer and computes a different hash reloads in full.
   */
  delta(namespace: string, since: number): DeltaAnswer {
    const revision = this.view.revision
    const changed = since > 0 && since <= revision ? this.changes.since(since) : undefined
    let services: InstanceList[]
    const removed: ServiceName[] = []
    if (changed) {
      services = []
      for (const name of changed) {
        if (name.namespace !== namespace) continue
        // A service left empty is kept by the view for a while (then swept without a change):
        // to a mirror it is gone as soon as it is empty.
        const entry = this.view.get(name)
        if (entry && !entry.isEmpty()) services.push(this.view.list(fullQuery(name)))
        else removed.push(name)
      }
    } else {
      services = []
      for (const entry of this.view.entries()) if (entry.name.namespace === namespace && !entry.isEmpty()) services.push(this.view.list(fullQuery(entry.name)))
    }
    if (services.length > LIMITS.maxDeltaServices) {
      fail('LIMIT_EXCEEDED', `the answer would carry ${services.length} services, over the ${LIMITS.maxDeltaServices} allowed; fetch a delta more often`)
    }
    return { full: !changed, revision, services, removed, hash: this.hashOf(namespace) }
  }

  private hashCache: { namespace: string; revision: number; hash: string } | undefined

  /** md5 over "<group>\x1f<service>\x1f<checksum>\n" of every service of the namespace (empty ones left out), sorted. */
  private hashOf(namespace: string): string {
    const revision = this.view.revision
    if (this.hashCache?.namespace === namespace && this.hashCache.revision === revision) return this.hashCache.hash
    const lines: string[] = []
    for (const entry of this.view.entries()) {
      if (entry.name.namespace !== namespace || entry.isEmpty()) continue
      lines.push(`${entry.name.group}\u001f${entry.name.service}\u001f${this.view.list(fullQuery(entry.name)).checksum}\n`)
    }
    const hash = deltaHash(lines)
    this.hashCache = { namespace, revision, hash }
    return hash
  }

  private changed(name: ServiceName, revision: number): void {
    this.changes.add(name, revision)
    if (this.held.keyCount === 0) return
    const key = serviceKey(name)
    const set = this.held.following(key)
    if (!set) return
    for (const held of set) {
      if (held.pending) {
        held.pending.add(key)
        continue
      }
      held.pending = new Set([key])
      queueMicrotask(() => this.look(held))
    }
  }

  /** After changes: answer the watch if a list it follows now differs from its copy. */
  private look(held: Held): void {
    if (!held.pending || !this.held.isHeld(held)) return
    const pending = held.pending
    held.pending = null
    const changed = this.differing(held.items.filter((i) => pending.has(serviceKey(i))))
    if (changed.length > 0) this.held.answer(held, changed)
  }

  private differing(items: readonly WatchItem[]): WatchChange[] {
    const out: WatchChange[] = []
    let budget = LIMITS.maxWatchAnswerInstances
    for (const item of items) {
      const list = this.view.list({ ...item, stale: true })
      if (list.checksum === item.checksum) continue
      const complete = list.instances.length <= budget
      budget -= complete ? list.instances.length : 0
      out.push(changeOf(list, item, complete))
    }
    return out
  }
}

export interface DeltaAnswer {
  readonly full: boolean
  readonly revision: number
  readonly services: readonly InstanceList[]
  readonly removed: readonly ServiceName[]
  readonly hash: string
}

/** The hash a delta client computes over its copy: see NamingPush.hashOf. */
export function deltaHash(lines: string[]): string {
  lines.sort()
  const h = createHash('md5')
  for (const line of lines) h.update(line)
  return h.digest('hex')
}

// A change's list object is per filter and revision (the view caches it), so the change built
// from it can be kept with it.
const changeCache = new WeakMap<InstanceList, WatchChange>()

function changeOf(list: InstanceList, item: WatchItem, complete: boolean): WatchChange {
  if (complete) {
    let change = changeCache.get(list)
    if (!change) {
      change = { ...list, clusters: item.clusters, healthyOnly: item.healthyOnly, includeDisabled: item.includeDisabled, complete: true }
      changeCache.set(list, change)
    }
    return change
  }
  return { ...list, instances: [], clusters: item.clusters, healthyOnly: item.healthyOnly, includeDisabled: item.includeDisabled, complete: false }
}

/** The unfiltered list a delta carries: every cluster, disabled and unhealthy instances included. */
function fullQuery(name: ServiceName) {
  return { namespace: name.namespace, group: name.group, service: name.service, clusters: [], healthyOnly: false, includeDisabled: true, stale: true }
}

/**
 * The services changed at each revision, newest last, bounded: past the bound the oldest are
 * dropped and a delta since before them is answered in full.
 */
class DeltaLog {
  private readonly revisions: number[] = []
  private readonly names: ServiceName[] = []
  private head = 0
  /** Changes at or below this revision are no longer known. */
  private forgottenUpTo: number

  constructor(
    startRevision: number,
    private readonly max: number,
  ) {
    assert(max > 0, 'the delta log keeps at least one change')
    this.forgottenUpTo = startRevision
  }

  add(name: ServiceName, revision: number): void {
    this.revisions.push(revision)
    // The view's own name object (immutable, one per service), not a copy: a copy per change
    // kept up to `max` objects alive for the garbage collector to move and mark.
    this.names.push(name)
    if (this.revisions.length - this.head > this.max) {
      this.forgottenUpTo = this.revisions[this.head]!
      this.head++
      // Compact now and then, so the arrays do not keep every change ever made.
      if (this.head >= this.max) {
        this.revisions.splice(0, this.head)
        this.names.splice(0, this.head)
        this.head = 0
      }
    }
  }

  /** Distinct services changed after `since`, or undefined when some of those are forgotten. */
  since(since: number): ServiceName[] | undefined {
    if (since < this.forgottenUpTo) return undefined
    const out = new Map<string, ServiceName>()
    // Revisions grow along the log: search for the first one after `since`.
    let lo = this.head
    let hi = this.revisions.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.revisions[mid]! <= since) lo = mid + 1
      else hi = mid
    }
    for (let i = lo; i < this.revisions.length; i++) out.set(serviceKey(this.names[i]!), this.names[i]!)
    return [...out.values()]
  }
}

/** GET /v1/ns/delta's query. */
export function parseDeltaQuery(q: Fields): { namespace: string; since: number } {
  return { namespace: parseNamespace(q.namespace), since: integer(q.since, 'since', 0, Number.MAX_SAFE_INTEGER, 0) }
}
