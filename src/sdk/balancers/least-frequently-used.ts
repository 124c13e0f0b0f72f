// Least frequently used: picks the candidate picked the fewest times so far (ties go to the
// earlier in the list). A newcomer starts level with the least used of the others, not at 0, so
// it is not flooded with every call until it has caught up with instances that ran for hours.

import { type Balancer, type Endpoint, endpointKey, pruneTable } from './types.js'

export class LeastFrequentlyUsedBalancer implements Balancer {
  readonly name = 'leastFrequentlyUsed'
  private readonly uses = new Map<string, number>()

  pick<T extends Endpoint>(candidates: readonly T[]): T | undefined {
    if (candidates.length === 0) return undefined
    let floor = Infinity
    for (const c of candidates) {
      const n = this.uses.get(endpointKey(c))
      if (n !== undefined && n < floor) floor = n
    }
    if (floor === Infinity) floor = 0
    let best: T | undefined
    let bestUses = Infinity
    let bestKey = ''
    for (const c of candidates) {
      const key = endpointKey(c)
      let n = this.uses.get(key)
      if (n === undefined) this.uses.set(key, (n = floor))
      if (n < bestUses) {
        best = c
        bestUses = n
        bestKey = key
      }
    }
    this.uses.set(bestKey, bestUses + 1)
    pruneTable(this.uses, candidates)
    return best
  }
}
