// Cluster (zone) affinity: prefer candidates in the caller's own cluster, then in the fallback
// clusters in the order given, then any; within the chosen group another balancer picks.
// "Prefer" has a floor: when the caller's cluster has fewer than `minCandidates` instances, the
// group is widened to the next preference as well, so that one surviving instance in a zone
// is not handed every call of that zone.

import { RoundRobinBalancer } from './round-robin.js'
import type { Balancer, Endpoint } from './types.js'

export interface ClusterAffinityOptions {
  /** The caller's own cluster (zone). */
  cluster: string
  /** Clusters to try next, nearest first. Absent: straight to every cluster. */
  fallback?: readonly string[]
  /** Picks within the group. Default round robin. */
  inner?: Balancer
  /** Widen the group until it holds at least this many candidates. Default 1. */
  minCandidates?: number
}

export class ClusterAffinityBalancer implements Balancer {
  readonly name = 'clusterAffinity'
  private readonly order: readonly string[]
  private readonly inner: Balancer
  private readonly minCandidates: number

  constructor(opts: ClusterAffinityOptions) {
    this.order = [opts.cluster, ...(opts.fallback ?? []).filter((c) => c !== opts.cluster)]
    this.inner = opts.inner ?? new RoundRobinBalancer()
    this.minCandidates = Math.max(1, Math.floor(opts.minCandidates ?? 1))
  }

  pick<T extends Endpoint>(candidates: readonly T[], key?: string): T | undefined {
    const allowed = new Set<string>()
    let group: T[] = []
    for (const cluster of this.order) {
      allowed.add(cluster)
      group = candidates.filter((c) => allowed.has(c.cluster ?? 'DEFAULT'))
      if (group.length >= this.minCandidates) return this.inner.pick(group, key) ?? this.inner.pick(candidates, key)
    }
    return this.inner.pick(candidates, key)
  }
}
