// The one interface every load balancer implements. A balancer picks one of the candidates it is
// handed; it never filters by health (the caller hands it the instances it may call) and never
// does IO. Stateful balancers (round robin, smooth weighted, LRU, LFU) remember instances by
// their identity (cluster, ip, port), so a list that is rebuilt with new objects after every
// registry change keeps its state.

/** What a balancer needs of an instance; the SDK's Instance has all of it. */
export interface Endpoint {
  readonly ip: string
  readonly port: number
  /** Absent: 1. Weighted balancers never pick a weight of 0 or less. */
  readonly weight?: number
  /** Absent: DEFAULT. */
  readonly cluster?: string
}

export interface Balancer {
  /** Short name, as used in options (`roundRobin`, `consistentHash`, ...). */
  readonly name: string
  /**
   * One of `candidates`, or undefined when none can be picked (an empty list, or only zero
   * weights for a weighted balancer). `key` matters to consistent hashing only.
   */
  pick<T extends Endpoint>(candidates: readonly T[], key?: string): T | undefined
}

/** A source of uniform numbers in [0, 1): Math.random by default, a seeded one in tests. */
export type RandomSource = () => number

export function endpointKey(e: Endpoint): string {
  return `${e.cluster ?? 'DEFAULT'}\u001f${e.ip}\u001f${e.port}`
}

export function weightOf(e: Endpoint): number {
  const w = e.weight ?? 1
  return Number.isFinite(w) && w > 0 ? w : 0
}

/**
 * State kept per instance is bounded: when a balancer's table holds more than this many entries
 * (or more than twice the candidates), entries of instances no longer offered are dropped.
 */
export const MAX_TRACKED_ENDPOINTS = 10_000

/** Drops entries of endpoints not among `live` once `table` has grown past its bound. */
export function pruneTable<V>(table: Map<string, V>, live: readonly Endpoint[]): void {
  if (table.size <= Math.min(MAX_TRACKED_ENDPOINTS, Math.max(16, live.length * 2))) return
  const keep = new Set(live.map(endpointKey))
  for (const k of table.keys()) if (!keep.has(k)) table.delete(k)
}
