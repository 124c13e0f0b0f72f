// The load balancers. Property tests draw lists and weights from seeds (test/sim/random.ts), so a
// failure reproduces from the seed in its message; distributions are checked against the weights
// within a bound of several standard deviations, which a correct balancer passes for any seed.

import t from 'tap'
import {
  ClusterAffinityBalancer,
  ConsistentHashBalancer,
  LeastFrequentlyUsedBalancer,
  LeastRecentlyUsedBalancer,
  RandomBalancer,
  RoundRobinBalancer,
  SmoothWeightedBalancer,
  WeightedRandomBalancer,
  BALANCER_NAMES,
  createBalancer,
  type Endpoint,
} from '../../../src/sdk/balancers/index.js'
import { Random } from '../../sim/random.js'

interface Inst extends Endpoint {
  readonly ip: string
  readonly port: number
  readonly weight: number
  readonly cluster: string
}

function instances(rng: Random, n: number, maxWeight = 10): Inst[] {
  return Array.from({ length: n }, (_, i) => ({ ip: `10.0.${i >> 8}.${i & 255}`, port: 8000 + i, weight: rng.int(1, maxWeight), cluster: 'DEFAULT' }))
}

function counts<T extends Endpoint>(picks: (T | undefined)[]): Map<string, number> {
  const m = new Map<string, number>()
  for (const p of picks) {
    const k = p ? `${p.ip}:${p.port}` : 'none'
    m.set(k, (m.get(k) ?? 0) + 1)
  }
  return m
}

const SEEDS = [1, 2, 3, 42, 1234, 99991]

t.test('every balancer picks nothing from an empty list and something from a non-empty one', async (t) => {
  for (const name of BALANCER_NAMES) {
    const b = createBalancer(name, { affinity: { cluster: 'DEFAULT' } })
    t.equal(b.pick([]), undefined, `${name}: empty`)
    const one = [{ ip: '10.0.0.1', port: 1 }]
    t.equal(b.pick(one), one[0], `${name}: the only one`)
    t.equal(b.name, name)
  }
  t.throws(() => createBalancer('nope' as never), /unknown balancer/)
  t.throws(() => createBalancer('clusterAffinity'), /affinity/)
})

t.test('weighted random follows the weights (seeded property)', async (t) => {
  for (const seed of SEEDS) {
    const rng = new Random(seed)
    const list = instances(rng, rng.int(2, 8))
    const b = new WeightedRandomBalancer(() => rng.float())
    const N = 40_000
    const got = counts(Array.from({ length: N }, () => b.pick(list)))
    const total = list.reduce((s, i) => s + i.weight, 0)
    for (const i of list) {
      const p = i.weight / total
      const expected = N * p
      const sigma = Math.sqrt(N * p * (1 - p))
      const observed = got.get(`${i.ip}:${i.port}`) ?? 0
      t.ok(Math.abs(observed - expected) <= 5 * sigma, `seed ${seed}: ${i.port} weight ${i.weight}: ${observed} vs ${expected.toFixed(0)}`)
    }
  }
})

t.test('weighted balancers never pick weight 0, and pick nothing when all are 0', async (t) => {
  const rng = new Random(7)
  const list = [
    { ip: '10.0.0.1', port: 1, weight: 0 },
    { ip: '10.0.0.2', port: 2, weight: 3 },
    { ip: '10.0.0.3', port: 3, weight: 0 },
  ]
  for (const b of [new WeightedRandomBalancer(() => rng.float()), new SmoothWeightedBalancer(), new ConsistentHashBalancer()]) {
    for (let i = 0; i < 200; i++) t.equal(b.pick(list, `k${i}`)?.port, 2, b.name)
    t.equal(b.pick(list.map((x) => ({ ...x, weight: 0 }))), undefined, `${b.name}: all zero`)
  }
})

