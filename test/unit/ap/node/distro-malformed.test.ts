// Malformed peer messages are refused whole, answered with an error, and change nothing; the node
// keeps working afterwards. Malformed answers to this node's own requests fail that exchange only.

import t from 'tap'
import { ManualClock } from '../../../../src/core/clock.js'
import { METHODS, decodeItemsMessage, decodeVerifyAnswer, encodeAccepted, encodeItemsMessage, encodePage, encodeSummary, itemBytes } from '../../../../src/ap/node/distro-messages.js'
import { ByteWriter, ITEMS_FORMAT, KIND_RECORD, KIND_TOMBSTONE } from '../../../../src/ap/node/distro-items.js'
import { DISTRO_LIMITS } from '../../../../src/ap/distro/limits.js'
import { fingerprint, instanceKey, mergeClient, writeClient } from '../../../../src/ap/distro/records.js'
import { isTombstone, tombstone, type ClientState, type Versioned } from '../../../../src/ap/distro/types.js'
import { instance, record } from '../distro/fixtures.js'
import { FakeCallError, flush, makeCluster, run, stateOf } from './fake-network.js'

const enc = new TextEncoder()
const json = (o: unknown) => enc.encode(JSON.stringify(o))
const summary = (owner: string, buckets: number) => ({ owner, buckets, counts: new Uint32Array(buckets), fps: new Uint32Array(2 * buckets) })

// The items' wire form (distro-items.ts) written from a readable list form, so that a test can
// break one thing and send it: a record is [clientId, version, floor, instances, stamps,
// removals], a tombstone [clientId, version, removals]; an instance [namespace, group, service,
// cluster (indices into s), ip, port, weight, flags, metadata (a list of indices)]; stamps and
// removals 0 or a list ([key, version] each). `kind` overrides an item's kind byte.
type ListItem = any[]
function writeList(w: ByteWriter, s: string[], items: ListItem[], kind?: number): void {
  w.varint(s.length)
  for (const x of s) w.string(x)
  w.varint(items.length)
  const list = (x: any, each: (v: any) => void) => {
    if (x === 0) return w.varint(0)
    w.varint(x.length)
    for (const v of x) each(v)
  }
  const removals = (x: any) => list(x, ([key, v]: [string, number]) => (w.string(key), w.f64(v)))
  for (const it of items) {
    w.string(it[0])
    const tomb = it.length === 3
    w.u8(kind ?? (tomb ? KIND_TOMBSTONE : KIND_RECORD))
    w.f64(it[1])
    if (tomb) {
      removals(it[2])
      continue
    }
    w.f64(it[2])
    w.varint(it[3].length)
    for (const i of it[3]) {
      for (let k = 0; k < 4; k++) w.varint(i[k])
      w.string(i[4])
      w.varint(i[5])
      w.f64(i[6])
      w.u8(i[7])
      list(i[8], (v: number) => w.varint(v))
    }
    list(it[4], (v: number) => w.f64(v))
    removals(it[5])
  }
}
function items(s: string[], list: ListItem[], opts: { kind?: number; tail?: number[] } = {}): Uint8Array {
  const w = new ByteWriter(256)
  w.u8(ITEMS_FORMAT)
  writeList(w, s, list, opts.kind)
  for (const b of opts.tail ?? []) w.u8(b)
  return w.bytes()
}

t.test('the list form of the tests writes what the encoder writes', async (t) => {
  const good = record('fresh', 5)
  const i = good.instances[0]!
  t.same(Buffer.from(items(['public', 'DEFAULT_GROUP', 'orders', 'DEFAULT'], [['fresh', 5, 0, [[0, 1, 2, 3, i.ip, i.port, 1, 3, []]], 0, 0]])), Buffer.from(encodeItemsMessage([good])))
  const tomb = tombstone('gone', 9, [{ key: 'k', version: 12 }])
  t.same(Buffer.from(items([], [['gone', 9, [['k', 12]]]])), Buffer.from(encodeItemsMessage([tomb])))
})

