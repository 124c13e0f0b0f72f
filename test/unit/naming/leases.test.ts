// Leases under Distro ownership: a node expires only the clients it is responsible for, a client
// it takes over gets a full timeout before it can expire, and nothing expires while expiry is
// held back.

import t from 'tap'
import { MemoryEphemeralStore } from '../../../src/ap/node/memory-store.js'
import { ManualClock } from '../../../src/core/clock.js'
import { ClientLeases, SCAN_CHUNK, SWEEP_CHUNK, expire, unchangedRange } from '../../../src/naming/leases.js'
import { SELF_PRESERVATION_DEFAULTS } from '../../../src/naming/self-preservation.js'
import { BEAT_DEFAULTS, BEAT_METADATA, type Instance } from '../../../src/naming/model.js'

function record(clientId: string, version = 1) {
  const instance: Instance = { namespace: 'public', group: 'DEFAULT_GROUP', service: 's', cluster: 'DEFAULT', ip: '10.0.0.1', port: 80, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId }
  return { clientId, version, instances: [instance] }
}

t.test('a client taken over is given a full timeout from the takeover, not from its last beat elsewhere', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  // Synced from its owner: this node holds it but never saw it beat, and does not expire it.
  store.put(record('c1'))
  clock.advance(BEAT_DEFAULTS.removeAfterMs * 2)
  leases.sweep()
  t.ok(store.get('c1'), 'not owned here: never expired here')

  leases.takeOver(['c1', 'unknown'])
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs - 1)
  leases.sweep()
  t.equal(store.get('c1')!.instances[0]!.healthy, true, 'healthy through the grace period')
  clock.advance(2)
  leases.sweep()
  t.equal(store.get('c1')!.instances[0]!.healthy, false, 'unhealthy one timeout after the takeover')
  clock.advance(BEAT_DEFAULTS.removeAfterMs)
  leases.sweep()
  t.notOk(store.get('c1'), 'removed after the delete timeout')
})

t.test('a client handed over is no longer expired here; a beating client keeps its lease on takeover', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('c1'))
  leases.renew('c1')
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs - 1000)
  leases.takeOver(['c1'])
  clock.advance(2000)
  leases.sweep()
  t.equal(store.get('c1')!.instances[0]!.healthy, false, 'the lease ran from its last beat, not from the takeover')
  leases.handOver(['c1'])
  clock.advance(BEAT_DEFAULTS.removeAfterMs * 2)
  leases.sweep()
  t.ok(store.get('c1'), 'handed over: its owner expires it, not this node')
})

t.test('nothing expires while expiry is held back', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  let allowed = false
  const leases = new ClientLeases(store, clock, () => allowed)
  store.put(record('c1'))
  leases.renew('c1')
  clock.advance(BEAT_DEFAULTS.removeAfterMs * 2)
  leases.sweep()
  t.equal(store.get('c1')!.instances[0]!.healthy, true)
  allowed = true
  leases.sweep()
  t.notOk(store.get('c1'))
})

t.test('beat timeouts to the millisecond: healthy through 15 s of silence, unhealthy after, removed after 30 s; a beat revives', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('c1'))
  leases.renew('c1')
  const healthy = () => store.get('c1')?.instances[0]?.healthy
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs)
  leases.sweep()
  t.equal(healthy(), true, 'exactly 15 s of silence: still healthy')
  clock.advance(1)
  leases.sweep()
  t.equal(healthy(), false, 'one ms more: unhealthy')
  leases.renew('c1')
  t.equal(healthy(), true, 'a beat makes it healthy at once')
  clock.advance(BEAT_DEFAULTS.removeAfterMs)
  leases.sweep()
  t.ok(store.get('c1'), 'exactly 30 s: still there (unhealthy)')
  t.equal(healthy(), false)
  clock.advance(1)
  leases.sweep()
  t.notOk(store.get('c1'), 'one ms more: removed')
})

