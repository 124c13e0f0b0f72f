// The probe scheduler on a ManualClock with a scripted probe: flips after 3 results in a row,
// jitter, bounded concurrency, timeouts, leadership, failed writes and changed checks. No
// sockets here; test/unit/naming/probe-io.test.ts and test/http/health.test.ts use real ones.

import t from 'tap'
import { ManualClock } from '../../../src/core/clock.js'
import { silentLogger } from '../../../src/core/logger.js'
import { FLIP_AFTER, HealthProber, PROBE_BACKSTOP_MS, PROBE_JITTER, type ProbeOutcome, afterResult, jittered } from '../../../src/naming/health-prober.js'
import { type HealthCheck, type Instance, type ServiceMeta, instanceIdOf } from '../../../src/naming/model.js'
import { NamingView } from '../../../src/naming/view.js'

const SVC = { namespace: 'public', group: 'DEFAULT_GROUP', service: 'db' }
const TCP: HealthCheck = { type: 'tcp', intervalMs: 5000, timeoutMs: 1000, port: 0 }

function instance(port: number, cluster = 'DEFAULT', healthy = true): Instance {
  return { ...SVC, cluster, ip: '10.0.0.1', port, weight: 1, enabled: true, healthy, ephemeral: false, metadata: {}, clientId: '' }
}

type State = 'up' | 'down' | 'hang'

interface Rig {
  clock: ManualClock
  view: NamingView
  prober: HealthProber
  /** What each port answers. */
  states: Map<number, State>
  /** Every probe started, by port, in order. */
  started: number[]
  writes: [number, boolean][]
  leader: { value: boolean }
  failWrites: { value: boolean }
  /** Moves the clock in scheduler ticks, letting probe promises settle in between. */
  run(ms: number): Promise<void>
  healthOf(port: number, cluster?: string): boolean | undefined
}

function rig(opts: { ports: number[]; check?: HealthCheck; concurrency?: number; random?: () => number }): Rig {
  const clock = new ManualClock()
  const view = new NamingView(1, () => clock.now())
  const meta: ServiceMeta = { ...SVC, ephemeral: false, protectThreshold: 0, metadata: {}, clusters: [{ cluster: 'DEFAULT', healthCheck: opts.check ?? TCP }] }
  view.setMeta(SVC, meta)
  for (const p of opts.ports) view.putInstance(instance(p))
  const states = new Map<number, State>(opts.ports.map((p) => [p, 'up']))
  const started: number[] = []
  const writes: [number, boolean][] = []
  const leader = { value: true }
  const failWrites = { value: false }
  const prober = new HealthProber({
    clock,
    random: opts.random ?? (() => 0.5),
    probe: (_ip, port) => {
      started.push(port)
      const state = states.get(port) ?? 'down'
      if (state === 'hang') return new Promise<ProbeOutcome>(() => {})
      return Promise.resolve({ ok: state === 'up', detail: state })
    },
    source: {
      durableRevision: () => view.durableRevision(),
      probeTargets: () => view.probeTargets(),
      current: (target) => view.get(target.instance)?.persistent.get(instanceIdOf(target.instance)),
    },
    isProber: () => leader.value,
    write: async (i, healthy) => {
      if (failWrites.value) throw new Error('no quorum')
      writes.push([i.port, healthy])
      view.putInstance({ ...view.get(i)!.persistent.get(instanceIdOf(i))!, healthy })
    },
    concurrency: opts.concurrency ?? 64,
    logger: silentLogger,
  })
  prober.start()
  return {
    clock,
    view,
    prober,
    states,
    started,
    writes,
    leader,
    failWrites,
    async run(ms) {
      for (let left = ms; left > 0; left -= 100) {
        clock.advance(Math.min(100, left))
        for (let i = 0; i < 5; i++) await Promise.resolve()
      }
    },
    healthOf(port, cluster = 'DEFAULT') {
      return view.get(SVC)?.persistent.get(instanceIdOf({ cluster, ip: '10.0.0.1', port }))?.healthy
    },
  }
}

