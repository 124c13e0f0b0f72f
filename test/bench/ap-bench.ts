// `npm run bench:ap [-- --quick | --duration S] [--warmup S] [--pairs N] [--quiet-wait S] [--lag-samples N] [--instances N] [--phases throughput,lag,load]`
//
// The AP layer (Distro) of a 3-node Grace cluster, on 127.0.0.1, real processes:
// - throughput and p50/p99 of ephemeral registrations and of heartbeats, requests spread over the
//   three nodes, against the no-op fastify roof driven the same way in the same run (alternating
//   pairs, as bench and bench:cp);
// - sync lag: from the acknowledgement of a registration on one node until every node lists it,
//   on an idle cluster and under a saturating registration load;
// - startup: a node killed and restarted loads 100k instances from a peer before it listens;
//   time from process start to ready and to listing all of them;
// - memory: RSS and heap (after a full GC) of each node empty and with the 100k.
// Checks the targets of issue 4 (item 9). See the bench:ap section of docs/benchmarks.md.

import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { BEAT_METADATA } from '../../src/naming/model.js'
import { type LagResult, runLagWorker } from './ap-lag.js'
import { describeMachine, load1 } from './machine.js'
import { type Measurement, PREWARM_CONNECTIONS, measure, prewarm } from './measure.js'
import { pinSelf } from './pinning.js'
import { waitQuiet } from './quiet.js'
import { NOISY_OTHER_CPU_PCT, type Pair, type Row, cell, failures, fixed, int, med, median, noisyPairs, ratio, ratioRange, writeDocsSection } from './report.js'
import { DISTINCT_INSTANCES, type Scenario, beatClient, beatScenario, instanceAddress, registerScenario, sampleAnswer } from './scenarios.js'
import { type RunningServer, type ServerSpec, freePort, startServer, stopAll } from './servers.js'
import { fatal, positive, progress, runInfoBase } from './cli.js'

const CONNECTIONS = [1, 64] as const
const BUSY_LOAD = 3
/** Clients registered before the heartbeat runs; the beats cycle through them. */
const BEAT_CLIENTS = 1000
/** Grace holds at most 50,000 instances per service: the load phase spreads over this many. */
const LOAD_SERVICES = 4
/** Lease timeouts of the instances that must outlive the benchmark (1 h; the limit is 24 h). */
const LONG_LEASE: Record<string, string> = { [BEAT_METADATA.unhealthyAfterMs]: '3600000', [BEAT_METADATA.removeAfterMs]: '3600000' }
/** The targets of issue 4, item 9. */
const TARGET_RATIO = 0.6
const TARGET_LAG_P99_MS = 200
const TARGET_LOAD_MS = 5000
const TARGET_INSTANCES = 100_000
const PHASES = ['throughput', 'lag', 'load'] as const
type Phase = (typeof PHASES)[number]

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const ROOF_SCRIPT = fileURLToPath(new URL('./roof-server.js', import.meta.url))
const MEM_PROBE = pathToFileURL(fileURLToPath(new URL('./mem-probe.js', import.meta.url))).href
const JSON_HEADERS = { 'content-type': 'application/json' }

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    warmup: { type: 'string', default: '2' },
    prewarm: { type: 'string' },
    pairs: { type: 'string' },
    'quiet-wait': { type: 'string' },
    'lag-samples': { type: 'string' },
    instances: { type: 'string', default: String(TARGET_INSTANCES) },
    phases: { type: 'string', default: PHASES.join(',') },
    'keep-logs': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (opts.help) {
  console.log(
    'usage: npm run bench:ap -- [--quick | --duration S] [--warmup S] [--prewarm S] [--pairs N] [--quiet-wait S] [--lag-samples N] [--instances N] [--phases throughput,lag,load]\n' +
      '  --duration S      measured seconds per throughput run (default 5; --quick: 3)\n' +
      '  --warmup S        unmeasured seconds before each run (default 2)\n' +
      `  --prewarm S       once, before the first cell: S unmeasured seconds of each scenario on the roof and on the cluster at ${PREWARM_CONNECTIONS} connections (default 5; --quick: 2; 0: none)\n` +
      '  --pairs N         alternating roof/Grace pairs per cell (default 3; --quick: 2)\n' +
      `  --quiet-wait S    before a pair, wait up to S seconds while other processes use over ${NOISY_OTHER_CPU_PCT} % of a core (default 60; --quick: 10; 0: never)\n` +
      '  --lag-samples N   sync-lag samples per condition (default 500; --quick: 300)\n' +
      `  --instances N     instances the restarted node loads (default ${TARGET_INSTANCES})\n` +
      '  --phases L        which parts to run (default throughput,lag,load); docs/benchmarks.md is written only when all ran with the default --instances\n' +
      '  --keep-logs       keep the servers\' logs and data directories (the path is printed at the end)',
  )
  process.exit(0)
}
const durationS = positive('--duration', opts.duration ?? (opts.quick ? '3' : '5'))
const warmupS = positive('--warmup', opts.warmup)
const prewarmS = Number(opts.prewarm ?? (opts.quick ? '2' : '5'))
if (!(prewarmS >= 0)) fatal(`--prewarm must be a number of seconds ≥ 0, got ${opts.prewarm}`)
const pairs = Number(opts.pairs ?? (opts.quick ? '2' : '3'))
if (!Number.isInteger(pairs) || pairs < 1) fatal(`--pairs must be a whole number ≥ 1, got ${opts.pairs}`)
const quietWaitS = Number(opts['quiet-wait'] ?? (opts.quick ? '10' : '60'))
if (!(quietWaitS >= 0)) fatal(`--quiet-wait must be a number of seconds ≥ 0, got ${opts['quiet-wait']}`)
const lagSamples = Number(opts['lag-samples'] ?? (opts.quick ? '300' : '500'))
if (!Number.isInteger(lagSamples) || lagSamples < 1) fatal(`--lag-samples must be a whole number ≥ 1, got ${opts['lag-samples']}`)
const instanceCount = Number(opts.instances)
if (!Number.isInteger(instanceCount) || instanceCount < LOAD_SERVICES || instanceCount > LOAD_SERVICES * DISTINCT_INSTANCES) {
  fatal(`--instances must be a whole number in ${LOAD_SERVICES}..${LOAD_SERVICES * DISTINCT_INSTANCES}, got ${opts.instances}`)
}
const phases = opts.phases.split(',').map((s) => s.trim()) as Phase[]
if (phases.some((p) => !PHASES.includes(p))) fatal(`--phases lists ${PHASES.join(', ')}; got ${opts.phases}`)
let quietWaitedS = 0

