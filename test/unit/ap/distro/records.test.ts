// records.ts: the merge rule, versions, tombstones; and the property that makes Distro safe to
// batch and retry: any order and any duplication of deliveries leaves the highest version.

import t from 'tap'
import { SALT_BITS, TombstoneSet, acceptsVersion, nextVersion, shouldAccept, versionSalt } from '../../../../src/ap/distro/records.js'
import { Replica } from '../../../../src/ap/distro/replica.js'
import { tombstone, type Versioned } from '../../../../src/ap/distro/types.js'
import { mulberry32, pick, record, shuffle } from './fixtures.js'

const NOW = 1_700_000_000_000

t.test('shouldAccept: strictly newer only; a tombstone is held like a record', async (t) => {
  t.ok(shouldAccept(undefined, record('c', 1)), 'nothing held')
  t.ok(shouldAccept(record('c', 1), record('c', 2)), 'newer')
  t.notOk(shouldAccept(record('c', 2), record('c', 2)), 'duplicate')
  t.notOk(shouldAccept(record('c', 3), record('c', 2)), 'stale')
  t.notOk(shouldAccept(tombstone('c', 5), record('c', 4)), 'an older record does not resurrect a removed client')
  t.ok(shouldAccept(tombstone('c', 5), record('c', 6)), 'a re-registration after the removal does')
  t.notOk(shouldAccept(record('c', 7), tombstone('c', 6)), 'an older removal does not remove a newer registration')
  t.equal(acceptsVersion(undefined, 0), true)
  t.equal(acceptsVersion(3, 3), false)
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
  ts.add('a', 10, NOW)
  ts.add('b', 20, NOW + 500)
  t.equal(ts.collect(NOW + 999), 0)
  t.equal(ts.get('a'), 10)
  t.equal(ts.collect(NOW + 1000), 1, 'a is due at its ttl')
  t.equal(ts.get('a'), undefined)
  t.equal(ts.get('b'), 20)
  // Re-adding a newer tombstone restarts its age; an older one changes nothing.
  ts.add('b', 30, NOW + 1400)
  ts.add('b', 25, NOW + 1450)
  t.equal(ts.get('b'), 30)
  t.equal(ts.collect(NOW + 2000), 0, 'b was refreshed at +1400')
  t.equal(ts.collect(NOW + 2400), 1)
  t.equal(ts.size, 0)
})

t.test('TombstoneSet: bounded in count, the oldest go first', async (t) => {
  const ts = new TombstoneSet(60_000, 3)
  for (let i = 0; i < 5; i++) ts.add(`c${i}`, i + 1, NOW + i)
  t.equal(ts.size, 3)
  t.same([...ts.entries()].map(([id]) => id), ['c2', 'c3', 'c4'])
  t.equal(ts.add('c5', 1, NOW + 10), 1, 'adding past the bound reports the eviction')
})

t.test('Replica.apply: records, tombstones, and resurrection blocked until the tombstone is collected', async (t) => {
  const r = new Replica('a', ['a', 'b', 'c'], { tombstoneTtlMs: 1000 })
  t.same(r.apply(record('c1', 5), NOW), { prev: undefined, next: record('c1', 5) })
  t.equal(r.apply(record('c1', 5), NOW), null, 'duplicate')
  t.equal(r.apply(record('c1', 4), NOW), null, 'stale')
  const applied = r.apply(tombstone('c1', 6), NOW)
  t.same(applied, { prev: record('c1', 5), next: undefined }, 'removed')
  t.equal(r.get('c1'), undefined)
  t.same(r.held('c1'), { version: 6, removed: true })
  t.equal(r.apply(record('c1', 5), NOW + 500), null, 'a delayed sync of the old record is refused')
  t.same(r.apply(tombstone('c1', 7), NOW + 500), { prev: undefined, next: undefined }, 'a newer tombstone replaces the older, nothing visible')
  t.equal(r.collect(NOW + 1499), 0)
  t.equal(r.collect(NOW + 1500), 1)
  // Past the TTL the rule has nothing to compare with: verification is the backstop (digest tests).
  t.ok(r.apply(record('c1', 5), NOW + 2000))
  t.same(r.apply(record('c1', 9), NOW), { prev: record('c1', 5), next: record('c1', 9) })
  r.check()
})

t.test('property: any order and duplication of deliveries converges to the highest version', async (t) => {
  for (let seed = 1; seed <= 200; seed++) {
    const random = mulberry32(seed)
    const clients = ['c0', 'c1', 'c2', 'c3', 'c4']
    // Each client's history: increasing versions, some of them removals.
    const history: Versioned[] = []
    const latest = new Map<string, Versioned>()
    for (const c of clients) {
      let v = 0
      const n = 1 + Math.floor(random() * 6)
      for (let i = 0; i < n; i++) {
        v += 1 + Math.floor(random() * 3)
        const item = random() < 0.3 ? tombstone(c, v) : record(c, v, 8000 + v)
        history.push(item)
        latest.set(c, item)
      }
    }
    // Deliver to three replicas: each gets every item at least once, plus duplicates, shuffled.
    const replicas = ['a', 'b', 'c'].map((id) => new Replica(id, ['a', 'b', 'c']))
    for (const r of replicas) {
      const deliveries = history.slice()
      for (let d = Math.floor(random() * history.length); d > 0; d--) deliveries.push(pick(random, history))
      for (const item of shuffle(random, deliveries)) r.apply(item, NOW)
      r.check()
    }
    for (const r of replicas) {
      for (const c of clients) {
        const want = latest.get(c)!
        const got = r.heldItem(c)
        if (got?.version !== want.version || (got && 'removed' in got) !== 'removed' in want || (r.get(c)?.instances[0]?.port ?? null) !== ('removed' in want ? null : 8000 + want.version)) {
          t.fail(`seed ${seed}: ${r.self} holds ${JSON.stringify(got)} for ${c}, want version ${want.version}`)
          return
        }
      }
    }
  }
  t.pass('200 seeds, 3 replicas each: every replica holds every client\'s latest record or tombstone')
})
