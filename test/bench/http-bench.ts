// `npm run bench [-- --quick | --duration S] [--warmup S] [--pairs N] [--quiet-wait S] [--only id,id]`
//
// Drives the real Grace server and a no-op fastify "roof" with autocannon, scenario by scenario,
// and reports Grace's throughput as a share of the roof's: per cell, the median ratio of several
// alternating roof/Grace pairs, with autocannon and the servers pinned to separate CPUs where
// taskset allows. See docs/benchmarks.md for the method.

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { describeMachine, load1 } from './machine.js'
import { type Measurement, PREWARM_CONNECTIONS, measure, prewarm } from './measure.js'
import { pinSelf } from './pinning.js'
import { waitQuiet } from './quiet.js'
import { NOISY_OTHER_CPU_PCT, type Pair, type Row, type RunInfo, docsSection, failures, noisyPairs, pairRatio, ratio, ratioRange, resultsTable, verdictTable, verdicts, writeDocsSection, writeJson } from './report.js'
import { SCENARIOS, type Scenario, sampleAnswer } from './scenarios.js'
import { type RunningServer, freePort, startServer } from './servers.js'
import { fatal, positive, progress, runInfoBase } from './cli.js'

const CONNECTIONS = [1, 64] as const
const BUSY_LOAD = 3

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const ROOF_SCRIPT = fileURLToPath(new URL('./roof-server.js', import.meta.url))

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    warmup: { type: 'string', default: '2' },
    prewarm: { type: 'string' },
    pairs: { type: 'string' },
    'quiet-wait': { type: 'string', default: '60' },
    only: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
})
if (opts.help) {
  console.log(
    'usage: npm run bench -- [--quick | --duration S] [--warmup S] [--prewarm S] [--pairs N] [--quiet-wait S] [--only eph-register,per-register,query,config-publish,config-get]\n' +
      '  --duration S  measured seconds per run (default 5; --quick: 3)\n' +
      '  --warmup S    unmeasured seconds before each run (default 2)\n' +
      `  --prewarm S   once, after the servers start: S unmeasured seconds of each scenario on each server at ${PREWARM_CONNECTIONS} connections (default 2; 0: none)\n` +
      '  --pairs N     alternating roof/Grace pairs per cell (default 5; --quick: 2)\n' +
      `  --quiet-wait S  before a pair, wait up to S seconds while other processes use over ${NOISY_OTHER_CPU_PCT} % of a core (default 60; 0: never)`,
  )
  process.exit(0)
}
const durationS = positive('--duration', opts.duration ?? (opts.quick ? '3' : '5'))
const warmupS = positive('--warmup', opts.warmup)
const prewarmS = Number(opts.prewarm ?? '2')
if (!(prewarmS >= 0)) fatal(`--prewarm must be a number of seconds ≥ 0, got ${opts.prewarm}`)
// Five by default: on this shared host a pair's two runs, seconds apart, can see the machine at
// different speeds (a roof run at 37 µs/req next to one at 44, without steal or other processes to
// show for it), and the median of five sets two such pairs aside where that of three sets one.
const pairs = Number(opts.pairs ?? (opts.quick ? '2' : '5'))
if (!Number.isInteger(pairs) || pairs < 1) fatal(`--pairs must be a whole number ≥ 1, got ${opts.pairs}`)
const quietWaitS = Number(opts['quiet-wait'])
if (!(quietWaitS >= 0)) fatal(`--quiet-wait must be a number of seconds ≥ 0, got ${opts['quiet-wait']}`)
let quietWaitedS = 0
const only = opts.only?.split(',').map((s) => s.trim())
const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.id))
if (scenarios.length === 0) fatal(`--only matched no scenario; ids: ${SCENARIOS.map((s) => s.id).join(', ')}`)

const loadBefore = load1()
if (loadBefore > BUSY_LOAD) progress(`warning: 1-minute load is ${loadBefore} on ${describeMachine().cores} cores; numbers will be noisy`)
// Before any server starts: pins this process (autocannon) and picks the servers' CPU.
const pinning = pinSelf()
progress(`pinning: ${pinning.note}`)
const cells = scenarios.length * CONNECTIONS.length
progress(`${cells} cells × ${pairs} pairs × 2 runs of ${warmupS} + ${durationS} s: about ${Math.ceil((cells * pairs * 2 * (warmupS + durationS)) / 60)} minutes`)

