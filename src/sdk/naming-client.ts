// The naming client: registers this process's instances and keeps them alive, finds others and
// keeps what it found fresh.
//
// - Registrations of ephemeral instances all carry one clientId: one lease per process, renewed
//   by one heartbeat whatever the number of instances. A beat answered `registered: false` (the
//   server restarted, or the lease expired while this process was cut off) registers every
//   instance again.
// - Subscribed services are followed through one long poll (POST /v1/ns/watch) that carries all
//   of them; every answer brings the new lists. A periodic read of each is the fallback, should a
//   push be missed or the server not have the route.
// - Lists and their changes go to a disk cache; when no server answers, the last known lists are
//   served from it, with a warning in the log and a 'cache' event.
//
// Events: 'change' (ServiceChangeEvent), 'cache' ({ service, group, clusters, savedAt }),
// 'reregistered' ({ count }), 'failover', 'unreachable', 'reachable' (from the transport).

import { EventEmitter } from 'node:events'
import { type Balancer, type BalancerName, createBalancer } from './balancers/index.js'
import { DiskCache } from './disk-cache.js'
import { GraceClientError } from './errors.js'
import type { ClientOptions } from './options.js'
import { Session, backoffMs, sleep } from './session.js'
import { untilExit } from './exit.js'
import type { Instance } from '../naming/model.js'

/** An instance as the server answers it: the server's own model, shared rather than restated. */
export type { Instance } from '../naming/model.js'

/** What registerInstance takes; absent fields take the client's defaults. */
export interface InstanceSpec {
  readonly ip: string
  readonly port: number
  readonly group?: string
  readonly cluster?: string
  readonly weight?: number
  readonly enabled?: boolean
  readonly ephemeral?: boolean
  readonly metadata?: Readonly<Record<string, string>>
}

export interface ServiceSelector {
  readonly group?: string
  /** Only these clusters; absent or empty: every cluster. */
  readonly clusters?: readonly string[]
}

export interface LookupOptions extends ServiceSelector {
  /** Keep the list fresh by push and answer later calls from it. Default true. */
  readonly subscribe?: boolean
}

export interface ServiceChangeEvent {
  readonly service: string
  readonly group: string
  readonly clusters: readonly string[]
  readonly instances: readonly Instance[]
  readonly checksum: string
  /** True when the list came from the disk cache because no server answered. */
  readonly fromCache: boolean
}

export type ServiceListener = (event: ServiceChangeEvent) => void

/** Services one client follows at most (the watch carries up to 1000). */
export const MAX_SUBSCRIPTIONS = 1000
/** Beats are sent at the interval the server asks for, within these bounds. */
const MIN_BEAT_MS = 100
const MAX_BEAT_MS = 60_000
/** Subscribed services read at once by the periodic refresh. */
const REFRESH_CONCURRENCY = 4
/** Deregistration on exit gives up after this long, so a dead registry cannot hold the exit. */
const EXIT_DEADLINE_MS = 5000

interface ListAnswer {
  instances: Instance[]
  checksum: string
  revision: number
  protectThresholdReached: boolean
}

interface Subscription {
  readonly key: string
  readonly group: string
  readonly service: string
  readonly clusters: readonly string[]
  readonly listeners: Set<ServiceListener>
  /** Kept fresh by push while true; a plain lookup with subscribe: false leaves none. */
  followed: boolean
  state: (ListAnswer & { fromCache: boolean }) | undefined
  /** Bumped by every update: a read that started before an update does not overwrite it. */
  version: number
  ready: Promise<void> | undefined
}

export class NamingClient {
  /** The client's events (above). */
  readonly events = new EventEmitter()
  readonly session: Session
  private readonly cache: DiskCache | undefined
  private readonly registered = new Map<string, Record<string, unknown>>()
  private readonly subs = new Map<string, Subscription>()
  private readonly balancers = new Map<string, Balancer>()
  private beatTimer: NodeJS.Timeout | undefined
  private beatIntervalMs = 5000
  private refreshTimer: NodeJS.Timeout | undefined
  private watchAbort: AbortController | undefined
  private watching = false
  private watchUnsupported = false
  private closed = false
  private readonly stop = new AbortController()
  private releaseExit: (() => void) | undefined

  /** Options, or a Session shared with a ConfigClient. */
  constructor(options: ClientOptions | Session = {}) {
    this.session = options instanceof Session ? options : new Session(options)
    const o = this.session.options
    this.cache = o.cacheDir === false ? undefined : new DiskCache(o.cacheDir, 'naming', o.namespace, this.session.logger)
    for (const event of ['failover', 'unreachable', 'reachable'] as const) {
      const forward = (e: unknown): void => void this.events.emit(event, e)
      this.session.transport.on(event, forward)
      this.stop.signal.addEventListener('abort', () => this.session.transport.off(event, forward), { once: true })
    }
    this.session.acquire()
  }