t.test('smooth weighted round robin gives each its exact share in every window, spread out', async (t) => {
  for (const seed of SEEDS) {
    const rng = new Random(seed)
    const list = instances(rng, rng.int(2, 6))
    const total = list.reduce((s, i) => s + i.weight, 0)
    const b = new SmoothWeightedBalancer()
    for (let window = 0; window < 5; window++) {
      const got = counts(Array.from({ length: total }, () => b.pick(list)))
      for (const i of list) t.equal(got.get(`${i.ip}:${i.port}`), i.weight, `seed ${seed} window ${window}: ${i.port}`)
    }
  }
  // nginx's example: weights 5, 1, 1 give a a b a c a a.
  const abc = [
    { ip: '10.0.0.1', port: 1, weight: 5 },
    { ip: '10.0.0.2', port: 2, weight: 1 },
    { ip: '10.0.0.3', port: 3, weight: 1 },
  ]
  const b = new SmoothWeightedBalancer()
  t.same(Array.from({ length: 7 }, () => b.pick(abc)!.port), [1, 1, 2, 1, 3, 1, 1])
  // New objects for the same instances (a refreshed list) keep the state.
  const again = abc.map((x) => ({ ...x }))
  t.same(Array.from({ length: 7 }, () => b.pick(again)!.port), [1, 1, 2, 1, 3, 1, 1])
})

t.test('round robin cycles through every candidate in turn', async (t) => {
  const list = instances(new Random(5), 5)
  const b = new RoundRobinBalancer()
  t.same(Array.from({ length: 10 }, () => b.pick(list)!.port), [8000, 8001, 8002, 8003, 8004, 8000, 8001, 8002, 8003, 8004])
})

t.test('random is uniform whatever the weights (seeded property)', async (t) => {
  for (const seed of SEEDS) {
    const rng = new Random(seed)
    const list = instances(rng, rng.int(2, 8))
    const b = new RandomBalancer(() => rng.float())
    const N = 20_000
    const got = counts(Array.from({ length: N }, () => b.pick(list)))
    const p = 1 / list.length
    const sigma = Math.sqrt(N * p * (1 - p))
    for (const i of list) t.ok(Math.abs((got.get(`${i.ip}:${i.port}`) ?? 0) - N * p) <= 5 * sigma, `seed ${seed}: ${i.port}`)
  }
})

t.test('least recently used visits each candidate once per round, and a newcomer next', async (t) => {
  const list = instances(new Random(3), 4)
  const b = new LeastRecentlyUsedBalancer()
  for (let round = 0; round < 3; round++) {
    const got = new Set(Array.from({ length: 4 }, () => b.pick(list)!.port))
    t.equal(got.size, 4, `round ${round}`)
  }
  const newcomer = { ip: '10.9.9.9', port: 9999, weight: 1, cluster: 'DEFAULT' }
  t.equal(b.pick([...list, newcomer])!.port, 9999, 'never used goes first')
})

t.test('least frequently used keeps use counts within one of each other; a newcomer starts level', async (t) => {
  for (const seed of SEEDS) {
    const rng = new Random(seed)
    const list = instances(rng, rng.int(2, 8))
    const b = new LeastFrequentlyUsedBalancer()
    const n = rng.int(1, 500)
    const got = counts(Array.from({ length: n }, () => b.pick(list)))
    const values = list.map((i) => got.get(`${i.ip}:${i.port}`) ?? 0)
    t.ok(Math.max(...values) - Math.min(...values) <= 1, `seed ${seed}: ${values}`)
  }
  const list = instances(new Random(1), 3)
  const b = new LeastFrequentlyUsedBalancer()
  for (let i = 0; i < 300; i++) b.pick(list)
  const newcomer = { ip: '10.9.9.9', port: 9999, weight: 1, cluster: 'DEFAULT' }
  const next = counts(Array.from({ length: 40 }, () => b.pick([...list, newcomer])))
  t.ok((next.get('10.9.9.9:9999') ?? 0) <= 11, `the newcomer is not flooded: ${next.get('10.9.9.9:9999')}`)
})

