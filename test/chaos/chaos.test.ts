// The short chaos run of `npm test`: three real processes (in network namespaces where this
// machine allows), every fault kind for 90 s, the CP history checked for linearizability and the
// AP views for live instances kept and convergence. Longer runs: `npm run chaos -- --time 600`.
// GRACE_CHAOS_SEED picks the schedule; a failure prints the seed and the replay command.

import { rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { runChaos } from './run.js'
import { FAULT_KINDS } from './schedule.js'

t.setTimeout(360_000)

t.test('a short chaos run finds no anomaly', async (t) => {
  const seed = Number(process.env.GRACE_CHAOS_SEED ?? 1)
  const lines: string[] = []
  const { report, dir } = await runChaos({
    timeSec: Number(process.env.GRACE_CHAOS_SECONDS ?? 90),
    faults: [...FAULT_KINDS],
    seed,
    resultsDir: join(tmpdir(), 'grace-chaos'),
    namespaces: true,
    cpClients: 4,
    apClients: 20,
    log: (line) => lines.push(line),
  })
  t.ok(report.faults.length > 0, 'faults were injected')
  t.ok(report.cp.ok > 100, `the CP workload made progress (${report.cp.ok} ok)`)
  t.ok(report.ap.acknowledged > 100, `the AP workload made progress (${report.ap.acknowledged} acknowledged)`)
  t.same(report.anomalies, [], `no anomaly (seed ${seed}; replay: ${report.replay})`)
  t.same(report.problems, [], 'the harness did everything it meant to')
  if (report.verdict === 'pass') rmSync(dir, { recursive: true, force: true })
  else t.comment(`report kept in ${dir}\n${lines.join('\n')}`)
})