t.test('a result flips the health only when the last 3 in a row disagree with it', async (t) => {
  t.same(afterResult(0, true, true), { streak: 0, flip: false }, 'agrees: nothing to count')
  t.same(afterResult(0, false, true), { streak: 1, flip: false })
  t.same(afterResult(1, false, true), { streak: 2, flip: false })
  t.same(afterResult(2, false, true), { streak: 3, flip: true }, 'the third in a row flips')
  t.same(afterResult(2, true, true), { streak: 0, flip: false }, 'one agreeing result starts the count again')
  t.same(afterResult(2, true, false), { streak: 3, flip: true }, 'the same way back')
  t.equal(FLIP_AFTER, 3)
})

t.test('a target that goes down flips after 3 failed probes, and back after 3 good ones', async (t) => {
  const r = rig({ ports: [1] })
  await r.run(5000)
  t.equal(r.started.length, 1, 'probed once in its first interval')
  r.states.set(1, 'down')
  await r.run(2 * 5500)
  t.equal(r.healthOf(1), true, 'two failures: still healthy')
  t.same(r.writes, [])
  await r.run(5500)
  t.same(r.writes, [[1, false]], 'the third failure writes the verdict')
  t.equal(r.healthOf(1), false)
  await r.run(3 * 5500)
  t.same(r.writes, [[1, false]], 'no second write while it stays down')
  r.states.set(1, 'up')
  await r.run(3 * 5500)
  t.same(r.writes, [[1, false], [1, true]], 'healthy again after three good probes')
  t.equal(r.prober.status().flips, 2)
})

t.test('results that alternate never flip', async (t) => {
  const r = rig({ ports: [1] })
  for (let i = 0; i < 12; i++) {
    r.states.set(1, i % 3 === 2 ? 'up' : 'down')
    await r.run(5500)
  }
  t.ok(r.started.length >= 10)
  t.same(r.writes, [], 'never three failures in a row')
})

t.test('first probes are spread over the first interval; later ones keep the interval within the jitter', async (t) => {
  let n = 0
  const randoms = [0, 0.25, 0.5, 0.75, 0.99]
  const r = rig({ ports: [1, 2, 3, 4, 5], random: () => randoms[n++ % randoms.length]! })
  const times = new Map<number, number[]>()
  const start = r.clock.now()
  const seen = () => {
    while (r.started.length > 0) {
      const port = r.started.shift()!
      times.set(port, [...(times.get(port) ?? []), r.clock.now() - start])
    }
  }
  for (let i = 0; i < 300; i++) {
    await r.run(100)
    seen()
  }
  const firsts = [...times.values()].map((ts) => ts[0]!).sort((a, b) => a - b)
  t.ok(firsts[0]! < 500 && firsts[4]! > 4500, `first probes from ${firsts[0]} to ${firsts[4]} ms`)
  for (const ts of times.values()) {
    for (let i = 1; i < ts.length; i++) {
      const gap = ts[i]! - ts[i - 1]!
      // The tick is 200 ms: a probe starts up to one tick after it is due.
      t.ok(gap >= 5000 * (1 - PROBE_JITTER) - 1 && gap <= 5000 * (1 + PROBE_JITTER) + 300, `gap ${gap} ms`)
    }
  }
  t.equal(jittered(5000, () => 0), 4500)
  t.equal(jittered(5000, () => 1), 5500)
})

t.test('at most `concurrency` probes run at once; a probe that never answers counts as failed', async (t) => {
  const ports = Array.from({ length: 10 }, (_, i) => i + 1)
  const r = rig({ ports, concurrency: 3, random: () => 0 })
  for (const p of ports) r.states.set(p, 'hang')
  await r.run(200)
  t.equal(r.prober.status().inFlight, 3, 'three in flight, seven waiting')
  t.equal(r.started.length, 3)
  await r.run(TCP.timeoutMs + PROBE_BACKSTOP_MS)
  t.equal(r.prober.status().probes, 3, 'the backstop finished the three')
  t.equal(r.started.length, 6, 'and the next three started')
  t.equal(r.prober.status().inFlight, 3)
  // Every target hangs three times in a row: all flip to unhealthy, three at a time.
  await r.run(40_000)
  t.same(ports.map((p) => r.healthOf(p)), ports.map(() => false))
})

