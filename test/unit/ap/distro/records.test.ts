// records.ts: writes, the per-instance merge, versions, tombstones; and the property that makes
// Distro safe to batch and retry: the merge is a join, so any order and any duplication of
// deliveries leaves every node with the same state.

import t from 'tap'
import { bucketHash } from '../../../../src/ap/distro/digest.js'
import { SEED_A, SEED_B, hashString } from '../../../../src/ap/distro/hash.js'
import { DISTRO_LIMITS } from '../../../../src/ap/distro/limits.js'
import { SALT_BITS, TombstoneSet, fingerprint, instanceKey, instanceKeyHash, mergeClient, mergeEntries, nextVersion, stampAt, versionSalt, writeClient } from '../../../../src/ap/distro/records.js'
import { Replica } from '../../../../src/ap/distro/replica.js'
import { isTombstone, tombstone, type ClientState, type Versioned } from '../../../../src/ap/distro/types.js'
import { instance, mulberry32, pick, record, shuffle } from './fixtures.js'

const NOW = 1_700_000_000_000

const A = instance('c', 8080)
const B = instance('c', 8081)
const C = instance('c', 8082)

/** The merge as a total function: null means "held is unchanged". */
function m(held: Versioned | undefined, incoming: Versioned): Versioned {
  return mergeClient(held, incoming) ?? held!
}

/** Equal states: both tombstones or both records, with equal fingerprints. */
function sameState(a: Versioned, b: Versioned): boolean {
  return isTombstone(a) === isTombstone(b) && fingerprint(a) === fingerprint(b)
}

function ports(v: Versioned | null | undefined): number[] {
  return v && !isTombstone(v) ? v.instances.map((i) => i.port).sort() : []
}

t.test('writeClient: stamps what changed, remembers what was removed, and writes nothing for a no-op', async (t) => {
  const w1 = writeClient(undefined, 'c', [A, B], 10)!
  t.equal(w1.stamps, undefined, 'every instance written at the version: no stamps kept')
  t.same([stampAt(w1, 0), stampAt(w1, 1)], [10, 10])
  t.equal(w1.removals, undefined, 'nothing removed: no list kept')
  t.equal(w1.floor, undefined, 'no floor (0) is kept as none')
  t.equal(writeClient(w1, 'c', [A, { ...B }], 11), null, 'the same instances again (a re-registration): nothing to write')
  const w2 = writeClient(w1, 'c', [A, { ...B, weight: 5 }, C], 12)!
  t.same(w2.stamps, [10, 12, 12], 'A kept its stamp; B changed and C is new')
  t.equal(w2.version, 12)
  const w3 = writeClient(w2, 'c', [A, C], 13)!
  t.same(w3.removals, [{ key: instanceKey(B), version: 13 }], 'B removed at 13')
  const w4 = writeClient(w3, 'c', [A, C, B], 14)!
  t.equal(w4.removals, undefined, 'B back: its removal is superseded')
  const afterRemoval = writeClient(tombstone('c', 20), 'c', [A], 21)!
  t.equal(afterRemoval.floor, 20, 'a client registered again after its removal keeps the removal as its floor')
  t.throws(() => writeClient(w1, 'c', [], 30), /tombstone/)
})

t.test('writeClient: a client of one instance (written without the general path\'s maps) gets the same record', async (t) => {
  const first = writeClient(undefined, 'c', [A], 10)!
  t.same(first, { clientId: 'c', version: 10, instances: [A], stamps: undefined, removals: undefined, floor: undefined })
  t.equal(writeClient(first, 'c', [{ ...A }], 11), null, 'the same instance again: nothing to write')
  const heavier = writeClient(first, 'c', [{ ...A, weight: 3 }], 12)!
  t.same(heavier, { clientId: 'c', version: 12, instances: [{ ...A, weight: 3 }], stamps: undefined, removals: undefined, floor: undefined })
  // A client that held two and kept one remembers the other's removal through later writes of the one left.
  const kept = writeClient(writeClient(undefined, 'c', [A, B], 20)!, 'c', [A], 21)!
  t.same(kept.removals, [{ key: instanceKey(B), version: 21 }])
  const unhealthy = writeClient(kept, 'c', [{ ...A, healthy: false }], 22)!
  t.same(unhealthy.removals, [{ key: instanceKey(B), version: 21 }], 'the removal of B stays')
  t.equal(unhealthy.stamps, undefined)
  t.equal(unhealthy.version, 22)
  const moved = writeClient(unhealthy, 'c', [B], 23)!
  t.same(moved.removals, [{ key: instanceKey(A), version: 23 }], 'another address: A removed, B\'s old removal superseded')
  const again = writeClient(tombstone('c', 30), 'c', [A], 31)!
  t.same(again, { clientId: 'c', version: 31, instances: [A], stamps: undefined, removals: undefined, floor: 30 }, 'registered again after a removal: the tombstone is the floor')
})

