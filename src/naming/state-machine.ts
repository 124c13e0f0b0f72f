// The CP half of naming: persistent instances and service metadata, changed only by committed
// log entries. apply decides from CP state alone (never from ephemeral data or a clock), so
// every replica and every replay reaches the same state.

import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import type { LogEntry, StateMachine } from '../cp/log.js'
import { type BatchOp, type Database, PREFIX, prefixRange } from '../storage/db.js'
import {
  type ClusterSettings,
  type HealthCheck,
  type Instance,
  type ServiceMeta,
  type ServiceName,
  instanceId,
  instanceIdOf,
  kindName,
  probeCheckOf,
  serviceKey,
} from './model.js'
import type { ClusterRef, InstancePatch, InstanceRef, ServicePatch } from './validate.js'
import type { NamingView } from './view.js'

export type NamingCommand =
  | { type: 'naming.instance.put'; instance: Instance }
  | { type: 'naming.instance.update'; ref: InstanceRef; patch: InstancePatch }
  | { type: 'naming.instance.remove'; ref: InstanceRef }
  | { type: 'naming.service.create'; meta: ServiceMeta }
  /**
   * `ephemeralInstances` is what the proposer saw of the AP side: a service that exists only
   * through ephemeral instances can still be given metadata, as an ephemeral service.
   */
  | { type: 'naming.service.update'; name: ServiceName; patch: ServicePatch; ephemeralInstances: boolean }
  | { type: 'naming.service.remove'; name: ServiceName }
  /**
   * A health verdict. `manual` (PUT /v1/ns/instances/health) is refused for a probed cluster;
   * `probe` (the probing node, after 3 results in a row) is dropped when the cluster is no longer
   * probed or the instance is gone, as the probe's view of them may be a moment old.
   */
  | { type: 'naming.instance.health'; ref: InstanceRef; healthy: boolean; source: 'manual' | 'probe' }
  /** A cluster's settings (its health check), on a persistent service. */
  | { type: 'naming.cluster.put'; ref: ClusterRef; healthCheck: HealthCheck }
  | { type: 'naming.cluster.remove'; ref: ClusterRef }

const SEP = '\u001f'

function instanceKey(i: ServiceName & { cluster: string; ip: string; port: number }): string {
  return instanceKeyOf(serviceKey(i), instanceIdOf(i))
}

function instanceKeyOf(service: string, id: string): string {
  return PREFIX.namingInstance + service + SEP + id
}

function serviceOf(cmd: NamingCommand): ServiceName {
  switch (cmd.type) {
    case 'naming.instance.put':
      return cmd.instance
    case 'naming.instance.update':
    case 'naming.instance.remove':
    case 'naming.instance.health':
    case 'naming.cluster.put':
    case 'naming.cluster.remove':
      return cmd.ref
    case 'naming.service.create':
      return cmd.meta
    default:
      return cmd.name
  }
}

const PUT_JSON_PREFIX = '{"type":"naming.instance.put","instance":'

/**
 * The instance's JSON text inside a registration's JSON text (LogEntry.commandJson), sliced
 * rather than written again: JSON.stringify of an instance was about a microsecond of every
 * replicated registration on each node. The proposer builds the command as {type, instance}
 * (NamingService), so its text is the prefix, the instance and a closing brace; a command of
 * another shape is serialized as before.
 */
function instanceJsonOf(cmd: NamingCommand & { type: 'naming.instance.put' }, commandJson: string | undefined): string | undefined {
  if (commandJson === undefined || !commandJson.startsWith(PUT_JSON_PREFIX)) return undefined
  for (const key in cmd) if (key !== 'type' && key !== 'instance') return undefined
  return commandJson.slice(PUT_JSON_PREFIX.length, -1)
}

function serviceMetaKey(name: ServiceName): string {
  return PREFIX.namingService + serviceKey(name)
}

