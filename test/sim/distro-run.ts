// The Distro simulator's command line: run many seeds, or replay one.
//
//   node dist/test/sim/distro-run.js --seeds 500               seeds 1..500
//   node dist/test/sim/distro-run.js --seeds 200 --from 5000   seeds 5000..5199
//   node dist/test/sim/distro-run.js --seed 12345 --trace      replay one seed, printing its trace
//   --keep N   on failure, show the last N lines of the trace (default 80)

import { parseArgs } from 'node:util'
import { type DistroSimResult, DistroSimFailure, distroReplayCommand, runDistroSimulation } from './distro-cluster.js'

function summaryLine(r: DistroSimResult): string {
  const s = r.stats
  return (
    `seed ${r.seed}: ${s.simMs / 1000} s simulated, ${s.faults} faults (${s.partitions} partitions, ${s.crashes} crashes, ${s.loads} loads), ` +
    `${s.registrations} registrations, ${s.beats} beats (${s.countedBeats} counted, ${s.beatErrors} errors, ${s.unregisteredAnswers} not registered), ` +
    `${s.deregistrations} deregistrations, ${s.removals} instance removals (${s.removalsWhileBeating} of beating clients not live, ${s.lateRemovals} late copies of allowed removals), ${s.restored} clients restored, ` +
    `${s.messages} msgs (${s.dropped} lost) [${r.settings}]`
  )
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      from: { type: 'string' },
      seed: { type: 'string' },
      trace: { type: 'boolean', default: false },
      keep: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    console.log('usage: node dist/test/sim/distro-run.js [--seeds N] [--from S] [--seed S [--trace]] [--keep N]')
    return
  }
  const keep = values.keep ? Number(values.keep) : 80
  if (values.seed !== undefined && values.trace) {
    const seed = Number(values.seed)
    try {
      console.log(summaryLine(await runDistroSimulation(seed, { trace: 'print' })))
    } catch (err) {
      if (!(err instanceof DistroSimFailure)) throw err
      console.log(`FAILED: ${err.message}`)
      process.exitCode = 1
    }
    return
  }
  const seeds = values.seed !== undefined ? [Number(values.seed)] : Array.from({ length: Number(values.seeds ?? 100) }, (_, i) => Number(values.from ?? 1) + i)
  const started = Date.now()
  const failures: DistroSimFailure[] = []
  let restored = 0
  let restoringSeeds = 0
  for (const seed of seeds) {
    try {
      const r = await runDistroSimulation(seed, { traceKeep: keep })
      if (seeds.length === 1) console.log(summaryLine(r))
      restored += r.stats.restored
      if (r.stats.restored > 0) restoringSeeds++
    } catch (err) {
      if (!(err instanceof DistroSimFailure)) throw err
      failures.push(err)
      console.log(`\nFAIL ${err.message}`)
      if (err.trace.length > 0) console.log(`  last ${err.trace.length} lines of the trace:\n    ${err.trace.join('\n    ')}`)
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`\n${seeds.length} seeds in ${secs}s: ${seeds.length - failures.length} passed, ${failures.length} failed (${restored} clients restored over a removal, in ${restoringSeeds} seeds)`)
  if (failures.length > 0) {
    console.log('\nreplay:')
    for (const f of failures) console.log(`  ${distroReplayCommand(f.seed)}`)
    process.exitCode = 1
  }
}

void main()
