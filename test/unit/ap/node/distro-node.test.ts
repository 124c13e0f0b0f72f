// The Distro driver across an in-memory network (fake-network.ts): sync on write, version rules
// against stale and duplicate copies, convergence under loss, and after a partition heals.
// Every run is seeded; a failure names its seed.

import t from 'tap'
import { ManualClock } from '../../../../src/core/clock.js'
import { RESTORE_MARGIN_MS, SYNC_INTERVAL_MS, type DistroNode } from '../../../../src/ap/node/distro-node.js'
import { DISTRO_LIMITS } from '../../../../src/ap/distro/limits.js'
import { METHODS, decodeAccepted, encodeItemsMessage } from '../../../../src/ap/node/distro-messages.js'
import type { ClientRecord } from '../../../../src/ap/store.js'
import { fingerprint, mergeClient } from '../../../../src/ap/distro/records.js'
import { isTombstone, type Versioned } from '../../../../src/ap/distro/types.js'
import { instance, mulberry32, pick, record } from '../distro/fixtures.js'
import { converged, makeCluster, run, stateOf, type Cluster } from './fake-network.js'


function ownerNode(c: Cluster, viewer: DistroNode, clientId: string): DistroNode {
  const owner = viewer.ownerOf(clientId)
  if (owner === null) throw new Error(`no owner for ${clientId}`)
  return c.nodes.get(owner)!
}

function sameRecord(a: ClientRecord | undefined, b: ClientRecord | undefined): boolean {
  return JSON.stringify(a ?? null) === JSON.stringify(b ?? null)
}

t.test('a write on the owner reaches every peer, and their listeners fire', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b', 'c'], { seed: 1 })
  const a = c.nodes.get('a')!
  const id = '10.0.0.1:8080#true'
  const owner = ownerNode(c, a, id)
  t.ok(owner.isResponsible(id))
  t.equal([...c.nodes.values()].filter((n) => n.isResponsible(id)).length, 1, 'exactly one node is responsible')

  owner.put(record(id, 0))
  const v1 = owner.versionOf(id)!
  t.ok(v1 > 0, 'the write got a fresh version; the one passed in is ignored')
  t.equal(owner.get(id)?.version, v1)
  await run(clock, 50)
  for (const [name, n] of c.nodes) {
    t.ok(sameRecord(n.get(id), owner.get(id)), `${name} holds the record`)
    const ev = c.events.get(name)!
    t.same(ev, [[id, undefined, v1, n === owner ? 'local' : 'remote']], `${name}'s listener saw the add once`)
  }

  owner.put(record(id, 0, 9090))
  const v2 = owner.versionOf(id)!
  t.ok(v2 > v1, 'versions only grow, even within the same millisecond')
  await run(clock, 50)
  for (const n of c.nodes.values()) t.equal(n.get(id)?.instances[0]?.port, 9090)

  owner.remove(id)
  const v3 = owner.versionOf(id)!
  t.ok(v3 > v2, 'the removal has a newer version')
  await run(clock, 50)
  for (const [name, n] of c.nodes) {
    t.equal(n.get(id), undefined, `${name} dropped the client`)
    t.equal(n.versionOf(id), v3, `${name} keeps the tombstone`)
    t.same(c.events.get(name)!.at(-1), [id, v2, undefined, n === owner ? 'local' : 'remote'])
    n.check()
  }
  t.equal(c.net.calls.get(METHODS.sync), 6, 'three writes, two peers, one batch each')
})

t.test('writes in one tick travel in one batch; many batches when over the item limit', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 2 })
  const a = c.nodes.get('a')!
  const n = 2 * DISTRO_LIMITS.maxBatchItems + DISTRO_LIMITS.maxBatchItems / 2
  for (let i = 0; i < n; i++) a.put(record(`c${i}`, 0))
  await run(clock, 100)
  t.equal(c.nodes.get('b')!.size(), n)
  t.equal(c.net.calls.get(METHODS.sync), 3, 'two full batches and a half one')
  t.ok(c.net.maxPayloadBytes < 1024 * 1024)
})