export class NamingStateMachine implements StateMachine {
  /**
   * Services that have CP data (metadata or persistent instances). Limits are checked against
   * this, not the view, whose ephemeral part differs between nodes: every replica must decide
   * the same.
   */
  private readonly cpServices = new Set<string>()

  constructor(
    private readonly db: Database,
    private readonly view: NamingView,
  ) {}

  /** Replaces the CP part of the view with what storage holds (at startup, after a snapshot). */
  async load(): Promise<void> {
    this.view.clearDurable()
    this.cpServices.clear()
    for await (const value of this.db.values(prefixRange(PREFIX.namingService))) {
      const meta = JSON.parse(value) as ServiceMeta
      this.view.setMeta(meta, meta)
      this.cpServices.add(serviceKey(meta))
    }
    for await (const value of this.db.values(prefixRange(PREFIX.namingInstance))) {
      const instance = JSON.parse(value) as Instance
      this.view.putInstance(instance)
      this.cpServices.add(serviceKey(instance))
    }
  }

  apply(entry: LogEntry, ops: BatchOp[]): unknown {
    const cmd = entry.command as NamingCommand
    // Most of the log: registrations, which leave their service with CP data (putInstance notes it).
    if (cmd.type === 'naming.instance.put') return this.putInstance(cmd.instance, ops, instanceJsonOf(cmd, entry.commandJson))
    const result = this.applyCommand(cmd, ops)
    this.trackCpService(serviceOf(cmd))
    return result
  }

  private trackCpService(name: ServiceName): void {
    const entry = this.view.get(name)
    if (entry && (entry.meta || entry.persistent.size > 0)) this.cpServices.add(serviceKey(name))
    else this.cpServices.delete(serviceKey(name))
  }

  private checkNewService(name: ServiceName): void {
    if (!this.cpServices.has(serviceKey(name)) && this.cpServices.size >= LIMITS.maxServices) {
      fail('LIMIT_EXCEEDED', `the registry holds ${LIMITS.maxServices} services, the most allowed`)
    }
  }

  private applyCommand(cmd: NamingCommand, ops: BatchOp[]): unknown {
    switch (cmd.type) {
      case 'naming.instance.put':
        return this.putInstance(cmd.instance, ops)
      case 'naming.instance.update':
        return this.updateInstance(cmd.ref, cmd.patch, ops)
      case 'naming.instance.remove':
        return this.removeInstance(cmd.ref, ops)
      case 'naming.service.create':
        return this.createService(cmd.meta, ops)
      case 'naming.service.update':
        return this.updateService(cmd.name, cmd.patch, cmd.ephemeralInstances, ops)
      case 'naming.service.remove':
        return this.removeService(cmd.name, ops)
      case 'naming.instance.health':
        return this.setHealth(cmd.ref, cmd.healthy, cmd.source, ops)
      case 'naming.cluster.put':
        return this.putCluster(cmd.ref, cmd.healthCheck, ops)
      case 'naming.cluster.remove':
        return this.removeCluster(cmd.ref, ops)
      default:
        fail('INVALID_ARGUMENT', `unknown naming command ${(cmd as { type: string }).type}`)
    }
  }

  /** `registeredJson`, when known, is JSON.stringify(registered) (instanceJsonOf). */
  private putInstance(registered: Instance, ops: BatchOp[], registeredJson?: string): { ok: true } {
    const service = serviceKey(registered)
    const id = instanceIdOf(registered)
    const entry = this.view.get(registered)
    if (entry?.meta?.ephemeral) {
      fail('SERVICE_KIND_CONFLICT', `service ${registered.service} is ephemeral; register its instances with ephemeral: true`)
    }
    const existing = entry?.persistent.get(id)
    if (!existing) {
      if ((entry?.persistent.size ?? 0) >= LIMITS.maxInstancesPerService) {
        fail('LIMIT_EXCEEDED', `service ${registered.service} has ${LIMITS.maxInstancesPerService} instances, the most allowed`)
      }
      this.checkNewService(registered)
    }
    // In a probed cluster the probes own the health: registering an instance again replaces
    // everything else, but does not undo what the probes found.
    const instance = existing && probeCheckOf(entry!.meta, registered.cluster) ? { ...registered, healthy: existing.healthy } : registered
    const value = instance === registered && registeredJson !== undefined ? registeredJson : JSON.stringify(instance)
    ops.push({ type: 'put', key: instanceKeyOf(service, id), value })
    this.view.putInstance(instance)
    this.cpServices.add(service)
    return { ok: true }
  }

