// The Eureka REST API (/eureka/apps and /eureka/v2/apps) over Grace's naming service, in
// Eureka's JSON shapes (docs/compatibility.md).
//
// An Eureka application is a Grace service of that name, upper-cased as Eureka does, in
// namespace `public` and group DEFAULT_GROUP; full fetches list every service there, whoever
// registered it. Each Eureka instance is an ephemeral Grace instance with its own lease (client),
// whose beat interval and timeouts come from the instance's leaseInfo. Eureka's own fields
// (instanceId, hostName, vipAddress, URLs, status, ...) ride in the instance's metadata under
// `eureka.` keys, which are hidden from the metadata Eureka clients see.

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { fail } from '../../../core/errors.js'
import type { Fields } from '../../../core/validate.js'
import { BEAT_METADATA, DEFAULT_CLUSTER, DEFAULT_GROUP, DEFAULT_NAMESPACE, type Instance, type ServiceName } from '../../../naming/model.js'
import type { NamingService } from '../../../naming/service.js'
import { type InstanceRef, parseInstance, parseServiceName } from '../../../naming/validate.js'
import { leaseId, sendJson, sendText, setTextErrors } from '../params.js'

const STATUSES = ['UP', 'DOWN', 'STARTING', 'OUT_OF_SERVICE', 'UNKNOWN'] as const
type Status = (typeof STATUSES)[number]
/** Eureka's lease defaults, in seconds. */
const RENEWAL_SECS = 30
const DURATION_SECS = 90
/** How long a change stays in the delta (Eureka's retentionTimeInMSInDeltaQueue). */
const DELTA_RETENTION_MS = 180_000
const M = 'eureka.'
const DEFAULT_DATA_CENTER = { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' }

export interface EurekaDeps {
  naming: NamingService
  logger?: { error(obj: object, msg: string): void }
  /** Called with each scope first (compat/index.ts: the access log's hook). */
  scoped?: (scope: FastifyInstance) => void
}

function appName(value: string): ServiceName {
  return parseServiceName({ namespace: DEFAULT_NAMESPACE, group: DEFAULT_GROUP, service: value.toUpperCase() })
}

function status(value: unknown, field: string, fallback: Status): Status {
  if (value === undefined || value === null || value === '') return fallback
  if (typeof value !== 'string' || !STATUSES.includes(value.toUpperCase() as Status)) fail('INVALID_ARGUMENT', `${field} must be one of ${STATUSES.join(', ')}`)
  return value.toUpperCase() as Status
}

/** Eureka's {"$": 8080, "@enabled": "true"} (numbers and booleans may come as text). */
function portOf(value: unknown, field: string): { port: number | undefined; enabled: boolean } {
  if (value === undefined || value === null) return { port: undefined, enabled: false }
  if (typeof value === 'number' || typeof value === 'string') return { port: Number(value), enabled: true }
  if (typeof value !== 'object' || Array.isArray(value)) fail('INVALID_PORT', `${field} must be {"$": port, "@enabled": true}`)
  const v = value as Fields
  const raw = v.$
  const port = typeof raw === 'number' ? raw : typeof raw === 'string' && /^\d{1,5}$/.test(raw) ? Number(raw) : undefined
  if (raw !== undefined && port === undefined) fail('INVALID_PORT', `${field}.$ must be a port`)
  const enabled = v['@enabled'] === undefined ? true : v['@enabled'] === true || v['@enabled'] === 'true'
  return { port, enabled }
}

function seconds(value: unknown, field: string, fallback: number): number {
  if (value === undefined || value === null) return fallback
  const n = typeof value === 'string' && /^\d{1,6}$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 86_400) fail('INVALID_ARGUMENT', `${field} must be whole seconds in 1..86400`)
  return n
}

function textField(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined
  if (typeof value !== 'string') fail('INVALID_ARGUMENT', `${field} must be text`)
  return value
}

