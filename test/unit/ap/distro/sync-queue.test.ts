// sync-queue.ts: coalescing, bounded batches, a few batches in flight, backoff with seeded jitter,
// abandonment to verification; and the property that a receiver merging whatever arrives (late,
// duplicated, retried) ends with the owner's latest state.

import t from 'tap'
import { diffDigest } from '../../../../src/ap/distro/digest.js'
import { Replica } from '../../../../src/ap/distro/replica.js'
import { SyncQueue, backoffDelay, estimateBytes } from '../../../../src/ap/distro/sync-queue.js'
import { tombstone, type Versioned } from '../../../../src/ap/distro/types.js'
import { mulberry32, pick, record } from './fixtures.js'

const NOW = 1_700_000_000_000

t.test('coalescing: one entry per client, the latest version, in its first place', async (t) => {
  const q = new SyncQueue({ random: mulberry32(1) })
  t.equal(q.enqueue(record('x', 1)), 'queued')
  t.equal(q.enqueue(record('y', 1)), 'queued')
  t.equal(q.enqueue(record('x', 3)), 'coalesced')
  t.equal(q.enqueue(record('x', 2)), 'stale')
  t.equal(q.enqueue(record('x', 3)), 'coalesced', 'an equal version replaces: a merge can add to a state without raising its version')
  t.equal(q.enqueue(tombstone('x', 4)), 'coalesced', 'a removal replaces the record')
  t.equal(q.size, 2)
  const b = q.next(NOW)!
  t.same(b.items, [tombstone('x', 4), record('y', 1)], 'x kept its place ahead of y')
  t.equal(b.attempt, 1)
})

t.test('batches: bounded by items and bytes, but never empty', async (t) => {
  const q = new SyncQueue({ random: mulberry32(1), maxBatchItems: 3, maxBatchBytes: 1000, sizeOf: (i) => (i.clientId.startsWith('big') ? 5000 : 300) })
  for (const id of ['a', 'b', 'c', 'd', 'big1', 'e']) q.enqueue(record(id, 1))
  const sizes: string[][] = []
  for (;;) {
    const b = q.next(NOW)
    if (!b) break
    t.ok(b.items.length === 1 || b.bytes <= 1000, `batch of ${b.bytes} bytes`)
    sizes.push(b.items.map((i) => i.clientId))
    q.ack(b.id)
  }
  t.same(sizes, [['a', 'b', 'c'], ['d'], ['big1'], ['e']], 'three items at most; 300 + 5000 bytes do not fit; an oversized one goes alone')
})

t.test('with one batch in flight, changes made meanwhile wait for the next batch', async (t) => {
  const q = new SyncQueue({ random: mulberry32(1), maxBatchesInFlight: 1 })
  q.enqueue(record('x', 1))
  const b1 = q.next(NOW)!
  t.ok(q.busy)
  q.enqueue(record('x', 2))
  q.enqueue(record('x', 3))
  t.equal(q.next(NOW), null, 'nothing while a batch is in flight')
  t.equal(q.wakeAt(NOW), null)
  q.ack(b1.id)
  t.equal(q.wakeAt(NOW), NOW)
  t.same(q.next(NOW)!.items, [record('x', 3)], 'two changes went as one')
})

t.test('a few batches in flight; while a retry is pending, nothing new leaves and retries go one at a time', async (t) => {
  const q = new SyncQueue({ random: mulberry32(2), maxBatchesInFlight: 3, maxBatchItems: 1, baseBackoffMs: 100 })
  for (const id of ['a', 'b', 'c', 'd', 'e']) q.enqueue(record(id, 1))
  const out = [q.next(NOW), q.next(NOW), q.next(NOW)]
  t.same(out.map((b) => b?.items[0]?.clientId), ['a', 'b', 'c'], 'three go out at once')
  t.equal(q.next(NOW), null, 'every slot is taken')
  t.equal(q.batchesInFlight, 3)
  t.equal(q.wakeAt(NOW), null)
  q.ack(out[1]!.id)
  t.equal(q.wakeAt(NOW), NOW, 'an answer frees a slot')
  const r = q.fail(out[0]!.id, NOW)!
  t.equal(q.next(NOW), null, 'the peer is failing: nothing new leaves')
  t.equal(q.wakeAt(NOW), null, 'and the retry waits for the batch still out')
  q.ack(out[2]!.id)
  t.equal(q.wakeAt(NOW), r.retryAt)
  const retry = q.next(r.retryAt!)!
  t.same([retry.id, retry.attempt], [out[0]!.id, 2], 'the retry goes alone')
  t.equal(q.next(r.retryAt!), null)
  q.ack(retry.id)
  t.same([q.next(r.retryAt!)?.items[0]?.clientId, q.next(r.retryAt!)?.items[0]?.clientId], ['d', 'e'], 'then new work again, several at once')
})

t.test('backoffDelay: exponential, capped, jittered between half and all of it', async (t) => {
  const lo = () => 0
  const hi = () => 0.999999
  t.same([1, 2, 3, 4].map((a) => backoffDelay(a, lo, 100, 10_000)), [50, 100, 200, 400])
  t.same([1, 2, 3, 4].map((a) => backoffDelay(a, hi, 100, 10_000)), [99, 199, 399, 799])
  t.equal(backoffDelay(20, hi, 100, 10_000), 9999, 'capped')
  t.equal(backoffDelay(1000, lo, 100, 10_000), 5000, 'no overflow at absurd attempts')
  const a = mulberry32(99)
  const b = mulberry32(99)
  t.same([1, 2, 3, 4, 5].map((n) => backoffDelay(n, a)), [1, 2, 3, 4, 5].map((n) => backoffDelay(n, b)), 'a seed reproduces the delays')
  t.throws(() => backoffDelay(0, lo))
})

