// takeover.ts: a new owner never expires a client sooner than one full timeout after it became
// responsible, which is what keeps a takeover (or a restart: Nacos #7697) from dropping live
// instances; and a minority node expires nothing.

import t from 'tap'
import { Ownership, ownershipChanges } from '../../../../src/ap/distro/ownership.js'
import { TakeoverGrace, expiryAllowed } from '../../../../src/ap/distro/takeover.js'
import { clientIds } from './fixtures.js'

const NOW = 1_700_000_000_000
const TIMEOUT = 30_000

t.test('a taken-over client is expired one full timeout after the takeover, not before', async (t) => {
  const ids = clientIds(2000)
  const changes = ownershipChanges(ids, new Ownership(['a', 'b', 'c']), new Ownership(['b', 'c']))
  const toB = changes.filter((c) => c.to === 'b').map((c) => c.clientId)
  t.ok(toB.length > 0)
  const g = new TakeoverGrace('b')
  g.ownershipChanged(changes, NOW)
  t.equal(g.size, toB.length, 'a grace for each client b took over, none for those c took')
  // b saw these clients beat long ago, before a owned them: that must not count.
  const candidates = toB.map((clientId) => ({ clientId, lastBeat: NOW - 120_000, timeoutMs: TIMEOUT }))
  t.same(g.expirable(candidates, NOW), [])
  t.same(g.expirable(candidates, NOW + TIMEOUT), [], 'not at exactly one timeout')
  t.same(g.expirable(candidates, NOW + TIMEOUT + 1), toB, 'after it, all of them')
  t.equal(g.silentMs(toB[0]!, NOW - 120_000, NOW + 10_000), 10_000, 'silence counts from the takeover')
})

t.test('a beat after the takeover ends the grace: silence counts from the beat', async (t) => {
  const g = new TakeoverGrace('b')
  g.grant('c1', NOW)
  t.equal(g.graceSince('c1'), NOW)
  g.renewed('c1')
  t.equal(g.size, 0, 'no entry kept for a client that beats')
  t.equal(g.silentMs('c1', NOW + 5_000, NOW + 20_000), 15_000)
  t.notOk(g.mayExpire('c1', NOW + 5_000, NOW + 35_000, TIMEOUT))
  t.ok(g.mayExpire('c1', NOW + 5_000, NOW + 35_001, TIMEOUT))
})

t.test('a later beat wins over an earlier takeover, and a later takeover over an earlier beat', async (t) => {
  const g = new TakeoverGrace('a')
  g.grant('c1', NOW)
  t.equal(g.silentMs('c1', NOW + 3_000, NOW + 4_000), 1_000)
  g.grant('c2', NOW + 3_000)
  t.equal(g.silentMs('c2', NOW, NOW + 4_000), 1_000)
})

t.test('handing a client over forgets its grace; getting it back starts a new one', async (t) => {
  const g = new TakeoverGrace('a')
  g.ownershipChanged([{ clientId: 'c1', from: 'b', to: 'a' }], NOW)
  g.ownershipChanged([{ clientId: 'c1', from: 'a', to: 'b' }], NOW + 1_000)
  t.equal(g.graceSince('c1'), undefined)
  g.ownershipChanged([{ clientId: 'c1', from: 'b', to: 'a' }], NOW + 50_000)
  t.notOk(g.mayExpire('c1', NOW - 1, NOW + 50_000 + TIMEOUT, TIMEOUT), 'the stale beat from before the first handover does not count')
  g.forget('c1')
  t.equal(g.size, 0)
})

t.test('a client never heard from gets its grace when first checked: expired late, never early', async (t) => {
  const g = new TakeoverGrace('a')
  t.notOk(g.mayExpire('c9', undefined, NOW, TIMEOUT))
  t.equal(g.graceSince('c9'), NOW)
  t.notOk(g.mayExpire('c9', undefined, NOW + TIMEOUT, TIMEOUT))
  t.ok(g.mayExpire('c9', undefined, NOW + TIMEOUT + 1, TIMEOUT))
})

t.test('self-preservation: expiry only with a majority of members healthy', async (t) => {
  t.ok(expiryAllowed(1, 1))
  t.ok(expiryAllowed(2, 3))
  t.notOk(expiryAllowed(1, 3), 'an isolated node of three')
  t.notOk(expiryAllowed(2, 4), 'half is not a majority')
  t.ok(expiryAllowed(3, 5))
  t.notOk(expiryAllowed(0, 0))
})
