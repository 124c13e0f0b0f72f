// Input rules for the naming API. Each parser takes the request's fields (JSON body, decoded
// protobuf, or query string) and returns typed, defaulted values, or throws a GraceError.

import { isIP } from 'node:net'
import { fail } from '../core/errors.js'
import { LIMITS } from '../core/limits.js'
import { type Fields, asFields, bool, name, optionalBool, queryBool, stringMap } from '../core/validate.js'
import type { EphemeralOp } from './service.js'
import { sharedName } from './shared-names.js'
import {
  BEAT_METADATA,
  DEFAULT_CLUSTER,
  DEFAULT_GROUP,
  DEFAULT_NAMESPACE,
  type HealthCheck,
  EMPTY_METADATA,
  type Instance,
  type ServiceMeta,
  type ServiceName,
} from './model.js'

/** '@@' joins group and service in Nacos names ("GROUP@@service"), so neither may hold it. */
const NACOS_JOINER = ['@@']
/** Queries list clusters comma-separated. */
const CLUSTER_FORBIDDEN = [',']
/** Per-instance beat overrides: at least 100 ms, at most a day. */
const MAX_BEAT_OVERRIDE_MS = 24 * 3600 * 1000

export function parseNamespace(value: unknown): string {
  return name(value, 'namespace', DEFAULT_NAMESPACE)
}

export function parseGroup(value: unknown): string {
  return name(value, 'group', DEFAULT_GROUP, NACOS_JOINER)
}

export function parseServiceName(f: Fields): ServiceName {
  return {
    namespace: parseNamespace(f.namespace),
    group: parseGroup(f.group),
    service: name(f.service, 'service', undefined, NACOS_JOINER),
  }
}

export function parseCluster(value: unknown): string {
  return name(value, 'cluster', DEFAULT_CLUSTER, CLUSTER_FORBIDDEN)
}

export function parseIp(value: unknown): string {
  if (value === undefined || value === null || value === '') fail('INVALID_IP', 'ip is required')
  if (typeof value !== 'string' || isIP(value) === 0) fail('INVALID_IP', `ip ${JSON.stringify(value)} is not an IPv4 or IPv6 address`)
  return value
}

/** A port from JSON (a number) or a query string (digits). */
export function parsePort(value: unknown): number {
  if (value === undefined || value === null || value === '') fail('INVALID_PORT', 'port is required')
  const n = typeof value === 'string' && /^\d{1,5}$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
    fail('INVALID_PORT', `port ${JSON.stringify(value)} is not an integer in 1..65535`)
  }
  return n
}

export function parseWeight(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > LIMITS.maxWeight) {
    fail('INVALID_WEIGHT', `weight ${JSON.stringify(value)} is not a number in 0..${LIMITS.maxWeight}`)
  }
  return value
}

const BEAT_METADATA_KEYS = Object.values(BEAT_METADATA)

/** An instance's metadata, checked; none given is the shared EMPTY_METADATA. */
export function parseMetadata(value: unknown): Readonly<Record<string, string>> {
  if (value === undefined || value === null) return EMPTY_METADATA
  const metadata = stringMap(value, 'metadata', LIMITS.maxMetadataBytes)
  for (const key of BEAT_METADATA_KEYS) {
    const v = metadata[key]
    if (v === undefined) continue
    if (!/^\d{1,9}$/.test(v) || Number(v) < 100 || Number(v) > MAX_BEAT_OVERRIDE_MS) {
      fail('INVALID_METADATA', `metadata ${key} must be milliseconds in 100..${MAX_BEAT_OVERRIDE_MS}`)
    }
  }
  return metadata
}

/** POST /v1/ns/instances. A persistent instance has no client; its clientId is ignored. */
export function parseInstance(f: Fields): Instance {
  const ephemeral = bool(f.ephemeral, 'ephemeral', true)
  const ip = parseIp(f.ip)
  const port = parsePort(f.port)
  const { namespace, group, service } = parseServiceName(f)
  // One literal rather than a spread of the name: every registration's instance record is
  // built here, and a literal gives them all one shape (see tsconfig.json on spreads). The names
  // are the ones other instances hold already (shared-names.ts): an instance lives long.
  return {
    namespace: sharedName(namespace),
    group: sharedName(group),
    service: sharedName(service),
    cluster: sharedName(parseCluster(f.cluster)),
    ip,
    port,
    weight: parseWeight(f.weight) ?? 1,
    enabled: bool(f.enabled, 'enabled', true),
    healthy: bool(f.healthy, 'healthy', true),
    ephemeral,
    metadata: parseMetadata(f.metadata),
    // join, not `${ip}:${port}`: the default id is kept as long as the client lives, and a
    // template of 13 characters or more makes a cons string (model.ts storedInstanceId).
    clientId: ephemeral ? name(f.clientId, 'clientId', [ip, port].join(':')) : '',
  }
}