t.test('a failed batch is retried as it was after the backoff, then abandoned to verification', async (t) => {
  const q = new SyncQueue({ random: mulberry32(3), maxSyncAttempts: 3, baseBackoffMs: 100, maxBackoffMs: 1000 })
  q.enqueue(record('x', 1))
  const b = q.next(NOW)!
  const r1 = q.fail(b.id, NOW)!
  t.ok(r1.retryAt! >= NOW + 50 && r1.retryAt! < NOW + 100, `first retry at +${r1.retryAt! - NOW} ms`)
  q.enqueue(record('y', 1))
  t.equal(q.next(r1.retryAt! - 1), null, 'not before its time, and the retry goes before newer work')
  t.equal(q.wakeAt(NOW), r1.retryAt)
  const again = q.next(r1.retryAt!)!
  t.same({ id: again.id, items: again.items, attempt: again.attempt }, { id: b.id, items: b.items, attempt: 2 })
  const r2 = q.fail(again.id, r1.retryAt!)!
  t.ok(r2.retryAt! - r1.retryAt! >= 100 && r2.retryAt! - r1.retryAt! < 200, 'the delay doubles')
  const third = q.next(r2.retryAt!)!
  t.equal(third.attempt, 3)
  t.notOk(q.needsVerify)
  const r3 = q.fail(third.id, r2.retryAt!)!
  t.same(r3.abandoned, [record('x', 1)], 'after the last attempt the batch is given up')
  t.ok(q.needsVerify, 'and a verification round with this peer is due')
  t.same(q.next(r2.retryAt!)!.items, [record('y', 1)], 'the rest of the queue carries on')
})

t.test('bounded: a change for a new client past the bound is refused and asks for verification', async (t) => {
  const q = new SyncQueue({ random: mulberry32(1), maxQueuedClients: 2 })
  q.enqueue(record('a', 1))
  q.enqueue(record('b', 1))
  t.equal(q.enqueue(record('c', 1)), 'full')
  t.equal(q.size, 2)
  t.ok(q.needsVerify)
  t.equal(q.enqueue(record('a', 2)), 'coalesced', 'a queued client still takes its newer version')
})

t.test('clear: the peer left; late answers to its batches are ignored, unknown ones are bugs', async (t) => {
  const q = new SyncQueue({ random: mulberry32(1) })
  q.enqueue(record('a', 1))
  const b = q.next(NOW)!
  q.enqueue(record('b', 1))
  q.clear()
  t.equal(q.size, 0)
  t.doesNotThrow(() => q.ack(b.id))
  t.equal(q.fail(b.id, NOW), null)
  t.throws(() => q.ack(99), /was issued/)
  q.enqueue(record('c', 1))
  const b2 = q.next(NOW)!
  q.ack(b2.id)
  t.throws(() => q.ack(b2.id), /in flight/, 'a double ack')
})

t.test('estimateBytes grows with instances and metadata', async (t) => {
  const small = estimateBytes(record('x', 1))
  const withMeta = estimateBytes({ ...record('x', 1), instances: [{ ...record('x', 1).instances[0]!, metadata: { k: 'v'.repeat(1000) } }] })
  t.ok(estimateBytes(tombstone('x', 1)) < small && small < withMeta && withMeta > 1000)
})

t.test('property: with loss, retries and duplicate deliveries, the receiver ends with the owner\'s latest state', async (t) => {
  let clean = 0
  let repaired = 0
  for (let seed = 1; seed <= 200; seed++) {
    const random = mulberry32(seed)
    const owner = new Replica('a', ['a'])
    const peer = new Replica('b', ['a'])
    const q = new SyncQueue({ random, maxQueuedClients: 8, maxBatchItems: 3, maxSyncAttempts: 4 })
    const clients = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8']
    let now = NOW
    let v = 0
    const sent: Versioned[][] = []
    for (let step = 0; step < 300; step++) {
      now += Math.floor(random() * 50)
      if (random() < 0.5) {
        const id = pick(random, clients)
        const item = random() < 0.2 ? tombstone(id, ++v) : record(id, ++v, v)
        owner.apply(item, now)
        q.enqueue(item)
        if (q.size > 8) {
          t.fail(`seed ${seed}: the queue outgrew its bound`)
          return
        }
      }
      const b = q.next(now)
      if (!b) continue
      const outcome = random()
      if (outcome < 0.3) q.fail(b.id, now)
      else {
        // Delivered, sometimes with an old batch delivered again, late.
        for (const item of b.items) peer.apply(item, now)
        if (sent.length > 0 && outcome > 0.9) for (const item of pick(random, sent)) peer.apply(item, now)
        sent.push(b.items.slice())
        q.ack(b.id)
      }
    }
    // Drain without failures.
    for (let b = q.next(Infinity); b; b = q.next(Infinity)) {
      for (const item of b.items) peer.apply(item, now)
      q.ack(b.id)
    }
    if (q.needsVerify) {
      // Something was refused or abandoned: the queue said so, and one verification round repairs it.
      repaired++
      const d = diffDigest(peer, owner.exact(null))
      for (const id of d.pull) peer.apply(owner.heldItem(id)!, now)
    } else clean++
    const differs = clients.filter((id) => owner.get(id)?.version !== peer.get(id)?.version)
    if (differs.length > 0) {
      t.fail(`seed ${seed}: ${differs.join(', ')} differ (needsVerify: ${q.needsVerify})`)
      return
    }
  }
  t.ok(clean >= 20 && repaired >= 20, `${clean} seeds lost nothing; ${repaired} lost changes and were repaired by verification`)
})