t.test('the sweep runs every second on the clock it is given', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('c1'))
  leases.renew('c1')
  leases.start()
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1_000)
  t.equal(store.get('c1')!.instances[0]!.healthy, false, 'marked by the timer, no sweep called by hand')
  clock.advance(BEAT_DEFAULTS.removeAfterMs)
  t.notOk(store.get('c1'))
  leases.stop()
  t.equal(clock.pendingTimers(), 0)
})

t.test('unchangedRange says exactly at which silences expire() changes a record (the sweep counts with it, and builds only those)', async (t) => {
  // Deterministic pseudo-random records: 1 to 3 instances, healthy or not, each with its own timeouts.
  let seed = 7
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff
    return seed % n
  }
  let checked = 0
  for (let r = 0; r < 300; r++) {
    const instances: Instance[] = []
    const n = 1 + rand(3)
    for (let k = 0; k < n; k++) {
      const unhealthy = 1000 * (1 + rand(20))
      const remove = 1000 * (1 + rand(40))
      const base = record(`c${r}`).instances[0]!
      instances.push({ ...base, port: 80 + k, healthy: rand(2) === 0, metadata: { [BEAT_METADATA.unhealthyAfterMs]: String(unhealthy), [BEAT_METADATA.removeAfterMs]: String(remove) } })
    }
    const rec = { clientId: `c${r}`, version: 1, instances }
    const { after, upTo } = unchangedRange(instances)
    for (let silent = 0; silent <= 42_000; silent += 500) {
      const changes = silent <= after || silent > upTo
      if (changes !== (expire(rec, silent) !== rec)) t.fail(`record ${r} at ${silent} ms: range (${after}, ${upTo}] disagrees with expire()`)
      checked++
    }
  }
  t.equal(checked, 300 * 85)
})

t.test('a sweep that self-preservation pauses expires nothing, and the clients expire once it resumes', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  leases.configure({ selfPreservation: { share: 0.5, windowMs: 60_000, minClients: 10 } })
  for (let k = 0; k < 20; k++) {
    store.put(record(`c${k}`))
    leases.renew(`c${k}`)
  }
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.sweep()
  t.equal([...Array(20).keys()].filter((k) => store.get(`c${k}`)!.instances[0]!.healthy).length, 20, 'all 20 going silent at once: paused, none marked')
  t.equal(leases.selfPreservation()!.active, true)
  for (let k = 0; k < 20; k++) leases.renew(`c${k}`)
  leases.sweep()
  t.equal(leases.selfPreservation()!.active, false, 'resumed once they beat')
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.renew('c0')
  for (let k = 1; k < 20; k++) if (k >= 10) leases.renew(`c${k}`)
  leases.sweep()
  t.equal([...Array(20).keys()].filter((k) => !store.get(`c${k}`)!.instances[0]!.healthy).length, 9, 'nine of twenty silent: within the share, marked unhealthy')
})

/** Has the sweep's bulk changes counted: how many store changes each bulk held, in order. */
function recordBulks(store: MemoryEphemeralStore, leases: ClientLeases): number[] {
  const bulks: number[] = []
  let puts = 0
  store.subscribe(() => puts++)
  leases.configure({
    applyBulk: (apply) => {
      const before = puts
      apply()
      bulks.push(puts - before)
    },
  })
  return bulks
}

