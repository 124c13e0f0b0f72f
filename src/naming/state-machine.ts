// The CP half of naming: persistent instances and service metadata, changed only by committed
// log entries. apply decides from CP state alone (never from ephemeral data or a clock), so
// every replica and every replay reaches the same state.

import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import type { LogEntry, StateMachine } from '../cp/log.js'
import { type BatchOp, type Database, PREFIX, prefixRange } from '../storage/db.js'
import { type Instance, type ServiceMeta, type ServiceName, instanceId, instanceIdOf, kindName, serviceKey } from './model.js'
import type { InstancePatch, InstanceRef, ServicePatch } from './validate.js'
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

const SEP = '\u001f'

function instanceKey(i: ServiceName & { cluster: string; ip: string; port: number }): string {
  return PREFIX.namingInstance + serviceKey(i) + SEP + instanceIdOf(i)
}

function serviceOf(cmd: NamingCommand): ServiceName {
  switch (cmd.type) {
    case 'naming.instance.put':
      return cmd.instance
    case 'naming.instance.update':
    case 'naming.instance.remove':
      return cmd.ref
    case 'naming.service.create':
      return cmd.meta
    default:
      return cmd.name
  }
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
      default:
        fail('INVALID_ARGUMENT', `unknown naming command ${(cmd as { type: string }).type}`)
    }
  }

  private putInstance(instance: Instance, ops: BatchOp[]): { ok: true } {
    const entry = this.view.get(instance)
    if (entry?.meta?.ephemeral) {
      fail('SERVICE_KIND_CONFLICT', `service ${instance.service} is ephemeral; register its instances with ephemeral: true`)
    }
    if (!entry?.persistent.has(instanceIdOf(instance))) {
      if ((entry?.persistent.size ?? 0) >= LIMITS.maxInstancesPerService) {
        fail('LIMIT_EXCEEDED', `service ${instance.service} has ${LIMITS.maxInstancesPerService} instances, the most allowed`)
      }
      this.checkNewService(instance)
    }
    ops.push({ type: 'put', key: instanceKey(instance), value: JSON.stringify(instance) })
    this.view.putInstance(instance)
    return { ok: true }
  }

  private updateInstance(ref: InstanceRef, patch: InstancePatch, ops: BatchOp[]): { ok: true } {
    const current = this.view.get(ref)?.persistent.get(instanceId(ref.cluster, ref.ip, ref.port))
    if (!current) fail('INSTANCE_NOT_FOUND', `no persistent instance ${ref.ip}:${ref.port} in cluster ${ref.cluster} of service ${ref.service}`)
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
    ops.push({ type: 'put', key: serviceMetaKey(name), value: JSON.stringify(next) })
    this.view.setMeta(name, next)
    return { ok: true }
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