const tmp = mkdtempSync(join(tmpdir(), 'grace-bench-'))
const graceLog = join(tmp, 'grace.log')
const graceStderrFile = join(tmp, 'grace.stderr.log')
const servers: RunningServer[] = []
let cleaned = false
async function cleanup(): Promise<void> {
  if (cleaned) return
  cleaned = true
  await Promise.all(servers.map((s) => s.stop()))
  rmSync(tmp, { recursive: true, force: true })
}
process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)))

const rows: Row[] = []
let graceExit = 'not stopped'
let graceLogBytes = 0
let graceStderr = ''
try {
  const roofPort = await freePort()
  const roof = await startServer({ name: 'roof', args: [ROOF_SCRIPT, '--host', '127.0.0.1', '--port', String(roofPort)], pinning }, roofPort)
  servers.push(roof)
  const gracePort = await freePort()
  const grace = await startServer(
    {
      name: 'grace',
      args: [join(ROOT, 'bin/grace.js'), '--host', '127.0.0.1', '--port', String(gracePort), '--data-dir', join(tmp, 'data'), '--log-level', 'info'],
      stdoutFile: graceLog,
      stderrFile: graceStderrFile,
      pinning,
    },
    gracePort,
  )
  servers.push(grace)
  // The kernel's word that the pinning took, not only that taskset was asked.
  if (pinning.serverCpu !== undefined) {
    for (const server of [roof, grace]) {
      const cpus = server.cpus()
      if (cpus?.length !== 1 || cpus[0] !== pinning.serverCpu) {
        pinning.note += `; but ${server.name} may run on CPUs ${cpus?.join(',') ?? 'unknown'}`
        progress(`warning: ${server.name} is not pinned to CPU ${pinning.serverCpu} (allowed: ${cpus?.join(',') ?? 'unknown'})`)
      }
    }
  }

  // Both servers once, every scenario, before the first cell (measure.ts, prewarm): that cell, at
  // one connection, came seconds after Grace started, while V8 was still optimizing its paths.
  if (prewarmS > 0) {
    for (const scenario of scenarios) {
      await scenario.prepare?.(grace.url)
      for (const server of [roof, grace]) {
        const got = await prewarm(server.url, scenario.requests, PREWARM_CONNECTIONS, prewarmS)
        if (got.non2xx > 0 || got.errors > 0) throw new Error(`${server.name} failed ${got.non2xx} requests (non-2xx) and ${got.errors} connections during the prewarm of ${scenario.id}`)
      }
    }
    progress(`prewarmed both servers: ${scenarios.length} scenarios × ${prewarmS} s at ${PREWARM_CONNECTIONS} connections`)
  }

  // No retry when other processes were busy (an earlier version measured a noisy cell again):
  // the median over alternating pairs already sets disturbed pairs aside, and the noise is
  // still recorded and shown per cell.
  for (const scenario of scenarios) {
    for (const connections of CONNECTIONS) rows.push(await measureCell(scenario, connections, roof, grace))
  }
  graceLogBytes = statSync(graceLog).size
  graceExit = await grace.stop()
  if (graceExit !== 'code 0') progress(`warning: Grace exited with ${graceExit} on SIGTERM`)
  // Grace writes to stderr only when something is off (warnings, crashes): say so.
  graceStderr = readFileSync(graceStderrFile, 'utf8').slice(0, 4000)
  if (graceStderr) progress(`warning: Grace wrote to stderr:\n${graceStderr.trimEnd()}`)
} finally {
  await cleanup()
}