t.test('a sweep applies its changes as one bulk change, so a service gets one revision per sweep, not one per client', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  const bulks = recordBulks(store, leases)
  const withOverride = (clientId: string, ms: string) => {
    const r = record(clientId)
    return { ...r, instances: [{ ...r.instances[0]!, port: 81, metadata: { [BEAT_METADATA.unhealthyAfterMs]: ms } }] }
  }
  for (let k = 0; k < 50; k++) {
    store.put(k < 10 ? withOverride(`c${k}`, '20000') : record(`c${k}`))
    leases.renew(`c${k}`)
  }
  leases.sweep()
  t.same(bulks, [], 'nothing due: no bulk change at all')
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.sweep()
  t.same(bulks, [40], 'the 40 clients with default timeouts go unhealthy in one bulk change')
  t.equal(store.get('c0')!.instances[0]!.healthy, true, 'a client whose metadata asks for a longer timeout stays healthy')
  clock.advance(20_000 - BEAT_DEFAULTS.unhealthyAfterMs)
  leases.sweep()
  t.same(bulks, [40, 10], 'the other 10 at their own timeout')
  t.equal(store.get('c0')!.instances[0]!.healthy, false)
  clock.advance(BEAT_DEFAULTS.removeAfterMs - 20_000)
  leases.sweep()
  t.same(bulks, [40, 10, 50], 'all 50 removed together at the delete timeout')
  t.equal(store.size(), 0)
})

t.test('a wave of expiries is applied SWEEP_CHUNK clients per turn, each judged again when its turn comes', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  let allowed = true
  const leases = new ClientLeases(store, clock, () => allowed)
  const bulks = recordBulks(store, leases)
  const n = 2 * SWEEP_CHUNK + 10
  for (let k = 0; k < n; k++) {
    store.put(record(`c${k}`))
    leases.renew(`c${k}`)
  }
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.sweep()
  t.same(bulks, [SWEEP_CHUNK], 'the first chunk at once, in the sweep\'s own turn')
  const unhealthy = () => [...store.clients()].filter((r) => !r.instances[0]!.healthy).length
  t.equal(unhealthy(), SWEEP_CHUNK)
  // Before the next turn: one client of the second chunk beats, one of the third is removed.
  const beating = `c${SWEEP_CHUNK + 1}`
  leases.renew(beating)
  leases.forget(`c${2 * SWEEP_CHUNK + 1}`)
  store.remove(`c${2 * SWEEP_CHUNK + 1}`)
  leases.sweep()
  t.same(bulks, [SWEEP_CHUNK], 'a sweep while the last one is still applying does nothing')
  clock.advance(0)
  t.same(bulks, [SWEEP_CHUNK, SWEEP_CHUNK - 1, 9], 'the rest in later turns, without the client that beat or the one removed')
  t.equal(store.get(beating)!.instances[0]!.healthy, true, 'a client that beat in between is not expired')
  t.equal(unhealthy(), n - 2)

  // Expiry held back between turns: the rest of the wave waits for a later sweep.
  clock.advance(BEAT_DEFAULTS.removeAfterMs + 1000)
  bulks.length = 0
  leases.sweep()
  t.same(bulks, [SWEEP_CHUNK])
  allowed = false
  clock.advance(0)
  t.same(bulks, [SWEEP_CHUNK], 'nothing more while expiry is held back')
  allowed = true
  leases.sweep()
  clock.advance(0)
  t.equal(store.size(), 0, 'the next sweep removes the rest')
})

t.test('a sweep scans SCAN_CHUNK leases per turn and decides once it has read them all', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  let allowed = true
  const leases = new ClientLeases(store, clock, () => allowed)
  const bulks = recordBulks(store, leases)
  const n = 2 * SCAN_CHUNK + 10
  for (let k = 0; k < n; k++) {
    store.put(record(`c${k}`))
    leases.renew(`c${k}`)
  }
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.sweep()
  t.same(bulks, [], 'nothing expires in the sweep\'s own turn: the scan has read only its first chunk')
  // Between turns: a client the scan has passed beats; one it has not reached yet is removed.
  leases.renew('c0')
  leases.forget(`c${n - 1}`)
  store.remove(`c${n - 1}`)
  leases.sweep()
  clock.advance(0)
  const unhealthy = [...store.clients()].filter((r) => !r.instances[0]!.healthy).map((r) => r.clientId)
  t.equal(unhealthy.length, n - 2, 'every other client expired once the scan ended (a second sweep meanwhile added nothing)')
  t.notOk(unhealthy.includes('c0'), 'judged again when expired: the client that beat is not')
  t.equal(bulks.length, Math.ceil((n - 2) / SWEEP_CHUNK), 'in chunks of SWEEP_CHUNK')

  // Expiry held back while the scan goes on: its end expires nothing.
  clock.advance(BEAT_DEFAULTS.removeAfterMs + 1000)
  bulks.length = 0
  leases.sweep()
  allowed = false
  clock.advance(0)
  t.same(bulks, [], 'nothing while expiry is held back')
  t.equal(store.size(), n - 1)
})