  /** A client from a file (grace.json, grace.yaml; see loadClientOptions), overridden by options. */
  static async fromFile(path?: string, overrides: ClientOptions = {}): Promise<NamingClient> {
    return new NamingClient(await Session.fromFile(path, overrides))
  }

  get clientId(): string {
    return this.session.options.clientId
  }

  /**
   * Registers an instance: ephemeral (kept alive by this client's heartbeats) unless
   * `ephemeral: false` here or in the options. Registering the same address again replaces it.
   */
  async registerInstance(service: string, spec: InstanceSpec): Promise<void> {
    this.checkOpen()
    const o = this.session.options
    const body = {
      namespace: o.namespace,
      group: spec.group ?? o.group,
      service,
      cluster: spec.cluster ?? o.cluster,
      ip: spec.ip,
      port: spec.port,
      weight: spec.weight ?? o.weight,
      enabled: spec.enabled ?? true,
      ephemeral: spec.ephemeral ?? o.ephemeral,
      metadata: { ...o.metadata, ...(spec.metadata ?? {}) },
      clientId: o.clientId,
    }
    await this.post(body)
    this.registered.set(instanceKey(body), body)
    if (body.ephemeral) {
      // The server asks for the smallest interval of the client's instances in every beat
      // answer; an instance that sets its own is beaten at that pace from the start.
      const own = Number(body.metadata['preserved.heart.beat.interval'])
      if (Number.isInteger(own) && own >= MIN_BEAT_MS) this.beatIntervalMs = Math.min(this.beatIntervalMs, own)
      this.startBeats()
    }
    if (o.deregisterOnExit && !this.releaseExit) this.releaseExit = untilExit(() => this.close({ deregister: true }))
  }

  /** Deregisters an instance (this client's or any other). Answers whether there was one. */
  async deregisterInstance(service: string, ref: { ip: string; port: number; group?: string; cluster?: string }): Promise<boolean> {
    this.checkOpen()
    const o = this.session.options
    const query = { namespace: o.namespace, group: ref.group ?? o.group, service, cluster: ref.cluster ?? o.cluster, ip: ref.ip, port: ref.port }
    this.registered.delete(instanceKey(query))
    if (![...this.registered.values()].some((b) => b.ephemeral)) this.stopBeats()
    const answer = await this.session.transport.request<{ deleted?: boolean }>({ method: 'DELETE', path: '/v1/ns/instances', query, timeoutMs: o.requestTimeoutMs })
    return answer?.deleted === true
  }

  /** Every enabled instance, healthy or not. */
  async getAllInstances(service: string, opts: LookupOptions = {}): Promise<Instance[]> {
    return [...(await this.lookup(service, opts)).instances]
  }

  /**
   * The enabled instances whose health is `healthy` (default true). When the service's
   * protection threshold is reached, a healthy selection gets every instance, as the server's
   * healthyOnly query does, rather than pile all callers onto the few healthy ones.
   */
  async selectInstances(service: string, opts: LookupOptions & { healthy?: boolean } = {}): Promise<Instance[]> {
    const healthy = opts.healthy ?? true
    const state = await this.lookup(service, opts)
    if (healthy && state.protectThresholdReached) return [...state.instances]
    return state.instances.filter((i) => i.healthy === healthy)
  }

  /**
   * One healthy instance picked by a balancer: the options' (weightedRandom by default), one
   * named here, or a Balancer object. `key` is for consistent hashing. Throws NO_INSTANCE when
   * there is none to pick.
   */
  async selectOneHealthyInstance(service: string, opts: LookupOptions & { balancer?: BalancerName | Balancer; key?: string } = {}): Promise<Instance> {
    const candidates = await this.selectInstances(service, opts)
    const balancer = typeof opts.balancer === 'object' ? opts.balancer : this.balancerFor(service, opts, opts.balancer ?? this.session.options.balancer)
    const chosen = balancer.pick(candidates, opts.key)
    if (!chosen) throw new GraceClientError('NO_INSTANCE', `no healthy instance of ${service} to pick`)
    return chosen
  }

