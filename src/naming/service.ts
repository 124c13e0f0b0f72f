// The naming service: registry rules over the two kinds of data. It checks what the request may
// do (kinds, limits), picks the change, and hands it to the consistency proxy; queries read the
// shared view.

import { Buffer } from 'node:buffer'
import type { ClientRecord } from '../ap/store.js'
import type { Clock } from '../core/clock.js'
import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import type { ConsistencyProxy } from '../consistency/proxy.js'
import { type ClientLeases, beatIntervalOf } from './leases.js'
import {
  type ClusterSettings,
  type HealthCheck,
  type Instance,
  type ServiceMeta,
  type ServiceName,
  BEAT_DEFAULTS,
  instanceId,
  instanceIdOf,
  kindName,
  probeCheckOf,
  sameContent,
  sameSlot,
  serviceKey,
  withHealth,
} from './model.js'
import type { NamingCommand } from './state-machine.js'
import type { BeatRequest, ClusterRef, InstancePatch, InstanceQuery, InstanceRef, ServicePatch } from './validate.js'
import type { InstanceList, NamingView, ServiceEntry } from './view.js'

export interface ServiceSummary extends ServiceName {
  readonly ephemeral: boolean
  readonly protectThreshold: number
  readonly metadata: Readonly<Record<string, string>>
  readonly instanceCount: number
  readonly healthyInstanceCount: number
}

export interface ServicePage {
  readonly count: number
  readonly pageNo: number
  readonly pageSize: number
  readonly services: readonly ServiceSummary[]
}

/**
 * A change to ephemeral data, as carried to the node responsible for the client (Distro: one
 * node owns each client, applies its changes and versions them; the others forward).
 */
export type EphemeralOp =
  | { readonly op: 'register'; readonly instance: Instance }
  /** clientId: remove the instance from that client only (an address that moved to another). */
  | { readonly op: 'deregister'; readonly ref: InstanceRef; readonly clientId?: string }
  | { readonly op: 'update'; readonly ref: InstanceRef; readonly patch: InstancePatch }
  | { readonly op: 'beat'; readonly request: BeatRequest }

export type BeatResult = { clientBeatInterval: number; registered: boolean }

export interface ClusterList extends ServiceName {
  readonly clusters: readonly (ClusterSettings & ServiceName)[]
}

/** Where a client's ephemeral changes are applied. Absent: here, always (a standalone node). */
export interface EphemeralOwners {
  /** The node to forward a change of this client to, or null when this node is responsible. */
  forwardTarget(clientId: string): string | null
  /** Sends the change to that node and answers what its executeForwarded answered. */
  forward(to: string, op: EphemeralOp): Promise<unknown>
}

export class NamingService {
  constructor(
    private readonly proxy: ConsistencyProxy,
    private readonly view: NamingView,
    private readonly leases: ClientLeases,
    private readonly clock: Clock,
    private readonly owners?: EphemeralOwners,
  ) {}

  /**
   * A change forwarded by another node: applied here whoever this node thinks owns the client
   * (the nodes' views of the members may differ for a moment; a change is forwarded only once).
   */
  async executeForwarded(op: EphemeralOp): Promise<unknown> {
    switch (op.op) {
      case 'register':
        this.registerEphemeral(op.instance)
        return null
      case 'deregister':
        return this.deregisterEphemeral(op.ref, op.clientId)
      case 'update':
        await this.update(op.ref, op.patch, true)
        return null
      case 'beat':
        return this.beatHere(op.request)
    }
  }

  /** The node a change of this client goes to, or null to apply it here. */
  private ownerElsewhere(clientId: string, forwarded: boolean): string | null {
    return forwarded || !this.owners ? null : this.owners.forwardTarget(clientId)
  }

  async register(instance: Instance): Promise<void> {
    await this.registerNow(instance)
  }

  /**
   * register() without a promise for the ephemeral kind, which is done when this returns: the
   * hot path of a registry, where a promise per request is a measurable share of the work.
   */
  registerNow(instance: Instance): Promise<void> | undefined {
    if (!instance.ephemeral) return this.registerPersistent(instance)
    const owner = this.ownerElsewhere(instance.clientId, false)
    if (owner !== null) {
      // Heard from here: told to an owner that asks before removing the client (leases.ts noteHeard).
      this.leases.noteHeard(instance.clientId)
      return this.owners!.forward(owner, { op: 'register', instance }).then(() => undefined)
    }
    this.registerEphemeral(instance)
    return undefined
  }