t.test('self-preservation decides on the counts of the whole scan, over all its turns', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  leases.configure({ selfPreservation: SELF_PRESERVATION_DEFAULTS })
  const n = 3 * SCAN_CHUNK
  for (let k = 0; k < n; k++) {
    store.put(record(`c${k}`))
    leases.renew(`c${k}`)
  }
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.sweep()
  t.equal(leases.selfPreservation()!.clients, 0, 'no decision before the scan ends')
  clock.advance(0)
  const status = leases.selfPreservation()!
  t.ok(status.active, 'every client went silent at once: expiry paused')
  t.equal(status.clients, n, 'every lease counted')
  t.equal(status.expiring, n)
  t.ok([...store.clients()].every((r) => r.instances[0]!.healthy), 'nothing expired')
})

t.test('a sweep works from the client\'s current record: one changed since the last sweep (a shorter timeout here) is seen, never an older copy', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('c1'))
  leases.renew('c1')
  leases.sweep()
  // The client changes its instance (as a PATCH of its metadata would), without a beat.
  const first = store.get('c1')!
  const shorter = { ...first.instances[0]!, metadata: { [BEAT_METADATA.unhealthyAfterMs]: '2000' } }
  store.put({ ...first, version: first.version + 1, instances: [shorter] })
  clock.advance(2_001)
  leases.sweep()
  const now = store.get('c1')!
  t.equal(now.instances[0]!.healthy, false, 'unhealthy at the new, shorter timeout')
  t.same(now.instances[0]!.metadata, shorter.metadata, 'built from the changed record, not the copy the last sweep saw')
})

t.test('the sweep asks who owns a client once per view of the members, and drops a lease the next view gives away', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  let owner = 'here'
  let version = 0
  const asked: string[] = []
  const owns = (clientId: string) => {
    asked.push(clientId)
    return owner === 'here'
  }
  const leases = new ClientLeases(store, clock, () => true, owns, () => version)
  store.put(record('c1'))
  leases.renew('c1')
  for (let i = 0; i < 5; i++) {
    clock.advance(1000)
    leases.sweep()
  }
  t.same(asked, ['c1'], 'asked at the first sweep only while the members stay the same')
  t.equal(leases.lastBeatOf('c1'), clock.now() - 5000, 'the lease is kept')

  // The members change and the client moves elsewhere (a beat forwarded while views differed
  // left a lease here): the next sweep asks again and drops it, so it never expires here.
  owner = 'elsewhere'
  version++
  clock.advance(1000)
  leases.sweep()
  t.same(asked, ['c1', 'c1'])
  t.equal(leases.lastBeatOf('c1'), undefined, 'dropped once the new view says it is owned elsewhere')
  clock.advance(BEAT_DEFAULTS.removeAfterMs * 2)
  leases.sweep()
  t.ok(store.get('c1'), 'never expired here')
})

