// The simulator's command line: run many seeds, or replay one.
//
//   npm run sim -- --seeds 1000                 seeds 1..1000, profiles in turn
//   npm run sim -- --seeds 500 --from 20000 --profile partitions
//   node dist/test/sim/run.js --seed 12345 --profile crashes --trace   replay one seed, print its trace
//   --steps K   stop each run after K events (liveness is then not judged)
//   --messages  with --trace: every message delivered too
//   --keep N    on failure, show the last N lines of the trace (default 60)

import { parseArgs } from 'node:util'
import { PROFILES, PROFILE_NAMES, type SimResult, SimFailure, Simulation, profileForSeed, replayCommand, runSimulation } from './cluster.js'

function main(): void {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string' },
      from: { type: 'string' },
      seed: { type: 'string' },
      profile: { type: 'string' },
      steps: { type: 'string' },
      trace: { type: 'boolean', default: false },
      messages: { type: 'boolean', default: false },
      keep: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  })
  if (values.help) {
    console.log(`usage: node dist/test/sim/run.js [--seeds N] [--from S] [--seed S] [--profile ${PROFILE_NAMES.join('|')}] [--steps K] [--trace [--messages]] [--keep N]`)
    for (const p of Object.values(PROFILES)) console.log(`  ${p.name.padEnd(11)} ${p.description}`)
    return
  }
  if (values.profile && !PROFILES[values.profile]) {
    console.error(`unknown profile ${values.profile}; one of ${PROFILE_NAMES.join(', ')}`)
    process.exit(2)
  }
  const maxSteps = values.steps ? Number(values.steps) : undefined
  const keep = values.keep ? Number(values.keep) : 60

  if (values.seed !== undefined) {
    const seed = Number(values.seed)
    const profile = values.profile ?? profileForSeed(seed)
    if (values.trace) {
      // Replay with every line of the trace printed as it happens.
      const sim = new Simulation({ seed, profile, maxSteps, trace: 'print', traceMessages: values.messages })
      try {
        const r = sim.run()
        console.log(summaryLine(r))
      } catch (err) {
        console.log(`FAILED: ${err instanceof Error ? err.message : String(err)}`)
        console.log(`  seed ${seed}, profile ${profile}`)
        process.exitCode = 1
      }
      return
    }
    runMany([seed], () => profile, maxSteps, keep)
    return
  }

  const count = Number(values.seeds ?? 100)
  const from = Number(values.from ?? 1)
  const seeds = Array.from({ length: count }, (_, i) => from + i)
  runMany(seeds, (s) => values.profile ?? profileForSeed(s), maxSteps, keep)
}

function summaryLine(r: SimResult): string {
  const s = r.stats
  return (
    `seed ${r.seed} ${r.profile}: ${s.steps} steps, ${s.simMs}ms, ${s.leaderTerms} leader terms, ${s.committed} committed, ` +
    `ops ok ${s.ok} fail ${s.fail} unknown ${s.unknown}, ${s.messages} msgs (${s.dropped} lost), ${s.crashes} crashes, ` +
    `${s.snapshotsSent}/${s.snapshotsInstalled} snapshots sent/installed, ${s.configChanges} config changes [${r.settings}]`
  )
}

function runMany(seeds: readonly number[], profileOf: (seed: number) => string, maxSteps: number | undefined, keep: number): void {
  const started = Date.now()
  const failures: SimFailure[] = []
  const totals = new Map<string, { runs: number; steps: number; ok: number; fail: number; unknown: number; crashes: number; snapshots: number; configs: number; terms: number }>()
  for (const seed of seeds) {
    const profile = profileOf(seed)
    try {
      const r = runSimulation(seed, profile, { maxSteps, traceKeep: keep })
      if (seeds.length === 1) console.log(summaryLine(r))
      const t = totals.get(profile) ?? { runs: 0, steps: 0, ok: 0, fail: 0, unknown: 0, crashes: 0, snapshots: 0, configs: 0, terms: 0 }
      t.runs++
      t.steps += r.stats.steps
      t.ok += r.stats.ok
      t.fail += r.stats.fail
      t.unknown += r.stats.unknown
      t.crashes += r.stats.crashes
      t.snapshots += r.stats.snapshotsInstalled
      t.configs += r.stats.configChanges
      t.terms += r.stats.leaderTerms
      totals.set(profile, t)
    } catch (err) {
      if (!(err instanceof SimFailure)) throw err
      failures.push(err)
      console.log(`\nFAIL ${err.message}`)
      if (err.trace.length > 0) console.log(`  last ${err.trace.length} lines of the trace:\n    ${err.trace.join('\n    ')}`)
    }
  }
  const secs = ((Date.now() - started) / 1000).toFixed(1)
  console.log(`\n${seeds.length} seeds in ${secs}s: ${seeds.length - failures.length} passed, ${failures.length} failed`)
  for (const [profile, t] of [...totals.entries()].sort()) {
    console.log(
      `  ${profile.padEnd(11)} ${String(t.runs).padStart(5)} runs, ${Math.round(t.steps / t.runs)} steps/run, ops ok ${t.ok} fail ${t.fail} unknown ${t.unknown}, ` +
        `${t.terms} leader terms, ${t.crashes} crashes, ${t.snapshots} snapshots installed, ${t.configs} config changes`,
    )
  }
  if (failures.length > 0) {
    console.log('\nreplay:')
    for (const f of failures) console.log(`  ${replayCommand(f.seed, f.profile)}`)
    process.exitCode = 1
  }
}

main()