  private updateInstance(ref: InstanceRef, patch: InstancePatch, ops: BatchOp[]): { ok: true } {
    const entry = this.view.get(ref)
    const current = entry?.persistent.get(instanceId(ref.cluster, ref.ip, ref.port))
    if (!current) fail('INSTANCE_NOT_FOUND', `no persistent instance ${ref.ip}:${ref.port} in cluster ${ref.cluster} of service ${ref.service}`)
    if (patch.healthy !== undefined) refuseIfProbed(entry!.meta, ref)
    const next: Instance = { ...current, ...patch }
    ops.push({ type: 'put', key: instanceKey(next), value: JSON.stringify(next) })
    this.view.putInstance(next)
    return { ok: true }
  }

  private removeInstance(ref: InstanceRef, ops: BatchOp[]): { deleted: boolean } {
    const id = instanceId(ref.cluster, ref.ip, ref.port)
    if (!this.view.get(ref)?.persistent.has(id)) return { deleted: false }
    ops.push({ type: 'del', key: instanceKey(ref) })
    this.view.removeInstance(ref, id, false)
    return { deleted: true }
  }

  private createService(meta: ServiceMeta, ops: BatchOp[]): { ok: true } {
    const entry = this.view.get(meta)
    if (entry?.meta || (entry?.persistent.size ?? 0) > 0) fail('SERVICE_ALREADY_EXISTS', `service ${meta.service} already exists`)
    this.checkNewService(meta)
    ops.push({ type: 'put', key: serviceMetaKey(meta), value: JSON.stringify(meta) })
    this.view.setMeta(meta, meta)
    return { ok: true }
  }

  private updateService(name: ServiceName, patch: ServicePatch, ephemeralInstances: boolean, ops: BatchOp[]): { ok: true } {
    const entry = this.view.get(name)
    const hasPersistent = (entry?.persistent.size ?? 0) > 0
    let base: ServiceMeta
    if (entry?.meta) base = entry.meta
    else if (hasPersistent || ephemeralInstances) base = { ...name, ephemeral: !hasPersistent, protectThreshold: 0, metadata: {} }
    else fail('SERVICE_NOT_FOUND', `service ${name.service} does not exist`)
    this.checkNewService(name)
    const next: ServiceMeta = { ...base, ...patch }
    if (next.ephemeral !== base.ephemeral && (hasPersistent || ephemeralInstances)) {
      fail('SERVICE_KIND_CONFLICT', `service ${name.service} is ${kindName(base.ephemeral)} and has instances; its kind cannot change`)
    }
    if (next.ephemeral && (next.clusters?.length ?? 0) > 0) {
      fail('SERVICE_KIND_CONFLICT', `service ${name.service} has cluster health checks; remove them (DELETE /v1/ns/clusters) before making it ephemeral`)
    }
    ops.push({ type: 'put', key: serviceMetaKey(name), value: JSON.stringify(next) })
    this.view.setMeta(name, next)
    return { ok: true }
  }