const loadBefore = load1()
if (loadBefore > BUSY_LOAD) progress(`warning: 1-minute load is ${loadBefore} on ${describeMachine().cores} cores; numbers will be noisy`)
// Before any server starts: pins this process (autocannon) and picks the servers' CPU.
const pinning = pinSelf()
progress(`pinning: ${pinning.note}`)
if (phases.includes('throughput')) {
  const cells = 2 * CONNECTIONS.length
  progress(`throughput: ${cells} cells × ${pairs} pairs × 2 runs of ${warmupS} + ${durationS} s: about ${Math.ceil((cells * pairs * (2 * (warmupS + durationS) + 1)) / 60)} minutes, plus waits for quiet`)
}

const tmp = mkdtempSync(join(tmpdir(), 'grace-bench-ap-'))
let cleaned = false
async function cleanup(): Promise<void> {
  if (cleaned) return
  cleaned = true
  await stopAll()
  if (opts['keep-logs']) progress(`logs and data kept in ${tmp}`)
  else rmSync(tmp, { recursive: true, force: true })
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping the servers and removing ${tmp}`)
    void cleanup().finally(() => process.exit(130))
  })
}

// ---- clusters --------------------------------------------------------------------------------

interface Member {
  id: string
  port: number
  spec: ServerSpec
  server: RunningServer
}

interface Cluster {
  label: string
  members: Member[]
  urls(): string[]
  cpuSeconds(): number | undefined
}

/** Starts n1..n3 together (each waits for the others to form a cluster); on failure stops the rest. */
async function startCluster(label: string, nodeArgsBefore: string[] = []): Promise<Cluster> {
  const ids = ['n1', 'n2', 'n3']
  const ports: Record<string, { client: number; peer: number }> = {}
  for (const id of ids) ports[id] = { client: await freePort(), peer: await freePort() }
  const members = ids.map((id) => `${id}=127.0.0.1:${ports[id].peer}`).join(',')
  // A fresh secret per cluster; peers authenticate with it (there is no default).
  const secret = randomBytes(24).toString('base64url')
  const specs = ids.map((id) => ({
    id,
    port: ports[id].client,
    spec: {
      name: `${label} ${id}`,
      // Log level info, Grace's default, as in the other benchmarks: each request's line is paid for.
      args: [
        ...nodeArgsBefore,
        join(ROOT, 'bin/grace.js'),
        ...['--host', '127.0.0.1', '--port', String(ports[id].client), '--data-dir', join(tmp, label, id)],
        ...['--node-id', id, '--members', members, '--cluster-secret', secret, '--log-level', 'info'],
      ],
      stdoutFile: join(tmp, `${label}-${id}.log`),
      stderrFile: join(tmp, `${label}-${id}.stderr.log`),
      pinning,
    } satisfies ServerSpec,
  }))
  const settled = await Promise.allSettled(specs.map(({ spec, port }) => startServer(spec, port)))
  const failedStarts = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failedStarts.length > 0) {
    await Promise.all(settled.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)))
    throw new Error(failedStarts.map((f) => (f.reason as Error).message).join('\n'))
  }
  const list = settled.map((s, i) => ({ ...specs[i], server: (s as PromiseFulfilledResult<RunningServer>).value }))
  checkPinned(list.map((m) => m.server))
  return {
    label,
    members: list,
    urls: () => list.map((m) => m.server.url),
    cpuSeconds: () => {
      const each = list.map((m) => m.server.cpuSeconds())
      return each.some((v) => v === undefined) ? undefined : each.reduce((a: number, b) => a + (b as number), 0)
    },
  }
}

/** The kernel's word that the pinning took, not only that taskset was asked. */
function checkPinned(servers: RunningServer[]): void {
  if (pinning.serverCpu === undefined) return
  for (const server of servers) {
    const cpus = server.cpus()
    if (cpus?.length !== 1 || cpus[0] !== pinning.serverCpu) {
      pinning.note += `; but ${server.name} may run on CPUs ${cpus?.join(',') ?? 'unknown'}`
      progress(`warning: ${server.name} is not pinned to CPU ${pinning.serverCpu} (allowed: ${cpus?.join(',') ?? 'unknown'})`)
    }
  }
}

/** Stops a cluster; returns how its members exited, its log bytes and anything it wrote to stderr. */
async function stopCluster(c: Cluster, extraLogs: string[] = []): Promise<{ exit: string; logBytes: number; stderr: string }> {
  const logs = [...c.members.map((m) => m.spec.stdoutFile!), ...extraLogs]
  const exit = exits(await Promise.all(c.members.map((m) => m.server.stop())))
  const logBytes = logs.reduce((n, p) => n + (existsSync(p) ? statSync(p).size : 0), 0)
  const stderr = c.members
    .map((m) => readFileSync(m.spec.stderrFile!, 'utf8'))
    .join('')
    .slice(0, 4000)
  if (stderr) progress(`warning: ${c.label} wrote to stderr:\n${stderr.trimEnd()}`)
  return { exit, logBytes, stderr }
}

// ---- scenarios -------------------------------------------------------------------------------

const SCENARIOS: Scenario[] = [registerScenario('register', 'ephemeral register', 'bench-ap-eph', true), beatScenario(BEAT_CLIENTS)]

/** Registers the heartbeat clients (long leases), 32 requests at a time over the nodes. */
async function registerBeatClients(urls: string[]): Promise<void> {
  let next = 0
  const worker = async () => {
    while (next < BEAT_CLIENTS) {
      const i = next++
      const body = { service: 'bench-ap-beat', ip: `10.2.${(i >> 8) & 255}.${i & 255}`, port: 9000, ephemeral: true, clientId: beatClient(i), metadata: LONG_LEASE }
      await call(urls[i % urls.length], 'POST', '/v1/ns/instances', body)
    }
  }
  await Promise.all(Array.from({ length: 32 }, worker))
}

/** After a heartbeat run: every node answers a beat of a registered client with registered: true. */
async function checkBeats(urls: string[]): Promise<string | undefined> {
  for (const url of urls) {
    const answer = (await call(url, 'PUT', '/v1/ns/instances/beat', { clientId: beatClient(7) })) as { registered?: boolean }
    if (answer.registered !== true) return `a beat on ${url} answered ${JSON.stringify(answer)}: the client is gone`
  }
  return undefined
}

// ---- the run ---------------------------------------------------------------------------------

const rows: Row[] = []
const lag: { idle?: LagResult; loaded?: LagResult; loadedReqPerSec?: number; loadedProblems: string[] } = { loadedProblems: [] }
interface MemorySample {
  rss: number
  heapUsed: number
}
interface LoadResult {
  instances: number
  registerS: number
  registerProblems: string[]
  /** From the last acknowledgement until every node listed all instances. */
  convergeMs: number | undefined
  victim: string
  wasLeader: string
  spawnToReadyMs: number | undefined
  spawnToListedMs: number | undefined
  /** The listing round (four full GETs, answers parsed here) that found every instance. */
  listRoundMs: number
  distroLoad: { ms?: number; records?: number; peer?: string }
  listedOnRestart: number
  unhealthyAfter: { at: string; counts: number[] }[]
  memory: { id: string; empty: MemorySample; full: MemorySample }[]
  restarted: { empty: MemorySample; full: MemorySample } | undefined
  problems: string[]
}
let load: LoadResult | undefined
const ends: { label: string; exit: string; logBytes: number; stderr: string }[] = []

try {
  if (phases.includes('throughput') || phases.includes('lag')) {
    const roofPort = await freePort()
    const roof = await startServer({ name: 'roof', args: [ROOF_SCRIPT, '--host', '127.0.0.1', '--port', String(roofPort)], pinning }, roofPort)
    checkPinned([roof])
    const a = await startCluster('grace')
    progress(`cluster up: ${a.urls().join(' ')}; roof ${roof.url}`)
    if (phases.includes('throughput')) {
      await registerBeatClients(a.urls())
      // Both once, every scenario, before the first cell (measure.ts, prewarm), as the other
      // benchmarks do: that cell, at one connection, found the nodes fresh from their start, still
      // compiling their hot paths on threads that share their core.
      if (prewarmS > 0) {
        for (const scenario of SCENARIOS) {
          for (const [label, url] of [['roof', roof.url], ['grace', a.urls()]] as const) {
            const got = await prewarm(url, scenario.requests, PREWARM_CONNECTIONS, prewarmS)
            progress(`prewarm ${label}, ${scenario.id}: ${int(got.responses)} requests in ${prewarmS} s at ${PREWARM_CONNECTIONS} connections`)
            if (got.non2xx > 0 || got.errors > 0) throw new Error(`${label} failed ${got.non2xx} requests (non-2xx) and ${got.errors} connections during the prewarm of ${scenario.id}`)
          }
        }
      }
      for (const scenario of SCENARIOS) {
        for (const connections of CONNECTIONS) rows.push(await measureCell(scenario, connections, roof, a))
      }
    }
    await roof.stop()
    if (phases.includes('lag')) await measureLag(a)
    ends.push({ label: 'throughput and lag cluster', ...(await stopCluster(a)) })
  }
  if (phases.includes('load')) load = await measureLoad()
} finally {
  await cleanup()
}

async function measureCell(scenario: Scenario, connections: number, roof: RunningServer, c: Cluster): Promise<Row> {
  const settings = { connections, warmupS, durationS }
  const row: Row = { scenario: scenario.id, title: scenario.title, connections, pairs: [], problems: [] }
  const idle = [roof, ...c.members.map((m) => m.server)]
  for (let i = 1; i <= pairs; i++) {
    const label = `${scenario.id} c=${connections} pair ${i}/${pairs}`
    quietWaitedS += await waitQuiet(idle, quietWaitS, progress)
    // One connection goes to one server: at 1 connection each pair drives the next node in turn;
    // more connections are split over the three nodes (autocannon: connection k to url k mod 3).
    const urls = connections === 1 ? [c.urls()[(i - 1) % c.members.length]] : c.urls()
    progress(`${label}: roof`)
    const roofResult = await measure(roof.url, scenario.requests, settings, roof.cpuSeconds)
    progress(`${label}: grace (${urls.length === 1 ? urls[0] : 'all three nodes'})`)
    const graceResult = await measure(urls, scenario.requests, settings, () => c.cpuSeconds())
    for (const m of c.members) {
      const exited = m.server.exited()
      if (exited !== undefined) throw new Error(`${m.server.name} exited (${exited}) during ${label}${m.server.tails()}`)
    }
    const problems: string[] = []
    if (scenario.id === 'beat') {
      await checkBeats(c.urls())
        .then((problem) => problem && problems.push(problem))
        .catch((err: Error) => problems.push(`checking: ${err.message}`))
    }
    if (graceResult.non2xx > 0 && row.problems.length === 0) {
      await sampleAnswer(urls[0], scenario).then((answer) => row.problems.push(`e.g. ${answer}`), () => {})
    }
    const pair: Pair = { roof: roofResult, grace: graceResult, problems }
    row.pairs.push(pair)
    progress(
      `  req/s ×${fixed(reqRatio(pair), 2)}, p50 ×${fixed(latRatio(pair, 'p50Ms'), 2)}, p99 ×${fixed(latRatio(pair, 'p99Ms'), 2)}: ` +
        `roof ${Math.round(roofResult.reqPerSec)} req/s p50 ${fixed(roofResult.p50Ms, 2)} ms (cpu ${Math.round(roofResult.serverCpuPct)}%), ` +
        `grace ${Math.round(graceResult.reqPerSec)} req/s p50 ${fixed(graceResult.p50Ms, 2)} ms (cluster cpu ${Math.round(graceResult.serverCpuPct)}%, ${Math.round(graceResult.serverCpuUsPerReq)} µs/req), ` +
        `autocannon cpu ${Math.round(roofResult.clientCpuPct)}% / ${Math.round(graceResult.clientCpuPct)}%, other cpu ${Math.round(roofResult.otherCpuPct)}% / ${Math.round(graceResult.otherCpuPct)}% (steal ${Math.round(roofResult.stealCpuPct)}% / ${Math.round(graceResult.stealCpuPct)}%)`,
    )
  }
  const failed = failures(row)
  progress(`  => ${scenario.id} c=${connections}: req/s ×${fixed(ratio(row), 2)}` + (failed.length ? `  FAILED: ${failed.join('; ')}` : ''))
  return row
}

async function measureLag(c: Cluster): Promise<void> {
  const base = { urls: c.urls(), samples: lagSamples, maxMs: 90_000, timeoutMs: 5_000, metadata: LONG_LEASE }
  progress(`sync lag, idle cluster: ${lagSamples} samples`)
  lag.idle = await runLagWorker({ ...base, prefix: 'bench-ap-lag-idle' })
  progress(`  p50 ${fixed(pct(lag.idle.lagsMs, 0.5), 2)} ms, p99 ${fixed(pct(lag.idle.lagsMs, 0.99), 2)} ms, ${lag.idle.timeouts} timeouts, ${lag.idle.errorCount} errors`)

  // The same under a registration load that keeps the cluster's core busy: 64 connections over the
  // three nodes, from this thread, while the sampler runs in its worker.
  progress(`sync lag under a 64-connection registration load: ${lagSamples} samples`)
  const bg = registerScenario('bg', 'background', 'bench-ap-bg', true)
  let instance: autocannon.Instance | undefined
  const done = new Promise<autocannon.Result | undefined>((resolve) => {
    instance = autocannon({ url: c.urls(), connections: 64, pipelining: 1, duration: 120, requests: bg.requests() }, (err, r) => {
      if (err) lag.loadedProblems.push(`background load: ${err.message}`)
      resolve(err ? undefined : r)
    })
  })
  await sleep(1000)
  const cpuStart = c.cpuSeconds()
  const wallStart = performance.now()
  try {
    lag.loaded = await runLagWorker({ ...base, maxMs: 60_000, prefix: 'bench-ap-lag-load' })
  } finally {
    instance?.stop()
  }
  const cpuPct = (100 * ((c.cpuSeconds() ?? Number.NaN) - (cpuStart ?? Number.NaN))) / ((performance.now() - wallStart) / 1000)
  const result = await Promise.race([done, sleep(10_000).then(() => undefined)])
  if (result) {
    lag.loadedReqPerSec = result.duration > 0 ? result.requests.total / result.duration : Number.NaN
    if (result.non2xx > 0 || result.errors > 0) lag.loadedProblems.push(`background load: ${result.non2xx} non-2xx, ${result.errors} errors`)
  } else lag.loadedProblems.push('background load did not report its result')
  progress(
    `  p50 ${fixed(pct(lag.loaded.lagsMs, 0.5), 2)} ms, p99 ${fixed(pct(lag.loaded.lagsMs, 0.99), 2)} ms, ${lag.loaded.timeouts} timeouts, ${lag.loaded.errorCount} errors; ` +
      `background ${int(lag.loadedReqPerSec ?? Number.NaN)} req/s, cluster cpu ${Math.round(cpuPct)}%`,
  )
}

/**
 * A fresh cluster (with the memory probe preloaded): memory of each node empty; `instances`
 * ephemeral instances registered over the three nodes (one client each, long leases); memory
 * again; a follower killed (SIGKILL) and started again on the same data directory and ports; the
 * time from its spawn to 'grace is ready' (its log) and to listing every instance (GETs as soon as
 * it answers); its memory then.
 */
async function measureLoad(): Promise<LoadResult> {
  const memDir = join(tmp, 'mem')
  mkdirSync(memDir, { recursive: true })
  process.env.GRACE_BENCH_MEM_DIR = memDir
  const c = await startCluster('load', ['--expose-gc', '--import', MEM_PROBE])
  const problems: string[] = []
  const restartLogs: string[] = []
  try {
    await sleep(2000)
    const empty = await Promise.all(c.members.map((m) => memory(m.server, memDir)))
    progress(`load: registering ${int(instanceCount)} instances (${instanceCount / LOAD_SERVICES} in each of ${LOAD_SERVICES} services), 64 connections over the three nodes`)
    let seq = 0
    const started = performance.now()
    const reg = await driveAmount(c.urls(), instanceCount, () => {
      const k = seq++ % instanceCount
      const { ip, port } = instanceAddress(k)
      return JSON.stringify({ service: loadService(k), ip, port, ephemeral: true, metadata: LONG_LEASE })
    })
    const registerS = (performance.now() - started) / 1000
    const lastAck = performance.now()
    const registerProblems: string[] = []
    if (reg.non2xx > 0 || reg.errors > 0) registerProblems.push(`${reg.non2xx} non-2xx (${statusCodes(reg)}), ${reg.errors} errors`)
    progress(`  registered in ${fixed(registerS, 1)} s (${int(instanceCount / registerS)} req/s)${registerProblems.length ? `: ${registerProblems.join('; ')}` : ''}`)
    let convergeMs: number | undefined
    for (const deadline = lastAck + 120_000; performance.now() < deadline; await sleep(200)) {
      const counts = await Promise.all(c.urls().map((u) => counted(u).then((l) => l.total)))
      if (counts.every((n) => n === instanceCount)) {
        convergeMs = performance.now() - lastAck
        break
      }
    }
    if (convergeMs === undefined) problems.push(`the nodes did not all list ${instanceCount} instances within 120 s of the last acknowledgement`)
    progress(`  every node lists all ${convergeMs === undefined ? 'NOT' : `${Math.round(convergeMs)} ms after the last acknowledgement`}`)
    const full = await Promise.all(c.members.map((m) => memory(m.server, memDir)))

    const statuses = (await Promise.all(c.urls().map((u) => call(u, 'GET', '/v1/cluster/status')))) as { id: string; role: string }[]
    const leader = statuses.find((s) => s.role === 'leader')?.id ?? 'none'
    // A follower: the measurement is the AP load, not a Raft election.
    const victim = [...c.members].reverse().find((m) => m.id !== leader)!
    progress(`  killing ${victim.id} (SIGKILL; leader ${leader}), restarting it in 2 s`)
    await victim.server.kill('SIGKILL')
    await sleep(2000)
    const restartLog = join(tmp, `load-${victim.id}.restart.log`)
    restartLogs.push(restartLog)
    const spec: ServerSpec = { ...victim.spec, name: `${victim.spec.name} (restarted)`, stdoutFile: restartLog, readyPollMs: 5 }
    const spawnedAt = Date.now()
    const spawnedPerf = performance.now()
    victim.server = await startServer(spec, victim.port)
    const readyPerf = performance.now()
    let spawnToListedMs: number | undefined
    let listRoundMs = Number.NaN
    let listedOnRestart = 0
    let unhealthyListed = 0
    for (const deadline = spawnedPerf + 60_000; performance.now() < deadline; ) {
      const roundStart = performance.now()
      const l = await listed(victim.server.url)
      listRoundMs = performance.now() - roundStart
      listedOnRestart = l.total
      unhealthyListed = l.unhealthy
      if (l.total === instanceCount) {
        spawnToListedMs = performance.now() - spawnedPerf
        break
      }
      await sleep(20)
    }
    if (spawnToListedMs === undefined) problems.push(`the restarted node listed ${listedOnRestart} of ${instanceCount} instances after 60 s`)
    const logLines = await readLogUntil(restartLog, 'grace is ready', 5_000)
    const readyLine = logLines.find((l) => l.msg === 'grace is ready')
    const loadLine = logLines.find((l) => l.msg === 'distro: loaded a full copy from a peer')
    const spawnToReadyMs = typeof readyLine?.time === 'number' ? readyLine.time - spawnedAt : undefined
    if (!loadLine) problems.push(`the restarted node did not log a load from a peer (${logLines.filter((l) => String(l.msg).includes('distro') || String(l.msg).includes('ephemeral')).map((l) => l.msg).join('; ') || 'no distro lines'})`)
    if (unhealthyListed > 0) problems.push(`the restarted node's first full listing had ${unhealthyListed} unhealthy instances`)
    progress(
      `  ${victim.id}: spawn → ready ${fixed(spawnToReadyMs ?? Number.NaN, 0)} ms (readyz answered 200 at ${Math.round(readyPerf - spawnedPerf)} ms), ` +
        `→ listing all ${fixed(spawnToListedMs ?? Number.NaN, 0)} ms (the last listing round took ${Math.round(listRoundMs)} ms); ` +
        `distro load ${loadLine?.ms ?? '?'} ms for ${loadLine?.records ?? '?'} records from ${loadLine?.peer ?? '?'}`,
    )
    // Restart must not mark live instances unhealthy: count the unhealthy on every node, at once
    // and again after the membership change has settled (checked every second) and leases moved.
    const unhealthyAfter: LoadResult['unhealthyAfter'] = []
    unhealthyAfter.push({ at: 'right after', counts: await Promise.all(c.urls().map((u) => counted(u).then((l) => l.unhealthy))) })
    await sleep(3000)
    unhealthyAfter.push({ at: '3 s later', counts: await Promise.all(c.urls().map((u) => counted(u).then((l) => l.unhealthy))) })
    const restartedFull = await memory(victim.server, memDir)
    const victimIndex = c.members.indexOf(victim)
    return {
      instances: instanceCount,
      registerS,
      registerProblems,
      convergeMs,
      victim: victim.id,
      wasLeader: leader,
      spawnToReadyMs,
      spawnToListedMs,
      listRoundMs,
      distroLoad: { ms: loadLine?.ms as number | undefined, records: loadLine?.records as number | undefined, peer: loadLine?.peer as string | undefined },
      listedOnRestart,
      unhealthyAfter,
      memory: c.members.map((m, i) => ({ id: m.id, empty: empty[i], full: full[i] })),
      restarted: { empty: empty[victimIndex], full: restartedFull },
      problems,
    }
  } finally {
    ends.push({ label: 'load cluster', ...(await stopCluster(c, restartLogs)) })
  }
}