t.test('a backlog goes in full batches as fast as the peer answers, not one round of batches per sync interval', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 2 })
  const a = c.nodes.get('a')!
  // A lease sweep's worth of expiries: five rounds of batches at maxBatchesInFlight per round.
  const batches = 5 * DISTRO_LIMITS.maxBatchesInFlight
  const n = batches * DISTRO_LIMITS.maxBatchItems
  for (let i = 0; i < n; i++) a.put(record(`c${i}`, 0))
  await run(clock, 3 * SYNC_INTERVAL_MS)
  t.equal(c.nodes.get('b')!.size(), n, `every batch arrived within ${3 * SYNC_INTERVAL_MS} ms (the rounds would have taken ${5 * SYNC_INTERVAL_MS})`)
  t.equal(c.net.calls.get(METHODS.sync), batches, 'all of them full')
})

t.test('sync batches stay under 1 MiB with large records', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 3 })
  const a = c.nodes.get('a')!
  const meta: Record<string, string> = { blob: 'x'.repeat(4000) }
  for (let i = 0; i < 1000; i++) a.put({ clientId: `big${i}`, version: 0, instances: [instance(`big${i}`, 1, meta)] })
  await run(clock, 200)
  t.equal(c.nodes.get('b')!.size(), 1000)
  t.ok(c.net.calls.get(METHODS.sync)! >= 4, `${c.net.calls.get(METHODS.sync)} batches for about 4 MB`)
  t.ok(c.net.maxPayloadBytes < 1024 * 1024, `largest message ${c.net.maxPayloadBytes} bytes`)
})

t.test('stale and duplicate syncs never overwrite newer data', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b', 'c'], { seed: 4 })
  const raw = c.net.transport('x') // a peer that speaks the wire format directly
  const send = async (to: string, items: object[]) => {
    const p = raw.call(to, METHODS.sync, encodeItemsMessage(items as Versioned[]), 1000)
    await run(clock, 20)
    return { accepted: decodeAccepted(await p) }
  }
  const id = 'client-s'
  const owner = ownerNode(c, c.nodes.get('a')!, id)
  const peer = [...c.nodes.values()].find((n) => n !== owner)!
  const peerEvents = c.events.get(peer.self)!
  owner.put(record(id, 0, 1))
  const v1 = owner.versionOf(id)!
  clock.advance(1)
  owner.put(record(id, 0, 2))
  const v2 = owner.versionOf(id)!
  await run(clock, 50)
  t.equal(peer.get(id)?.instances[0]?.port, 2)
  const seen = peerEvents.length

  t.same(await send(peer.self, [record(id, v1, 1)]), { accepted: 0 }, 'an older record is stale: port 1 was removed at v2')
  t.same(await send(peer.self, [record(id, v2, 2)]), { accepted: 0 }, 'a duplicate of the latest write')
  // An older removal of the whole client is remembered (as a floor), but removes nothing written after it.
  await send(peer.self, [{ clientId: id, version: v1, removed: true }])
  t.same(peer.get(id)?.instances.map((i) => i.port), [2], 'the newer record stands')
  t.equal(peerEvents.length, seen, 'no listener fired')

  owner.remove(id)
  const v3 = owner.versionOf(id)!
  await run(clock, 50)
  t.equal(peer.get(id), undefined)
  t.same(await send(peer.self, [record(id, v2, 2)]), { accepted: 0 }, 'a delayed copy cannot bring a removed client back')
  t.equal(peer.get(id), undefined)
  t.equal(peer.versionOf(id), v3)

  t.same(await send(peer.self, [record(id, v3 + 1, 5)]), { accepted: 1 }, 'a newer version is applied')
  t.equal(peer.get(id)?.instances[0]?.port, 5)
  peer.check()
})

t.test('two nodes writing the same client at the same instant never make equal versions', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 5 })
  const a = c.nodes.get('a')!
  const b = c.nodes.get('b')!
  a.put(record('twin', 0, 1))
  b.put(record('twin', 0, 2))
  t.not(a.versionOf('twin'), b.versionOf('twin'))
  await run(clock, 50)
  t.ok(converged(c.nodes.values()), 'both hold the same state')
  t.same(a.get('twin')?.instances.map((i) => i.port).sort(), [1, 2], 'with both writes: neither lost the other')
})