  async deregister(ref: InstanceRef): Promise<{ deleted: boolean }> {
    const id = instanceId(ref.cluster, ref.ip, ref.port)
    const ephemeral = this.view.get(ref)?.ephemeral.get(id)
    if (ephemeral) {
      const owner = this.ownerElsewhere(ephemeral.clientId, false)
      if (owner !== null) return (await this.owners!.forward(owner, { op: 'deregister', ref })) as { deleted: boolean }
      return this.deregisterEphemeral(ref)
    }
    // Nothing to remove is answered here, without a log entry. Applied state has every
    // acknowledged write, so a delete sent after a registration was answered does find it.
    if (!(await this.hasPersistent(ref, id))) return { deleted: false }
    return (await this.durable({ type: 'naming.instance.remove', ref })) as { deleted: boolean }
  }

  async update(ref: InstanceRef, patch: InstancePatch, forwarded = false): Promise<void> {
    const entry = this.view.get(ref)
    const ephemeral = entry?.ephemeral.get(instanceId(ref.cluster, ref.ip, ref.port))
    if (ephemeral) {
      if (patch.healthy !== undefined) notManual(ref)
      const owner = this.ownerElsewhere(ephemeral.clientId, forwarded)
      if (owner !== null) {
        await this.owners!.forward(owner, { op: 'update', ref, patch })
        return
      }
      this.changeClient(ephemeral.clientId, (instances) => instances.map((i) => (sameSlot(i, ref) ? { ...i, ...patch } : i)))
      return
    }
    if (!(await this.hasPersistent(ref, instanceId(ref.cluster, ref.ip, ref.port)))) {
      fail('INSTANCE_NOT_FOUND', `no instance ${ref.ip}:${ref.port} in cluster ${ref.cluster} of service ${ref.service}`)
    }
    // The state machine decides again; this spares the log an entry it would refuse.
    if (patch.healthy !== undefined && probeCheckOf(entry?.meta, ref.cluster)) probedNotManual(ref)
    await this.durable({ type: 'naming.instance.update', ref, patch })
  }

  /**
   * PUT /v1/ns/instances/health: sets a persistent instance's health by hand, in a cluster the
   * server does not probe. Written through the CP log, so every node agrees.
   */
  async setHealth(ref: InstanceRef, healthy: boolean): Promise<void> {
    await this.proxy.durableReadBarrier()
    const entry = this.view.get(ref)
    const id = instanceId(ref.cluster, ref.ip, ref.port)
    if (entry?.ephemeral.has(id)) notManual(ref)
    const current = entry?.persistent.get(id)
    if (!current) fail('INSTANCE_NOT_FOUND', `no instance ${ref.ip}:${ref.port} in cluster ${ref.cluster} of service ${ref.service}`)
    if (probeCheckOf(entry!.meta, ref.cluster)) probedNotManual(ref)
    // Read after the barrier, so the health is current: nothing to change takes no log entry.
    if (current.healthy === healthy) return
    await this.durable({ type: 'naming.instance.health', ref, healthy, source: 'manual' })
  }

  /** The probing node's verdict on an instance, after 3 probe results in a row said so. */
  async writeProbeVerdict(instance: InstanceRef, healthy: boolean): Promise<void> {
    const ref: InstanceRef = { namespace: instance.namespace, group: instance.group, service: instance.service, cluster: instance.cluster, ip: instance.ip, port: instance.port }
    await this.durable({ type: 'naming.instance.health', ref, healthy, source: 'probe' })
  }

  /** PUT /v1/ns/clusters: sets (replaces) a cluster's health check, on a persistent service. */
  async putCluster(ref: ClusterRef, healthCheck: HealthCheck): Promise<void> {
    await this.proxy.durableReadBarrier()
    const entry = this.view.get(ref)
    if (!entry) fail('SERVICE_NOT_FOUND', `service ${ref.service} does not exist (register its instances or create it with ephemeral: false first)`)
    // Ephemeral instances only this node sees; the state machine checks the service's record again.
    if (entry.kind() === true) {
      fail('SERVICE_KIND_CONFLICT', `service ${ref.service} is ephemeral: its instances prove their health by heartbeats and take no health check`)
    }
    await this.durable({ type: 'naming.cluster.put', ref, healthCheck })
  }

