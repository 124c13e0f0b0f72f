// Self-preservation on a ManualClock: a blip that silences most clients pauses expiry before any
// instance is marked, and it resumes when the beats return; a few real deaths expire as usual;
// and the pure decision on its own.

import t from 'tap'
import { MemoryEphemeralStore } from '../../../src/ap/node/memory-store.js'
import { ManualClock } from '../../../src/core/clock.js'
import type { Logger } from '../../../src/core/logger.js'
import { ClientLeases } from '../../../src/naming/leases.js'
import { BEAT_DEFAULTS, type Instance } from '../../../src/naming/model.js'
import { SELF_PRESERVATION_DEFAULTS, SelfPreservation } from '../../../src/naming/self-preservation.js'

function record(clientId: string, port: number) {
  const instance: Instance = { namespace: 'public', group: 'DEFAULT_GROUP', service: 's', cluster: 'DEFAULT', ip: '10.0.0.1', port, weight: 1, enabled: true, healthy: true, ephemeral: true, metadata: {}, clientId }
  return { clientId, version: 1, instances: [instance] }
}

function setup(clients: number, settings = SELF_PRESERVATION_DEFAULTS) {
  const clock = new ManualClock()
  const store = new MemoryEphemeralStore()
  const lines: { level: string; msg: string | undefined }[] = []
  const logger: Logger = {
    info: (_o, msg) => lines.push({ level: 'info', msg }),
    warn: (_o, msg) => lines.push({ level: 'warn', msg }),
    error: (_o, msg) => lines.push({ level: 'error', msg }),
  }
  const leases = new ClientLeases(store, clock)
  leases.configure({ selfPreservation: settings, logger })
  const ids = Array.from({ length: clients }, (_, i) => `c${i}`)
  ids.forEach((id, i) => {
    store.put(record(id, i + 1))
    leases.renew(id)
  })
  leases.start()
  /** Every client in `beating` beats every 5 s, each at its own offset, for ms. */
  const live = (ms: number, beating: readonly string[]) => {
    for (let elapsed = 0; elapsed < ms; elapsed += 500) {
      clock.advance(500)
      beating.forEach((id, i) => {
        if ((elapsed / 500 + i) % 10 === 0) leases.renew(id)
      })
    }
  }
  const unhealthy = () => ids.filter((id) => store.get(id)?.instances[0]?.healthy === false).length
  const present = () => ids.filter((id) => store.get(id)).length
  return { clock, store, leases, ids, live, unhealthy, present, lines }
}

t.test('a blip that silences every client pauses expiry before any instance is marked, and beats bring it back', async (t) => {
  const s = setup(40)
  s.live(20_000, s.ids)
  t.equal(s.leases.selfPreservation()!.active, false)
  // Every client goes silent at once (their network to the registry is down) for 60 s.
  s.live(60_000, [])
  const status = s.leases.selfPreservation()!
  t.equal(status.active, true, 'paused')
  t.equal(s.unhealthy(), 0, 'no instance was marked unhealthy')
  t.equal(s.present(), 40, 'none removed, well past the 30 s delete timeout')
  t.match(s.lines, [{ level: 'warn', msg: /self-preservation/ }], 'the pause is logged')
  t.ok(status.since !== null && status.expiring > status.allowed, JSON.stringify(status))
  // The network comes back: beats return and expiry resumes.
  s.live(6_000, s.ids)
  t.equal(s.leases.selfPreservation()!.active, false, 'resumed')
  t.match(s.lines.at(-1), { level: 'info', msg: /resumes/ })
  t.equal(s.unhealthy() + (40 - s.present()), 0, 'every client is still there and healthy')
})

t.test('while paused, clients that never come back stay; once enough new clients beat, the dead ones expire', async (t) => {
  const s = setup(20)
  s.live(10_000, s.ids)
  const alive = s.ids.slice(0, 8)
  s.live(40_000, alive)
  t.equal(s.leases.selfPreservation()!.active, true, '12 of 20 silent: paused')
  t.equal(s.present(), 20)
  // Replacements register and beat: 12 silent of 20 + 10 is 40%, under the 50% share.
  const more = Array.from({ length: 10 }, (_, i) => `new${i}`)
  for (const [i, id] of more.entries()) {
    s.store.put(record(id, 100 + i))
    s.leases.renew(id)
  }
  s.live(2_000, [...alive, ...more])
  t.equal(s.leases.selfPreservation()!.active, false, 'resumed')
  s.live(40_000, [...alive, ...more])
  t.equal(s.present(), 8, 'the 12 silent ones were removed')
  t.equal(s.leases.selfPreservation()!.active, false, 'and that did not pause it again')
})

t.test('a few clients dying is ordinary expiry: unhealthy at 15 s, removed at 30 s', async (t) => {
  const s = setup(20)
  s.live(10_000, s.ids)
  const alive = s.ids.slice(3)
  s.live(BEAT_DEFAULTS.unhealthyAfterMs + 1_000, alive)
  t.equal(s.unhealthy(), 3)
  s.live(BEAT_DEFAULTS.removeAfterMs, alive)
  t.equal(s.present(), 17)
  t.equal(s.leases.selfPreservation()!.active, false)
  t.same(s.lines, [], 'nothing logged')
})

t.test('below minClients, or with share 1, nothing pauses', async (t) => {
  for (const [what, clients, settings] of [
    ['9 clients', 9, SELF_PRESERVATION_DEFAULTS],
    ['share 1', 40, { ...SELF_PRESERVATION_DEFAULTS, share: 1 }],
  ] as const) {
    const s = setup(clients, settings)
    s.live(10_000, s.ids)
    s.live(BEAT_DEFAULTS.removeAfterMs + 2_000, [])
    t.equal(s.present(), 0, `${what}: all expired`)
    t.equal(s.leases.selfPreservation()!.active, false)
    t.equal(s.leases.selfPreservation()!.enabled, what !== 'share 1')
  }
})

t.test('the decision: expired plus expiring above the share of the population pauses', async (t) => {
  const sp = new SelfPreservation({ share: 0.5, windowMs: 60_000, minClients: 10 })
  t.same(sp.decide(0, 20, 10), { allowed: true, transition: null }, '10 of 20 is the share, not more')
  t.same(sp.decide(1, 20, 11), { allowed: false, transition: 'paused' })
  t.same(sp.decide(2, 20, 11), { allowed: false, transition: null })
  t.same(sp.decide(3, 20, 2), { allowed: true, transition: 'resumed' })
  // Expiries within the window count; so do the clients they removed, in the population.
  sp.recordExpired(10_000, 8, 8)
  t.match(sp.status(), { active: false })
  t.same(sp.decide(20_000, 12, 3), { allowed: false, transition: 'paused' }, '8 expired + 3 expiring = 11, over half of 12 + 8 removed')
  t.same(sp.decide(70_001, 12, 3).allowed, true, 'once the window has passed, the old expiries no longer count')
  t.throws(() => new SelfPreservation({ share: 0, windowMs: 1, minClients: 1 }))
})
