// Consistent hashing with virtual nodes: each candidate is placed on a 32-bit ring at `replicas`
// points (md5 of "<cluster>/<ip>:<port>#<n>", four points per digest, as ketama does), and a key
// goes to the first point at or after its own hash. The mapping depends only on the set of
// candidates, never on their order or on earlier picks, so every client maps a key alike:
//
// - while an instance stays in the list, a key on it stays on it when others leave;
// - a newcomer takes about 1/(n+1) of the keys, from all the others evenly, and nothing moves
//   between the instances that were already there.
//
// Instances of weight 0 or less are left off the ring. Picks without a key hash "".

import { createHash } from 'node:crypto'
import { type Balancer, type Endpoint, endpointKey, weightOf } from './types.js'

export const DEFAULT_REPLICAS = 160
/** Points on one ring at most, so a 50,000-instance service cannot build a ring of 8 million. */
export const MAX_RING_POINTS = 1_000_000

interface Ring {
  readonly signature: string
  byList: readonly Endpoint[]
  readonly hashes: Uint32Array
  /** owners[i]: index into the sorted endpoint keys of the point hashes[i]. */
  readonly owners: Uint32Array
  readonly keys: readonly string[]
}

export class ConsistentHashBalancer implements Balancer {
  readonly name = 'consistentHash'
  private readonly replicas: number
  private ring: Ring | undefined
  /** The last list handed in and its live endpoints: the SDK hands the same array until a change. */
  private lastList: readonly Endpoint[] | undefined
  private lastByKey: Map<string, Endpoint> | undefined

  constructor(opts: { replicas?: number } = {}) {
    const r = opts.replicas ?? DEFAULT_REPLICAS
    if (!Number.isInteger(r) || r < 1 || r > 10_000) throw new RangeError('replicas must be an integer in 1..10000')
    // Whole digests: four points each.
    this.replicas = Math.ceil(r / 4) * 4
  }

  pick<T extends Endpoint>(candidates: readonly T[], key = ''): T | undefined {
    let byKey = this.lastByKey as Map<string, T> | undefined
    if (candidates !== this.lastList || !byKey) {
      byKey = new Map<string, T>()
      for (const c of candidates) if (weightOf(c) > 0) byKey.set(endpointKey(c), c)
      this.lastList = candidates
      this.lastByKey = byKey
    }
    if (byKey.size === 0) return undefined
    const ring = candidates === this.lastList && this.ring?.byList === candidates ? this.ring : this.ringFor([...byKey.keys()].sort(), candidates)
    const h = hash32(key)
    // First point at or after h, wrapping around.
    let lo = 0
    let hi = ring.hashes.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (ring.hashes[mid]! < h) lo = mid + 1
      else hi = mid
    }
    const at = lo === ring.hashes.length ? 0 : lo
    return byKey.get(ring.keys[ring.owners[at]!]!)
  }

  private ringFor(keys: readonly string[], list: readonly Endpoint[]): Ring {
    const signature = keys.join('\u001e')
    if (this.ring?.signature === signature) {
      this.ring.byList = list
      return this.ring
    }
    const perNode = Math.max(4, Math.min(this.replicas, Math.floor(MAX_RING_POINTS / keys.length / 4) * 4))
    const points: { h: number; owner: number }[] = []
    keys.forEach((k, owner) => {
      for (let d = 0; d < perNode / 4; d++) {
        const digest = createHash('md5').update(`${k}#${d}`).digest()
        for (let j = 0; j < 4; j++) points.push({ h: digest.readUInt32LE(j * 4), owner })
      }
    })
    // Ties (vanishingly rare) are broken by owner so that every client builds the same ring.
    points.sort((a, b) => a.h - b.h || a.owner - b.owner)
    this.ring = {
      signature,
      byList: list,
      keys,
      hashes: Uint32Array.from(points, (p) => p.h),
      owners: Uint32Array.from(points, (p) => p.owner),
    }
    return this.ring
  }
}

export function hash32(key: string): number {
  return createHash('md5').update(key).digest().readUInt32LE(0)
}