function loadService(k: number): string {
  return `bench-ap-load-${k % LOAD_SERVICES}`
}

/** Instances listed by a node over the load services (full GETs; 0 while it does not answer). */
async function listed(url: string): Promise<{ total: number; unhealthy: number }> {
  let total = 0
  let unhealthy = 0
  try {
    for (let s = 0; s < LOAD_SERVICES; s++) {
      const list = (await call(url, 'GET', `/v1/ns/instances?service=${loadService(s)}`)) as { instances?: { healthy?: boolean }[] }
      for (const i of list.instances ?? []) {
        total++
        if (i.healthy === false) unhealthy++
      }
    }
  } catch {
    return { total: 0, unhealthy: 0 }
  }
  return { total, unhealthy }
}

/** The same counts from the service summaries: cheap enough to poll while syncs still arrive. */
async function counted(url: string): Promise<{ total: number; unhealthy: number }> {
  let total = 0
  let unhealthy = 0
  for (let s = 0; s < LOAD_SERVICES; s++) {
    try {
      const summary = (await call(url, 'GET', `/v1/ns/services?service=${loadService(s)}&stale=true`)) as { instanceCount?: number; healthyInstanceCount?: number }
      total += summary.instanceCount ?? 0
      unhealthy += (summary.instanceCount ?? 0) - (summary.healthyInstanceCount ?? 0)
    } catch {
      // Not there yet (404) or not answering: counts as none.
    }
  }
  return { total, unhealthy }
}