t.test('only the leader probes; a node that stops leading stops, and one that starts leading starts from zero', async (t) => {
  const r = rig({ ports: [1] })
  r.leader.value = false
  await r.run(20_000)
  t.equal(r.started.length, 0, 'a follower probes nothing')
  t.equal(r.prober.status().prober, false)
  r.leader.value = true
  r.states.set(1, 'down')
  await r.run(2 * 5500)
  t.equal(r.prober.status().prober, true)
  t.equal(r.started.length, 2)
  r.leader.value = false
  await r.run(20_000)
  t.equal(r.started.length, 2, 'stopped')
  t.equal(r.prober.status().targets, 0)
  r.leader.value = true
  await r.run(2 * 5500)
  t.equal(r.healthOf(1), true, 'the two failures before do not count: two more are not enough')
  await r.run(5500)
  t.equal(r.healthOf(1), false)
})

t.test('a verdict that cannot be written is written with the next result that still disagrees', async (t) => {
  const r = rig({ ports: [1] })
  await r.run(5000)
  r.states.set(1, 'down')
  r.failWrites.value = true
  await r.run(3 * 5500)
  t.equal(r.healthOf(1), true)
  r.failWrites.value = false
  await r.run(5500)
  t.equal(r.healthOf(1), false, 'written on the fourth failure')
})

t.test('targets follow the registry: new, removed, and a changed check restarts the count', async (t) => {
  const r = rig({ ports: [1] })
  r.view.putInstance(instance(2))
  r.view.putInstance(instance(3, 'other'))
  await r.run(6000)
  t.same([...new Set(r.started)].sort(), [1, 2], 'a new instance is probed; a cluster without a check is not')
  r.view.removeInstance(SVC, instanceIdOf(instance(2)), false)
  r.started.length = 0
  await r.run(6000)
  t.same([...new Set(r.started)], [1], 'a removed instance is not')

  r.states.set(1, 'down')
  const before = r.started.length
  while (r.started.length < before + 2) await r.run(100)
  t.equal(r.healthOf(1), true, 'two failures')
  const meta = r.view.get(SVC)!.meta!
  r.view.setMeta(SVC, { ...meta, clusters: [{ cluster: 'DEFAULT', healthCheck: { ...TCP, timeoutMs: 900 } }] })
  await r.run(200)
  const after = r.started.length
  while (r.started.length < after + 2) await r.run(100)
  t.equal(r.healthOf(1), true, 'a changed check starts the count again: two more failures are not enough')
  await r.run(5500)
  t.equal(r.healthOf(1), false)
  r.view.setMeta(SVC, { ...meta, clusters: [{ cluster: 'DEFAULT', healthCheck: { type: 'none' } }] })
  await r.run(1000)
  t.equal(r.prober.status().targets, 0, 'a check set to none is not probed')
})

t.test('stop() stops the loop and leaves nothing in flight counted', async (t) => {
  const r = rig({ ports: [1, 2] })
  await r.run(6000)
  r.prober.stop()
  const before = r.started.length
  await r.run(30_000)
  t.equal(r.started.length, before)
  t.equal(r.clock.pendingTimers(), 0, 'no timer left behind')
})

t.test('the health decisions import no IO: time, randomness and the probe come in as arguments', async (t) => {
  const { readFileSync } = await import('node:fs')
  const { join } = await import('node:path')
  const root = join(import.meta.dirname, '..', '..', '..', '..')
  for (const file of ['src/naming/health-prober.ts', 'src/naming/self-preservation.ts', 'src/naming/leases.ts']) {
    const code = readFileSync(join(root, file), 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '')
    const imports = [...code.matchAll(/\bfrom\s*['"]([^'"]+)['"]/g)].map((m) => m[1]!)
    t.same(imports.filter((i) => !i.startsWith('.')), [], `${file} imports only project modules`)
    t.notOk(/\b(setTimeout|setInterval|setImmediate|Date\.now|Math\.random)\b/.test(code), `${file} reads no clock and draws no randomness itself`)
  }
})
