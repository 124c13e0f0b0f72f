// The deterministic simulation (issue 3, item 9): the production Raft core on simulated time,
// disks and network, a few hundred seeds under every fault profile. Each run checks Raft's safety
// properties after every step (checkers.ts), the clients' history for linearizability
// (linearizability.ts), and liveness once faults stop. Any failure names its seed and the command
// that replays it, with a trace:
//
//   node dist/test/sim/run.js --seed 12345 --profile partitions --trace
//
// GRACE_SIM_SEEDS (per profile, default 100) and GRACE_SIM_FROM (first seed, default 1) widen or
// move the sweep; `npm run sim -- --seeds 10000` runs more from the command line.

import t from 'tap'
import { PROFILES, PROFILE_NAMES, type SimStats, SimFailure, Simulation, runSimulation } from './cluster.js'

const SEEDS = Number(process.env.GRACE_SIM_SEEDS ?? 100)
const FROM = Number(process.env.GRACE_SIM_FROM ?? 1)

function report(f: SimFailure): string {
  const trace = f.trace.length > 0 ? `\nlast ${f.trace.length} lines of the trace:\n  ${f.trace.join('\n  ')}` : ''
  return `${f.message}${trace}`
}

const totals = new Map<string, SimStats[]>()

for (const profile of PROFILE_NAMES) {
  t.test(`${profile}: ${PROFILES[profile]!.description} (${SEEDS} seeds from ${FROM})`, async (t) => {
    const stats: SimStats[] = []
    let failures = 0
    for (let seed = FROM; seed < FROM + SEEDS; seed++) {
      try {
        stats.push(runSimulation(seed, profile).stats)
      } catch (err) {
        if (!(err instanceof SimFailure)) throw err
        t.fail(report(err))
        // A broken invariant usually breaks many seeds: a few are enough to go on.
        if (++failures >= 3) break
      }
    }
    if (failures === 0) t.pass(`${SEEDS} seeds passed`)
    totals.set(profile, stats)
  })
}

t.test('the profiles exercise what they are named for', async (t) => {
  const sum = (profile: string, key: keyof SimStats): number => (totals.get(profile) ?? []).reduce((a, s) => a + s[key], 0)
  const runs = (profile: string): number => totals.get(profile)?.length ?? 0
  // Fault-free: one leader for the whole run, and every operation succeeds (checked per run).
  t.equal(sum('clean', 'leaderTerms'), runs('clean'), 'clean: no leader changes without faults')
  t.ok(sum('clean', 'ok') > 20 * runs('clean'), 'clean: operations complete')
  t.ok(sum('lossy', 'dropped') > 0, 'lossy: messages are lost')
  t.ok(sum('partitions', 'leaderTerms') > runs('partitions'), 'partitions: leaders change')
  t.ok(sum('crashes', 'crashes') > runs('crashes'), 'crashes: nodes crash and restart')
  t.ok(sum('crashes', 'unknown') > 0, 'crashes: some operations end unknown, and still check out')
  t.ok(sum('snapshots', 'snapshotsInstalled') > runs('snapshots') / 2, 'snapshots: followers install snapshots')
  t.ok(sum('snapshots', 'compactions') > runs('snapshots'), 'snapshots: logs are compacted')
  t.ok(sum('membership', 'configChanges') > runs('membership'), 'membership: membership changes commit')
  t.ok(sum('membership', 'transfers') > 0, 'membership: leadership is transferred')
  t.ok(sum('chaos', 'crashes') > 0 && sum('chaos', 'configChanges') > 0, 'chaos: crashes and membership changes together')
})

t.test('a seed replays exactly', async (t) => {
  for (const profile of ['partitions', 'chaos']) {
    const a = new Simulation({ seed: 4242, profile }).run()
    const b = new Simulation({ seed: 4242, profile }).run()
    t.equal(a.digest, b.digest, `${profile}: same digest`)
    t.same(a.stats, b.stats, `${profile}: same statistics`)
    t.same(a.history, b.history, `${profile}: same history`)
  }
  const c = new Simulation({ seed: 4243, profile: 'chaos' }).run()
  t.not(c.digest, new Simulation({ seed: 4242, profile: 'chaos' }).run().digest, 'another seed, another run')
})

// Seeds that broke the core before its fixes (see regressions.test.ts for the scenarios, which
// pin the fixes however the simulator changes): with the full window of lost appends never
// retransmitted (src/cp/raft/raft.ts, sendAppend), these runs stall a follower for good. The
// other fix (no appends from a node that stepped down before ready()) was found on an earlier
// version of the simulator, and only its scenario test holds it now.
const REGRESSION_SEEDS: [number, string, string][] = [
  [1011, 'crashes', 'a full window of lost appends stalled a follower for good'],
  [1012, 'snapshots', 'a full window of lost appends stalled a follower for good'],
  [1016, 'lossy', 'a full window of lost appends stalled a follower for good'],
]

t.test('regression seeds', async (t) => {
  for (const [seed, profile, what] of REGRESSION_SEEDS) {
    try {
      runSimulation(seed, profile)
      t.pass(`seed ${seed} ${profile}: ${what}`)
    } catch (err) {
      if (!(err instanceof SimFailure)) throw err
      t.fail(`${what}\n${report(err)}`)
    }
  }
})
