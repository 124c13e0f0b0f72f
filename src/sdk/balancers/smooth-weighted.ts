// Smooth weighted round robin (the nginx upstream algorithm): each pick adds every candidate's
// weight to its running score, takes the highest, and takes the total off the winner. Over any
// window of total-weight picks each candidate is picked exactly its weight's share, and the picks
// of a heavy instance are spread out rather than bunched (weights 5,1,1 give a a b a c a a, not
// a a a a a b c).

import { type Balancer, type Endpoint, endpointKey, pruneTable, weightOf } from './types.js'

export class SmoothWeightedBalancer implements Balancer {
  readonly name = 'smoothWeighted'
  private readonly scores = new Map<string, number>()

  pick<T extends Endpoint>(candidates: readonly T[]): T | undefined {
    let total = 0
    let best: T | undefined
    let bestScore = -Infinity
    let bestKey = ''
    for (const c of candidates) {
      const w = weightOf(c)
      if (w <= 0) continue
      const key = endpointKey(c)
      const score = (this.scores.get(key) ?? 0) + w
      this.scores.set(key, score)
      total += w
      if (score > bestScore) {
        best = c
        bestScore = score
        bestKey = key
      }
    }
    if (!best) return undefined
    this.scores.set(bestKey, bestScore - total)
    pruneTable(this.scores, candidates)
    return best
  }
}
