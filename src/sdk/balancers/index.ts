// The load balancers, each usable on its own, and a factory by name for options and config files.

import { ClusterAffinityBalancer, type ClusterAffinityOptions } from './cluster-affinity.js'
import { ConsistentHashBalancer } from './consistent-hash.js'
import { LeastFrequentlyUsedBalancer } from './least-frequently-used.js'
import { LeastRecentlyUsedBalancer } from './least-recently-used.js'
import { RandomBalancer } from './random.js'
import { RoundRobinBalancer } from './round-robin.js'
import { SmoothWeightedBalancer } from './smooth-weighted.js'
import type { Balancer, RandomSource } from './types.js'
import { WeightedRandomBalancer } from './weighted-random.js'

export type { Balancer, Endpoint, RandomSource } from './types.js'
export { endpointKey, weightOf } from './types.js'
export { ClusterAffinityBalancer, type ClusterAffinityOptions } from './cluster-affinity.js'
export { ConsistentHashBalancer } from './consistent-hash.js'
export { LeastFrequentlyUsedBalancer } from './least-frequently-used.js'
export { LeastRecentlyUsedBalancer } from './least-recently-used.js'
export { RandomBalancer } from './random.js'
export { RoundRobinBalancer } from './round-robin.js'
export { SmoothWeightedBalancer } from './smooth-weighted.js'
export { WeightedRandomBalancer } from './weighted-random.js'

export const BALANCER_NAMES = [
  'roundRobin',
  'random',
  'weightedRandom',
  'smoothWeighted',
  'leastRecentlyUsed',
  'leastFrequentlyUsed',
  'consistentHash',
  'clusterAffinity',
] as const
export type BalancerName = (typeof BALANCER_NAMES)[number]

/**
 * A balancer by name. `clusterAffinity` needs the caller's cluster (`affinity.cluster`) and
 * picks within the group with weighted random unless `affinity.inner` says otherwise.
 */
export function createBalancer(name: BalancerName, opts: { random?: RandomSource; affinity?: ClusterAffinityOptions } = {}): Balancer {
  const random = opts.random ?? Math.random
  switch (name) {
    case 'roundRobin':
      return new RoundRobinBalancer(Math.floor(random() * 1024))
    case 'random':
      return new RandomBalancer(random)
    case 'weightedRandom':
      return new WeightedRandomBalancer(random)
    case 'smoothWeighted':
      return new SmoothWeightedBalancer()
    case 'leastRecentlyUsed':
      return new LeastRecentlyUsedBalancer()
    case 'leastFrequentlyUsed':
      return new LeastFrequentlyUsedBalancer()
    case 'consistentHash':
      return new ConsistentHashBalancer()
    case 'clusterAffinity':
      if (!opts.affinity) throw new TypeError('clusterAffinity needs affinity.cluster')
      return new ClusterAffinityBalancer({ inner: new WeightedRandomBalancer(random), ...opts.affinity })
    default:
      throw new TypeError(`unknown balancer ${JSON.stringify(name)}; one of ${BALANCER_NAMES.join(', ')}`)
  }
}
