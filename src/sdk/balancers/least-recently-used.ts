// Least recently used: picks the candidate whose last pick is the oldest (never picked counts as
// oldest of all; ties go to the earlier in the list). Spreads calls evenly and sends the next
// call to a newly registered instance at once.

import { type Balancer, type Endpoint, endpointKey, pruneTable } from './types.js'

export class LeastRecentlyUsedBalancer implements Balancer {
  readonly name = 'leastRecentlyUsed'
  /** A pick counter rather than a clock: two picks in the same millisecond still order. */
  private tick = 0
  private readonly lastUsed = new Map<string, number>()

  pick<T extends Endpoint>(candidates: readonly T[]): T | undefined {
    let best: T | undefined
    let bestAt = Infinity
    let bestKey = ''
    for (const c of candidates) {
      const key = endpointKey(c)
      const at = this.lastUsed.get(key) ?? -1
      if (at < bestAt) {
        best = c
        bestAt = at
        bestKey = key
      }
    }
    if (!best) return undefined
    this.lastUsed.set(bestKey, ++this.tick)
    pruneTable(this.lastUsed, candidates)
    return best
  }
}