/** The instance a registration describes; throws (nothing stored) when it is malformed. */
function instanceFromBody(app: ServiceName, body: unknown, registeredAt: number, keep: Readonly<Record<string, string>>): Instance {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) fail('INVALID_ARGUMENT', 'the body must be {"instance": {...}} in JSON')
  const i = (body as Fields).instance as Fields | undefined
  if (i === null || typeof i !== 'object' || Array.isArray(i)) fail('INVALID_ARGUMENT', 'the body must be {"instance": {...}} in JSON')
  const hostName = textField(i.hostName, 'instance.hostName')
  const ip = textField(i.ipAddr, 'instance.ipAddr')
  if (!hostName) fail('INVALID_ARGUMENT', 'Missing hostname')
  if (!ip) fail('INVALID_ARGUMENT', 'Missing ip address')
  const bodyApp = textField(i.app, 'instance.app')
  if (bodyApp !== undefined && bodyApp.toUpperCase() !== app.service) fail('INVALID_ARGUMENT', `instance.app ${bodyApp} differs from the application in the path, ${app.service}`)
  const plain = portOf(i.port, 'instance.port')
  const secure = portOf(i.securePort, 'instance.securePort')
  const port = plain.enabled && plain.port !== undefined ? plain.port : secure.enabled ? secure.port : plain.port
  const instanceId = textField(i.instanceId, 'instance.instanceId') ?? hostName
  const lease = (i.leaseInfo ?? {}) as Fields
  if (typeof lease !== 'object' || Array.isArray(lease)) fail('INVALID_ARGUMENT', 'instance.leaseInfo must be an object')
  const renewal = seconds(lease.renewalIntervalInSecs, 'leaseInfo.renewalIntervalInSecs', RENEWAL_SECS)
  const duration = seconds(lease.durationInSecs, 'leaseInfo.durationInSecs', DURATION_SECS)
  const st = status(i.status, 'instance.status', 'UP')
  const dataCenter = i.dataCenterInfo ?? DEFAULT_DATA_CENTER
  if (typeof dataCenter !== 'object' || Array.isArray(dataCenter)) fail('INVALID_ARGUMENT', 'instance.dataCenterInfo must be an object')

  const userMetadata = i.metadata ?? {}
  if (typeof userMetadata !== 'object' || Array.isArray(userMetadata)) fail('INVALID_METADATA', 'instance.metadata must be an object')
  const metadata: Record<string, string> = {}
  for (const [k, v] of Object.entries(userMetadata as Fields)) {
    if (k.startsWith('@')) continue // Java's "@class" of an empty map
    if (k.startsWith(M) || k.startsWith('preserved.')) fail('INVALID_METADATA', `metadata key ${k} is reserved`)
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') fail('INVALID_METADATA', `metadata ${k} must be text`)
    metadata[k] = String(v)
  }
  const eureka: Record<string, string | undefined> = {
    instanceId,
    hostName,
    vipAddress: textField(i.vipAddress, 'instance.vipAddress'),
    secureVipAddress: textField(i.secureVipAddress, 'instance.secureVipAddress'),
    homePageUrl: textField(i.homePageUrl, 'instance.homePageUrl'),
    statusPageUrl: textField(i.statusPageUrl, 'instance.statusPageUrl'),
    healthCheckUrl: textField(i.healthCheckUrl, 'instance.healthCheckUrl'),
    secureHealthCheckUrl: textField(i.secureHealthCheckUrl, 'instance.secureHealthCheckUrl'),
    portEnabled: String(plain.enabled),
    securePort: secure.port === undefined ? undefined : String(secure.port),
    securePortEnabled: String(secure.enabled),
    dataCenterInfo: JSON.stringify(dataCenter),
    status: st,
    overriddenStatus: keep[`${M}overriddenStatus`],
    lastDirtyTimestamp: textField(typeof i.lastDirtyTimestamp === 'number' ? String(i.lastDirtyTimestamp) : i.lastDirtyTimestamp, 'instance.lastDirtyTimestamp'),
    registeredAt: String(registeredAt),
  }
  for (const [k, v] of Object.entries(eureka)) if (v !== undefined) metadata[M + k] = v
  metadata[BEAT_METADATA.intervalMs] = String(renewal * 1000)
  metadata[BEAT_METADATA.unhealthyAfterMs] = String(duration * 1000)
  metadata[BEAT_METADATA.removeAfterMs] = String(duration * 1000)
  const effective = (eureka.overriddenStatus as Status | undefined) ?? st
  return parseInstance({
    ...app,
    cluster: DEFAULT_CLUSTER,
    ip,
    port,
    weight: 1,
    enabled: effective === 'UP',
    ephemeral: true,
    metadata,
    clientId: leaseId('eureka', app.service, instanceId),
  })
}

