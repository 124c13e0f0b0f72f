// The naming data model: namespace > group > service > cluster > instance, as in Nacos.

export const DEFAULT_NAMESPACE = 'public'
export const DEFAULT_GROUP = 'DEFAULT_GROUP'
export const DEFAULT_CLUSTER = 'DEFAULT'

/** Heartbeat timing, with the metadata keys that override it per instance (Nacos names). */
export const BEAT_DEFAULTS = { intervalMs: 5_000, unhealthyAfterMs: 15_000, removeAfterMs: 30_000 } as const
export const BEAT_METADATA = {
  intervalMs: 'preserved.heart.beat.interval',
  unhealthyAfterMs: 'preserved.heart.beat.timeout',
  removeAfterMs: 'preserved.ip.delete.timeout',
} as const

export interface ServiceName {
  readonly namespace: string
  readonly group: string
  readonly service: string
}

export interface Instance extends ServiceName {
  readonly cluster: string
  readonly ip: string
  readonly port: number
  readonly weight: number
  readonly enabled: boolean
  readonly healthy: boolean
  readonly ephemeral: boolean
  readonly metadata: Readonly<Record<string, string>>
  /** The lease that keeps an ephemeral instance alive; empty for persistent instances. */
  readonly clientId: string
}

/**
 * The instance with its health set. One literal, in the field order of every other place that
 * builds instances (validate.ts parseInstance, the Distro decoder): a spread would give the copy
 * another hidden class, and code that reads instances (leases, records, the views) deoptimized
 * when the first instances marked unhealthy by a sweep reached it, then compiled again.
 */
export function withHealth(i: Instance, healthy: boolean): Instance {
  return {
    namespace: i.namespace,
    group: i.group,
    service: i.service,
    cluster: i.cluster,
    ip: i.ip,
    port: i.port,
    weight: i.weight,
    enabled: i.enabled,
    healthy,
    ephemeral: i.ephemeral,
    metadata: i.metadata,
    clientId: i.clientId,
  }
}

/**
 * The metadata of every instance registered without any: one frozen object shared by all of them
 * (records are immutable, and nothing may change one in place). A registry's instances mostly
 * carry none, and each node holds every ephemeral instance: an empty object apiece was about 56
 * bytes per instance on its owner, kept for the instance's life.
 */
export const EMPTY_METADATA: Readonly<Record<string, string>> = Object.freeze({})

/** Service-level data kept through the CP path: created explicitly, or by a persistent instance. */
export interface ServiceMeta extends ServiceName {
  readonly ephemeral: boolean
  readonly protectThreshold: number
  readonly metadata: Readonly<Record<string, string>>
  /**
   * Settings per cluster of the service, sorted by cluster name; absent when none were set. An
   * array, not a map keyed by cluster: a cluster may be called "__proto__".
   */
  readonly clusters?: readonly ClusterSettings[]
}

/**
 * How the server checks the health of a cluster's persistent instances. `none`: nobody checks;
 * the health is what the registration or PUT /v1/ns/instances/health last said.
 */
export type HealthCheck = { readonly type: 'none' } | ProbeCheck

/** A check the server runs itself: a TCP connect, or an HTTP GET that must answer a status. */
export type ProbeCheck =
  | { readonly type: 'tcp'; readonly intervalMs: number; readonly timeoutMs: number; readonly port: number }
  | {
      readonly type: 'http'
      readonly intervalMs: number
      readonly timeoutMs: number
      /** 0: the instance's own port. */
      readonly port: number
      readonly path: string
      readonly expectedStatus: number
    }

export interface ClusterSettings {
  readonly cluster: string
  readonly healthCheck: HealthCheck
}

/** The check that governs a cluster's instances, or undefined when the server does not probe them. */
export function probeCheckOf(meta: ServiceMeta | undefined, cluster: string): ProbeCheck | undefined {
  const check = meta?.clusters?.find((c) => c.cluster === cluster)?.healthCheck
  return check === undefined || check.type === 'none' ? undefined : check
}

// Names never hold control characters (validation rejects them), so one makes a safe separator.
const SEP = '\u001f'

export function serviceKey(s: ServiceName): string {
  return s.namespace + SEP + s.group + SEP + s.service
}

/** An instance's identity inside its service. */
export function instanceId(cluster: string, ip: string, port: number): string {
  return cluster + SEP + ip + SEP + port
}

export function instanceIdOf(i: Pick<Instance, 'cluster' | 'ip' | 'port'>): string {
  return instanceId(i.cluster, i.ip, i.port)
}

/**
 * instanceIdOf as one flat string, for a key a map keeps (the views hold one per instance, on
 * every node). `+` of strings of 13 characters or more makes a V8 cons string (a node pointing at
 * the parts); used as a map key it is flattened into a copy, and the map keeps both, 32 bytes
 * more per instance, each copied by every young-generation collection it lives through. join()
 * writes the string out flat at once.
 */
export function storedInstanceId(i: Pick<Instance, 'cluster' | 'ip' | 'port'>): string {
  return [i.cluster, i.ip, i.port].join(SEP)
}

/** Whether a and b name the same instance: same service, cluster, ip and port. */
export function sameSlot(a: ServiceName & Pick<Instance, 'cluster' | 'ip' | 'port'>, b: ServiceName & Pick<Instance, 'cluster' | 'ip' | 'port'>): boolean {
  return a.port === b.port && a.ip === b.ip && a.cluster === b.cluster && a.service === b.service && a.group === b.group && a.namespace === b.namespace
}

/**
 * Whether a and b, instances at the same slot (sameSlot), say the same: owner, weight, enabled,
 * health, kind and metadata.
 */
export function sameContent(a: Instance, b: Instance): boolean {
  if (a.clientId !== b.clientId || a.weight !== b.weight || a.enabled !== b.enabled || a.healthy !== b.healthy || a.ephemeral !== b.ephemeral) return false
  if (a.metadata === b.metadata) return true
  let n = 0
  for (const key in a.metadata) {
    if (!Object.prototype.hasOwnProperty.call(b.metadata, key) || a.metadata[key] !== b.metadata[key]) return false
    n++
  }
  for (const _key in b.metadata) n--
  return n === 0
}

export function kindName(ephemeral: boolean): string {
  return ephemeral ? 'ephemeral' : 'persistent'
}