t.test('malformed peer messages are refused without changing state', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a', 'b'], { seed: 31 })
  // raw-x is a peer without a DistroNode: it sends whatever a test writes.
  const raw = c.net.transport('raw-x')
  const a = c.nodes.get('a')!
  for (let i = 0; i < 50; i++) a.put(record(`m${i}`, 0))
  a.remove('m0')
  await run(clock, 50)
  const b = c.nodes.get('b')!
  const before = stateOf(b)
  const tombVersion = b.versionOf('m0')
  const eventsBefore = c.events.get('b')!.length

  const good = record('fresh', 5)
  // `bad1` sends the good record with one thing broken.
  const S = ['public', 'DEFAULT_GROUP', 'orders', 'DEFAULT', 'k', 'v']
  const G: ListItem = ['fresh', 5, 0, [[0, 1, 2, 3, good.instances[0]!.ip, good.instances[0]!.port, 1, 3, []]], 0, 0]
  const bad1 = (patch: (it: any[]) => void, s: string[] = S) => {
    const it = structuredClone(G)
    patch(it)
    return items(s, [it])
  }
  const goodBytes = items(S, [G])
  const badName = S.slice()
  badName[G[3][0][0]] = 'bad\u0001name'
  const invalidUtf8 = Buffer.from(items(['public', 'DEFAULT_GROUP', 'orders', 'DEFAULT', 'kx', 'v'], [G]))
  invalidUtf8[invalidUtf8.indexOf('kx') + 1] = 0xff
  const bad: [string, string, Uint8Array][] = [
    ['sync', 'JSON (the form before this one)', json({ s: [], items: [] })],
    ['sync', 'an empty payload', new Uint8Array(0)],
    ['sync', 'another format byte', new Uint8Array([ITEMS_FORMAT + 1, 0, 0])],
    ['sync', 'a message cut short', goodBytes.subarray(0, goodBytes.length - 3)],
    ['sync', 'bytes after the message', items(S, [G], { tail: [0] })],
    ['sync', 'a varint of more than 5 bytes', new Uint8Array([ITEMS_FORMAT, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])],
    ['sync', 'a table string that is not UTF-8', invalidUtf8],
    ['sync', 'an unknown item kind', items(S, [G], { kind: 3 })],
    ['sync', 'a string index out of range', bad1((it) => (it[3][0][0] = 99))],
    ['sync', 'an invalid name', bad1(() => {}, badName)],
    ['sync', 'bad flags', bad1((it) => (it[3][0][7] = 4))],
    ['sync', 'a negative version', bad1((it) => (it[1] = -1))],
    ['sync', 'a fractional version', bad1((it) => (it[1] = 1.5))],
    ['sync', 'a version past 2^53', bad1((it) => (it[1] = 2 ** 60))],
    ['sync', 'a version that is not a number', bad1((it) => (it[1] = NaN))],
    ['sync', 'an empty client id', bad1((it) => (it[0] = ''))],
    ['sync', 'a bad port', bad1((it) => (it[3][0][5] = 70000))],
    ['sync', 'a bad ip', bad1((it) => (it[3][0][4] = 'nope'))],
    ['sync', 'an infinite weight', bad1((it) => (it[3][0][6] = Infinity))],
    ['sync', 'metadata not a list of pairs', bad1((it) => (it[3][0][8] = [4]))],
    ['sync', 'a metadata key twice', bad1((it) => (it[3][0][8] = [4, 5, 4, 5]))],
    // Atomic: a valid first item must not be applied when a later one is bad.
    ['sync', 'a good item then a bad one', items(S, [G, ['m1', 7, 0, [], 0, 0]])],
    ['sync', 'a client twice', items(S, [G, G])],
    ['sync', 'a record with no instances', bad1((it) => (it[3] = []))],
    ['sync', 'an instance twice', bad1((it) => (it[3] = [it[3][0], it[3][0]]))],
    ['sync', 'a stamp per instance missing', bad1((it) => (it[3] = [it[3][0], [...it[3][0].slice(0, 5), 9090, ...it[3][0].slice(6)]]) && (it[4] = [5]))],
    ['sync', 'a stamp above the version', bad1((it) => (it[4] = [6]))],
    ['sync', 'a version above every stamp', bad1((it) => (it[4] = [4]))],
    ['sync', 'a stamp at the floor', bad1((it) => ((it[4] = [5]), (it[2] = 5)))],
    ['sync', 'a removal above the version', bad1((it) => ((it[4] = [5]), (it[5] = [['k', 6]])))],
    ['sync', 'a removal of a held instance', bad1((it) => ((it[4] = [4]), (it[5] = [[instanceKey(good.instances[0]!), 5]])))],
    ['sync', 'removals not newest first', bad1((it) => ((it[4] = [3]), (it[5] = [['k1', 4], ['k2', 5]])))],
    ['sync', 'a removal with an empty key', bad1((it) => ((it[4] = [4]), (it[5] = [['', 5]])))],
    ['sync', 'too many removals', bad1((it) => ((it[4] = [5]), (it[5] = Array.from({ length: DISTRO_LIMITS.maxRemovalsPerClient + 1 }, (_, i) => [`k${i}`, 4]))))],
    ['push', 'a tombstone removal at its floor', items([], [['m1', 2 ** 50, [['k', 2 ** 50]]]])],
    ['verify', 'a summary for another owner', encodeSummary(summary('a', DISTRO_LIMITS.digestBuckets))],
    ['verify', 'another bucket count', encodeSummary(summary('raw-x', 16))],
    ['verify', 'a summary in JSON (the form before this one)', json({ owner: 'raw-x', buckets: DISTRO_LIMITS.digestBuckets, counts: new Array(DISTRO_LIMITS.digestBuckets).fill(0), fps: new Array(2 * DISTRO_LIMITS.digestBuckets).fill(0) })],
    ['verify', 'a summary cut short', encodeSummary(summary('raw-x', DISTRO_LIMITS.digestBuckets)).subarray(0, 100)],
    ['verify', 'a summary in the items form', encodeItemsMessage([])],
    ['exact', 'no buckets', json({ buckets: [] })],
    ['exact', 'a bucket out of range', json({ buckets: [DISTRO_LIMITS.digestBuckets] })],
    ['exact', 'a bucket twice', json({ buckets: [3, 3] })],
    ['exact', 'too many buckets', json({ buckets: Array.from({ length: 65 }, (_, i) => i) })],
    ['pull', 'no ids', json({ ids: [] })],
    ['pull', 'too many ids', json({ ids: Array.from({ length: 1001 }, (_, i) => `m${i}`) })],
    ['pull', 'a non-string id', json({ ids: [7] })],
    ['load', 'an offset without a session', json({ session: null, offset: 5 })],
    ['load', 'an unknown session', json({ session: 'b/999', offset: 0 })],
  ]
  for (const [method, what, payload] of bad) {
    const p = raw.call('b', (METHODS as Record<string, string>)[method]!, payload, 1000)
    p.catch(() => {})
    await run(clock, 20)
    const err = await p.then(
      () => null,
      (e: unknown) => e,
    )
    t.ok(err instanceof FakeCallError && err.code === 'REMOTE' && /^INVALID_/.test(err.remoteCode ?? ''), `${method}: ${what} is refused (${(err as Error | null)?.message})`)
  }
  t.same(stateOf(b), before, 'nothing changed')
  t.equal(b.versionOf('m0'), tombVersion)
  t.equal(b.get('fresh'), undefined)
  t.equal(c.events.get('b')!.length, eventsBefore, 'no listener fired')
  t.equal(b.stats().refused, bad.length)
  b.check()

  // Still serving: a well-formed sync applies.
  const p = raw.call('b', METHODS.sync, encodeItemsMessage([good]), 1000)
  await run(clock, 20)
  await p
  t.equal(b.get('fresh')?.version, 5)
})