/** Sends exactly `amount` POST /v1/ns/instances over the URLs, 64 connections; bounded to 300 s. */
async function driveAmount(urls: string[], amount: number, body: () => string): Promise<autocannon.Result> {
  let instance: autocannon.Instance | undefined
  const result = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      { url: urls, connections: 64, pipelining: 1, amount, requests: [{ method: 'POST', path: '/v1/ns/instances', headers: JSON_HEADERS, setupRequest: (r) => ({ ...r, body: body() }) }] },
      (err, r) => (err ? reject(err) : resolve(r)),
    )
  })
  const timer = setTimeout(() => instance?.stop(), 300_000)
  try {
    return await result
  } finally {
    clearTimeout(timer)
  }
}

/** RSS and heapUsed after a full GC, from the preloaded probe (mem-probe.ts), via SIGUSR2. */
async function memory(server: RunningServer, dir: string): Promise<MemorySample> {
  const path = join(dir, `mem-${server.pid}.json`)
  const asked = Date.now()
  process.kill(server.pid!, 'SIGUSR2')
  for (const deadline = asked + 15_000; Date.now() < deadline; await sleep(50)) {
    try {
      const s = JSON.parse(readFileSync(path, 'utf8')) as { at: number; rss: number; heapUsed: number; gc: boolean }
      if (s.at >= asked) {
        if (!s.gc) progress(`warning: ${server.name} has no gc(); memory is measured without a full collection`)
        return { rss: s.rss, heapUsed: s.heapUsed }
      }
    } catch {}
  }
  progress(`warning: ${server.name} did not report its memory`)
  return { rss: Number.NaN, heapUsed: Number.NaN }
}