/** Runs random owner writes and removals; returns the universe of client ids touched. */
function randomWrites(c: Cluster, random: () => number, viewers: DistroNode[], ids: string[], ops: number): void {
  for (let i = 0; i < ops; i++) {
    const viewer = pick(random, viewers)
    const id = pick(random, ids)
    const owner = ownerNode(c, viewer, id)
    if (random() < 0.25) owner.remove(id)
    else owner.put(record(id, 0, 1 + Math.floor(random() * 60000)))
  }
}

for (const { seed, maxSyncAttempts } of [
  { seed: 7, maxSyncAttempts: undefined },
  // Batches abandoned after two sends: most losses are left to verification.
  { seed: 8, maxSyncAttempts: 2 },
]) {
  t.test(`with 30% message loss, all nodes converge after verify rounds (seed ${seed}, sync attempts ${maxSyncAttempts ?? 'default'})`, async (t) => {
    const clock = new ManualClock()
    const c = makeCluster(clock, ['a', 'b', 'c'], { seed, dropRate: 0.3, verifyIntervalMs: 1000, ...(maxSyncAttempts ? { maxSyncAttempts } : {}) })
    const random = mulberry32(seed)
    const nodes = [...c.nodes.values()]
    const ids = Array.from({ length: 300 }, (_, i) => `lossy-${i}`)
    // Writes spread over 2 s, with syncs (and their losses and retries) interleaved.
    for (let step = 0; step < 100; step++) {
      randomWrites(c, random, nodes, ids, 20)
      await run(clock, 20)
    }
    const truth = new Map(ids.map((id) => [id, ownerNode(c, nodes[0]!, id).get(id)]))
    t.notOk(converged(nodes), 'loss left the nodes apart before verification (else this test shows nothing)')
    let rounds = 0
    while (!converged(nodes) && rounds < 20) {
      await run(clock, 1000)
      rounds++
    }
    const abandoned = nodes.map((n) => n.stats().syncItemsAbandoned)
    t.comment(`converged after ${rounds} verify intervals at 30% loss; abandoned sync items per node: ${abandoned}`)
    t.ok(converged(nodes), `converged within 20 intervals (took ${rounds})`)
    for (const n of nodes) {
      const wrong = ids.filter((id) => !sameRecord(n.get(id), truth.get(id)))
      t.same(wrong, [], `${n.self} holds every owner's latest state`)
      n.check()
    }
    t.ok(nodes.some((n) => n.stats().pulled > 0), 'verification repaired something')
    if (maxSyncAttempts !== undefined) t.ok(abandoned.some((x) => x > 0), 'syncs were abandoned, so verification had to repair them')
  })
}