  /**
   * Follows a service: the listener is called with the current list (once known) and on every
   * change. Resolves once the first list is known (from a server, or the disk cache).
   */
  async subscribe(service: string, listener: ServiceListener, opts: ServiceSelector = {}): Promise<void> {
    this.checkOpen()
    const sub = this.follow(service, opts)
    await sub.ready
    // Added only now, so the first list reaches this listener once, from here.
    sub.listeners.add(listener)
    if (sub.state) safeCall(listener, eventOf(sub, sub.state))
  }

  /**
   * Stops calling the listener. With its last listener gone the service is no longer followed
   * (a later lookup reads it again and follows it anew).
   */
  unsubscribe(service: string, listener: ServiceListener, opts: ServiceSelector = {}): void {
    const sub = this.subs.get(this.subKey(service, opts))
    if (!sub) return
    sub.listeners.delete(listener)
    if (sub.listeners.size > 0) return
    this.subs.delete(sub.key)
    sub.followed = false
    this.watchAbort?.abort()
  }

  /**
   * Stops heartbeats, watches and refreshes; deregisters every instance this client registered
   * first, unless `deregister: false`.
   */
  async close(opts: { deregister?: boolean } = {}): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.stopBeats()
    this.releaseExit?.()
    this.releaseExit = undefined
    this.stop.abort()
    this.watchAbort?.abort()
    if (this.refreshTimer) clearInterval(this.refreshTimer)
    if (opts.deregister ?? true) {
      const o = this.session.options
      const all = [...this.registered.values()]
      this.registered.clear()
      const deadline = AbortSignal.timeout(EXIT_DEADLINE_MS)
      await Promise.allSettled(
        all.map((b) =>
          this.session.transport.request({
            method: 'DELETE',
            path: '/v1/ns/instances',
            query: { namespace: b.namespace as string, group: b.group as string, service: b.service as string, cluster: b.cluster as string, ip: b.ip as string, port: b.port as number },
            timeoutMs: o.requestTimeoutMs,
            signal: deadline,
          }),
        ),
      )
    }
    this.session.release()
  }

  // --- registration and heartbeats ---

  private post(body: Record<string, unknown>): Promise<unknown> {
    return this.session.transport.request({ method: 'POST', path: '/v1/ns/instances', body, timeoutMs: this.session.options.requestTimeoutMs })
  }

  private startBeats(): void {
    if (this.beatTimer || this.closed) return
    this.scheduleBeat()
  }

  private stopBeats(): void {
    if (this.beatTimer) clearTimeout(this.beatTimer)
    this.beatTimer = undefined
  }

  private scheduleBeat(): void {
    this.beatTimer = setTimeout(() => void this.beat(), this.beatIntervalMs)
    this.beatTimer.unref()
  }

  private async beat(): Promise<void> {
    const o = this.session.options
    try {
      const answer = await this.session.transport.request<{ clientBeatInterval?: number; registered?: boolean }>({
        method: 'PUT',
        path: '/v1/ns/instances/beat',
        body: { clientId: o.clientId },
        timeoutMs: o.requestTimeoutMs,
        signal: this.stop.signal,
      })
      if (typeof answer?.clientBeatInterval === 'number') this.beatIntervalMs = Math.min(MAX_BEAT_MS, Math.max(MIN_BEAT_MS, answer.clientBeatInterval))
      if (answer?.registered === false) await this.reregister()
    } catch (err) {
      if (!this.closed) this.session.logger.warn({ err: (err as Error).message }, 'grace: heartbeat failed')
    }
    if (!this.closed && this.beatTimer) this.scheduleBeat()
  }

  /** The server lost this client: register every ephemeral instance again. */
  private async reregister(): Promise<void> {
    const ephemeral = [...this.registered.values()].filter((b) => b.ephemeral)
    this.session.logger.warn({ clientId: this.clientId, instances: ephemeral.length }, 'grace: the server lost this client; registering again')
    let count = 0
    for (const body of ephemeral) {
      if (this.closed) return
      try {
        await this.post(body)
        count++
      } catch (err) {
        this.session.logger.warn({ err: (err as Error).message, service: body.service }, 'grace: registering again failed; the next beat retries')
      }
    }
    this.events.emit('reregistered', { count })
  }

  // --- lookups, subscriptions, push ---

  private subKey(service: string, opts: ServiceSelector): string {
    return `${opts.group ?? this.session.options.group}\u001f${service}\u001f${normClusters(opts.clusters).join(',')}`
  }

  private async lookup(service: string, opts: LookupOptions): Promise<ListAnswer> {
    this.checkOpen()
    if (opts.subscribe === false) {
      const existing = this.subs.get(this.subKey(service, opts))
      if (existing?.followed && existing.state) return existing.state
      return this.fetchOnce(service, opts)
    }
    const sub = this.follow(service, opts)
    await sub.ready
    if (!sub.state) throw new GraceClientError('NO_SERVER', `no server answered and no cached list of ${service}`)
    return sub.state
  }

  /** A one-off read; falls back to the disk cache when no server answers. */
  private async fetchOnce(service: string, opts: ServiceSelector): Promise<ListAnswer> {
    const group = opts.group ?? this.session.options.group
    const clusters = normClusters(opts.clusters)
    try {
      const list = await this.read(group, service, clusters)
      void this.cache?.write(this.subKey(service, opts), list)
      return list
    } catch (err) {
      const cached = await this.fromDisk(err, this.subKey(service, opts), service, group, clusters)
      if (cached) return cached
      throw err
    }
  }

  private follow(service: string, opts: ServiceSelector): Subscription {
    const key = this.subKey(service, opts)
    let sub = this.subs.get(key)
    if (sub) return sub
    if (this.subs.size >= MAX_SUBSCRIPTIONS) throw new GraceClientError('BAD_OPTIONS', `a client follows at most ${MAX_SUBSCRIPTIONS} services`)
    sub = { key, group: opts.group ?? this.session.options.group, service, clusters: normClusters(opts.clusters), listeners: new Set(), followed: true, state: undefined, version: 0, ready: undefined }
    this.subs.set(key, sub)
    const s = sub
    sub.ready = this.refreshSub(s, true).catch((err) => {
      // The server refused the service (a bad name, say): follow it no longer, or every watch
      // after this one would be refused with it.
      if (this.subs.get(key) === s) {
        this.subs.delete(key)
        s.followed = false
        this.watchAbort?.abort()
      }
      throw err
    })
    // The running watch does not carry the new service: start it again with it.
    this.watchAbort?.abort()
    this.startWatch()
    this.startRefresh()
    return sub
  }

  private async refreshSub(sub: Subscription, first: boolean): Promise<void> {
    const version = sub.version
    try {
      const list = await this.read(sub.group, sub.service, sub.clusters)
      if (sub.version === version) this.apply(sub, list, false)
    } catch (err) {
      if (!first || sub.state) {
        if (!this.closed) this.session.logger.warn({ service: sub.service, err: (err as Error).message }, 'grace: refreshing a service failed')
        return
      }
      const cached = await this.fromDisk(err, sub.key, sub.service, sub.group, sub.clusters)
      if (cached && !sub.state) this.apply(sub, cached, true)
      else if (!cached && !(err instanceof GraceClientError && err.code === 'NO_SERVER')) throw err
    }
  }

  private async fromDisk(err: unknown, key: string, service: string, group: string, clusters: readonly string[]): Promise<ListAnswer | undefined> {
    if (!(err instanceof GraceClientError) || err.code !== 'NO_SERVER' || !this.cache) return undefined
    const saved = await this.cache.read<ListAnswer>(key)
    if (!saved) return undefined
    this.session.logger.warn({ service, group, clusters, savedAt: new Date(saved.savedAt).toISOString() }, 'grace: no server answers; serving the last known instances from the disk cache')
    this.events.emit('cache', { service, group, clusters, savedAt: saved.savedAt })
    return saved.value
  }

  private async read(group: string, service: string, clusters: readonly string[]): Promise<ListAnswer> {
    const o = this.session.options
    const answer = await this.session.transport.request<ListAnswer>({
      method: 'GET',
      path: '/v1/ns/instances',
      query: { namespace: o.namespace, group, service, ...(clusters.length > 0 ? { clusters: clusters.join(',') } : {}) },
      timeoutMs: o.requestTimeoutMs,
      signal: this.stop.signal,
    })
    return listOf(answer)
  }

  private apply(sub: Subscription, list: ListAnswer, fromCache: boolean): void {
    const changed = !sub.state || sub.state.checksum !== list.checksum || sub.state.fromCache !== fromCache
    sub.version++
    sub.state = { ...list, fromCache }
    if (!changed) return
    if (!fromCache) void this.cache?.write(sub.key, list)
    const event = eventOf(sub, sub.state)
    this.events.emit('change', event)
    for (const l of sub.listeners) safeCall(l, event)
  }

  private startWatch(): void {
    if (this.watching || this.closed || this.watchUnsupported) return
    this.watching = true
    void this.watchLoop().finally(() => {
      this.watching = false
    })
  }

  /** One long poll at a time carries every followed service; each answer brings the new lists. */
  private async watchLoop(): Promise<void> {
    const o = this.session.options
    let failures = 0
    while (!this.closed && this.subs.size > 0) {
      const subs = [...this.subs.values()]
      // Wait for the first reads, so that the watch carries their checksums.
      await Promise.allSettled(subs.map((s) => s.ready))
      if (this.closed) return
      // A service followed or dropped while waiting: look again.
      if (this.subs.size !== subs.length || subs.some((s) => this.subs.get(s.key) !== s)) continue
      const abort = new AbortController()
      this.watchAbort = abort
      const signal = AbortSignal.any([abort.signal, this.stop.signal])
      const items = subs.map((s) => ({ namespace: o.namespace, group: s.group, service: s.service, clusters: s.clusters, checksum: s.state && !s.state.fromCache ? s.state.checksum : '' }))
      try {
        const answer = await this.session.transport.request<{ changed: (ListAnswer & { group: string; service: string; clusters: string[]; complete: boolean })[] }>({
          method: 'POST',
          path: '/v1/ns/watch',
          body: { items, timeoutMs: o.longPollTimeoutMs },
          // The server holds it up to longPollTimeoutMs; give the answer time to travel.
          timeoutMs: o.longPollTimeoutMs + o.requestTimeoutMs,
          signal,
        })
        failures = 0
        for (const c of answer?.changed ?? []) {
          const sub = this.subs.get(this.subKey(c.service, { group: c.group, clusters: c.clusters }))
          if (!sub) continue
          if (c.complete) this.apply(sub, listOf(c), false)
          else await this.refreshSub(sub, false)
        }
      } catch (err) {
        if (this.closed) return
        if (abort.signal.aborted) continue
        if (err instanceof GraceClientError && err.status === 404) {
          // An older server without watches: the periodic refresh keeps the lists.
          this.watchUnsupported = true
          this.session.logger.warn({}, 'grace: the server has no watch route; following services by periodic refresh only')
          return
        }
        this.session.logger.warn({ err: (err as Error).message }, 'grace: watching services failed; retrying')
        await sleep(backoffMs(failures++), signal)
      }
    }
  }

  private startRefresh(): void {
    if (this.refreshTimer || this.closed) return
    this.refreshTimer = setInterval(() => void this.refreshAll(), this.session.options.refreshIntervalMs)
    this.refreshTimer.unref()
  }

  private async refreshAll(): Promise<void> {
    const subs = [...this.subs.values()]
    for (let i = 0; i < subs.length && !this.closed; i += REFRESH_CONCURRENCY) {
      await Promise.allSettled(subs.slice(i, i + REFRESH_CONCURRENCY).map((s) => this.refreshSub(s, false)))
    }
  }

  private balancerFor(service: string, opts: ServiceSelector, name: BalancerName): Balancer {
    const key = `${this.subKey(service, opts)}\u001f${name}`
    let b = this.balancers.get(key)
    if (!b) {
      b = createBalancer(name, { affinity: { cluster: this.session.options.cluster } })
      // Bounded like the subscriptions it goes with.
      if (this.balancers.size >= 4 * MAX_SUBSCRIPTIONS) this.balancers.clear()
      this.balancers.set(key, b)
    }
    return b
  }

  private checkOpen(): void {
    if (this.closed) throw new GraceClientError('CLOSED', 'the naming client is closed')
  }
}

function normClusters(clusters: readonly string[] | undefined): string[] {
  return [...new Set(clusters ?? [])].sort()
}

function instanceKey(b: Record<string, unknown>): string {
  return `${b.namespace}\u001f${b.group}\u001f${b.service}\u001f${b.cluster}\u001f${b.ip}\u001f${b.port}`
}

function listOf(a: Partial<ListAnswer> | undefined): ListAnswer {
  if (!a || !Array.isArray(a.instances) || typeof a.checksum !== 'string') throw new GraceClientError('BAD_ANSWER', 'the server\'s instance list is malformed')
  return { instances: a.instances, checksum: a.checksum, revision: a.revision ?? 0, protectThresholdReached: a.protectThresholdReached === true }
}

function eventOf(sub: Subscription, state: ListAnswer & { fromCache: boolean }): ServiceChangeEvent {
  return { service: sub.service, group: sub.group, clusters: sub.clusters, instances: state.instances, checksum: state.checksum, fromCache: state.fromCache }
}

function safeCall(listener: ServiceListener, event: ServiceChangeEvent): void {
  try {
    listener(event)
  } catch (err) {
    // A listener's bug must not stop the others or the watch.
    process.emitWarning(`grace: a service listener threw: ${(err as Error).message}`)
  }
}
