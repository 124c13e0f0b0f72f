// replica.ts: what a node holds, indexed by owner, with digests that follow every change and
// every membership change.

import t from 'tap'
import { differingBuckets } from '../../../../src/ap/distro/digest.js'
import { Replica } from '../../../../src/ap/distro/replica.js'
import { tombstone } from '../../../../src/ap/distro/types.js'
import { clientIds, instance, mulberry32, pick, record } from './fixtures.js'

const NOW = 1_700_000_000_000
const ids = clientIds(5000)

t.test('every node counts the same clients for each owner, with equal summaries', async (t) => {
  const a = new Replica('a', ['a', 'b', 'c'])
  const b = new Replica('b', ['c', 'b', 'a'])
  for (const id of ids) {
    a.apply(record(id, 3), NOW)
    b.apply(record(id, 3), NOW)
  }
  a.check()
  t.equal(a.ownedCount('a') + a.ownedCount('b') + a.ownedCount('c'), ids.length)
  t.equal([...a.owned()].length, a.ownedCount())
  t.ok([...a.owned()].every((r) => a.isResponsible(r.clientId) && !b.isResponsible(r.clientId)))
  for (const owner of ['a', 'b', 'c']) t.same(differingBuckets(a.summary(owner), b.summary(owner)), [], `${owner}'s clients`)
})

t.test('setMembers: returns exactly the moved clients and re-indexes them', async (t) => {
  const r = new Replica('d', ['a', 'b', 'c'])
  for (const id of ids) r.apply(record(id, 1), NOW)
  t.equal(r.ownedCount(), 0, 'd is not a member yet: it owns nothing')
  const before = new Map(ids.map((id) => [id, r.ownerOf(id)]))
  const changes = r.setMembers(['a', 'b', 'c', 'd'])
  r.check()
  t.equal(changes.length, r.ownedCount(), 'every move is to the new member d')
  t.ok(changes.every((c) => c.to === 'd' && c.from === before.get(c.clientId)))
  t.ok(Math.abs(changes.length / ids.length - 0.25) < 0.03, `${changes.length} of ${ids.length} moved`)
  t.same(r.setMembers(['d', 'c', 'b', 'a']), [], 'same members, no change')
  // Going back hands them all back.
  const back = r.setMembers(['a', 'b', 'c'])
  t.equal(back.length, changes.length)
  t.ok(back.every((c) => c.from === 'd' && c.to === before.get(c.clientId)))
  t.equal(r.setMembers([]).length, ids.length, 'no members: every client loses its owner')
  t.equal(r.ownerOf(ids[0]!), null)
  r.check()
})

t.test('digests follow random changes exactly (compared with a replica rebuilt from the end state)', async (t) => {
  const random = mulberry32(17)
  const r = new Replica('a', ['a', 'b'])
  const sample = ids.slice(0, 500)
  let v = 0
  for (let step = 0; step < 5000; step++) {
    const id = pick(random, sample)
    const x = random()
    if (x < 0.6) r.apply(record(id, ++v), NOW)
    else if (x < 0.8) r.apply(tombstone(id, ++v), NOW)
    else if (x < 0.9) r.apply(record(id, Math.max(0, v - 50)), NOW) // mostly stale
    else r.setMembers(pick(random, [['a', 'b'], ['a', 'b', 'c'], ['b', 'c'], ['a']]))
  }
  r.check()
  const fresh = new Replica('a', r.members())
  for (const rec of r.records()) fresh.apply(rec, NOW)
  for (const owner of ['a', 'b', 'c']) t.same(differingBuckets(r.summary(owner), fresh.summary(owner)), [], `${owner}`)
})

t.test('exact: the owner lists its own live clients and every tombstone, in the buckets asked for', async (t) => {
  const r = new Replica('a', ['a', 'b'])
  for (const id of ids.slice(0, 1000)) r.apply(record(id, 2), NOW)
  for (const id of ids.slice(1000, 1100)) r.apply(tombstone(id, 9), NOW)
  const all = r.exact(null)
  t.equal(all.live.size, r.ownedCount())
  t.ok([...all.live.keys()].every((id) => r.isResponsible(id)))
  t.equal(all.removed.size, 100, 'tombstones whoever owns the client')
  const asked = Array.from({ length: 64 }, (_, i) => 2 * i)
  const some = r.exact(asked)
  t.ok(some.live.size > 0 && some.live.size < all.live.size / 4, `${some.live.size} of ${all.live.size} in 64 of 1024 buckets`)
  t.ok(some.removed.size < all.removed.size)
  t.same(some.buckets, asked)
  const fromSet = [...r.ownedBy('a', new Set(asked))].sort()
  t.same([...some.live.keys()].sort(), fromSet, 'the owner\'s listing and a peer\'s ownedBy cover the same clients')
})

t.test('apply refuses a record holding another client\'s or a persistent instance', async (t) => {
  const r = new Replica('a', ['a'])
  t.throws(() => r.apply({ clientId: 'x', version: 1, instances: [instance('y', 1)] }, NOW), /its own ephemeral/)
  t.throws(() => r.apply({ clientId: 'x', version: 1, instances: [{ ...instance('x', 1), ephemeral: false }] }, NOW), /its own ephemeral/)
  t.equal(r.size, 0)
})

t.test('heldVersion is what a local write must exceed, record or tombstone', async (t) => {
  const r = new Replica('a', ['a'])
  t.equal(r.heldVersion('x'), undefined)
  r.apply(record('x', 4), NOW)
  t.equal(r.heldVersion('x'), 4)
  r.apply(tombstone('x', 6), NOW)
  t.equal(r.heldVersion('x'), 6)
  t.same(r.heldItem('x'), tombstone('x', 6))
  t.equal(r.tombstones, 1)
})