/** Grace's JSON log lines, once one with `msg` appears (stdout is flushed right after 'grace is ready'). */
async function readLogUntil(path: string, msg: string, timeoutMs: number): Promise<Record<string, unknown>[]> {
  let lines: Record<string, unknown>[] = []
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; await sleep(50)) {
    lines = []
    for (const line of (existsSync(path) ? readFileSync(path, 'utf8') : '').split('\n')) {
      try {
        if (line) lines.push(JSON.parse(line) as Record<string, unknown>)
      } catch {}
    }
    if (lines.some((l) => l.msg === msg)) break
  }
  return lines
}

/** One JSON request; any non-2xx is an error. */
async function call(url: string, method: string, path: string, body?: object): Promise<unknown> {
  const res = await fetch(url + path, { method, ...(body ? { headers: JSON_HEADERS, body: JSON.stringify(body) } : {}), signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  if (res.status < 200 || res.status > 299) throw new Error(`${method} ${path} answered ${res.status}: ${text.slice(0, 300)}`)
  return text ? JSON.parse(text) : undefined
}

// ---- the report ------------------------------------------------------------------------------

const info = {
  ...runInfoBase('npm run bench:ap', { durationS, warmupS, pairs, pinning: pinning.note, quietWaitedS, quietWaitS, loadBefore }),
  prewarmS,
  lagSamples,
  phases,
  ends,
}
const tables = reportTables()
console.log(tables.join('\n\n'))
const jsonPath = join(ROOT, 'bench-results', `ap-${info.date.replace(/[:.]/g, '-')}.json`)
mkdirSync(join(ROOT, 'bench-results'), { recursive: true })
writeFileSync(jsonPath, JSON.stringify({ ...info, rows: rows.map((r) => ({ ...r, failures: failures(r) })), lag, load, targets: verdicts() }, null, 2) + '\n')
if (PHASES.every((p) => phases.includes(p)) && instanceCount === TARGET_INSTANCES) {
  writeDocsSection(join(ROOT, 'docs/benchmarks.md'), docsSection(), 'ap')
  progress(`wrote docs/benchmarks.md and ${jsonPath}`)
} else {
  progress(`wrote ${jsonPath}; docs/benchmarks.md left as it was (--phases or --instances)`)
}
// Failures fail the command, so a script or CI cannot mistake them for a result.
if (rows.some((r) => failures(r).length > 0) || lagFailures().length > 0 || (load && loadFailures(load).length > 0)) process.exitCode = 1

function reqRatio(pair: Pair): number {
  return pair.roof.reqPerSec > 0 ? pair.grace.reqPerSec / pair.roof.reqPerSec : Number.NaN
}

/** Roof latency / Grace latency: like req/s, 1 is the roof's, and higher is better. */
function latRatio(pair: Pair, key: 'p50Ms' | 'p99Ms'): number {
  return pair.grace[key] > 0 ? pair.roof[key] / pair.grace[key] : Number.NaN
}

function rowMedian(row: Row, of: (p: Pair) => number): number {
  return median(row.pairs.map(of))
}

function rowRange(row: Row, of: (p: Pair) => number): string {
  const v = row.pairs.map(of).filter(Number.isFinite)
  return v.length > 1 ? ` (${fixed(Math.min(...v), 2)}–${fixed(Math.max(...v), 2)})` : ''
}

/** Nearest-rank percentile. */
function pct(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const v = [...values].sort((a, b) => a - b)
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))]
}