t.test('instanceKeyHash is hashString of instanceKey, without building the key', async (t) => {
  const random = mulberry32(11)
  const chars = ['a', 'Z', '0', '.', '-', '_', ':', 'é', '中', '\ud83d\ude00']
  const str = (max: number) => {
    let s = ''
    const n = Math.floor(random() * max)
    for (let i = 0; i < n; i++) s += pick(random, chars)
    return s
  }
  for (let n = 0; n < 2000; n++) {
    const i = { ...instance(str(12), 1 + Math.floor(random() * 65535)), namespace: str(9), group: str(9), service: str(20), cluster: str(7), ip: str(15) }
    if (n % 7 === 0) i.port = pick(random, [1, 9, 10, 99, 100, 65535])
    for (const seed of [SEED_A, SEED_B]) {
      if (instanceKeyHash(i, seed) !== hashString(instanceKey(i), seed)) {
        t.fail(`differs for ${JSON.stringify(instanceKey(i))} under seed ${seed}`)
        return
      }
    }
  }
  t.pass('2,000 random instances, both seeds')
})

t.test('instanceKeyHash goes on from the names of the key before only when they are the same', async (t) => {
  // Names that join to the same text in other parts, one part changed at a time, odd and even
  // lengths (a code unit left waiting for its pair), seeds alternating, interleaved in every order.
  const names = [
    { namespace: 'public', group: 'DEFAULT_GROUP', service: 'ab', cluster: 'c' },
    { namespace: 'public', group: 'DEFAULT_GROUP', service: 'a', cluster: 'bc' },
    { namespace: 'public', group: 'DEFAULT_GROUP', service: 'ab', cluster: 'DEFAULT' },
    { namespace: 'public', group: 'g', service: 'ab', cluster: 'c' },
    { namespace: 'dev', group: 'DEFAULT_GROUP', service: 'ab', cluster: 'c' },
    { namespace: 'public', group: 'DEFAULT_GROUP', service: 'ab€', cluster: 'c' },
  ]
  const random = mulberry32(5)
  let wrong = 0
  for (let n = 0; n < 3000; n++) {
    const i = { ...instance('c', 1 + Math.floor(random() * 65535)), ...pick(random, names), ip: `10.0.0.${Math.floor(random() * 256)}` }
    const seed = random() < 0.5 ? SEED_A : SEED_B
    if (instanceKeyHash(i, seed) !== hashString(instanceKey(i), seed)) wrong++
  }
  t.equal(wrong, 0, '3,000 keys of six close names, in random order')
})

t.test('mergeClient: per instance the newest write wins; concurrent writes both survive', async (t) => {
  const full = writeClient(undefined, 'c', [A, B], 10)!
  t.equal(mergeClient(full, full), null, 'a duplicate adds nothing')
  t.equal(mergeClient(writeClient(full, 'c', [A, B, C], 12)!, full), null, 'an older copy adds nothing')
  // The bug this replaced whole-record merging for: a node lacking the client (the other side of
  // a partition, a node not yet loaded) takes a registration of A alone, later than the full
  // record. Both writes survive, in either order.
  const partial = writeClient(undefined, 'c', [{ ...A, weight: 3 }], 15)!
  const ab = m(full, partial)
  const ba = m(partial, full)
  t.same(ports(ab), [8080, 8081], 'B survives the later write that lacked it')
  t.ok(sameState(ab, ba), 'in either order')
  t.equal((ab as ClientState).instances.find((i) => i.port === 8080)!.weight, 3, "A is the later write's")
  // A removal is a write like any other.
  const removedB = writeClient(full, 'c', [A], 16)!
  t.same(ports(m(ab, removedB)), [8080], 'a newer removal of B wins')
  t.same(ports(m(writeClient(full, 'c', [A, { ...B, weight: 9 }], 17)!, removedB)), [8080, 8081], 'an older removal loses to a newer write of B')
  // A tombstone removes what was written at or before it, and nothing after.
  t.ok(isTombstone(m(ab, tombstone('c', 15))), 'everything was written by 15')
  const late = m(ab, tombstone('c', 12))
  t.same(ports(late), [8080], 'A, written at 15, outlives a removal of the client at 12')
  t.equal((late as ClientState).floor, 12)
  t.equal(mergeClient(tombstone('c', 20), full), null, 'a delayed copy does not bring a removed client back')
  t.equal(mergeClient(tombstone('c', 20), tombstone('c', 19)), null)
  t.same(m(tombstone('c', 20), tombstone('c', 21)), tombstone('c', 21))
  t.same(ports(m(tombstone('c', 20), writeClient(tombstone('c', 20), 'c', [C], 25)!)), [8082], 'a registration after the removal')
})

