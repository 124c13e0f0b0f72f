// Round robin: each pick takes the next candidate in turn, ignoring weights. The position is a
// counter, not an index into one list, so a list that changes keeps the rotation going.

import type { Balancer, Endpoint } from './types.js'

export class RoundRobinBalancer implements Balancer {
  readonly name = 'roundRobin'
  private next: number

  /** `start`: where the rotation begins (a random start spreads many clients over the list). */
  constructor(start = 0) {
    this.next = Math.max(0, Math.floor(start))
  }

  pick<T extends Endpoint>(candidates: readonly T[]): T | undefined {
    if (candidates.length === 0) return undefined
    const chosen = candidates[this.next % candidates.length]
    // Wrap well before 2^53 so the counter never loses precision.
    this.next = (this.next + 1) % 1_000_000_007
    return chosen
  }
}