export interface InstanceRef extends ServiceName {
  readonly cluster: string
  readonly ip: string
  readonly port: number
}

/** DELETE /v1/ns/instances: names one instance. */
export function parseInstanceRef(f: Fields): InstanceRef {
  return { ...parseServiceName(f), cluster: parseCluster(f.cluster), ip: parseIp(f.ip), port: parsePort(f.port) }
}

export interface InstancePatch {
  readonly weight?: number
  readonly enabled?: boolean
  /** Persistent instances only: set by hand until the server's health checks take over. */
  readonly healthy?: boolean
  readonly metadata?: Readonly<Record<string, string>>
}

/** PATCH /v1/ns/instances: absent fields stay as they are; metadata, when given, replaces. */
export function parseInstancePatch(f: Fields): { ref: InstanceRef; patch: InstancePatch } {
  const ref = parseInstanceRef(f)
  const patch: { weight?: number; enabled?: boolean; healthy?: boolean; metadata?: Readonly<Record<string, string>> } = {}
  const weight = parseWeight(f.weight)
  if (weight !== undefined) patch.weight = weight
  const enabled = optionalBool(f.enabled, 'enabled')
  if (enabled !== undefined) patch.enabled = enabled
  const healthy = optionalBool(f.healthy, 'healthy')
  if (healthy !== undefined) patch.healthy = healthy
  if (f.metadata !== undefined && f.metadata !== null) patch.metadata = parseMetadata(f.metadata)
  if (Object.keys(patch).length === 0) fail('INVALID_ARGUMENT', 'nothing to update: give weight, enabled, healthy or metadata')
  return { ref, patch }
}

/**
 * PUT /v1/ns/instances/health: a persistent instance and the health to give it. `healthy` is a
 * JSON boolean in a body, true/false/1/0 in a query string.
 */
export function parseInstanceHealth(f: Fields, fromQuery: boolean): { ref: InstanceRef; healthy: boolean } {
  const ref = parseInstanceRef(f)
  if (f.healthy === undefined || f.healthy === null || f.healthy === '') fail('INVALID_ARGUMENT', 'healthy is required: true or false')
  const healthy = fromQuery ? queryBool(f.healthy, 'healthy', true) : optionalBool(f.healthy, 'healthy')!
  return { ref, healthy }
}

/** Defaults of a cluster's health check fields. */
export const HEALTH_CHECK_DEFAULTS = { intervalMs: 5_000, timeoutMs: 2_000, port: 0, path: '/', expectedStatus: 200 } as const

const HEALTH_CHECK_TYPES = ['none', 'tcp', 'http'] as const
const HEALTH_CHECK_FIELDS: Record<(typeof HEALTH_CHECK_TYPES)[number], readonly string[]> = {
  none: ['type'],
  tcp: ['type', 'intervalMs', 'timeoutMs', 'port'],
  http: ['type', 'intervalMs', 'timeoutMs', 'port', 'path', 'expectedStatus'],
}
/** An HTTP path as it goes on the request line: visible ASCII, no spaces; percent-encode the rest. */
const PROBE_PATH = /^\/[\x21-\x7e]*$/

function checkInt(f: Fields, field: string, min: number, max: number, fallback: number): number {
  const value = f[field]
  if (value === undefined || value === null) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail('INVALID_HEALTH_CHECK', `healthCheck.${field} must be an integer in ${min}..${max}`)
  }
  return value
}

/**
 * A cluster's health check: `{"type":"tcp"}`, `{"type":"http","path":"/health"}` or
 * `{"type":"none"}`, with optional timing. A field the type does not use is refused rather than
 * ignored, so that a typo in the type does not leave a check silently different from the one meant.
 */