function statusCodes(r: autocannon.Result): string {
  return Object.entries(r.statusCodeStats)
    .filter(([code]) => !code.startsWith('2'))
    .map(([code, s]) => `${code}×${s.count}`)
    .join(', ')
}

function lagFailures(): string[] {
  const out: string[] = []
  for (const [name, r] of [['idle', lag.idle], ['under load', lag.loaded]] as const) {
    if (!r) continue
    if (r.errorCount > 0) out.push(`${name}: ${r.errorCount} errors (${r.errors.join('; ')})`)
    if (r.timeouts > 0) out.push(`${name}: ${r.timeouts} samples not visible everywhere within 5 s`)
  }
  return out.concat(lag.loadedProblems)
}

function loadFailures(l: LoadResult): string[] {
  const unhealthy = l.unhealthyAfter.filter((u) => u.counts.some((n) => n > 0)).map((u) => `${u.at}: ${u.counts.join('/')} unhealthy on n1/n2/n3`)
  return [...l.registerProblems, ...l.problems, ...unhealthy]
}

function throughputTable(): string {
  const lines = [
    '| Scenario | Conns | Grace/roof req/s | roof/Grace p50 | roof/Grace p99 | Roof req/s | Grace req/s | Roof p50 / p99 ms | Grace p50 / p99 ms | Server CPU µs/req roof / Grace | Server CPU % roof / Grace | autocannon CPU % roof / Grace | Other CPU % max | Grace non-2xx / errors | Status |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ]
  for (const row of rows) {
    const failed = failures(row)
    const noisy = noisyPairs(row)
    const otherMax = Math.max(...row.pairs.flatMap((p) => [p.roof.otherCpuPct, p.grace.otherCpuPct]))
    const sum = (key: 'non2xx' | 'errors') => row.pairs.reduce((n, p) => n + p.grace[key], 0)
    const both = (key: keyof Measurement) => `${int(med(row, 'roof', key))} / ${int(med(row, 'grace', key))}`
    const ms = (side: 'roof' | 'grace') => `${fixed(med(row, side, 'p50Ms'), 2)} / ${fixed(med(row, side, 'p99Ms'), 2)}`
    const status = failed.length ? `**FAILED**: ${cell(failed.join('; '))}` : noisy > 0 ? `ok, ${noisy} of ${row.pairs.length} pairs noisy` : 'ok'
    const range = ratioRange(row)
    lines.push(
      `| ${row.title} | ${row.connections} | ${fixed(ratio(row), 2)}${row.pairs.length > 1 ? ` (${fixed(range.min, 2)}–${fixed(range.max, 2)})` : ''} ` +
        `| ${fixed(rowMedian(row, (p) => latRatio(p, 'p50Ms')), 2)}${rowRange(row, (p) => latRatio(p, 'p50Ms'))} ` +
        `| ${fixed(rowMedian(row, (p) => latRatio(p, 'p99Ms')), 2)}${rowRange(row, (p) => latRatio(p, 'p99Ms'))} ` +
        `| ${int(med(row, 'roof', 'reqPerSec'))} | ${int(med(row, 'grace', 'reqPerSec'))} | ${ms('roof')} | ${ms('grace')} ` +
        `| ${both('serverCpuUsPerReq')} | ${both('serverCpuPct')} | ${both('clientCpuPct')} | ${int(otherMax)} | ${sum('non2xx')} / ${sum('errors')} | ${status} |`,
    )
  }
  return lines.join('\n')
}

function lagTable(): string {
  const lines = [
    '| Condition | Samples | p50 ms | p99 ms | max ms | Registration ack p50 / p99 ms | Polls answered | Timeouts | Errors |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ]
  const one = (name: string, r: LagResult | undefined) => {
    if (!r) return
    lines.push(
      `| ${name} | ${r.lagsMs.length} | ${fixed(pct(r.lagsMs, 0.5), 2)} | ${fixed(pct(r.lagsMs, 0.99), 2)} | ${fixed(Math.max(...r.lagsMs), 2)} ` +
        `| ${fixed(pct(r.ackMs, 0.5), 2)} / ${fixed(pct(r.ackMs, 0.99), 2)} | ${int(r.polls)} | ${r.timeouts} | ${r.errorCount}${r.errors.length ? `: ${cell(r.errors[0])}` : ''} |`,
    )
  }
  one('idle cluster', lag.idle)
  one(`under registration load (64 connections, ${int(lag.loadedReqPerSec ?? Number.NaN)} req/s)`, lag.loaded)
  return lines.join('\n')
}

function loadTable(l: LoadResult): string {
  const unhealthy = l.unhealthyAfter.map((u) => `${u.counts.join(' / ')} (${u.at})`).join('; ')
  return [
    '| Instances | Registered in | All nodes list all, after the last ack | Restarted | Spawn → ready | Distro load (from its log) | Spawn → listing all (of which the listing) | Unhealthy on n1 / n2 / n3 after the restart | Problems |',
    '|--:|--:|--:|---|--:|--:|--:|---|---|',
    `| ${int(l.instances)} | ${fixed(l.registerS, 1)} s (${int(l.instances / l.registerS)} req/s) | ${l.convergeMs === undefined ? 'never' : `${int(l.convergeMs)} ms`} ` +
      `| ${l.victim} (a follower; leader ${l.wasLeader}), SIGKILL, restarted 2 s later | ${fixed(l.spawnToReadyMs ?? Number.NaN, 0)} ms ` +
      `| ${l.distroLoad.ms ?? '–'} ms, ${int(l.distroLoad.records ?? Number.NaN)} records from ${l.distroLoad.peer ?? '–'} | ${fixed(l.spawnToListedMs ?? Number.NaN, 0)} ms (${fixed(l.listRoundMs, 0)} ms) ` +
      `| ${unhealthy} | ${loadFailures(l).length ? cell(loadFailures(l).join('; ')) : 'none'} |`,
  ].join('\n')
}

function memoryTable(l: LoadResult): string {
  const mib = (n: number) => fixed(n / 2 ** 20, 1)
  const lines = [
    `| Node | Empty: RSS / heap MiB | With ${int(l.instances)}: RSS / heap MiB | Per 100k instances: RSS / heap MiB |`,
    '|---|--:|--:|--:|',
  ]
  const per = (d: number) => mib((d * 100_000) / l.instances)
  const row = (name: string, e: MemorySample, f: MemorySample) =>
    lines.push(`| ${name} | ${mib(e.rss)} / ${mib(e.heapUsed)} | ${mib(f.rss)} / ${mib(f.heapUsed)} | ${per(f.rss - e.rss)} / ${per(f.heapUsed - e.heapUsed)} |`)
  for (const m of l.memory) row(`${m.id}, registered through the cluster`, m.empty, m.full)
  if (l.restarted) row(`${l.victim} restarted, loaded from a peer (empty: its first start)`, l.restarted.empty, l.restarted.full)
  return lines.join('\n')
}

interface Verdict {
  target: string
  measured: string
  met: boolean | undefined
}

function verdicts(): Verdict[] {
  const out: Verdict[] = []
  for (const scenario of SCENARIOS) {
    for (const connections of CONNECTIONS) {
      const target = `${scenario.title}, ${connections} conn: Grace/roof req/s, roof/Grace p50 and p99 each ≥ ${TARGET_RATIO}`
      const row = rows.find((r) => r.scenario === scenario.id && r.connections === connections)
      if (!row) {
        out.push({ target, measured: 'not measured', met: undefined })
        continue
      }
      const failed = failures(row).length > 0
      const r = ratio(row)
      const p50 = rowMedian(row, (p) => latRatio(p, 'p50Ms'))
      const p99 = rowMedian(row, (p) => latRatio(p, 'p99Ms'))
      const short = [r < TARGET_RATIO ? 'req/s' : '', p50 < TARGET_RATIO ? 'p50' : '', p99 < TARGET_RATIO ? 'p99' : ''].filter(Boolean)
      out.push({
        target,
        measured: `${fixed(r, 2)} / ${fixed(p50, 2)} / ${fixed(p99, 2)}${failed ? ' (run FAILED)' : ''}${short.length && !failed ? ` (short: ${short.join(', ')})` : ''}`,
        met: !failed && short.length === 0 && [r, p50, p99].every(Number.isFinite),
      })
    }
  }
  for (const [name, r] of [['idle cluster', lag.idle], ['under registration load', lag.loaded]] as const) {
    const target = `sync lag p99 ≤ ${TARGET_LAG_P99_MS} ms, ${name}`
    if (!r) out.push({ target, measured: 'not measured', met: undefined })
    else {
      const p99 = pct(r.lagsMs, 0.99)
      out.push({ target, measured: `${fixed(p99, 2)} ms${r.timeouts ? `, ${r.timeouts} timeouts` : ''}`, met: r.timeouts === 0 && r.errorCount === 0 && p99 <= TARGET_LAG_P99_MS })
    }
  }
  // Issue 4, item 6: the node loads its copy before it reports ready; ready is the measure. The
  // first full listing after it (four GETs of 25,000 instances each) is shown beside it.
  const target = `restarted node loads ${int(TARGET_INSTANCES)} instances from a peer: spawn → ready < ${TARGET_LOAD_MS / 1000} s`
  if (!load) out.push({ target, measured: 'not measured', met: undefined })
  else {
    const t = load.spawnToReadyMs
    const other = load.instances !== TARGET_INSTANCES ? ` (only ${int(load.instances)} instances)` : ''
    const listedAt = load.spawnToListedMs === undefined ? 'never listed all' : `all listed at ${fixed(load.spawnToListedMs / 1000, 2)} s`
    out.push({
      target,
      measured: `${t === undefined ? 'never' : `${fixed(t / 1000, 2)} s`} (${listedAt})${other}`,
      met: t !== undefined && t < TARGET_LOAD_MS && load.instances === TARGET_INSTANCES && loadFailures(load).length === 0,
    })
  }
  return out
}

function verdictTable(): string {
  const lines = ['| Target | Measured | Met |', '|---|--:|:-:|']
  for (const v of verdicts()) lines.push(`| ${v.target} | ${v.measured} | ${v.met === undefined ? '–' : v.met ? 'met' : '**not met**'} |`)
  return lines.join('\n')
}

function reportTables(): string[] {
  const out: string[] = []
  if (rows.length) out.push(throughputTable())
  if (lag.idle || lag.loaded) out.push(lagTable())
  if (load) out.push(loadTable(load), memoryTable(load))
  out.push(verdictTable())
  return out
}

function docsSection(): string {
  const m = info.machine
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`
  const endLines = ends.map((e) => `the ${e.label} wrote ${(e.logBytes / 2 ** 20).toFixed(1)} MiB of log and exited with ${e.exit}`)
  const stderr = ends.filter((e) => e.stderr).map((e) => `${e.label}:\n${e.stderr.trimEnd()}`)
  return [
    '## AP layer (Distro): a 3-node Grace cluster against the no-op fastify roof',
    '',
    '`npm run bench:ap` builds Grace and starts a 3-node cluster on 127.0.0.1 (`bin/grace.js --node-id …',
    '--members … --cluster-secret <random>`, each node a process with a fresh data directory, log level',
    '`info`, so the JSON line per request is paid for) and the no-op fastify roof of the HTTP benchmark',
    '(one process, with a heartbeat route added). Pinning as in `bench:cp`: autocannon (the benchmark',
    'process) on CPU 0, the three nodes and the roof on CPU 1, so the cluster gets one core for its three',
    'members and the roof one core for itself.',
    '',
    '- **Throughput and latency.** Ephemeral registrations (`POST /v1/ns/instances`, a new client each,',
    `  as in the HTTP benchmark) and heartbeats (\`PUT /v1/ns/instances/beat\`, \`{"clientId":…}\`, cycling`,
    `  through ${int(BEAT_CLIENTS)} clients registered beforehand with long leases). autocannon keeps each connection on one`,
    '  server: at 64 connections they are split over the three nodes (autocannon given the three URLs',
    '  opens connection k to node k mod 3), and at 1 connection each pair drives the next node in turn.',
    '  Which node *owns* a client is decided by hashing its id, so about two requests in three arrive at',
    '  a node that forwards them to the owner, as with clients spread over a cluster behind a balancer.',
    '  The roof gets the same requests on its single process. Both get every scenario once, unmeasured,',
    `  before the first cell (\`--prewarm S\`, at ${PREWARM_CONNECTIONS} connections), so that no cell measures a process still`,
    '  compiling its hot paths. Alternating pairs, roof then Grace',
    '  (`--pairs N`, each run after a `--warmup S` and measured for `--duration S`), with waits for a',
    '  quiet machine, as the HTTP benchmark; each ratio is the median of the per-pair ratios (range in',
    '  brackets): Grace/roof for req/s, and roof/Grace for p50 and p99, so that for all three 1 is the',
    '  roof and higher is better. Server CPU for Grace is the three nodes together. At 64 connections',
    '  autocannon near 100 % of its core means the client set the roof\'s pace: the ratios flatter Grace.',
    '- **Sync lag.** A worker thread of the benchmark registers a new instance (its own service) on a',
    '  random node and, from the moment the acknowledgement is read, polls every node with',
    '  `GET /v1/ns/instances?…&stale=true` in a tight loop (one request in flight per node) until each',
    '  lists it; the lag is the time to the answer that showed it on the last node, an upper bound by',
    '  one poll round trip, and the polling itself loads the nodes\' core. Samples one after another,',
    '  first on the idle cluster, then while the main thread drives registrations at 64 connections over',
    '  the three nodes (the core busy).',
    '- **Startup load and memory.** A second, fresh cluster, each node started with a preloaded probe',
    '  (`test/bench/mem-probe.ts`: on SIGUSR2, a full GC and `process.memoryUsage()`; Grace itself has',
    `  no such endpoint). ${int(TARGET_INSTANCES)} ephemeral instances, one client each, in ${LOAD_SERVICES} services (Grace holds at most`,
    `  ${int(DISTINCT_INSTANCES)} per service), with metadata \`${BEAT_METADATA.unhealthyAfterMs}\` and \`${BEAT_METADATA.removeAfterMs}\` of 1 h so that`,
    '  none expires meanwhile, are registered by autocannon at 64 connections over the three nodes; then',
    '  the benchmark polls the service summaries (`GET /v1/ns/services?service=…&stale=true`,',
    '  `instanceCount`) of every node until all list every instance. A follower is killed (SIGKILL) and',
    '  started again 2 s later with the same data directory and ports (ephemeral data is not on disk;',
    '  Grace loads a copy from a peer before it listens). **Spawn → ready** runs from the spawn to the',
    '  time of its `grace is ready` log line, so it includes the process start (Node, LevelDB, Raft, the',
    '  wait for a first peer connection) and the load, whose own duration its log gives; this is the',
    '  number the target is about (issue 4: loads before it reports ready, under 5 s). **Spawn → listing',
    '  all** runs to the end of the first round of full `GET /v1/ns/instances` of the four services',
    '  (answers parsed in the benchmark) that returns every instance, `/readyz` polled every 5 ms',
    '  before; the duration of that round is given. Unhealthy instances are counted on every node, from',
    '  the summaries, right after and 3 s after. Memory is RSS and heap used after a full GC, of each',
    '  node empty and with every instance (registered through the cluster), and of the restarted node',
    '  after its load against its own first, empty start.',
    '- **Checks.** A non-2xx answer or connection error fails the cell (or the lag run), as does a',
    '  heartbeat that finds its client gone, a sample not visible everywhere within 5 s, a restarted',
    '  node not listing every instance, and any unhealthy instance after the restart; the command then',
    '  exits with 1.',
    '',
    `Last run ${info.date} with \`${info.command}\`: ${plural(info.pairs, 'pair')} per cell, each run after a ${info.warmupS} s warmup and measured for ` +
      `${info.durationS} s, pipelining 1; ${info.prewarmS > 0 ? `each scenario prewarmed once for ${info.prewarmS} s on the roof and the cluster` : 'no prewarm'}; ${info.lagSamples} sync-lag samples per condition.`,
    `Pinning: ${info.pinning}. Waited ${Math.round(quietWaitedS)} s in all for other processes to quiet down before pairs (at most ${info.quietWaitS} s each).`,
    `Machine: ${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}, Node ${m.node}; 1-minute load ${info.loadBefore} before, ${info.loadAfter} after. ` +
      `${capitalised(endLines.join('; '))}.`,
    '',
    '### Throughput and latency',
    '',
    throughputTable(),
    '',
    'CPU % is percent of one core over the measured run; "Other" is the most the rest of the machine',
    `used during any run of the cell (the idle cluster or roof included); a pair with a run above ${NOISY_OTHER_CPU_PCT} %`,
    'counts as noisy.',
    '',
    '### Sync lag',
    '',
    lagTable(),
    '',
    '### Startup load and memory',
    '',
    ...(load ? [loadTable(load), '', memoryTable(load)] : ['not measured']),
    '',
    '### Targets',
    '',
    verdictTable(),
    '',
    '**What forwarding allows.** Two requests in three reach a node that does not own their client',
    'and are forwarded once to the owner, as issue 4 requires. At one connection the median request',
    "is a forwarded one: two hops between node processes on the shared core on top of the roof's",
    'work. At 64 connections the three processes take turns on that core, and a forwarded request',
    'waits for two of them. How much that costs at the least is measured by `npm run bench:floor`',
    '(its section below), at 1 and 64 connections: three processes that forward as Grace must and do',
    'nothing else. Where the floor itself stays under a target, no design that forwards can meet it',
    "on this layout; where it does not, the gap is Grace's own cost. The floor is measured unpinned",
    'too (its second table), to tell what the one-core layout decides from what forwarding does.',
    ...(stderr.length ? ['', 'Grace wrote to stderr during the run:', '', '```', ...stderr, '```'] : []),
  ].join('\n')
}

function capitalised(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** How the members exited: one entry when all agree. */
function exits(list: string[]): string {
  return new Set(list).size === 1 ? `${list[0]} (all ${list.length})` : list.join(', ')
}