  /** DELETE /v1/ns/clusters: the cluster goes back to no check (health set by hand). */
  async removeCluster(ref: ClusterRef): Promise<{ deleted: boolean }> {
    await this.proxy.durableReadBarrier()
    if (!this.view.get(ref)?.meta?.clusters?.some((c) => c.cluster === ref.cluster)) return { deleted: false }
    return (await this.durable({ type: 'naming.cluster.remove', ref })) as { deleted: boolean }
  }

  /** GET /v1/ns/clusters: the clusters of a service that have settings (one, with `cluster`). */
  async getClusters(name: ServiceName, cluster: string | undefined, stale = false): Promise<ClusterList> {
    if (!stale) await this.proxy.durableReadBarrier()
    const entry = this.view.get(name)
    if (!entry) fail('SERVICE_NOT_FOUND', `service ${name.service} does not exist in group ${name.group} of namespace ${name.namespace}`)
    const all = entry.meta?.clusters ?? []
    const chosen = cluster === undefined ? all : all.filter((c) => c.cluster === cluster)
    const svc = { namespace: name.namespace, group: name.group, service: name.service }
    return { ...svc, clusters: chosen.map((c) => ({ ...svc, cluster: c.cluster, healthCheck: c.healthCheck })) }
  }

  /**
   * A heartbeat: renews the client's lease and says whether it (and the instance) is still
   * known. Answered at once where this node is responsible for the client, else by its owner.
   */
  beat(request: BeatRequest): BeatResult | Promise<BeatResult> {
    const clientId = this.beatClientId(request)
    const owner = this.ownerElsewhere(clientId, false)
    if (owner !== null) {
      this.leases.noteHeard(clientId)
      return this.owners!.forward(owner, { op: 'beat', request }) as Promise<BeatResult>
    }
    return this.beatHere(request)
  }

  private beatClientId(request: BeatRequest): string {
    const ref = request.instance
    if (!ref) return request.clientId!
    const known = this.view.get(ref)?.find(instanceId(ref.cluster, ref.ip, ref.port))
    if (known && !known.ephemeral) {
      fail('NOT_EPHEMERAL', `instance ${ref.ip}:${ref.port} is persistent: it has no heartbeat; set its health with PATCH /v1/ns/instances`)
    }
    return request.clientId ?? known?.clientId ?? `${ref.ip}:${ref.port}`
  }

  private beatHere(request: BeatRequest): BeatResult {
    const clientId = this.beatClientId(request)
    const ref = request.instance
    const record = this.proxy.readEphemeral(clientId)
    if (!record || (ref && !record.instances.some((i) => sameSlot(i, ref)))) {
      return { clientBeatInterval: record ? beatIntervalOf(record.instances) : BEAT_DEFAULTS.intervalMs, registered: false }
    }
    this.leases.renew(record.clientId)
    return { clientBeatInterval: beatIntervalOf(record.instances), registered: true }
  }

  async list(query: InstanceQuery): Promise<InstanceList> {
    const now = this.listNow(query)
    if (now) return now
    await this.proxy.durableReadBarrier()
    return this.view.list(query)
  }

  /**
   * The answer at once when it needs no read barrier, else undefined (then use list()).
   * Persistent data is read after a barrier, so that a read sees every write acknowledged
   * before it (a service this node does not know yet may be a persistent one it lags on).
   * Ephemeral data is AP: this node's view is the answer.
   */
  listNow(query: InstanceQuery): InstanceList | undefined {
    const entry = this.view.get(query)
    if (!query.stale && entry?.kind() !== true) return undefined
    return this.view.list(query, entry)
  }

  async createService(meta: ServiceMeta): Promise<void> {
    const entry = this.view.get(meta)
    if (entry && (entry.meta || entry.instanceCount() > 0)) fail('SERVICE_ALREADY_EXISTS', `service ${meta.service} already exists`)
    await this.durable({ type: 'naming.service.create', meta })
  }

  async updateService(name: ServiceName, patch: ServicePatch): Promise<void> {
    await this.proxy.durableReadBarrier()
    if (!this.view.get(name)) fail('SERVICE_NOT_FOUND', `service ${name.service} does not exist`)
    const ephemeralInstances = (this.view.get(name)?.ephemeral.size ?? 0) > 0
    if (patch.ephemeral === false && ephemeralInstances) {
      fail('SERVICE_KIND_CONFLICT', `service ${name.service} has ephemeral instances; its kind cannot change`)
    }
    await this.durable({ type: 'naming.service.update', name, patch, ephemeralInstances })
  }

