// A chaos run: three real Grace processes (each in its own network namespace where possible), a
// CP and an AP workload against them, faults from a seeded schedule, then the checks and a report.
//
//   npm run chaos -- --time 600 --faults all --seed 7
//
// Options: --time S (seconds of faults, default 120), --faults all|kind,kind (see schedule.ts),
// --seed N (default: from the clock; printed), --results DIR (default ./chaos-results),
// --no-netns (loopback and process faults only), --cp-clients N (default 6), --ap-clients N
// (default 30). Exit code 0 when no anomaly was found, 1 otherwise.

import { mkdirSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { Random } from '../sim/random.js'
import { ApWorkload } from './ap-workload.js'
import { checkAp, checkCp, Impairments, RECOVERY_ALLOWANCE_MS, viewsAgree } from './checks.js'
import { CpWorkload } from './cp-workload.js'
import { FaultInjector } from './faults.js'
import { setUpNetwork } from './network.js'
import { ChaosNodes } from './nodes.js'
import { type ChaosReport, markdownReport } from './report.js'
import { type FaultKind, NETWORK_FAULTS, parseFaults, planFaults } from './schedule.js'

export interface ChaosOptions {
  readonly timeSec: number
  readonly faults: readonly FaultKind[]
  readonly seed: number
  readonly resultsDir: string
  readonly namespaces: boolean
  readonly cpClients: number
  readonly apClients: number
  /** Progress lines; default: stdout. */
  readonly log?: (line: string) => void
}

const IDS = ['n1', 'n2', 'n3']
/** Two of Distro's 5 s verify intervals: the issue's convergence bound. */
const CONVERGENCE_BOUND_MS = 10_000
const CONVERGENCE_GIVE_UP_MS = 60_000
const WARMUP_MS = 3_000

export async function runChaos(opts: ChaosOptions): Promise<{ report: ChaosReport; dir: string }> {
  const log = opts.log ?? ((line: string) => console.log(line))
  const startedAt = Date.now()
  const dir = resolve(opts.resultsDir, `${new Date(startedAt).toISOString().replace(/[:.]/g, '-')}-seed-${opts.seed}`)
  mkdirSync(dir, { recursive: true })
  const now = (): number => Date.now() - startedAt
  const progress: string[] = []
  const say = (line: string): void => {
    progress.push(line)
    log(line)
  }

  say(`chaos run, seed ${opts.seed}: ${opts.timeSec} s of faults (${opts.faults.join(', ')}), results in ${dir}`)
  const net = await setUpNetwork(IDS, { namespaces: opts.namespaces })
  for (const n of net.notes) say(n)
  const skipped = net.kind === 'loopback' ? opts.faults.filter((f) => NETWORK_FAULTS.has(f)) : []
  const kinds = opts.faults.filter((f) => !skipped.includes(f))
  if (skipped.length) say(`skipped (no network namespaces): ${skipped.join(', ')}`)
  const nodes = new ChaosNodes(net, IDS, join(dir, 'data'), dir)
  const problems: string[] = []
  const rng = new Random(opts.seed)
  const impairments = new Impairments()
  const cp = new CpWorkload(() => IDS.map((id) => nodes.url(id)), rng.fork(), startedAt, opts.cpClients)
  const ap = new ApWorkload(IDS, (id) => nodes.url(id), rng.fork(), startedAt, opts.apClients)
  const injector = new FaultInjector(nodes, net, impairments, now, say)
  let convergenceMs: number | null = null
  let readyAfterHealMs: number | null = null
  try {
    // Starting together, the nodes see each other UP (and loaded) at slightly different moments,
    // and a copy may lag until the next verify round: the start counts as a fault of every node.
    for (const id of IDS) impairments.open(id, 0)
    await Promise.all(IDS.map((id) => nodes.start(id)))
    await nodes.settled(30_000)
    for (const id of IDS) impairments.close(id, now())
    await cp.setUp(nodes.url(IDS[0]!))
    say(`${now()} ms: cluster up (${IDS.map((id) => nodes.url(id)).join(', ')}); workloads start`)
    cp.start()
    ap.start()
    await sleep(WARMUP_MS)

    const plan = planFaults(opts.seed, kinds, opts.timeSec * 1000)
    const faultsEnd = now() + opts.timeSec * 1000
    for (const f of plan) {
      if (now() + f.gapMs >= faultsEnd) break
      await sleep(f.gapMs)
      await injector.run(f)
    }
    if (now() < faultsEnd) await sleep(faultsEnd - now())

    // Heal everything: no cut, every node running and resumed.
    await net.heal()
    for (const id of IDS) nodes.resume(id)
    for (const id of IDS) if (!nodes.isRunning(id)) await nodes.start(id).catch((err) => problems.push(`${id} did not start after the faults: ${err.message}`))
    const healedAt = now()
    say(`${healedAt} ms: faults over, all healed`)
    try {
      await nodes.settled(30_000)
      readyAfterHealMs = now() - healedAt
    } catch (err) {
      problems.push(`the cluster did not settle after the faults: ${(err as Error).message}`)
    }

    // AP convergence: every node lists every client, the same way, while the clients beat on.
    const convergeStart = now()
    while (now() - convergeStart < CONVERGENCE_GIVE_UP_MS) {
      const views = await Promise.all(IDS.map((id) => ap.view(id)))
      if (views.every((v) => v !== null) && viewsAgree(views as NonNullable<(typeof views)[number]>[], ap.clients)) {
        convergenceMs = now() - convergeStart
        break
      }
      await sleep(200)
    }
    say(`${now()} ms: AP views ${convergenceMs === null ? 'did NOT converge' : `converged ${convergenceMs} ms after the cluster settled`}`)

    await cp.stop()
    await cp.finalReads(IDS.map((id) => nodes.url(id)))
    await ap.stop()
  } catch (err) {
    problems.push(`the run stopped early: ${(err as Error).stack ?? err}`)
    await cp.stop()
    await ap.stop()
  } finally {
    await nodes.stopAll()
    await net.teardown()
  }

  say(`${now()} ms: checking ${cp.history.length} CP operations for linearizability`)
  const cpVerdict = checkCp(cp.history)
  const apAnomalies = checkAp(ap.clients, ap.acks, ap.lost, ap.samples, impairments, ap.registeredAt)
  for (const f of injector.injected) if (f.problem) problems.push(`${f.kind}: ${f.problem}`)
  for (const u of cp.unexpected) problems.push(`unexpected answer to ${u.what} at ${u.atMs} ms: ${u.status} ${u.body}`)

  const anomalies: string[] = []
  if (!cpVerdict.ok && !cpVerdict.inconclusive) anomalies.push(`CP history not linearizable (key ${cpVerdict.key}): ${cpVerdict.explanation}`)
  if (cpVerdict.inconclusive) problems.push(`the linearizability search ran out of steps on key ${cpVerdict.key}: neither proved nor refuted`)
  for (const a of apAnomalies) anomalies.push(`AP ${a.kind}: ${a.detail}`)
  if (convergenceMs === null) anomalies.push(`AP views did not converge within ${CONVERGENCE_GIVE_UP_MS / 1000} s of the faults ending`)
  else if (convergenceMs > CONVERGENCE_BOUND_MS) anomalies.push(`AP views converged in ${convergenceMs} ms, over two verify intervals (${CONVERGENCE_BOUND_MS} ms)`)

  const outcomes = { ok: 0, fail: 0, unknown: 0 }
  for (const op of cp.history) outcomes[op.outcome]++
  const report: ChaosReport = {
    seed: opts.seed,
    startedAt: new Date(startedAt).toISOString(),
    faultSeconds: opts.timeSec,
    wallSeconds: Math.round(now() / 1000),
    network: { kind: net.kind, notes: net.notes },
    faultKinds: kinds,
    skippedFaultKinds: skipped,
    faults: injector.injected.map((f) => ({ kind: f.kind, targets: f.targets, startMs: f.startMs, endMs: f.endMs, detail: f.detail, ...(f.problem ? { problem: f.problem } : {}) })),
    cp: { clients: opts.cpClients, operations: cp.history.length, ...outcomes, keys: cp.keys, linearizable: cpVerdict },
    ap: {
      clients: ap.clients.length,
      calls: ap.calls,
      failedCalls: ap.failedCalls,
      acknowledged: ap.acks.length,
      lostAnswers: ap.lost.length,
      viewSamples: ap.samples.length,
      recoveryAllowanceMs: RECOVERY_ALLOWANCE_MS,
      settledAfterHealMs: readyAfterHealMs,
      convergenceMs,
      convergenceBoundMs: CONVERGENCE_BOUND_MS,
    },
    anomalies,
    problems,
    verdict: anomalies.length === 0 && problems.length === 0 ? 'pass' : 'fail',
    replay: `npm run chaos -- --time ${opts.timeSec} --faults ${opts.faults.join(',')} --seed ${opts.seed}${opts.namespaces ? '' : ' --no-netns'}`,
  }
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(join(dir, 'report.md'), markdownReport(report, progress))
  writeFileSync(join(dir, 'cp-history.json'), JSON.stringify(cp.history))
  say(`${report.verdict.toUpperCase()}: ${anomalies.length} anomalies, ${problems.length} problems; report in ${dir}`)
  for (const a of anomalies) say(`  anomaly: ${a}`)
  for (const p of problems) say(`  problem: ${p}`)
  if (report.verdict === 'fail') say(`replay: ${report.replay}`)
  return { report, dir }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      time: { type: 'string', default: '120' },
      faults: { type: 'string', default: 'all' },
      seed: { type: 'string' },
      results: { type: 'string', default: 'chaos-results' },
      'no-netns': { type: 'boolean', default: false },
      'cp-clients': { type: 'string', default: '6' },
      'ap-clients': { type: 'string', default: '30' },
    },
  })
  const int = (name: string, v: string, min: number, max: number): number => {
    const n = Number(v)
    if (!Number.isInteger(n) || n < min || n > max) throw new Error(`--${name} must be an integer in ${min}..${max}`)
    return n
  }
  const { report } = await runChaos({
    timeSec: int('time', values.time, 10, 86_400),
    faults: parseFaults(values.faults),
    seed: values.seed !== undefined ? int('seed', values.seed, 0, 2 ** 32 - 1) : Date.now() % 2 ** 32,
    resultsDir: values.results,
    namespaces: !values['no-netns'],
    cpClients: int('cp-clients', values['cp-clients'], 1, 64),
    apClients: int('ap-clients', values['ap-clients'], 1, 1000),
  })
  process.exitCode = report.verdict === 'pass' ? 0 : 1
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().catch((err) => {
    console.error(err instanceof Error ? err.message : err)
    process.exitCode = 2
  })
}