t.test('mergeClient: removals are bounded per client, the newest kept', async (t) => {
  const many = Array.from({ length: DISTRO_LIMITS.maxRemovalsPerClient + 10 }, (_, i) => instance('c', 10_000 + i))
  let rec = writeClient(undefined, 'c', [A, ...many], 100)!
  let v = 100
  for (const i of many) rec = writeClient(rec, 'c', rec.instances.filter((x) => x !== i), ++v)!
  t.equal(rec.removals!.length, DISTRO_LIMITS.maxRemovalsPerClient)
  t.equal(rec.removals![0]!.version, v, 'newest first')
  t.same(ports(rec), [8080])
})

t.test('property: the quick merge of one-instance clients and whole removals answers what the general merge does', async (t) => {
  let quick = 0
  for (let seed = 1; seed <= 500; seed++) {
    const random = mulberry32(seed)
    // Writers of one client of one instance (sometimes another port, sometimes removed), each from
    // its own copy, merging others' writes now and then: the states syncs carry between them.
    const writers: (Versioned | undefined)[] = [undefined, undefined, undefined]
    const states: Versioned[] = []
    let clock = 1000
    for (let step = 0; step < 10; step++) {
      const w = Math.floor(random() * 3)
      if (random() < 0.4 && states.length > 0) writers[w] = m(writers[w], pick(random, states))
      const held = writers[w]
      const v = nextVersion(held === undefined ? undefined : held.version, (clock += Math.floor(random() * 3)), w)
      const item =
        random() < 0.2 ? tombstone('c', v) : writeClient(held, 'c', [{ ...instance('c', random() < 0.85 ? 8080 : 8081), weight: Math.floor(random() * 3), healthy: random() < 0.7 }], v)
      if (item === null) continue
      writers[w] = m(held, item)
      states.push(item, writers[w]!)
    }
    for (let k = 0; k < 30; k++) {
      const [held, incoming] = [pick(random, states), pick(random, states)]
      const got = mergeClient(held, incoming)
      const want = mergeEntries(held, incoming)
      if (got === incoming || got === null) quick++
      const same = got === null || want === null ? got === want : got === incoming ? want === incoming : sameState(got, want)
      if (!same) {
        t.fail(`seed ${seed}: merging ${JSON.stringify(incoming)} into ${JSON.stringify(held)} gave ${JSON.stringify(got)}, the general merge ${JSON.stringify(want)}`)
        return
      }
    }
  }
  t.ok(quick > 5000, `${quick} of 15,000 merges answered quickly or by the general merge alike`)
})