for (const { ids: names, sides, seed } of [
  { ids: ['a', 'b', 'c'], sides: [['a', 'b'], ['c']], seed: 11 },
  { ids: ['a', 'b', 'c', 'd'], sides: [['a', 'b'], ['c', 'd']], seed: 12 },
]) {
  t.test(`after a partition ${sides.map((s) => s.join('')).join('|')} heals, all nodes hold identical records within two verify intervals (seed ${seed})`, async (t) => {
    const interval = 1000
    const clock = new ManualClock()
    const c = makeCluster(clock, names, { seed, verifyIntervalMs: interval })
    const random = mulberry32(seed)
    const nodes = [...c.nodes.values()]
    const ids = Array.from({ length: 400 }, (_, i) => `p-${i}`)
    // What every node must end with: the merge of what each node held when the partition healed.
    const expected = new Map<string, Versioned>()
    const track = () => {
      for (const id of ids) {
        let merged: Versioned | undefined
        for (const n of nodes) {
          const held = n.heldItem(id)
          if (held) merged = mergeClient(merged, held) ?? merged
        }
        if (merged) expected.set(id, merged)
      }
    }
    randomWrites(c, random, nodes, ids.slice(0, 300), 600)
    await run(clock, 100)
    t.ok(converged(nodes), 'converged before the partition')

    c.net.partition(...sides)
    for (const side of sides) for (const id of side) c.nodes.get(id)!.setMembers(side)
    for (let step = 0; step < 50; step++) {
      for (const side of sides) {
        const viewers = side.map((id) => c.nodes.get(id)!)
        randomWrites(c, random, viewers, ids, 10)
      }
      await run(clock, 40)
    }
    track()
    t.notOk(converged(nodes), 'the sides drifted apart')

    c.net.heal()
    const healedAt = clock.now()
    for (const n of nodes) n.setMembers(names)
    await run(clock, 2 * interval)
    t.ok(converged(nodes), `identical within ${clock.now() - healedAt} ms of the heal`)
    for (const n of nodes) {
      const wrong = ids.filter((id) => {
        const want = expected.get(id)
        if (want === undefined) return false
        // A removal wins as a removal; tombstones themselves need not match (verification compares
        // live records only, and tombstones expire on each node's own schedule).
        if (isTombstone(want)) return n.get(id) !== undefined
        const got = n.get(id)
        return got === undefined || fingerprint(got) !== fingerprint(want)
      })
      t.same(wrong, [], `${n.self} holds the merge of both sides' writes for every client`)
      n.check()
    }
    t.ok(stateOf(nodes[0]!).length > 0)
  })
}

t.test('after a heal, a member that heard from a client after the other side removed it writes the client again; one that heard nothing since does not', async (t) => {
  const interval = 1000
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b', 'c'], { seed: 21, verifyIntervalMs: interval })
  const [a, b, cc] = ['a', 'b', 'c'].map((id) => c.nodes.get(id)!) as [DistroNode, DistroNode, DistroNode]
  // When b heard from each client (its leases answer this in a cluster).
  const heard = new Map<string, number>()
  b.setHeardSince((id, since) => (heard.get(id) ?? -Infinity) > since)
  const ids = Array.from({ length: 60 }, (_, i) => `h-${i}`)
  for (const id of ids) ownerNode(c, a, id).put(record(id, 0))
  await run(clock, 100)
  t.ok(converged([a, b, cc]), 'every node holds every client')

  // b is cut off. On the side with a majority, the clients' owners remove them all: their beats
  // go to b, so that side heard nothing (its owners expire them).
  c.net.partition(['a', 'c'], ['b'])
  a.setMembers(['a', 'c'])
  cc.setMembers(['a', 'c'])
  b.setMembers(['b'])
  await run(clock, 100)
  for (const id of ids) ownerNode(c, a, id).remove(id)
  const removedAt = clock.now()
  await run(clock, 5_000)
  t.equal(a.size() + cc.size(), 0, 'the majority side removed every client')
  // A third beat b after the removals, a third just after them (within the margin for clock
  // skew), and a third only before them (a deregistration, or a client that died).
  const kind = (i: number) => (['after', 'margin', 'before'] as const)[i % 3]!
  ids.forEach((id, i) => heard.set(id, kind(i) === 'after' ? removedAt + RESTORE_MARGIN_MS + 2_000 : kind(i) === 'margin' ? removedAt + RESTORE_MARGIN_MS - 1 : removedAt - 1))
  const bEventsBefore = c.events.get('b')!.length

  c.net.heal()
  for (const n of [a, b, cc]) n.setMembers(['a', 'b', 'c'])
  await run(clock, 2 * interval)
  t.ok(converged([a, b, cc]), 'identical within two verify intervals of the heal')
  const kept = ids.filter((_, i) => kind(i) === 'after')
  t.same(
    ids.filter((id) => b.get(id) !== undefined),
    kept,
    'held: exactly the clients b heard from after their removal',
  )
  for (const id of kept) t.ok(b.versionOf(id)! > removedAt, `${id} is written again above its removal`)
  t.equal(b.stats().restored, kept.length, 'counted')
  const removedOnB = c.events
    .get('b')!
    .slice(bEventsBefore)
    .filter(([, prev, next]) => prev !== undefined && next === undefined)
    .map(([id]) => id)
  t.same(removedOnB.sort(), ids.filter((id) => !kept.includes(id)).sort(), 'b never dropped a client it restored, not even for a moment')
  for (const n of [a, b, cc]) n.check()
})