  async removeService(name: ServiceName): Promise<{ deleted: boolean }> {
    await this.proxy.durableReadBarrier()
    const entry = this.view.get(name)
    if (!entry) return { deleted: false }
    if (entry.ephemeral.size > 0) fail('SERVICE_NOT_EMPTY', `service ${name.service} still has ephemeral instances`)
    return (await this.durable({ type: 'naming.service.remove', name })) as { deleted: boolean }
  }

  async getService(name: ServiceName, stale = false): Promise<ServiceSummary> {
    if (!stale) await this.proxy.durableReadBarrier()
    const entry = this.view.get(name)
    if (!entry) fail('SERVICE_NOT_FOUND', `service ${name.service} does not exist in group ${name.group} of namespace ${name.namespace}`)
    return summarize(entry)
  }

  async listServices(namespace: string, group: string | undefined, pageNo: number, pageSize: number, stale = false): Promise<ServicePage> {
    if (!stale) await this.proxy.durableReadBarrier()
    const matching: ServiceEntry[] = []
    for (const entry of this.view.entries()) {
      if (entry.name.namespace === namespace && (group === undefined || entry.name.group === group)) matching.push(entry)
    }
    matching.sort((a, b) => (serviceKey(a.name) < serviceKey(b.name) ? -1 : 1))
    const page = matching.slice((pageNo - 1) * pageSize, pageNo * pageSize)
    return { count: matching.length, pageNo, pageSize, services: page.map(summarize) }
  }

  /** Counts over every namespace, for monitoring (Nacos's operator/metrics) and namespace lists. */
  stats(): { services: number; instances: number; healthyInstances: number; namespaces: ReadonlySet<string> } {
    let instances = 0
    let healthyInstances = 0
    const namespaces = new Set<string>()
    for (const entry of this.view.entries()) {
      instances += entry.instanceCount()
      healthyInstances += entry.healthyCount()
      namespaces.add(entry.name.namespace)
    }
    return { services: this.view.size(), instances, healthyInstances, namespaces }
  }

  private async hasPersistent(name: ServiceName, id: string): Promise<boolean> {
    await this.proxy.durableReadBarrier()
    return this.view.get(name)?.persistent.has(id) ?? false
  }

  private async registerPersistent(instance: Instance): Promise<void> {
    const entry = this.view.get(instance)
    // The state machine checks the service's metadata again; ephemeral instances only we can see.
    if ((entry?.ephemeral.size ?? 0) > 0 || entry?.meta?.ephemeral) kindConflict(instance, true)
    await this.durable({ type: 'naming.instance.put', instance })
  }

  private deregisterEphemeral(ref: InstanceRef, fromClient?: string): { deleted: boolean } {
    const clientId = fromClient ?? this.view.get(ref)?.ephemeral.get(instanceId(ref.cluster, ref.ip, ref.port))?.clientId
    if (clientId === undefined || !this.proxy.readEphemeral(clientId)?.instances.some((i) => sameSlot(i, ref))) return { deleted: false }
    this.changeClient(clientId, (instances) => instances.filter((i) => !sameSlot(i, ref)))
    return { deleted: true }
  }

  private registerEphemeral(instance: Instance): void {
    const entry = this.view.get(instance)
    if (entry?.kind() === false) kindConflict(instance, false)
    const id = instanceIdOf(instance)
    const previous = entry?.ephemeral.get(id)
    if (!previous) {
      if ((entry?.instanceCount() ?? 0) >= LIMITS.maxInstancesPerService) {
        fail('LIMIT_EXCEEDED', `service ${instance.service} has ${LIMITS.maxInstancesPerService} instances, the most allowed`)
      }
      if (!entry && this.view.size() >= LIMITS.maxServices) fail('LIMIT_EXCEEDED', `the registry holds ${LIMITS.maxServices} services, the most allowed`)
    }
    // The same address registered by another client moves to this one: the newest registration
    // wins. The other client may be owned elsewhere: its owner removes the instance from it.
    if (previous && previous.clientId !== instance.clientId) {
      const owner = this.ownerElsewhere(previous.clientId, false)
      if (owner === null) this.changeClient(previous.clientId, (instances) => instances.filter((i) => !sameSlot(i, instance)))
      // Not awaited: the registration stands either way; should this fail, the old client's
      // copy goes when that client stops beating.
      else void this.owners!.forward(owner, { op: 'deregister', ref: instance, clientId: previous.clientId }).catch(() => {})
    }
    // Registering makes an instance healthy; most arrive so (the default), and need no copy.
    const registered: Instance = instance.healthy ? instance : withHealth(instance, true)
    // The same instance registered again by its client (a client that failed over to another
    // node, or re-registers on a timer) changes nothing: a renewal, as in Consul, with no new
    // revision, no notifications to the service's watchers and, in a cluster, nothing to sync.
    if (previous && sameContent(previous, registered)) {
      this.leases.renew(instance.clientId)
      return
    }
    this.changeClient(instance.clientId, (instances) => {
      const others = instances.filter((i) => !sameSlot(i, instance))
      if (others.length >= LIMITS.maxInstancesPerClient) {
        fail('LIMIT_EXCEEDED', `client ${instance.clientId} holds ${LIMITS.maxInstancesPerClient} instances, the most allowed`)
      }
      // concat: a list exactly as long (a spread into a literal keeps room for 17, 136 bytes
      // more per client for as long as it lives).
      return others.concat([registered])
    })
    this.leases.renew(instance.clientId)
  }