function idOf(i: Instance): string {
  return i.metadata[`${M}instanceId`] ?? `${i.ip}:${i.service.toLowerCase()}:${i.port}`
}

function statusOf(i: Instance): Status {
  if (!i.healthy) return 'DOWN'
  const override = i.metadata[`${M}overriddenStatus`] as Status | undefined
  if (override) return override
  const own = i.metadata[`${M}status`] as Status | undefined
  if (own) return own
  return i.enabled ? 'UP' : 'OUT_OF_SERVICE'
}

/** An instance as Eureka clients read it; stable while the instance does not change. */
function render(i: Instance): Record<string, unknown> {
  const md = i.metadata
  const userMetadata: Record<string, string> = {}
  for (const [k, v] of Object.entries(md)) if (!k.startsWith(M) && !k.startsWith('preserved.')) userMetadata[k] = v
  const ms = (key: string, fallback: number): number => (md[key] === undefined ? fallback : Number(md[key]))
  const registeredAt = Number(md[`${M}registeredAt`] ?? 0)
  let dataCenterInfo: unknown = DEFAULT_DATA_CENTER
  try {
    if (md[`${M}dataCenterInfo`]) dataCenterInfo = JSON.parse(md[`${M}dataCenterInfo`]!)
  } catch {
    // stored by this adapter from a parsed object, so always JSON; keep the default otherwise
  }
  const vip = md[`${M}vipAddress`] ?? i.service.toLowerCase()
  const securePort = md[`${M}securePort`]
  return {
    instanceId: idOf(i),
    hostName: md[`${M}hostName`] ?? i.ip,
    app: i.service.toUpperCase(),
    ipAddr: i.ip,
    status: statusOf(i),
    overriddenstatus: md[`${M}overriddenStatus`] ?? 'UNKNOWN',
    port: { $: i.port, '@enabled': md[`${M}portEnabled`] ?? 'true' },
    securePort: { $: securePort === undefined ? 443 : Number(securePort), '@enabled': md[`${M}securePortEnabled`] ?? 'false' },
    countryId: 1,
    dataCenterInfo,
    leaseInfo: {
      renewalIntervalInSecs: ms(BEAT_METADATA.intervalMs, RENEWAL_SECS * 1000) / 1000,
      durationInSecs: ms(BEAT_METADATA.unhealthyAfterMs, DURATION_SECS * 1000) / 1000,
      registrationTimestamp: registeredAt,
      lastRenewalTimestamp: registeredAt,
      evictionTimestamp: 0,
      serviceUpTimestamp: registeredAt,
    },
    metadata: userMetadata,
    homePageUrl: md[`${M}homePageUrl`] ?? `http://${i.ip}:${i.port}/`,
    statusPageUrl: md[`${M}statusPageUrl`] ?? `http://${i.ip}:${i.port}/info`,
    healthCheckUrl: md[`${M}healthCheckUrl`] ?? `http://${i.ip}:${i.port}/health`,
    ...(md[`${M}secureHealthCheckUrl`] ? { secureHealthCheckUrl: md[`${M}secureHealthCheckUrl`] } : {}),
    vipAddress: vip,
    secureVipAddress: md[`${M}secureVipAddress`] ?? vip,
    isCoordinatingDiscoveryServer: 'false',
    lastUpdatedTimestamp: String(registeredAt),
    lastDirtyTimestamp: md[`${M}lastDirtyTimestamp`] ?? String(registeredAt),
  }
}

/** Eureka's apps__hashcode: each status with its count, in status order, e.g. "DOWN_1_UP_3_". */
function hashcode(instances: Iterable<Record<string, unknown>>): string {
  const counts = new Map<string, number>()
  for (const i of instances) counts.set(i.status as string, (counts.get(i.status as string) ?? 0) + 1)
  return [...counts.keys()]
    .sort()
    .map((s) => `${s}_${counts.get(s)}_`)
    .join('')
}

interface Rendered {
  readonly app: string
  readonly json: string
  readonly instance: Record<string, unknown>
}

/**
 * Eureka's delta: the instances changed in the last three minutes, with their action. Grace has
 * no change feed for this, so each node diffs the registry as Eureka clients see it whenever one
 * asks for the registry, and keeps what changed for three minutes from when it was seen. Clients
 * fetch every 30 s, so each change reaches every client that keeps fetching.
 */
