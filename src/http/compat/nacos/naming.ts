// Nacos 1.x naming open API (/nacos/v1/ns/...) over Grace's naming service. Parameters are
// text, from the query string or a form body; answers are Nacos's shapes ("ok", JSON objects).
//
// Leases: as the Java 1.x client beats each registered instance separately, every ephemeral
// instance registered here is its own Grace client (lease), named from its namespace, service,
// cluster and address. Two services on one ip:port are two leases; a beat renews only its own.

import type { FastifyInstance } from 'fastify'
import { fail } from '../../../core/errors.js'
import type { Fields } from '../../../core/validate.js'
import { BEAT_DEFAULTS, BEAT_METADATA, DEFAULT_CLUSTER, DEFAULT_GROUP, type Instance, type ServiceName } from '../../../naming/model.js'
import type { NamingService } from '../../../naming/service.js'
import {
  type InstanceRef,
  parseCluster,
  parseInstance,
  parseInstanceQuery,
  parseIp,
  parseNamespace,
  parsePort,
  parseServiceCreate,
  parseServiceName,
  parseServicePatch,
  parseWeight,
} from '../../../naming/validate.js'
import type { InstanceList } from '../../../naming/view.js'
import { leaseId, params, required, sendJson, sendText, text, textBool, textInteger, textNumber } from '../params.js'

/** How often clients should poll instance/list: Grace pushes nothing over UDP, so they must. */
export const CACHE_MILLIS = 3000
/** Nacos's beat answer codes. */
const CODE_OK = 10200
const CODE_RESOURCE_NOT_FOUND = 20404

export interface NacosNamingDeps {
  naming: NamingService
  /** host:port of every node clients may use (operator/servers, the endpoint server list). */
  servers: () => readonly string[]
}

interface NacosService extends ServiceName {
  /** GROUP@@service, as Nacos names it on the wire. */
  readonly grouped: string
}

/** serviceName, plain or GROUP@@service (which then wins over groupName), and namespaceId. */
export function serviceOf(f: Fields, key = 'serviceName', fallback?: string): NacosService {
  const raw = text(f, key) ?? fallback
  if (raw === undefined) fail('INVALID_ARGUMENT', `Required parameter '${key}' is not present`)
  let group = text(f, 'groupName') ?? DEFAULT_GROUP
  let service = raw
  const at = raw.indexOf('@@')
  if (at >= 0) {
    group = raw.slice(0, at)
    service = raw.slice(at + 2)
    if (group === '' || service === '' || service.includes('@@')) {
      fail('INVALID_ARGUMENT', `Param '${key}' is illegal, it should be like 'groupName@@serviceName' or 'serviceName': ${raw}`)
    }
  }
  const name = parseServiceName({ namespace: text(f, 'namespaceId'), group, service })
  return { ...name, grouped: `${name.group}@@${name.service}` }
}

/**
 * Nacos metadata: a JSON object (what its clients send), or k=v,k=v (what its console sends).
 * JSON numbers and booleans become text, as the Java server's Map<String, String> would.
 */