  private setHealth(ref: InstanceRef, healthy: boolean, source: 'manual' | 'probe', ops: BatchOp[]): { ok: true; changed: boolean } {
    const entry = this.view.get(ref)
    const current = entry?.persistent.get(instanceId(ref.cluster, ref.ip, ref.port))
    const probed = probeCheckOf(entry?.meta, ref.cluster) !== undefined
    if (source === 'probe') {
      if (!current || !probed) return { ok: true, changed: false }
    } else {
      if (!current) fail('INSTANCE_NOT_FOUND', `no persistent instance ${ref.ip}:${ref.port} in cluster ${ref.cluster} of service ${ref.service}`)
      refuseIfProbed(entry!.meta, ref)
    }
    if (current.healthy === healthy) return { ok: true, changed: false }
    const next: Instance = { ...current, healthy }
    ops.push({ type: 'put', key: instanceKey(next), value: JSON.stringify(next) })
    this.view.putInstance(next)
    return { ok: true, changed: true }
  }

  /**
   * Cluster settings live in the service's record, which a service made only of persistent
   * instances gets here (as PATCH /v1/ns/services gives it one); so a service with cluster
   * settings is kept when its instances go. Ephemeral services have no cluster settings: their
   * instances prove their health by heartbeats.
   */
  private putCluster(ref: ClusterRef, healthCheck: HealthCheck, ops: BatchOp[]): { ok: true } {
    const entry = this.view.get(ref)
    let base: ServiceMeta
    if (entry?.meta) base = entry.meta
    else if ((entry?.persistent.size ?? 0) > 0) base = { namespace: ref.namespace, group: ref.group, service: ref.service, ephemeral: false, protectThreshold: 0, metadata: {} }
    else fail('SERVICE_NOT_FOUND', `service ${ref.service} does not exist (register its instances or create it with ephemeral: false first)`)
    if (base.ephemeral) fail('SERVICE_KIND_CONFLICT', `service ${ref.service} is ephemeral: its instances prove their health by heartbeats and take no health check`)
    const others = (base.clusters ?? []).filter((c) => c.cluster !== ref.cluster)
    if (others.length >= LIMITS.maxClusterSettingsPerService) {
      fail('LIMIT_EXCEEDED', `service ${ref.service} has settings for ${LIMITS.maxClusterSettingsPerService} clusters, the most allowed`)
    }
    const clusters: ClusterSettings[] = [...others, { cluster: ref.cluster, healthCheck }].sort((a, b) => (a.cluster < b.cluster ? -1 : a.cluster > b.cluster ? 1 : 0))
    this.putMeta({ ...base, clusters }, ops)
    return { ok: true }
  }

  private removeCluster(ref: ClusterRef, ops: BatchOp[]): { deleted: boolean } {
    const meta = this.view.get(ref)?.meta
    const clusters = meta?.clusters ?? []
    if (!meta || !clusters.some((c) => c.cluster === ref.cluster)) return { deleted: false }
    const rest = clusters.filter((c) => c.cluster !== ref.cluster)
    const { clusters: _dropped, ...plain } = meta
    this.putMeta(rest.length > 0 ? { ...plain, clusters: rest } : plain, ops)
    return { deleted: true }
  }

  private putMeta(meta: ServiceMeta, ops: BatchOp[]): void {
    ops.push({ type: 'put', key: serviceMetaKey(meta), value: JSON.stringify(meta) })
    this.view.setMeta(meta, meta)
  }

  private removeService(name: ServiceName, ops: BatchOp[]): { deleted: boolean } {
    const entry = this.view.get(name)
    if ((entry?.persistent.size ?? 0) > 0) fail('SERVICE_NOT_EMPTY', `service ${name.service} still has persistent instances`)
    if (!entry?.meta) return { deleted: false }
    ops.push({ type: 'del', key: serviceMetaKey(name) })
    this.view.setMeta(name, undefined)
    return { deleted: true }
  }
}

/** A probed cluster's health follows the probes; only the probing node changes it. */
function refuseIfProbed(meta: ServiceMeta | undefined, ref: InstanceRef): void {
  const check = probeCheckOf(meta, ref.cluster)
  if (check) {
    fail(
      'HEALTH_NOT_MANUAL',
      `cluster ${ref.cluster} of service ${ref.service} has a ${check.type} health check: its instances' health follows the server's probes (set the check to none to set it by hand)`,
    )
  }
}