t.test('a removal older than some of the instances held drops only the older ones; a member that heard from the client since writes back just those', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 22 })
  const raw = c.net.transport('x') // a peer that speaks the wire format directly
  const b = c.nodes.get('b')!
  b.setHeardSince(() => true)
  const send = async (items: Versioned[]) => {
    const p = raw.call('b', METHODS.sync, encodeItemsMessage(items), 1000)
    await run(clock, 20)
    return decodeAccepted(await p)
  }
  const id = 'client-t'
  const owner = ownerNode(c, b, id)
  owner.put({ clientId: id, version: 0, instances: [instance(id, 1)] })
  clock.advance(5)
  const between = owner.versionOf(id)! + 1
  clock.advance(5)
  owner.put({ clientId: id, version: 0, instances: [instance(id, 1), instance(id, 2)] })
  await run(clock, 50)
  t.equal(b.get(id)?.instances.length, 2)
  const before = c.events.get('b')!.length

  // A removal from between the two writes: port 1 was written before it, port 2 after.
  t.equal(await send([{ clientId: id, version: between, removed: true }]), 1, 'the removal is merged')
  t.same(b.get(id)?.instances.map((i) => i.port).sort(), [1, 2], 'b heard from the client since: port 1 is written again')
  t.ok(b.versionOf(id)! > between, 'above the removal')
  t.equal(b.stats().restored, 1)
  t.same(c.events.get('b')!.slice(before), [], 'its listeners saw nothing go')

  t.equal(await send([{ clientId: id, version: between, removed: true }]), 0, 'the same removal again adds nothing')

  // Now a removal newer than the floor but older than every instance held: it drops nothing
  // visible (it only raises the floor), and nothing is written again.
  const later = b.versionOf(id)! + 1
  clock.advance(5)
  owner.put({ clientId: id, version: 0, instances: [instance(id, 3)] })
  await run(clock, 50)
  const held = b.get(id)!
  t.ok(held.instances.length === 1 && b.versionOf(id)! > later)
  t.equal(await send([{ clientId: id, version: later, removed: true }]), 1, 'merged: it raises the floor')
  t.same(b.get(id)!.instances, held.instances, 'the same instances')
  t.equal(b.stats().restored, 1, 'nothing written again')
  b.check()
})

t.test('a peer that leaves the view loses its queue; when it comes back, verification repairs it', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b', 'c'], { seed: 13, verifyIntervalMs: 1000 })
  const [a, b, cc] = ['a', 'b', 'c'].map((id) => c.nodes.get(id)!) as [DistroNode, DistroNode, DistroNode]
  c.net.setDown('c', true)
  a.setMembers(['a', 'b'])
  b.setMembers(['a', 'b'])
  const ids = Array.from({ length: 100 }, (_, i) => `d-${i}`)
  for (const id of ids) ownerNode(c, a, id).put(record(id, 0))
  await run(clock, 3000)
  t.equal(cc.size(), 0, 'c heard nothing while down')
  t.equal(a.queuedSyncs() + b.queuedSyncs(), 0, 'nothing queued for a peer out of the view')
  c.net.setDown('c', false)
  for (const n of [a, b, cc]) n.setMembers(['a', 'b', 'c'])
  await run(clock, 100)
  const ofAB = ids.filter((id) => a.ownerOf(id) !== 'c')
  t.ok(
    ofAB.every((id) => sameRecord(cc.get(id), a.get(id))),
    "a and b verified with c as soon as it rejoined their view: c has their clients",
  )
  // The clients c now owns are repaired when c next verifies (it pushes an empty summary, a and b
  // push back what they hold): within one interval.
  await run(clock, 1000)
  t.ok(converged([a, b, cc]), 'c caught up within one verify interval')
  t.equal(cc.size(), 100)
})