t.test('malformed answers from an owner fail the repair and change nothing', async (t) => {
  const clock = new ManualClock()
  const c = makeCluster(clock, ['a'], { seed: 32, verifyIntervalMs: 1000 })
  // evil is a member in a's view, but a raw transport that lies in its answers.
  const evil = c.net.transport('evil')
  const a = c.nodes.get('a')!
  a.setMembers(['a', 'evil'])
  for (let i = 0; i < 200; i++) a.put(record(`e${i}`, 0))
  await run(clock, 20)
  const before = stateOf(a)
  const owned = [...a.clients()].filter((r) => a.ownerOf(r.clientId) === 'evil')
  t.ok(owned.length > 50, "evil owns some clients in a's view")
  const answers: ((asked: number[]) => Uint8Array)[] = [
    () => enc.encode('garbage'),
    () => json({ owner: 'evil', buckets: [0], live: [], removed: [] }), // other buckets than asked
    (asked) => json({ owner: 'evil', buckets: asked, live: [['e1', -4]], removed: [] }),
    // A valid digest that makes a pull, answered with a record that is not one.
    (asked) => json({ owner: 'evil', buckets: asked, live: [['e-new', 2 ** 52]], removed: [] }),
  ]
  let n = 0
  const dec = new TextDecoder()
  evil.onCall(METHODS.exact, async (_from, p) => answers[n++ % answers.length]!((JSON.parse(dec.decode(p)) as { buckets: number[] }).buckets))
  let pulls = 0
  evil.onCall(METHODS.pull, async () => {
    pulls++
    // A record whose port is out of range.
    return encodePage([{ clientId: 'e-new', version: 2 ** 52, instances: [{ ...instance('e-new', 1), port: 70000 }] }], 1)
  })
  evil.onCall(METHODS.push, async () => encodeAccepted(0))
  // evil claims to own nothing, so a sees every one of evil's clients as differing.
  const empty = summary('evil', DISTRO_LIMITS.digestBuckets)
  for (let round = 0; round < answers.length; round++) {
    const p = evil.call('a', METHODS.verify, encodeSummary(empty), 1000)
    await run(clock, 50)
    const answer = decodeVerifyAnswer(await p)
    t.ok(answer.differing > 0)
  }
  await flush()
  t.equal(pulls, 1, 'the last round got as far as a pull')
  t.ok(a.stats().repairsFailed >= answers.length, `${a.stats().repairsFailed} repairs failed on bad answers`)
  t.same(stateOf(a), before, 'nothing changed')
  a.check()
})