class DeltaLog {
  private last: Map<string, Rendered> | undefined
  private changes: { at: number; key: string; type: 'ADDED' | 'MODIFIED' | 'DELETED'; r: Rendered }[] = []

  observe(now: number, current: Map<string, Rendered>): void {
    if (this.last) {
      for (const [key, r] of current) {
        const prev = this.last.get(key)
        if (!prev) this.changes.push({ at: now, key, type: 'ADDED', r })
        else if (prev.json !== r.json) this.changes.push({ at: now, key, type: 'MODIFIED', r })
      }
      for (const [key, r] of this.last) if (!current.has(key)) this.changes.push({ at: now, key, type: 'DELETED', r })
    }
    this.last = current
    const keepFrom = now - DELTA_RETENTION_MS
    let drop = 0
    while (drop < this.changes.length && this.changes[drop]!.at < keepFrom) drop++
    if (drop > 0) this.changes.splice(0, drop)
  }

  /** The newest change of each instance in the window, grouped by application. */
  delta(): Map<string, Record<string, unknown>[]> {
    const newest = new Map<string, (typeof this.changes)[number]>()
    for (const c of this.changes) newest.set(c.key, c)
    const apps = new Map<string, Record<string, unknown>[]>()
    for (const c of newest.values()) {
      let list = apps.get(c.r.app)
      if (!list) apps.set(c.r.app, (list = []))
      list.push({ ...c.r.instance, actionType: c.type })
    }
    return apps
  }
}

export function registerEureka(app: FastifyInstance, deps: EurekaDeps): void {
  const delta = new DeltaLog()
  for (const prefix of ['/eureka', '/eureka/v2']) {
    app.register(
      async (scope) => {
        deps.scoped?.(scope)
        // Eureka's server answers errors with a status and little else; clients act on the status.
        setTextErrors(scope, (err) => err.message, deps.logger)
        scope.setNotFoundHandler((request, reply) => sendText(reply, 404, `no route ${request.method} ${request.url.split('?')[0]}`))
        routes(scope, deps.naming, delta)
      },
      { prefix },
    )
  }
}