t.test('while expiry is held back, clients that come and go leave no trace in the leases: the bookkeeping stays within bounds', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  let allowed = false
  const leases = new ClientLeases(store, clock, () => allowed)
  // The sweeps that would tidy up do not run without a majority; a node cut off from the others
  // still takes registrations and deregistrations (AP).
  leases.start()
  for (let k = 0; k < 50_000; k++) {
    store.put(record(`c${k}`))
    leases.renew(`c${k}`)
    store.remove(`c${k}`)
    leases.forget(`c${k}`)
    if (k % 1000 === 0) clock.advance(1000)
  }
  // Internal, on purpose: a leak here is what a user would see, as memory, hours into a partition.
  const pending = (leases as unknown as { dirty: unknown[] }).dirty.length
  t.ok(pending <= 1024, `${pending} entries waiting for a sweep, for no live client`)
  allowed = true
  store.put(record('stays'))
  leases.renew('stays')
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1000)
  t.equal(store.get('stays')!.instances[0]!.healthy, false, 'the sweeps expire as usual once allowed')
  leases.stop()
})

t.test('before a removal the owner asks the other members: a beat one of them had keeps the client; none, and the removal goes ahead; no answer, and it asks again', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  const questions: string[][] = []
  // What the other members say at the next question: a client's silence there, or a failure.
  let reply: () => Promise<ReadonlyMap<string, number>> = () => Promise.resolve(new Map())
  leases.configure({
    peerSilence: (ids) => {
      questions.push([...ids])
      return reply()
    },
  })
  const settle = () => new Promise((resolve) => setImmediate(resolve))
  for (const id of ['kept', 'gone']) {
    store.put(record(id))
    leases.renew(id)
  }
  clock.advance(BEAT_DEFAULTS.unhealthyAfterMs + 1)
  leases.sweep()
  t.equal(questions.length, 0, 'marking unhealthy needs nobody else')
  t.equal(store.get('kept')!.instances[0]!.healthy, false)

  // A member does not answer: nothing is removed, and the next sweep asks again.
  reply = () => Promise.reject(new Error('n1 -> n3 naming.silence: timed out'))
  clock.advance(BEAT_DEFAULTS.removeAfterMs - BEAT_DEFAULTS.unhealthyAfterMs)
  leases.sweep()
  t.same(questions, [['kept', 'gone']], 'both are due for removal: the others are asked about both')
  t.ok(store.get('kept') && store.get('gone'), 'nothing is removed before they answer')
  await settle()
  t.ok(store.get('kept') && store.get('gone'), 'nor when a member could not say')

  // Another member took the beats of 'kept' (it counted this node as down): 2 s ago, there.
  reply = () => Promise.resolve(new Map([['kept', 2_000]]))
  clock.advance(1_000)
  leases.sweep()
  t.same(questions[1], ['kept', 'gone'], 'asked again')
  await settle()
  t.equal(leases.lastBeatOf('kept'), clock.now() - 2_000, "the other member's beat counts as a beat here")
  t.ok(store.get('gone'), 'cleared by the others, it goes at the next sweep')
  clock.advance(1_000)
  leases.sweep()
  t.notOk(store.get('gone'), 'removed once nobody heard from it')
  t.ok(store.get('kept'), 'kept: its silence runs from the beat the other member had')
  t.equal(questions.length, 2, "'kept' is not due any more")

  // A beat here after the others cleared a client voids their answer: its silence starts again.
  store.put(record('late'))
  leases.renew('late')
  clock.advance(BEAT_DEFAULTS.removeAfterMs + 1)
  leases.sweep()
  await settle()
  leases.renew('late')
  clock.advance(1_000)
  leases.sweep()
  t.ok(store.get('late'), 'beat after the answer: not removed')
})

t.test('a node that hands a client over still tells of its last beat there, for one delete timeout from that beat', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('c1'))
  leases.renew('c1')
  clock.advance(3_000)
  t.same([...leases.silences(['c1', 'unknown'])], [['c1', 3_000]], 'its own lease')
  // The members' view changed: another node owns c1 now. Its beats here may be the only ones.
  leases.handOver(['c1'])
  t.equal(leases.lastBeatOf('c1'), undefined, 'no lease here any more')
  clock.advance(BEAT_DEFAULTS.removeAfterMs - 3_000)
  t.same([...leases.silences(['c1'])], [['c1', BEAT_DEFAULTS.removeAfterMs]], 'still told one delete timeout after the beat')
  clock.advance(1)
  t.same([...leases.silences(['c1'])], [], 'then forgotten: the new owner had a full timeout to hear from it')
})