t.test('every state the merge makes crosses the wire unchanged', async (t) => {
  const A = instance('w', 1)
  const B = instance('w', 2, { zone: 'b' })
  const first = writeClient(undefined, 'w', [A, B], 100)!
  const dropB = writeClient(first, 'w', [A], 101)!
  const again = writeClient(tombstone('w', 90), 'w', [B], 102)!
  const removedWithMemory = mergeClient(dropB, tombstone('w', 100)) as Versioned
  t.ok(isTombstone(removedWithMemory) && removedWithMemory.removals?.length === 1, 'a tombstone that remembers a later removal')
  for (const [what, item] of [
    ['a plain record', record('w', 7)],
    ['a first write', first],
    ['a write that removed an instance', dropB],
    ['a write after a removal (a floor)', again],
    ['a plain tombstone', tombstone('w', 9)],
    ['a tombstone with removals', removedWithMemory],
  ] as [string, Versioned][]) {
    const [back] = decodeItemsMessage(encodeItemsMessage([item])) as [Versioned]
    t.equal(fingerprint(back), fingerprint(item), what)
    t.equal(isTombstone(back), isTombstone(item), `${what}: same kind`)
  }
})

t.test('itemBytes bounds what items add to a message, whatever their strings', async (t) => {
  const odd = { 'k"\\': 'v\u0001\u00e9\u4e2d\ud83d\ude00', plain: 'x'.repeat(100) }
  const items: Versioned[] = [
    writeClient(undefined, 'é-client', [instance('é-client', 1, odd), instance('é-client', 2)], 100)!,
    tombstone('gone', 7),
    mergeClient(writeClient(undefined, 'w', [instance('w', 1), instance('w', 2)], 100)!, tombstone('w', 100)) as Versioned,
  ]
  for (let n = 1; n <= items.length; n++) {
    const some = items.slice(0, n)
    const bound = some.reduce((sum, it) => sum + itemBytes(it), 0)
    const bytes = encodeItemsMessage(some).length
    t.ok(bytes <= bound + 64, `${n} items: ${bytes} bytes, bounded by ${bound}`)
  }
  const [back] = decodeItemsMessage(encodeItemsMessage(items.slice(0, 1))) as [ClientState]
  t.same(back.instances[0]!.metadata, odd, 'metadata with quotes, escapes and non-ASCII crosses unchanged')
  t.ok(Object.isFrozen(back.instances[0]!.metadata), 'a received metadata map is frozen (instances may share it)')
})