const info: RunInfo = {
  ...runInfoBase('npm run bench', { durationS, warmupS, pairs, pinning: pinning.note, quietWaitedS, quietWaitS, loadBefore }),
  prewarmS,
  graceLogBytes,
  graceExit,
  graceStderr,
}
console.log(resultsTable(rows))
console.log()
console.log(verdictTable(verdicts(rows)))
const jsonPath = writeJson(join(ROOT, 'bench-results'), info, rows)
// The published section is for complete runs only; a partial one would replace it with less.
if (scenarios.length === SCENARIOS.length) {
  writeDocsSection(join(ROOT, 'docs/benchmarks.md'), docsSection(info, rows))
  progress(`wrote docs/benchmarks.md and ${jsonPath}`)
} else {
  progress(`wrote ${jsonPath}; docs/benchmarks.md left as it was (--only)`)
}
// A FAILED cell fails the command, so a script or CI cannot mistake it for a result.
if (rows.some((r) => failures(r).length > 0)) process.exitCode = 1

async function measureCell(scenario: Scenario, connections: number, roof: RunningServer, grace: RunningServer): Promise<Row> {
  const settings = { connections, warmupS, durationS }
  const row: Row = { scenario: scenario.id, title: scenario.title, connections, pairs: [], problems: [] }
  for (let i = 1; i <= pairs; i++) {
    const label = `${scenario.id} c=${connections} pair ${i}/${pairs}`
    quietWaitedS += await waitQuiet([roof, grace], quietWaitS, progress)
    progress(`${label}: roof`)
    const roofResult = await measure(roof.url, scenario.requests, settings, roof.cpuSeconds, roof.mainThreadCpuSeconds)
    progress(`${label}: grace`)
    // A failed preparation or check fails the cell, not the run: the other cells still count.
    const problems: string[] = []
    await scenario.prepare?.(grace.url).catch((err: Error) => problems.push(`preparing: ${err.message}`))
    const graceResult = await measure(grace.url, scenario.requests, settings, grace.cpuSeconds, grace.mainThreadCpuSeconds)
    const exited = grace.exited()
    if (exited !== undefined) throw new Error(`Grace exited (${exited}) during ${scenario.id}${grace.tails()}`)
    await scenario
      .check?.(grace.url)
      .then((problem) => problem && problems.push(problem))
      .catch((err: Error) => problems.push(`checking: ${err.message}`))
    // One sample answer per cell says what the failing requests got; more would repeat it.
    if (graceResult.non2xx > 0 && row.problems.length === 0) {
      await sampleAnswer(grace.url, scenario).then((answer) => row.problems.push(`e.g. ${answer}`), () => {})
    }
    const pair: Pair = { roof: roofResult, grace: graceResult, problems }
    row.pairs.push(pair)
    progress(
      `  ratio ${pairRatio(pair).toFixed(2)}: roof ${Math.round(roofResult.reqPerSec)} req/s ` +
        `(cpu ${Math.round(roofResult.serverCpuPct)}%, ${cpuPerReq(roofResult)}), ` +
        `grace ${Math.round(graceResult.reqPerSec)} req/s (cpu ${Math.round(graceResult.serverCpuPct)}%, ${cpuPerReq(graceResult)}), ` +
        `autocannon cpu ${Math.round(roofResult.clientCpuPct)}% / ${Math.round(graceResult.clientCpuPct)}%, ` +
        `other cpu ${Math.round(roofResult.otherCpuPct)}% / ${Math.round(graceResult.otherCpuPct)}% (steal ${Math.round(roofResult.stealCpuPct)}% / ${Math.round(graceResult.stealCpuPct)}%)`,
    )
  }
  const failed = failures(row)
  const range = ratioRange(row)
  const noisy = noisyPairs(row)
  progress(
    `  => ${scenario.id} c=${connections}: Grace/roof ${ratio(row).toFixed(2)} (${range.min.toFixed(2)}–${range.max.toFixed(2)})` +
      (noisy ? `, ${noisy} noisy pair${noisy === 1 ? '' : 's'}` : '') +
      (failed.length ? `  FAILED: ${failed.join('; ')}` : ''),
  )
  return row
}

/** CPU per request, all threads and (in brackets) the main thread's part. */
function cpuPerReq(m: Measurement): string {
  return `${Math.round(m.serverCpuUsPerReq)} µs/req (main thread ${Math.round(m.serverMainCpuUsPerReq)})`
}

