// digest.ts: summaries match exactly when two nodes hold the same clients for an owner; the exact
// diff pulls, pushes and drops exactly what differs; and verification rounds make a partitioned
// cluster converge (issue 4: within two verify intervals of the partition healing).

import t from 'tap'
import { BucketDigest, bucketHash, bucketOf, differingBuckets, diffDigest, stillDiffering, type ExactDigest, type LocalView } from '../../../../src/ap/distro/digest.js'
import { DISTRO_LIMITS } from '../../../../src/ap/distro/limits.js'
import { clientHash } from '../../../../src/ap/distro/ownership.js'
import { nextVersion, versionSalt, writeClient } from '../../../../src/ap/distro/records.js'
import { Replica } from '../../../../src/ap/distro/replica.js'
import { isTombstone, tombstone, type NodeId } from '../../../../src/ap/distro/types.js'
import { clientIds, instance, mulberry32, pick, record } from './fixtures.js'

const NOW = 1_700_000_000_000
const ABC = ['a', 'b', 'c']

/** A LocalView over plain maps, to test diffDigest apart from Replica: [fingerprint (and version), removed]. */
function view(held: Record<string, [number, boolean]>, owned: Record<NodeId, string[]>): LocalView {
  return {
    held: (id) => (held[id] ? { version: held[id]![0], removed: held[id]![1], fingerprint: held[id]![0] } : undefined),
    *ownedBy(owner, buckets) {
      for (const id of owned[owner] ?? []) if (buckets === null || buckets.has(bucketOf(id))) yield id
    },
  }
}

function exact(owner: NodeId, live: Record<string, number>, removed: Record<string, number> = {}, buckets: number[] | null = null): ExactDigest {
  return { owner, buckets, live: new Map(Object.entries(live)), removed: new Map(Object.entries(removed)) }
}

t.test('diffDigest: each rule on its own', async (t) => {
  const held: Record<string, [number, boolean]> = {
    same: [5, false],
    differs: [3, false], // another fingerprint: older, newer or concurrent, the merge decides
    removedHere: [8, true], // a tombstone here, live at the owner
    goneThere: [4, false], // the owner removed it at 6
    liveAfterRemoval: [12, false], // re-registered here after the owner's removal at 10
    notThere: [2, false], // the owner neither has it nor remembers removing it
    otherOwner: [1, false], // owned by c: not this comparison's business
  }
  const owned = { a: ['same', 'differs', 'removedHere', 'goneThere', 'liveAfterRemoval', 'notThere'], c: ['otherOwner'] }
  const digest = exact('a', { same: 5, differs: 4, removedHere: 7, missingHere: 1 }, { goneThere: 6, liveAfterRemoval: 10, neverSeen: 3 })
  const d = diffDigest(view(held, owned), digest)
  t.same([...d.pull].sort(), ['differs', 'goneThere', 'liveAfterRemoval', 'missingHere', 'removedHere'], "the owner's copy of each, record or tombstone")
  t.same(d.push.sort(), ['notThere'])
  // After merging: differs kept something the owner lacks, removedHere stayed removed,
  // missingHere now equals the owner's, goneThere went, liveAfterRemoval survived the tombstone.
  const after = view({ ...held, differs: [11, false], missingHere: [1, false], goneThere: [6, true] }, owned)
  t.same(stillDiffering(after, digest, d.pull).sort(), ['differs', 'liveAfterRemoval', 'removedHere'], 'pushed back to the owner')
  const agreed = view({ ...held, differs: [4, false], removedHere: [7, false], missingHere: [1, false], goneThere: [6, true], liveAfterRemoval: [10, true] }, owned)
  t.same(stillDiffering(agreed, digest, d.pull), [], "nothing to push when the merge gave the owner's copy")
})

t.test('diffDigest: a scoped digest says nothing about clients outside its buckets', async (t) => {
  const ids = clientIds(200)
  const inScope = ids.filter((id) => bucketOf(id) === bucketOf(ids[0]!))
  const outOfScope = ids.filter((id) => bucketOf(id) !== bucketOf(ids[0]!))
  const local = view(Object.fromEntries(ids.map((id) => [id, [1, false]])), { a: ids })
  const d = diffDigest(local, exact('a', {}, {}, [bucketOf(ids[0]!)]))
  t.same(d.push.sort(), inScope.sort(), 'only the clients of the listed bucket are missing at the owner')
  t.ok(outOfScope.length > 100 && d.push.every((id) => !outOfScope.includes(id)))
})