t.test('consistent hashing: stable keys, little movement, even spread (seeded property)', async (t) => {
  for (const seed of SEEDS) {
    const rng = new Random(seed)
    const list = instances(rng, rng.int(3, 10))
    const b = new ConsistentHashBalancer()
    const keys = Array.from({ length: 5000 }, (_, i) => `user-${seed}-${i}`)
    const before = new Map(keys.map((k) => [k, b.pick(list, k)!.port]))
    // The same on a second balancer with the list in another order: every client agrees.
    const other = new ConsistentHashBalancer()
    const shuffled = rng.shuffle(list)
    t.ok(keys.every((k) => other.pick(shuffled, k)!.port === before.get(k)), `seed ${seed}: order does not matter`)
    // Even spread: each instance within 35% of its fair share.
    const share = counts(keys.map((k) => b.pick(list, k)))
    for (const i of list) {
      const got = share.get(`${i.ip}:${i.port}`) ?? 0
      t.ok(Math.abs(got - keys.length / list.length) <= 0.35 * (keys.length / list.length), `seed ${seed}: ${i.port} has ${got}`)
    }
    // One instance leaves: only its keys move.
    const gone = list[rng.int(0, list.length - 1)]!
    const less = list.filter((i) => i !== gone)
    for (const k of keys) {
      if (before.get(k) !== gone.port && b.pick(less, k)!.port !== before.get(k)) {
        t.fail(`seed ${seed}: key ${k} moved though its instance lives`)
        break
      }
    }
    // One instance joins: about 1/(n+1) of the keys move, all of them to the newcomer.
    const newcomer = { ip: '10.9.9.9', port: 9999, weight: 1, cluster: 'DEFAULT' }
    let moved = 0
    for (const k of keys) {
      const now = b.pick([...list, newcomer], k)!.port
      if (now !== before.get(k)) {
        moved++
        if (now !== 9999) t.fail(`seed ${seed}: key ${k} moved between old instances`)
      }
    }
    const fair = keys.length / (list.length + 1)
    t.ok(moved > 0.5 * fair && moved < 1.5 * fair, `seed ${seed}: ${moved} keys moved, fair ${fair.toFixed(0)}`)
  }
  t.throws(() => new ConsistentHashBalancer({ replicas: 0 }), RangeError)
})

t.test('cluster affinity prefers the caller\'s cluster, then the fallback order, then any', async (t) => {
  const mk = (cluster: string, port: number) => ({ ip: '10.0.0.1', port, weight: 1, cluster })
  const all = [mk('east', 1), mk('east', 2), mk('west', 3), mk('north', 4)]
  const b = new ClusterAffinityBalancer({ cluster: 'east', fallback: ['north'] })
  const ports = (list: typeof all) => new Set(Array.from({ length: 20 }, () => b.pick(list)!.port))
  t.same([...ports(all)].sort(), [1, 2], 'own cluster only while it has instances')
  t.same([...ports(all.filter((i) => i.cluster !== 'east'))], [4], 'then the fallback cluster')
  t.same([...ports([mk('west', 3), mk('south', 5)])].sort(), [3, 5], 'then any')
  const wide = new ClusterAffinityBalancer({ cluster: 'east', minCandidates: 3, fallback: ['west'] })
  const got = new Set(Array.from({ length: 30 }, () => wide.pick(all)!.port))
  t.same([...got].sort(), [1, 2, 3], 'widened to reach minCandidates')
  // With weights inside the group (seeded): the own cluster's weights are followed.
  const rng = new Random(11)
  const weighted = new ClusterAffinityBalancer({ cluster: 'east', inner: new WeightedRandomBalancer(() => rng.float()) })
  const list = [{ ...mk('east', 1), weight: 3 }, { ...mk('east', 2), weight: 1 }, mk('west', 3)]
  const c = counts(Array.from({ length: 8000 }, () => weighted.pick(list)))
  t.equal(c.get('10.0.0.1:3'), undefined)
  t.ok(Math.abs((c.get('10.0.0.1:1') ?? 0) - 6000) < 250, `3:1 within east: ${c.get('10.0.0.1:1')}`)
})

t.test('per-instance state stays bounded when instances come and go', async (t) => {
  const b = new LeastRecentlyUsedBalancer()
  const s = new SmoothWeightedBalancer()
  for (let gen = 0; gen < 200; gen++) {
    const list = Array.from({ length: 5 }, (_, i) => ({ ip: '10.0.0.1', port: gen * 10 + i + 1 }))
    for (let i = 0; i < 5; i++) {
      b.pick(list)
      s.pick(list)
    }
  }
  t.ok(((b as unknown as { lastUsed: Map<string, number> }).lastUsed.size) <= 16)
  t.ok(((s as unknown as { scores: Map<string, number> }).scores.size) <= 16)
})