t.test('a beat another member had before this lease\'s last does not hold a removal back', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  // Another member keeps a stale lease for the client (it took it as its own, then heard nothing).
  const staleBeatAt = clock.now() - 1_000
  leases.configure({ peerSilence: () => Promise.resolve(new Map([['c1', clock.now() - staleBeatAt]])) })
  store.put(record('c1'))
  leases.renew('c1')
  clock.advance(BEAT_DEFAULTS.removeAfterMs + 1)
  leases.sweep()
  await new Promise((resolve) => setImmediate(resolve))
  clock.advance(1_000)
  leases.sweep()
  t.notOk(store.get('c1'), 'removed: the only beat elsewhere was older than the last one here')
})

t.test('only the client itself counts as heard from: a takeover\'s or a majority\'s grace is not told to the others, nor vouches for the client', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('taken'))
  store.put(record('refreshed'))
  store.put(record('beating'))
  const start = clock.now()
  leases.takeOver(['taken'])
  leases.refreshAll(['refreshed'])
  leases.renew('beating')
  clock.advance(2_000)
  t.equal(leases.lastBeatOf('taken'), start, 'the takeover gives a lease from now (its grace)')
  t.same([...leases.silences(['taken', 'refreshed', 'beating'])], [['beating', 2_000]], 'but only a beat is told to an owner that asks before a removal')
  t.notOk(leases.heardSince('taken', start - 1), 'a grace does not vouch for the client')
  t.notOk(leases.heardSince('refreshed', start - 1))
  t.ok(leases.heardSince('beating', start - 1), 'a beat after the time does')
  t.notOk(leases.heardSince('beating', start), 'one at the time does not')
  leases.renew('taken')
  t.ok(leases.heardSince('taken', start), 'once it beats here, it does')

  // Handed over: what it heard, not the grace, is remembered for one delete timeout from the beat.
  const beatAt = clock.now()
  leases.handOver(['taken', 'refreshed'])
  t.ok(leases.heardSince('taken', beatAt - 1), 'heard before it was handed over')
  t.notOk(leases.heardSince('refreshed', -Infinity), 'a handed-over grace is not remembered')
  clock.advance(BEAT_DEFAULTS.removeAfterMs)
  t.ok(leases.heardSince('taken', beatAt - 1), 'remembered for the delete timeout from the beat')
  clock.advance(1)
  t.notOk(leases.heardSince('taken', beatAt - 1), 'then forgotten')
})

t.test('a node tells of the beats it forwarded, and a grace handed over does not erase a beat heard before', async (t) => {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const leases = new ClientLeases(store, clock)
  store.put(record('c1'))
  // Owned elsewhere: its beats pass through here on their way to the owner.
  leases.noteHeard('c1')
  clock.advance(2_000)
  t.same([...leases.silences(['c1'])], [['c1', 2_000]], 'told to an owner that asks')
  t.equal(leases.lastBeatOf('c1'), undefined, 'no lease for it here')
  t.ok(leases.heardSince('c1', clock.now() - 2_001))

  // This node takes the client over for a moment (a grace, no beat), and hands it back.
  leases.takeOver(['c1'])
  clock.advance(10)
  leases.handOver(['c1'])
  t.same([...leases.silences(['c1'])], [['c1', 2_010]], 'the beat heard before the takeover is still told (Distro simulator seed 4957)')
  clock.advance(BEAT_DEFAULTS.removeAfterMs - 2_010)
  t.same([...leases.silences(['c1'])], [['c1', BEAT_DEFAULTS.removeAfterMs]], 'for one delete timeout from the beat')
  clock.advance(1)
  t.same([...leases.silences(['c1'])], [], 'then forgotten')
})