t.test('BucketDigest: updated one change at a time, it equals one built from the final state', async (t) => {
  const random = mulberry32(5)
  const ids = clientIds(3000)
  const inc = new BucketDigest(64)
  const versions = new Map<string, number>()
  for (let step = 0; step < 20_000; step++) {
    const id = pick(random, ids)
    const old = versions.get(id)
    if (old !== undefined) inc.remove(clientHash(id), bucketHash(id), old)
    if (random() < 0.2) versions.delete(id)
    else {
      const v = (old ?? 0) + 1 + Math.floor(random() * 2 ** 40)
      versions.set(id, v)
      inc.add(clientHash(id), bucketHash(id), v)
    }
  }
  const fresh = new BucketDigest(64)
  for (const [id, v] of versions) fresh.add(clientHash(id), bucketHash(id), v)
  t.same(differingBuckets(inc.summary('a'), fresh.summary('a'), 64), [])
  t.same(Array.from(inc.counts), Array.from(fresh.counts))
  // And any single difference shows, in its bucket only: a version, a missing client.
  const [id, v] = versions.entries().next().value as [string, number]
  fresh.remove(clientHash(id), bucketHash(id), v)
  t.same(differingBuckets(inc.summary('a'), fresh.summary('a'), 64), [bucketHash(id) & 63], 'a missing client')
  fresh.add(clientHash(id), bucketHash(id), v + 1)
  t.same(differingBuckets(inc.summary('a'), fresh.summary('a'), 64), [bucketHash(id) & 63], 'same count, another version')
  t.throws(() => new BucketDigest(100), /power of two/)
})

t.test('differingBuckets: at most max per round, and both sides must bucket alike', async (t) => {
  const x = new BucketDigest(16)
  const y = new BucketDigest(16)
  for (let b = 0; b < 16; b++) x.add(b, b, 1)
  t.same(differingBuckets(x.summary('a'), y.summary('a'), 5), [0, 1, 2, 3, 4])
  t.throws(() => differingBuckets(x.summary('a'), new BucketDigest(32).summary('a')), /bucket alike/)
})

t.test('a summary at 100k clients is 12 KiB and costs no rescan', async (t) => {
  const r = new Replica('a', ['a'])
  for (const id of clientIds(100_000)) r.apply(record(id, 1), NOW)
  const s = r.summary()
  t.equal(s.counts.length + s.fps.length, 3 * 1024, '1024 counts and 2048 fingerprint words: 12 KiB')
  const started = performance.now()
  for (let i = 0; i < 100; i++) r.summary()
  const ms = (performance.now() - started) / 100
  t.ok(ms < 5, `a summary takes ${ms.toFixed(3)} ms`)
})

// ---- verification across a cluster ---------------------------------------------------------

/** Replicas with local writes, syncs that can be lost, and verification rounds, as the driver will run them. */
class MiniCluster {
  readonly nodes = new Map<NodeId, Replica>()
  now = NOW
  /** Pairs that cannot talk. */
  cut = new Set<string>()
  /** Every write ever made, wherever it was made, merged: what every node must converge to. */
  readonly oracle = new Replica('oracle', [])

  constructor(ids: NodeId[], readonly random: () => number, readonly lossRate = 0) {
    for (const id of ids) this.nodes.set(id, new Replica(id, ids))
  }

  node(id: NodeId): Replica {
    return this.nodes.get(id)!
  }

  reachable(x: NodeId, y: NodeId): boolean {
    return !this.cut.has(`${x}|${y}`) && !this.cut.has(`${y}|${x}`)
  }

  partition(...sides: NodeId[][]): void {
    this.cut.clear()
    for (const s of sides) for (const x of s) for (const other of sides) if (other !== s) for (const y of other) this.cut.add(`${x}|${y}`)
    for (const s of sides) for (const x of s) this.node(x).setMembers(s)
  }

  heal(): void {
    this.cut.clear()
    for (const r of this.nodes.values()) r.setMembers([...this.nodes.keys()])
  }

  /** A write by the node responsible (in its view); its sync reaches reachable peers unless lost. */
  write(at: NodeId, clientId: string, remove: boolean): void {
    this.now += 1
    const r = this.node(at)
    const v = nextVersion(r.heldVersion(clientId), this.now, versionSalt(at))
    // A client with one instance whose port moves with every write: the old port is removed.
    const item = remove ? tombstone(clientId, v) : writeClient(r.heldItem(clientId), clientId, [instance(clientId, 1 + (v % 60_000))], v)
    if (item === null) return
    r.apply(item, this.now)
    this.oracle.apply(item, this.now)
    this.sync(at, clientId)
  }

  sync(from: NodeId, clientId: string): void {
    const item = this.node(from).heldItem(clientId)!
    for (const [id, peer] of this.nodes) {
      if (id !== from && this.reachable(from, id) && this.random() >= this.lossRate) peer.apply(item, this.now)
    }
  }

  /** One verification round: every node sends its summary to every reachable peer. Returns buckets repaired. */
  verifyRound(): number {
    let repaired = 0
    for (const [ownerId, owner] of this.nodes) {
      for (const [peerId, peer] of this.nodes) {
        if (peerId === ownerId || !this.reachable(ownerId, peerId)) continue
        const buckets = differingBuckets(peer.summary(ownerId), owner.summary())
        repaired += buckets.length
        // As the driver will: exact digests in requests of a bounded number of buckets.
        for (let i = 0; i < buckets.length; i += DISTRO_LIMITS.maxBucketsPerRequest) {
          const digest = owner.exact(buckets.slice(i, i + DISTRO_LIMITS.maxBucketsPerRequest))
          const d = diffDigest(peer, digest)
          for (const id of d.pull) peer.apply(owner.heldItem(id)!, this.now)
          const back = stillDiffering(peer, digest, d.pull)
          for (const id of [...d.push, ...back]) {
            // The owner merges the peer's copy and, as for any change to a client it owns, syncs it.
            if (owner.apply(peer.heldItem(id)!, this.now)) this.sync(ownerId, id)
          }
        }
      }
    }
    for (const r of this.nodes.values()) r.check()
    return repaired
  }