function routes(scope: FastifyInstance, naming: NamingService, delta: DeltaLog): void {
  /** Every instance of the Eureka view (namespace public, group DEFAULT_GROUP). */
  async function registry(): Promise<Map<string, Rendered>> {
    const out = new Map<string, Rendered>()
    for (let pageNo = 1; ; pageNo++) {
      const page = await naming.listServices(DEFAULT_NAMESPACE, DEFAULT_GROUP, pageNo, 1000, true)
      for (const s of page.services) {
        for (const i of (await instancesOf(s)).values()) {
          const instance = render(i)
          out.set(`${instance.app}\u001f${instance.instanceId}`, { app: instance.app as string, json: JSON.stringify(instance), instance })
        }
      }
      if (pageNo * 1000 >= page.count) break
    }
    delta.observe(Date.now(), out)
    return out
  }

  async function instancesOf(name: ServiceName): Promise<Instance[]> {
    const query = { ...name, clusters: [], healthyOnly: false, includeDisabled: true, stale: false }
    return [...(naming.listNow(query) ?? (await naming.list(query))).instances]
  }

  /** The instance an Eureka path names: first by its Eureka id, else by the rendered id. */
  async function find(request: FastifyRequest): Promise<{ instance: Instance; ref: InstanceRef } | undefined> {
    const p = request.params as { app: string; id: string }
    const name = appName(p.app)
    const instance = (await instancesOf(name)).find((i) => idOf(i) === p.id)
    if (!instance) return undefined
    return { instance, ref: { ...name, cluster: instance.cluster, ip: instance.ip, port: instance.port } }
  }

  function applications(apps: Map<string, Record<string, unknown>[]>, hash: string): object {
    return {
      applications: {
        versions__delta: '1',
        apps__hashcode: hash,
        application: [...apps.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([name, instance]) => ({ name, instance })),
      },
    }
  }

  const full = async (_request: FastifyRequest, reply: FastifyReply) => {
    const all = await registry()
    const apps = new Map<string, Record<string, unknown>[]>()
    for (const r of all.values()) {
      let list = apps.get(r.app)
      if (!list) apps.set(r.app, (list = []))
      list.push(r.instance)
    }
    return sendJson(reply, applications(apps, hashcode([...all.values()].map((r) => r.instance))))
  }
  scope.get('/apps', full)
  scope.get('/apps/', full)

  scope.get('/apps/delta', async (_request, reply) => {
    const all = await registry()
    return sendJson(reply, applications(delta.delta(), hashcode([...all.values()].map((r) => r.instance))))
  })

  scope.get('/apps/:app', async (request, reply) => {
    const name = appName((request.params as { app: string }).app)
    const instances = await instancesOf(name)
    if (instances.length === 0) fail('SERVICE_NOT_FOUND', `application ${name.service} is not registered`)
    return sendJson(reply, { application: { name: name.service, instance: instances.map(render) } })
  })

  scope.get('/apps/:app/:id', async (request, reply) => {
    const found = await find(request)
    if (!found) fail('INSTANCE_NOT_FOUND', 'no such instance')
    return sendJson(reply, { instance: render(found.instance) })
  })

  scope.post('/apps/:app', async (request, reply) => {
    const name = appName((request.params as { app: string }).app)
    // A registration again keeps the status override an operator set, as Eureka does.
    const draft = instanceFromBody(name, request.body, Date.now(), {})
    const existing = (await instancesOf(name)).find((i) => idOf(i) === idOf(draft))
    const instance = existing?.metadata[`${M}overriddenStatus`] ? instanceFromBody(name, request.body, Date.now(), existing.metadata) : draft
    await naming.register(instance)
    return reply.code(204).send()
  })

  // Heartbeat: 404 when the instance is unknown, which makes the client register again.
  scope.put('/apps/:app/:id', async (request, reply) => {
    const q = request.query as Fields
    status(q.status, 'status', 'UP')
    const found = await find(request)
    if (!found) return sendText(reply, 404, 'no such instance')
    const result = await naming.beat({ instance: found.ref })
    if (!result.registered) return sendText(reply, 404, 'no such instance')
    return reply.code(200).send()
  })

  scope.delete('/apps/:app/:id', async (request, reply) => {
    const found = await find(request)
    if (!found) return sendText(reply, 404, 'no such instance')
    await naming.deregister(found.ref)
    return reply.code(200).send()
  })

  const setOverride = (remove: boolean) => async (request: FastifyRequest, reply: FastifyReply) => {
    const q = request.query as Fields
    const value = remove ? status(q.value, 'value', 'UNKNOWN') : status(q.value, 'value', 'UNKNOWN')
    if (!remove && (q.value === undefined || q.value === '')) fail('INVALID_ARGUMENT', 'value is required')
    const found = await find(request)
    if (!found) return sendText(reply, 404, 'no such instance')
    const metadata = { ...found.instance.metadata }
    if (remove) delete metadata[`${M}overriddenStatus`]
    else metadata[`${M}overriddenStatus`] = value
    const effective = remove ? ((metadata[`${M}status`] as Status | undefined) ?? 'UP') : value
    await naming.update(found.ref, { metadata, enabled: effective === 'UP' })
    return reply.code(200).send()
  }
  scope.put('/apps/:app/:id/status', setOverride(false))
  scope.delete('/apps/:app/:id/status', setOverride(true))

  scope.put('/apps/:app/:id/metadata', async (request, reply) => {
    const q = request.query as Fields
    const entries = Object.entries(q)
    if (entries.length === 0) fail('INVALID_ARGUMENT', 'give the metadata to set as key=value parameters')
    const found = await find(request)
    if (!found) return sendText(reply, 404, 'no such instance')
    const metadata = { ...found.instance.metadata }
    for (const [k, v] of entries) {
      if (typeof v !== 'string') fail('INVALID_METADATA', `metadata ${k} must be given once`)
      if (k.startsWith(M) || k.startsWith('preserved.')) fail('INVALID_METADATA', `metadata key ${k} is reserved`)
      metadata[k] = v
    }
    // Grace's rules on metadata (size) hold here too.
    const checked = parseInstance({ ...found.ref, metadata }).metadata
    await naming.update(found.ref, { metadata: { ...checked } })
    return reply.code(200).send()
  })
}