export function parseNacosMetadata(value: string | undefined): Record<string, string> | undefined {
  if (value === undefined) return undefined
  const out: Record<string, string> = Object.create(null)
  if (value.trimStart().startsWith('{')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(value)
    } catch {
      fail('INVALID_METADATA', 'metadata is not valid JSON')
    }
    for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
      if (typeof v === 'string') out[k] = v
      else if (typeof v === 'number' || typeof v === 'boolean') out[k] = String(v)
      else if (v !== null) fail('INVALID_METADATA', `metadata ${k} must be text`)
    }
    return out
  }
  for (const pair of value.split(',')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    if (eq <= 0) fail('INVALID_METADATA', `metadata ${JSON.stringify(pair)} is not key=value`)
    out[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return out
}

function ipPort(f: Fields): { ip: string; port: number } {
  return { ip: parseIp(required(f, 'ip')), port: parsePort(required(f, 'port')) }
}

function refOf(f: Fields, clusterKey = 'clusterName'): InstanceRef {
  const name = serviceOf(f)
  return { namespace: name.namespace, group: name.group, service: name.service, cluster: parseCluster(text(f, clusterKey)), ...ipPort(f) }
}

/** An ephemeral instance's lease: one per instance (see the top of this file). */
function nacosClientId(ref: InstanceRef): string {
  return leaseId('nacos', ref.namespace, ref.group, ref.service, ref.cluster, ref.ip, String(ref.port))
}

function instanceFrom(f: Fields): Instance {
  const ref = refOf(f)
  const ephemeral = textBool(f, 'ephemeral', true)
  // 'enable' is what the Node.js client sends; 'enabled' what the Java one does.
  const enabled = f.enabled !== undefined ? textBool(f, 'enabled', true) : textBool(f, 'enable', true)
  return parseInstance({
    ...ref,
    weight: textNumber(f, 'weight') ?? 1,
    enabled,
    healthy: textBool(f, 'healthy', true),
    ephemeral,
    metadata: parseNacosMetadata(text(f, 'metadata')) ?? {},
    clientId: ephemeral ? nacosClientId(ref) : undefined,
  })
}

function beatTimings(i: Instance): { instanceHeartBeatInterval: number; instanceHeartBeatTimeOut: number; ipDeleteTimeout: number } {
  const of = (key: keyof typeof BEAT_METADATA): number => {
    const v = i.metadata[BEAT_METADATA[key]]
    return v === undefined ? BEAT_DEFAULTS[key] : Number(v)
  }
  return { instanceHeartBeatInterval: of('intervalMs'), instanceHeartBeatTimeOut: of('unhealthyAfterMs'), ipDeleteTimeout: of('removeAfterMs') }
}

function nacosInstanceId(i: Instance): string {
  return `${i.ip}#${i.port}#${i.cluster}#${i.group}@@${i.service}`
}

function host(i: Instance): object {
  return {
    instanceId: nacosInstanceId(i),
    ip: i.ip,
    port: i.port,
    weight: i.weight,
    healthy: i.healthy,
    enabled: i.enabled,
    ephemeral: i.ephemeral,
    clusterName: i.cluster,
    serviceName: `${i.group}@@${i.service}`,
    metadata: i.metadata,
    ...beatTimings(i),
    instanceIdGenerator: 'simple',
    marked: false,
    valid: i.healthy,
  }
}

async function listOf(naming: NamingService, name: NacosService, clusters: string, healthyOnly: boolean, includeDisabled = false): Promise<InstanceList> {
  const query = parseInstanceQuery({
    namespace: name.namespace,
    group: name.group,
    service: name.service,
    clusters,
    healthyOnly: String(healthyOnly),
    includeDisabled: String(includeDisabled),
  })
  return naming.listNow(query) ?? (await naming.list(query))
}

export function registerNacosNaming(scope: FastifyInstance, { naming, servers }: NacosNamingDeps): void {
  scope.post('/v1/ns/instance', async (request, reply) => {
    await naming.register(instanceFrom(params(request)))
    return sendText(reply, 200, 'ok')
  })

  // Nacos answers "ok" whether or not there was such an instance.
  scope.delete('/v1/ns/instance', async (request, reply) => {
    const f = params(request)
    textBool(f, 'ephemeral', true) // checked, not needed: Grace knows each instance's kind
    await naming.deregister(refOf(f))
    return sendText(reply, 200, 'ok')
  })

  // PUT replaces weight, enabled and metadata (absent ones take their defaults, as in Nacos);
  // PATCH changes only those given.
  const update = (replace: boolean) =>
    async function updateInstance(this: unknown, request: import('fastify').FastifyRequest, reply: import('fastify').FastifyReply) {
      const f = params(request)
      const ref = refOf(f)
      const weight = parseWeight(textNumber(f, 'weight') ?? (replace ? 1 : undefined))
      const enabledText = f.enabled !== undefined ? 'enabled' : 'enable'
      const enabled = f[enabledText] !== undefined ? textBool(f, enabledText, true) : replace ? true : undefined
      const metadata = parseNacosMetadata(text(f, 'metadata')) ?? (replace ? {} : undefined)
      const patch = { ...(weight !== undefined ? { weight } : {}), ...(enabled !== undefined ? { enabled } : {}), ...(metadata !== undefined ? { metadata } : {}) }
      if (Object.keys(patch).length === 0) fail('INVALID_ARGUMENT', 'nothing to update: give weight, enabled or metadata')
      // Grace checks the metadata's rules (sizes, beat overrides) as for its own API.
      const { metadata: checkedMetadata } = parseInstance({ ...ref, metadata: patch.metadata ?? {} })
      await naming.update(ref, metadata !== undefined ? { ...patch, metadata: { ...checkedMetadata } } : patch)
      return sendText(reply, 200, 'ok')
    }
  scope.put('/v1/ns/instance', update(true))
  scope.patch('/v1/ns/instance', update(false))

  scope.get('/v1/ns/instance', async (request, reply) => {
    const f = params(request)
    const name = serviceOf(f)
    const cluster = parseCluster(text(f, 'cluster') ?? text(f, 'clusterName') ?? DEFAULT_CLUSTER)
    const { ip, port } = ipPort(f)
    const list = await listOf(naming, name, cluster, textBool(f, 'healthyOnly', false), true)
    const found = list.instances.find((i) => i.ip === ip && i.port === port)
    if (!found) fail('INSTANCE_NOT_FOUND', `no matched ip found! ${ip}:${port} in cluster ${cluster} of service ${name.grouped}`)
    return sendJson(reply, {
      service: name.grouped,
      ip: found.ip,
      port: found.port,
      clusterName: found.cluster,
      weight: found.weight,
      healthy: found.healthy,
      enabled: found.enabled,
      ephemeral: found.ephemeral,
      instanceId: nacosInstanceId(found),
      metadata: found.metadata,
    })
  })

  scope.get('/v1/ns/instance/list', async (request, reply) => {
    const f = params(request)
    const name = serviceOf(f)
    // clientIP, udpPort, app, tenant, env: accepted and unused (Grace pushes nothing over UDP).
    if (text(f, 'udpPort') !== undefined) textInteger(f, 'udpPort', 0, 65535, 0)
    const clusters = text(f, 'clusters') ?? ''
    const list = await listOf(naming, name, clusters, textBool(f, 'healthyOnly', false))
    return sendJson(reply, {
      name: name.grouped,
      groupName: name.group,
      clusters,
      cacheMillis: CACHE_MILLIS,
      hosts: list.instances.map(host),
      // Wall-clock time, as Nacos sends: clients compare it across servers.
      lastRefTime: Date.now(),
      checksum: list.checksum,
      allIPs: false,
      reachProtectionThreshold: list.protectThresholdReached,
      valid: true,
    })
  })

  scope.put('/v1/ns/instance/beat', async (request, reply) => {
    const f = params(request)
    const beatText = text(f, 'beat')
    let beat: Fields | undefined
    if (beatText !== undefined) {
      try {
        beat = JSON.parse(beatText) as Fields
      } catch {
        fail('INVALID_ARGUMENT', 'beat is not valid JSON')
      }
      if (beat === null || typeof beat !== 'object' || Array.isArray(beat)) fail('INVALID_ARGUMENT', 'beat must be a JSON object')
    }
    // A full beat carries the instance; a light beat (lightBeatEnabled) names it in parameters.
    const name = serviceOf(f, 'serviceName', typeof beat?.serviceName === 'string' ? beat.serviceName : undefined)
    const ip = parseIp(beat?.ip ?? required(f, 'ip'))
    const port = parsePort(typeof beat?.port === 'number' ? beat.port : (beat?.port ?? required(f, 'port')))
    const cluster = parseCluster(typeof beat?.cluster === 'string' && beat.cluster !== '' ? beat.cluster : text(f, 'clusterName'))
    const ref: InstanceRef = { namespace: name.namespace, group: name.group, service: name.service, cluster, ip, port }
    let result = await naming.beat({ instance: ref })
    if (!result.registered) {
      // Unknown instance. A full beat holds enough to register it again, which Nacos does (its
      // Node.js client never registers again by itself); a light beat gets the code that makes
      // the Java client register again.
      if (!beat) return sendJson(reply, { clientBeatInterval: result.clientBeatInterval, code: CODE_RESOURCE_NOT_FOUND, lightBeatEnabled: true })
      const weight = typeof beat.weight === 'number' ? beat.weight : 1
      const metadata = beat.metadata === undefined || beat.metadata === null ? {} : beat.metadata
      if (typeof metadata !== 'object' || Array.isArray(metadata)) fail('INVALID_METADATA', 'beat.metadata must be an object')
      const instance = parseInstance({ ...ref, weight, metadata: parseNacosMetadata(JSON.stringify(metadata)), ephemeral: true, clientId: nacosClientId(ref) })
      await naming.register(instance)
      result = { clientBeatInterval: beatTimings(instance).instanceHeartBeatInterval, registered: true }
    }
    return sendJson(reply, { clientBeatInterval: result.clientBeatInterval, code: CODE_OK, lightBeatEnabled: true })
  })

  scope.post('/v1/ns/service', async (request, reply) => {
    const f = params(request)
    const name = serviceOf(f)
    await naming.createService(
      parseServiceCreate({
        ...name,
        ephemeral: textBool(f, 'ephemeral', true),
        protectThreshold: textNumber(f, 'protectThreshold') ?? 0,
        metadata: parseNacosMetadata(text(f, 'metadata')) ?? {},
      }),
    )
    return sendText(reply, 200, 'ok')
  })

  scope.put('/v1/ns/service', async (request, reply) => {
    const f = params(request)
    const name = serviceOf(f)
    const threshold = textNumber(f, 'protectThreshold')
    const metadata = parseNacosMetadata(text(f, 'metadata'))
    const { patch } = parseServicePatch({ ...name, protectThreshold: threshold, metadata })
    await naming.updateService(name, patch)
    return sendText(reply, 200, 'ok')
  })

  scope.delete('/v1/ns/service', async (request, reply) => {
    const name = serviceOf(params(request))
    const { deleted } = await naming.removeService(name)
    if (!deleted) fail('SERVICE_NOT_FOUND', `specified service not exist, serviceName : ${name.grouped}`)
    return sendText(reply, 200, 'ok')
  })

  scope.get('/v1/ns/service', async (request, reply) => {
    const name = serviceOf(params(request))
    const s = await naming.getService(name)
    const list = await naming.list({ ...name, clusters: [], healthyOnly: false, includeDisabled: true, stale: true })
    const clusters = [...new Set(list.instances.map((i) => i.cluster))].sort()
    return sendJson(reply, {
      namespaceId: s.namespace,
      groupName: s.group,
      name: s.service,
      protectThreshold: s.protectThreshold,
      metadata: s.metadata,
      selector: { type: 'none' },
      clusters: clusters.map((c) => ({ name: c, healthChecker: { type: 'NONE' }, metadata: {} })),
    })
  })

  scope.get('/v1/ns/service/list', async (request, reply) => {
    const f = params(request)
    const pageNo = textInteger(f, 'pageNo', 1, 1_000_000, 1)
    const pageSize = textInteger(f, 'pageSize', 1, 1000, 10)
    const namespace = parseNamespace(text(f, 'namespaceId'))
    const group = parseServiceName({ namespace, group: text(f, 'groupName'), service: 'x' }).group
    const page = await naming.listServices(namespace, group, pageNo, pageSize)
    return sendJson(reply, { count: page.count, doms: page.services.map((s) => s.service) })
  })

  scope.get('/v1/ns/operator/metrics', async (_request, reply) => {
    const stats = naming.stats()
    return sendJson(reply, {
      status: 'UP',
      serviceCount: stats.services,
      instanceCount: stats.instances,
      healthyInstanceCount: stats.healthyInstances,
      subscribeCount: 0,
      raftNotifyTaskCount: 0,
      responsibleServiceCount: stats.services,
      responsibleInstanceCount: stats.instances,
      load: 0,
      cpu: 0,
      mem: process.memoryUsage().rss,
    })
  })

  scope.get('/v1/ns/operator/servers', async (request, reply) => {
    textBool(params(request), 'healthy', false)
    return sendJson(reply, {
      servers: servers().map((address) => {
        const colon = address.lastIndexOf(':')
        return { ip: address.slice(0, colon), port: Number(address.slice(colon + 1)), address, state: 'UP', failAccessCnt: 0, extendInfo: {} }
      }),
    })
  })
}