  /** Live records by client, as "clientId@version:ports" strings, for each node. */
  views(): Map<NodeId, string[]> {
    const out = new Map<NodeId, string[]>()
    for (const [id, r] of this.nodes) out.set(id, lines(r))
    return out
  }

  /** What every node should hold once converged: the merge of every write made anywhere. */
  expected(): string[] {
    return lines(this.oracle)
  }

  converged(): boolean {
    const vs = [...this.views().values()].map((v) => v.join('\n'))
    return vs.every((v) => v === vs[0])
  }
}

function lines(r: Replica): string[] {
  return [...r.records()].map((rec) => `${rec.clientId}@${rec.version}:${rec.instances.map((i) => i.port).sort((x, y) => x - y).join(',')}`).sort()
}

t.test('verification repairs lost syncs in one round', async (t) => {
  const c = new MiniCluster(ABC, mulberry32(1), 0.3)
  const ids = clientIds(3000)
  const random = mulberry32(2)
  for (let i = 0; i < 10_000; i++) {
    const id = pick(random, ids)
    const owner = c.node('a').ownerOf(id)!
    c.write(owner, id, random() < 0.15)
  }
  t.notOk(c.converged(), '30% of syncs were lost: the nodes differ')
  t.ok(c.verifyRound() > 0)
  t.ok(c.converged(), 'identical after one round')
  t.same(c.views().get('b'), c.expected(), 'holding each client\'s latest write')
  t.equal(c.verifyRound(), 0, 'and the next round finds every summary equal')
})

t.test('property: after a partition heals, every node holds the same clients within two verify rounds', async (t) => {
  let worst = 0
  for (let seed = 1; seed <= 30; seed++) {
    const random = mulberry32(seed)
    const c = new MiniCluster(ABC, random, 0.1)
    const ids = clientIds(400, `s${seed}-`)
    const writes = (n: number, nodes: NodeId[]) => {
      for (let i = 0; i < n; i++) {
        const id = pick(random, ids)
        // Each side's owner (by its own view) takes the write.
        const owner = c.node(pick(random, nodes)).ownerOf(id)!
        c.write(owner, id, random() < 0.2)
      }
    }
    writes(800, ABC)
    c.verifyRound()
    const isolated = pick(random, ABC)
    c.partition([isolated], ABC.filter((n) => n !== isolated))
    writes(400, ABC)
    c.verifyRound() // each side verifies within itself during the partition
    writes(200, ABC)
    c.heal()
    let rounds = 0
    while (!c.converged() && rounds < 10) {
      c.verifyRound()
      rounds++
    }
    if (!c.converged()) {
      t.fail(`seed ${seed}: not converged after 10 rounds`)
      return
    }
    worst = Math.max(worst, rounds)
    if (c.views().get('a')!.join('\n') !== c.expected().join('\n')) {
      t.fail(`seed ${seed}: the nodes agree, but not on the merge of every write`)
      return
    }
    // Nothing is left to repair, and what the nodes agree on is the merge of every write.
    t.equal(c.verifyRound(), 0, `seed ${seed}: summaries all equal`)
  }
  t.ok(worst <= 2, `converged within ${worst} round(s) after healing, in every seed`)
})

t.test('a registration taken in a partition survives the heal: pushed to its owner, never dropped', async (t) => {
  const c = new MiniCluster(ABC, mulberry32(9))
  c.partition(['a'], ['b', 'c'])
  // A client that the full cluster would give to a registers on b's side.
  const id = clientIds(1000).find((x) => new Replica('x', ABC).ownerOf(x) === 'a')!
  c.write(c.node('b').ownerOf(id)!, id, false)
  t.equal(c.node('a').get(id), undefined)
  c.heal()
  t.equal(c.node('b').ownerOf(id), 'a')
  c.verifyRound()
  t.ok(c.node('a').get(id) && c.node('b').get(id) && c.node('c').get(id), 'every node has it')
  t.ok(c.converged())
})

t.test('a removal reaches a peer that missed it: the owner lists the tombstone, the peer drops', async (t) => {
  const c = new MiniCluster(ABC, mulberry32(4))
  const id = clientIds(100).find((x) => c.node('a').ownerOf(x) === 'a')!
  c.write('a', id, false)
  c.cut.add('a|c')
  c.write('a', id, true)
  c.cut.clear()
  t.ok(c.node('c').get(id), 'c missed the removal')
  c.verifyRound()
  t.equal(c.node('c').get(id), undefined)
  t.ok(isTombstone(c.node('c').heldItem(id)!), 'and keeps the tombstone, against late copies')
})
