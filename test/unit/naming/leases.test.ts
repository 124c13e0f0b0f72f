// Leases under Distro ownership: a node expires only the clients it is responsible for, a client
// it takes over gets a full timeout before it can expire, and nothing expires while expiry is
// held back.

import t from 'tap'
import { MemoryEphemeralStore } from '../../../src/ap/node/memory-store.js'
import { ManualClock } from '../../../src/core/clock.js'
import { ClientLeases } from '../../../src/naming/leases.js'
import { BEAT_DEFAULTS, type Instance } from '../../../src/naming/model.js'

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