  /** Replaces a client's instances with change(current); a client left with none is removed. */
  private changeClient(clientId: string, change: (instances: readonly Instance[]) => Instance[]): void {
    const record = this.proxy.readEphemeral(clientId)
    const instances = change(record?.instances ?? [])
    if (instances.length === 0) {
      this.proxy.removeEphemeral(clientId)
      this.leases.forget(clientId)
      return
    }
    checkClientBytes(clientId, instances)
    // A new record starts above any earlier incarnation of the same client: versions only grow.
    const version = record ? record.version + 1 : this.clock.now() * 1000
    const next: ClientRecord = { clientId, version, instances }
    this.proxy.writeEphemeral(next)
  }

  private durable(command: NamingCommand): Promise<unknown> {
    return this.proxy.writeDurable(command)
  }
}

/**
 * Instances one client can hold before its record could pass LIMITS.maxClientRecordBytes: names
 * of at most 512 bytes, metadata of at most 16 KiB that JSON may escape up to six times over.
 * Below it the encoding need not be measured.
 */
const MAY_REACH_CLIENT_BYTES = Math.floor(LIMITS.maxClientRecordBytes / (6 * LIMITS.maxMetadataBytes + 6 * LIMITS.maxNameBytes + 256))

/**
 * A client's record travels whole between cluster nodes, in one peer frame: its instances, as
 * JSON, must stay under LIMITS.maxClientRecordBytes (standalone too, so that what works on one
 * node works in a cluster). Measured only for clients large enough to come near it.
 */
function checkClientBytes(clientId: string, instances: readonly Instance[]): void {
  if (instances.length < MAY_REACH_CLIENT_BYTES) return
  const bytes = Buffer.byteLength(JSON.stringify(instances), 'utf8')
  if (bytes > LIMITS.maxClientRecordBytes) {
    fail('LIMIT_EXCEEDED', `client ${clientId}'s instances would take ${bytes} bytes, over the ${LIMITS.maxClientRecordBytes} allowed for one client`)
  }
}

function notManual(ref: InstanceRef): never {
  fail('HEALTH_NOT_MANUAL', `instance ${ref.ip}:${ref.port} is ephemeral: its health follows its heartbeats and cannot be set`)
}

function probedNotManual(ref: InstanceRef): never {
  fail(
    'HEALTH_NOT_MANUAL',
    `cluster ${ref.cluster} of service ${ref.service} is probed by the server: its instances' health follows the probes (set the cluster's check to none to set it by hand)`,
  )
}


function kindConflict(name: ServiceName, serviceIsEphemeral: boolean): never {
  const kind = kindName(serviceIsEphemeral)
  fail(
    'SERVICE_KIND_CONFLICT',
    `service ${name.service} is ${kind}; it cannot take ${kindName(!serviceIsEphemeral)} instances (register with ephemeral: ${serviceIsEphemeral})`,
  )
}

function summarize(entry: ServiceEntry): ServiceSummary {
  return {
    ...entry.name,
    // An empty service (kept a while after its last instance went) shows the kind it had.
    ephemeral: entry.kind() ?? entry.lastKind ?? true,
    protectThreshold: entry.meta?.protectThreshold ?? 0,
    metadata: entry.meta?.metadata ?? {},
    instanceCount: entry.instanceCount(),
    healthyInstanceCount: entry.healthyCount(),
  }
}