export function parseHealthCheck(value: unknown): HealthCheck {
  if (value === undefined || value === null) fail('INVALID_HEALTH_CHECK', 'healthCheck is required')
  if (typeof value !== 'object' || Array.isArray(value)) fail('INVALID_HEALTH_CHECK', 'healthCheck must be an object')
  // Protobuf leaves an empty path out; JSON's "" means the same.
  const f: Fields = {}
  for (const [k, v] of Object.entries(value)) if (v !== undefined && v !== null && v !== '') f[k] = v
  const raw = f.type
  const type = typeof raw === 'string' ? raw.toLowerCase() : raw
  if (!HEALTH_CHECK_TYPES.includes(type as never)) {
    fail('INVALID_HEALTH_CHECK', `healthCheck.type must be one of ${HEALTH_CHECK_TYPES.join(', ')}`)
  }
  const t = type as (typeof HEALTH_CHECK_TYPES)[number]
  for (const k of Object.keys(f)) {
    if (!HEALTH_CHECK_FIELDS[t].includes(k)) fail('INVALID_HEALTH_CHECK', `healthCheck.${k} does not apply to a ${t} check`)
  }
  if (t === 'none') return { type: 'none' }
  const intervalMs = checkInt(f, 'intervalMs', LIMITS.minProbeIntervalMs, LIMITS.maxProbeIntervalMs, HEALTH_CHECK_DEFAULTS.intervalMs)
  const timeoutMs = checkInt(f, 'timeoutMs', LIMITS.minProbeTimeoutMs, LIMITS.maxProbeTimeoutMs, HEALTH_CHECK_DEFAULTS.timeoutMs)
  // One probe at a time per instance: a probe must end before the next is due.
  if (timeoutMs > intervalMs) fail('INVALID_HEALTH_CHECK', `healthCheck.timeoutMs (${timeoutMs}) must not exceed intervalMs (${intervalMs})`)
  const port = checkInt(f, 'port', 0, 65535, HEALTH_CHECK_DEFAULTS.port)
  if (t === 'tcp') return { type: 'tcp', intervalMs, timeoutMs, port }
  const path = f.path ?? HEALTH_CHECK_DEFAULTS.path
  if (typeof path !== 'string') fail('INVALID_HEALTH_CHECK', 'healthCheck.path must be a string')
  if (path.length > LIMITS.maxProbePathBytes) fail('INVALID_HEALTH_CHECK', `healthCheck.path is over ${LIMITS.maxProbePathBytes} bytes`)
  if (!PROBE_PATH.test(path)) {
    fail('INVALID_HEALTH_CHECK', 'healthCheck.path must start with / and hold only visible ASCII (percent-encode spaces and other characters)')
  }
  const expectedStatus = checkInt(f, 'expectedStatus', 100, 599, HEALTH_CHECK_DEFAULTS.expectedStatus)
  return { type: 'http', intervalMs, timeoutMs, port, path, expectedStatus }
}

export interface ClusterRef extends ServiceName {
  readonly cluster: string
}

/** Names a cluster of a service; `cluster` defaults to DEFAULT as everywhere. */
export function parseClusterRef(f: Fields): ClusterRef {
  return { ...parseServiceName(f), cluster: parseCluster(f.cluster) }
}

/** PUT /v1/ns/clusters. */
export function parseClusterSettings(f: Fields): { ref: ClusterRef; healthCheck: HealthCheck } {
  return { ref: parseClusterRef(f), healthCheck: parseHealthCheck(f.healthCheck) }
}

/** PUT /v1/ns/instances/beat: a clientId, an instance, or both. */
export interface BeatRequest {
  readonly clientId?: string
  readonly instance?: InstanceRef
}

export function parseBeat(f: Fields): BeatRequest {
  const hasInstance = f.service !== undefined && f.service !== ''
  const hasClient = f.clientId !== undefined && f.clientId !== ''
  if (!hasInstance && !hasClient) fail('INVALID_ARGUMENT', 'a beat names a clientId, or a service with ip and port')
  return {
    ...(hasClient ? { clientId: name(f.clientId, 'clientId') } : {}),
    ...(hasInstance ? { instance: parseInstanceRef(f) } : {}),
  }
}

export interface InstanceQuery extends ServiceName {
  /** Empty: every cluster. */
  readonly clusters: readonly string[]
  readonly healthyOnly: boolean
  readonly includeDisabled: boolean
  /** Answer from this node's state without confirming it is current (faster, may lag). */
  readonly stale: boolean
}