t.test('property: the merge is a join (commutative, associative, idempotent), so deliveries converge in any order', async (t) => {
  const keys = [8080, 8081, 8082, 8083]
  for (let seed = 1; seed <= 300; seed++) {
    const random = mulberry32(seed)
    // Three writers, each writing from its own copy, which it merges with others' now and then.
    const writers: (Versioned | undefined)[] = [undefined, undefined, undefined]
    const writes: Versioned[] = []
    let clock = 1000
    for (let step = 0; step < 12; step++) {
      const w = Math.floor(random() * 3)
      if (random() < 0.3 && writes.length > 0) writers[w] = m(writers[w], pick(random, writes))
      const held = writers[w]
      const v = nextVersion(held?.version, (clock += Math.floor(random() * 3)), w)
      let item: Versioned | null
      if (random() < 0.15) item = tombstone('c', v)
      else {
        const chosen = keys.filter(() => random() < 0.5).map((p) => ({ ...instance('c', p), weight: Math.floor(random() * 3) }))
        item = chosen.length === 0 ? tombstone('c', v) : writeClient(held, 'c', chosen, v)
      }
      if (item === null) continue
      writers[w] = m(held, item)
      writes.push(item)
    }
    const [x, y, z] = [pick(random, writes), pick(random, writes), pick(random, writes)]
    const laws: [string, boolean][] = [
      ['commutative', sameState(m(x, y), m(y, x))],
      ['associative', sameState(m(m(x, y), z), m(x, m(y, z)))],
      ['idempotent', sameState(m(x, x), x) && mergeClient(m(x, y), y) === null],
    ]
    for (const [law, ok] of laws) {
      if (!ok) {
        t.fail(`seed ${seed}: the merge is not ${law}`)
        return
      }
    }
    // Every replica gets every write at least once, with duplicates, shuffled: all end equal.
    let want: Versioned | undefined
    for (const item of writes) want = m(want, item)
    for (const r of ['a', 'b', 'c'].map((id) => new Replica(id, ['a', 'b', 'c']))) {
      const deliveries = writes.slice()
      for (let d = Math.floor(random() * writes.length); d > 0; d--) deliveries.push(pick(random, writes))
      for (const item of shuffle(random, deliveries)) r.apply(item, NOW)
      r.check()
      if (!sameState(r.heldItem('c')!, want!)) {
        t.fail(`seed ${seed}: ${r.self} holds ${JSON.stringify(r.heldItem('c'))}, want ${JSON.stringify(want)}`)
        return
      }
    }
  }
  t.pass('300 seeds: the laws hold, and three replicas fed shuffled, duplicated deliveries hold the same state')
})

t.test('nextVersion: above what is held, time-ordered, salted, exact', async (t) => {
  const salt = versionSalt('node-a')
  t.ok(salt >= 0 && salt < 1 << SALT_BITS)
  t.equal(versionSalt('node-a'), salt, 'a node always has the same salt')
  const v1 = nextVersion(undefined, NOW, salt)
  t.equal(v1 % (1 << SALT_BITS), salt, 'the salt is in the low bits')
  t.equal(Math.floor(v1 / (1 << SALT_BITS)), NOW, 'the time is in the high bits')
  // Several changes in one millisecond still grow.
  const v2 = nextVersion(v1, NOW, salt)
  const v3 = nextVersion(v2, NOW, salt)
  t.ok(v1 < v2 && v2 < v3)
  // A node whose clock is behind (a new owner after a takeover) still issues a greater version.
  const other = versionSalt('node-b')
  t.not(other, salt)
  const fromB = nextVersion(v3, NOW - 60_000, other)
  t.ok(fromB > v3, 'greater than what it held, though its clock is a minute behind')
  t.equal(fromB % (1 << SALT_BITS), other)
  // Two nodes writing in the same millisecond never produce the same version.
  t.not(nextVersion(undefined, NOW, salt), nextVersion(undefined, NOW, other))
  // After a tombstone is forgotten, a new registration still beats stale copies made earlier.
  t.ok(nextVersion(undefined, NOW + 1000, salt) > v3, "a second later, with nothing held")
  t.ok(Number.isSafeInteger(nextVersion(undefined, Date.UTC(2200, 0, 1), 1023)))
  t.throws(() => nextVersion(undefined, NOW, 1024), /salt/)
})

t.test('TombstoneSet: kept for the TTL from when it was stored, then collected', async (t) => {
  const ts = new TombstoneSet(1000, 100)
  ts.add(tombstone('a', 10), NOW)
  ts.add(tombstone('b', 20), NOW + 500)
  t.equal(ts.collect(NOW + 999), 0)
  t.equal(ts.get('a'), 10)
  t.equal(ts.collect(NOW + 1000), 1, 'a is due at its ttl')
  t.equal(ts.get('a'), undefined)
  t.equal(ts.get('b'), 20)
  // Storing a client's tombstone again (Replica.apply merged it) replaces it and restarts its age.
  ts.add(tombstone('b', 30), NOW + 1400)
  t.equal(ts.get('b'), 30)
  t.equal(ts.collect(NOW + 2000), 0, 'b was refreshed at +1400')
  t.equal(ts.collect(NOW + 2400), 1)
  t.equal(ts.size, 0)
})

