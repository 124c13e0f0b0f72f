// Random: every candidate equally likely, weights ignored.

import type { Balancer, Endpoint, RandomSource } from './types.js'

export class RandomBalancer implements Balancer {
  readonly name = 'random'
  constructor(private readonly random: RandomSource = Math.random) {}

  pick<T extends Endpoint>(candidates: readonly T[]): T | undefined {
    if (candidates.length === 0) return undefined
    return candidates[Math.min(candidates.length - 1, Math.floor(this.random() * candidates.length))]
  }
}
