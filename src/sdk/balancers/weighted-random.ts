// Weighted random: a candidate is picked with probability weight / total weight. Instances of
// weight 0 are never picked (Nacos's convention for "drain this one").

import { type Balancer, type Endpoint, type RandomSource, weightOf } from './types.js'

export class WeightedRandomBalancer implements Balancer {
  readonly name = 'weightedRandom'
  constructor(private readonly random: RandomSource = Math.random) {}

  pick<T extends Endpoint>(candidates: readonly T[]): T | undefined {
    let total = 0
    for (const c of candidates) total += weightOf(c)
    if (total <= 0) return undefined
    let point = this.random() * total
    let last: T | undefined
    for (const c of candidates) {
      const w = weightOf(c)
      if (w <= 0) continue
      last = c
      if (point < w) return c
      point -= w
    }
    // Rounding can leave point a hair above the last weight: that one it is.
    return last
  }
}