t.test('TombstoneSet: bounded in count, the oldest go first', async (t) => {
  const ts = new TombstoneSet(60_000, 3)
  for (let i = 0; i < 5; i++) ts.add(tombstone(`c${i}`, i + 1), NOW + i)
  t.equal(ts.size, 3)
  t.same([...ts.entries()].map(([id]) => id), ['c2', 'c3', 'c4'])
  t.equal(ts.add(tombstone('c5', 1), NOW + 10), 1, 'adding past the bound reports the eviction')
})

t.test('TombstoneSet.inBuckets: the tombstones whose id hashes into the buckets asked for, or all', async (t) => {
  const ts = new TombstoneSet(60_000, 1000)
  for (let i = 0; i < 300; i++) ts.add(tombstone(`t${i}`, i + 1), NOW)
  // As Replica.apply stores a live client's tombstone: with the bucket hash its entry holds.
  ts.add(tombstone('live', 9), NOW, bucketHash('live'))
  const mask = 15
  const scope = new Set([1, 4, 9])
  const expected = new Map([...ts.entries()].filter(([id]) => scope.has(bucketHash(id) & mask)))
  t.ok(expected.size > 0 && expected.size < ts.size)
  t.same(ts.inBuckets(mask, scope), expected)
  t.same(ts.inBuckets(mask, null), new Map(ts.entries()))

  // With its own buckets (as the replica's), it reads only the buckets asked for, from an index
  // that follows every way a tombstone goes: replaced, deleted, evicted by count, collected.
  const indexed = new TombstoneSet(1000, 200, 16)
  const inScope = () => new Map([...indexed.entries()].filter(([id]) => scope.has(bucketHash(id) & mask)))
  for (let i = 0; i < 300; i++) indexed.add(tombstone(`t${i}`, i + 1), NOW + i)
  t.equal(indexed.size, 200, 'the oldest 100 evicted')
  indexed.add(tombstone('t150', 999), NOW + 300)
  for (let i = 200; i < 230; i++) indexed.delete(`t${i}`)
  t.same(new Map([...indexed.inBuckets(mask, scope)].sort()), new Map([...inScope()].sort()))
  t.equal(indexed.collect(NOW + 1000 + 250), 120, 'those stored up to +250: t100-t250 but t150 (stored again later) and the 30 deleted')
  t.same(new Map([...indexed.inBuckets(mask, scope)].sort()), new Map([...inScope()].sort()))
  t.ok(inScope().size > 0, 'some left in the buckets asked for')
  t.same(indexed.inBuckets(mask, new Set([...Array(16).keys()])).size, indexed.size, 'every bucket: every tombstone')
})

t.test('Replica.apply: records, tombstones, and resurrection blocked until the tombstone is collected', async (t) => {
  const r = new Replica('a', ['a', 'b', 'c'], { tombstoneTtlMs: 1000 })
  t.same(r.apply(record('c1', 5), NOW), { prev: undefined, next: record('c1', 5) })
  t.equal(r.apply(record('c1', 5), NOW), null, 'duplicate')
  t.equal(r.apply(record('c1', 4), NOW), null, 'stale')
  const applied = r.apply(tombstone('c1', 6), NOW)
  t.same(applied, { prev: record('c1', 5), next: undefined }, 'removed')
  t.equal(r.get('c1'), undefined)
  t.same(r.held('c1'), { version: 6, removed: true, fingerprint: 6 })
  t.equal(r.apply(record('c1', 5), NOW + 500), null, 'a delayed sync of the old record is refused')
  t.same(r.apply(tombstone('c1', 7), NOW + 500), { prev: undefined, next: undefined }, 'a newer tombstone replaces the older, nothing visible')
  t.equal(r.collect(NOW + 1499), 0)
  t.equal(r.collect(NOW + 1500), 1)
  // Past the TTL the rule has nothing to compare with: verification is the backstop (digest tests).
  t.ok(r.apply(record('c1', 5), NOW + 2000))
  const next = r.apply(record('c1', 9), NOW)
  t.same(next?.prev, record('c1', 5))
  t.equal(next?.next?.version, 9)
  r.check()
})