t.test('a verify round the peer ignored (its view lags) is sent again a second later, not a whole interval later', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 17, verifyIntervalMs: 5000 })
  const [a, b] = ['a', 'b'].map((id) => c.nodes.get(id)!) as [DistroNode, DistroNode]
  a.setMembers(['a'])
  b.setMembers(['b'])
  const ids = Array.from({ length: 50 }, (_, i) => `r-${i}`)
  for (const id of ids) a.put(record(id, 0))
  await run(clock, 100)
  t.equal(b.size(), 0, 'b heard nothing: neither counts the other')
  // a sees b first; b sees a 300 ms later, so it ignores a's first round.
  a.setMembers(['a', 'b'])
  await run(clock, 300)
  b.setMembers(['a', 'b'])
  await run(clock, 1500)
  const ofA = ids.filter((id) => a.ownerOf(id) === 'a')
  t.ok(ofA.length > 0)
  t.ok(
    ofA.every((id) => sameRecord(b.get(id), a.get(id))),
    'b holds what a owns 1.8 s after a saw it, well before the next interval (5 s)',
  )
})

t.test('a periodic verify round waits behind the changes queued for the peer: under steady writes the peer finds nothing to repair', async (t) => {
  const clock = new ManualClock()
  // One latency for every call, so that a connection's calls arrive in order, as over TCP.
  const c = makeCluster(clock, ['a', 'b'], { seed: 6, minLatencyMs: 2, maxLatencyMs: 2, verifyIntervalMs: 100 })
  const a = c.nodes.get('a')!
  const b = c.nodes.get('b')!
  let k = 0
  // A write a millisecond on the owner: whenever a verify round is due, changes are queued for b.
  for (let ms = 0; ms < 1000; ms++) {
    let id = `w${k++}`
    while (!a.isResponsible(id)) id = `w${k++}`
    a.put(record(id, 0))
    await run(clock, 1, 1)
  }
  await run(clock, 100)
  t.ok(a.stats().verifyRoundsSent >= 9, `a sent ${a.stats().verifyRoundsSent} verify rounds`)
  t.equal(b.stats().repairsRun, 0, 'b found its copy of what a owns equal to the summary every time')
  t.ok(converged(c.nodes.values()))
})

t.test("a peer's sync batch is applied in one bulk call, every listener call inside it (the wiring passes the view's batch)", async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 7 })
  const a = c.nodes.get('a')!
  const b = c.nodes.get('b')!
  let bulks = 0
  let inBulk = false
  let outside = 0
  b.setBulkApply((apply) => {
    bulks++
    inBulk = true
    try {
      apply()
    } finally {
      inBulk = false
    }
  })
  b.subscribe((_id, _prev, _next, origin) => {
    if (origin === 'remote' && !inBulk) outside++
  })
  let k = 0
  const ids: string[] = []
  while (ids.length < 100) {
    const id = `bulk${k++}`
    if (a.isResponsible(id)) ids.push(id)
  }
  for (const id of ids) a.put(record(id, 0))
  await run(clock, 50)
  t.equal(b.size(), ids.length)
  t.equal(c.net.calls.get(METHODS.sync), 1, 'one batch')
  t.equal(bulks, 1, 'applied in one bulk call')
  t.equal(outside, 0, 'no change reached a listener outside it')
})

t.test('membersVersion goes up exactly when the view of the members changes (the leases re-ask who owns a client then)', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b', 'c'], { seed: 7 })
  const a = c.nodes.get('a')!
  const v0 = a.membersVersion
  a.setMembers(['a', 'b', 'c'])
  t.equal(a.membersVersion, v0, 'the same view: no change')
  a.setMembers(['a', 'b'])
  t.equal(a.membersVersion, v0 + 1, 'a member left')
  a.setMembers(['a', 'b'])
  t.equal(a.membersVersion, v0 + 1)
  a.setMembers(['a', 'b', 'c'])
  t.equal(a.membersVersion, v0 + 2, 'it came back')
  for (const n of c.nodes.values()) n.stop()
})