/** GET /v1/ns/instances. */
export function parseInstanceQuery(q: Fields): InstanceQuery {
  let clusters: string[] = []
  if (q.clusters !== undefined && q.clusters !== '') {
    if (typeof q.clusters !== 'string') fail('INVALID_ARGUMENT', 'clusters must be a comma-separated list')
    // Empty entries (a trailing comma) name nothing; they must not default to DEFAULT.
    clusters = [...new Set(q.clusters.split(',').filter((c) => c !== '').map(parseCluster))].sort()
    if (clusters.length === 0) fail('INVALID_ARGUMENT', 'clusters names no cluster')
    if (clusters.length > LIMITS.maxClusterFilter) fail('INVALID_ARGUMENT', `at most ${LIMITS.maxClusterFilter} clusters`)
  }
  const { namespace, group, service } = parseServiceName(q)
  return {
    namespace,
    group,
    service,
    clusters,
    healthyOnly: queryBool(q.healthyOnly, 'healthyOnly', false),
    includeDisabled: queryBool(q.includeDisabled, 'includeDisabled', false),
    stale: queryBool(q.stale, 'stale', false),
  }
}

export function parseProtectThreshold(value: unknown): number | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 1) {
    fail('INVALID_ARGUMENT', 'protectThreshold must be a number in 0..1')
  }
  return value
}

/** POST /v1/ns/services. A new service is ephemeral unless it says otherwise, as instances are. */
export function parseServiceCreate(f: Fields): ServiceMeta {
  return {
    ...parseServiceName(f),
    ephemeral: bool(f.ephemeral, 'ephemeral', true),
    protectThreshold: parseProtectThreshold(f.protectThreshold) ?? 0,
    metadata: stringMap(f.metadata, 'metadata', LIMITS.maxMetadataBytes),
  }
}

export interface ServicePatch {
  readonly ephemeral?: boolean
  readonly protectThreshold?: number
  readonly metadata?: Record<string, string>
}

/** PATCH /v1/ns/services: absent fields stay as they are; metadata, when given, replaces. */
export function parseServicePatch(f: Fields): { name: ServiceName; patch: ServicePatch } {
  const patch: { ephemeral?: boolean; protectThreshold?: number; metadata?: Record<string, string> } = {}
  const ephemeral = optionalBool(f.ephemeral, 'ephemeral')
  if (ephemeral !== undefined) patch.ephemeral = ephemeral
  const threshold = parseProtectThreshold(f.protectThreshold)
  if (threshold !== undefined) patch.protectThreshold = threshold
  if (f.metadata !== undefined && f.metadata !== null) patch.metadata = stringMap(f.metadata, 'metadata', LIMITS.maxMetadataBytes)
  if (Object.keys(patch).length === 0) fail('INVALID_ARGUMENT', 'nothing to update: give ephemeral, protectThreshold or metadata')
  return { name: parseServiceName(f), patch }
}

/**
 * A change forwarded by a peer (naming.service's EphemeralOp), checked as strictly as a client's
 * request: peers are authenticated, but a malformed change must never reach the store.
 */
export function parseEphemeralOp(value: unknown): EphemeralOp {
  const f = objectFields(value, 'forwarded change')
  switch (f.op) {
    case 'register': {
      const instance = parseInstance(objectFields(f.instance, 'instance'))
      if (!instance.ephemeral) fail('INVALID_ARGUMENT', 'a forwarded registration is of an ephemeral instance')
      return { op: 'register', instance }
    }
    case 'deregister':
      return { op: 'deregister', ref: parseInstanceRef(objectFields(f.ref, 'ref')), ...(f.clientId === undefined ? {} : { clientId: name(f.clientId, 'clientId') }) }
    case 'update': {
      const { ref, patch } = parseInstancePatch(Object.assign({}, objectFields(f.ref, 'ref'), objectFields(f.patch, 'patch')))
      return { op: 'update', ref, patch }
    }
    case 'beat': {
      const request = objectFields(f.request, 'request')
      const instance = request.instance === undefined ? {} : objectFields(request.instance, 'instance')
      return { op: 'beat', request: parseBeat(Object.assign({}, instance, request.clientId === undefined ? {} : { clientId: request.clientId })) }
    }
    default:
      fail('INVALID_ARGUMENT', `unknown forwarded change ${JSON.stringify(f.op)}`)
  }
}

/** Fields of a value that must be an object (absent is an error, unlike a request body). */
function objectFields(value: unknown, what: string): Fields {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail('INVALID_ARGUMENT', `${what} must be an object`)
  return asFields(value, what)
}
