// `npm run bench:cp [-- --quick | --duration S] [--warmup S] [--pairs N] [--quiet-wait S] [--connections 1,16,64,256] [--etcd PATH]`
//
// Replicated, fsynced writes: a 3-node Grace cluster registering persistent instances against a
// 3-node etcd 3.4 cluster putting keys through its JSON gateway, both on 127.0.0.1, both driven
// by autocannon at the leader, alternating Grace and etcd runs per connection count. Reports
// throughput, p50 and p99 for both and the Grace/etcd ratios, and checks the targets of issue 3
// (item 11). See the bench:cp section of docs/benchmarks.md for the method.

import { type SpawnSyncReturns, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, fdatasyncSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { type Machine, describeMachine, load1 } from './machine.js'
import { type Measurement, PREWARM_CONNECTIONS, measure, prewarm } from './measure.js'
import { pinSelf } from './pinning.js'
import { waitQuiet } from './quiet.js'
import { NOISY_OTHER_CPU_PCT, cell, fixed, int, median, writeDocsSection } from './report.js'
import { DISTINCT_INSTANCES, type Scenario, instanceAddress, sampleAnswer } from './scenarios.js'
import { type RunningServer, type ServerSpec, freePort, startServer, stopAll } from './servers.js'
import { fatal, positive, progress, runInfoBase } from './cli.js'

const DEFAULT_CONNECTIONS = [1, 16, 64, 256]
const INSTALL_ETCD = 'apt-get update && apt-get install -y etcd-server'
const SERVICE = 'bench-cp'
const ETCD_PREFIX = 'bench-cp/'
const BUSY_LOAD = 1.5
/** The targets of issue 3, item 11. */
const TARGET_THROUGHPUT = { connections: 64, min: 2.0 }
const TARGET_P50 = { connections: 1, max: 0.5 }
/** The floor is measured where the latency target is. */
const FLOOR_CONNECTIONS = TARGET_P50.connections

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const JSON_HEADERS = { 'content-type': 'application/json' }

const { values: opts } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    duration: { type: 'string' },
    warmup: { type: 'string', default: '2' },
    prewarm: { type: 'string' },
    pairs: { type: 'string' },
    'quiet-wait': { type: 'string', default: '60' },
    connections: { type: 'string' },
    etcd: { type: 'string', default: 'etcd' },
    help: { type: 'boolean', default: false },
  },
})
if (opts.help) {
  console.log(
    'usage: npm run bench:cp -- [--quick | --duration S] [--warmup S] [--prewarm S] [--pairs N] [--quiet-wait S] [--connections 1,16,64,256] [--etcd PATH]\n' +
      '  --duration S     measured seconds per run (default 5; --quick: 3)\n' +
      '  --warmup S       unmeasured seconds before each run (default 2)\n' +
      `  --prewarm S      once, after the clusters start: S unmeasured seconds of writes to each at ${PREWARM_CONNECTIONS} connections (default 10; --quick: 5; 0: none)\n` +
      '  --pairs N        alternating Grace/etcd pairs per connection count (default 3; --quick: 2)\n' +
      `  --quiet-wait S   before a pair, wait up to S seconds while other processes use over ${NOISY_OTHER_CPU_PCT} % of a core (default 60; 0: never)\n` +
      '  --connections L  connection counts (default 1,16,64,256; another list does not update docs/benchmarks.md)\n' +
      `  --etcd PATH      the etcd 3.4 binary (default: etcd on PATH; Debian: ${INSTALL_ETCD})`,
  )
  process.exit(0)
}
const durationS = positive('--duration', opts.duration ?? (opts.quick ? '3' : '5'))
const warmupS = positive('--warmup', opts.warmup)
const prewarmS = Number(opts.prewarm ?? (opts.quick ? '5' : '10'))
if (!(prewarmS >= 0)) fatal(`--prewarm must be a number of seconds ≥ 0, got ${opts.prewarm}`)
const pairs = Number(opts.pairs ?? (opts.quick ? '2' : '3'))
if (!Number.isInteger(pairs) || pairs < 1) fatal(`--pairs must be a whole number ≥ 1, got ${opts.pairs}`)
const quietWaitS = Number(opts['quiet-wait'])
if (!(quietWaitS >= 0)) fatal(`--quiet-wait must be a number of seconds ≥ 0, got ${opts['quiet-wait']}`)
const connectionCounts = opts.connections ? opts.connections.split(',').map((s) => Number(s.trim())) : DEFAULT_CONNECTIONS
if (connectionCounts.some((c) => !Number.isInteger(c) || c < 1)) fatal(`--connections must list whole numbers ≥ 1, got ${opts.connections}`)

// Before anything else: without etcd there is nothing to compare with.
const etcdBin = opts.etcd
const etcdVersion = probeEtcd(etcdBin)

const loadBefore = load1()
if (loadBefore > BUSY_LOAD) progress(`warning: 1-minute load is ${loadBefore} on ${describeMachine().cores} cores; numbers will be noisy`)
// Before any server starts: pins this process (autocannon) and picks the servers' CPU.
const pinning = pinSelf()
progress(`pinning: ${pinning.note}`)
progress(
  `${connectionCounts.length} connection counts × ${pairs} pairs × 2 runs of ${warmupS} + ${durationS} s: ` +
    `about ${Math.ceil((connectionCounts.length * pairs * (2 * (warmupS + durationS) + 2) + 30) / 60)} minutes`,
)

const tmp = mkdtempSync(join(tmpdir(), 'grace-bench-cp-'))
let cleaned = false
async function cleanup(): Promise<void> {
  if (cleaned) return
  cleaned = true
  // Every server this process started, clusters still starting included.
  await stopAll()
  rmSync(tmp, { recursive: true, force: true })
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    progress(`${signal}: stopping both clusters and removing ${tmp}`)
    void cleanup().finally(() => process.exit(130))
  })
}

// ---- what is measured ----------------------------------------------------------------------

/** One run of one system; `leader` is the member written to. */
interface Run {
  m: Measurement
  leader: string
  /** Worth knowing but not a failure (the leader moved during the run). */
  notes: string[]
}

interface Pair {
  grace: Run
  etcd: Run
  /** The replication floor (replication-floor.ts), measured at FLOOR_CONNECTIONS only. */
  floor?: Run
}

interface Row {
  connections: number
  pairs: Pair[]
  /** About the row as a whole, e.g. what a failing request was answered. */
  problems: string[]
}

type SystemName = 'grace' | 'etcd' | 'floor'

interface Member {
  id: string
  server: RunningServer
}

interface Cluster {
  name: SystemName
  label: string
  members: Member[]
  /** The requests of one run: distinct writes, counting on across runs. */
  scenario: Scenario
  /** setupRequest calls so far: writes sent (or about to be), warmups included. */
  sent(): number
  /** Waits until every member names the same leader and that member says it leads. */
  leader(): Promise<Member>
  /** How many distinct keys / instances the system holds now. */
  stored(): Promise<number>
}

/** The same distinct instance, as Grace is sent it and as etcd stores it. */
function instanceBody(k: number): { service: string; ip: string; port: number; ephemeral: boolean } {
  return { service: SERVICE, ...instanceAddress(k), ephemeral: false }
}

function graceScenario(): { scenario: Scenario; sent: () => number } {
  let seq = 0
  const scenario: Scenario = {
    id: 'grace-per-register',
    title: 'Grace persistent register',
    requests: () => [
      {
        method: 'POST',
        path: '/v1/ns/instances',
        headers: JSON_HEADERS,
        setupRequest: (request) => ({ ...request, body: JSON.stringify(instanceBody(seq++ % DISTINCT_INSTANCES)) }),
      },
    ],
  }
  return { scenario, sent: () => seq }
}

/**
 * etcd's key is the instance's address and its value the very JSON Grace is sent, so both store
 * the same information, and the same number of distinct keys (a key written again is a new
 * revision in etcd, a re-registration in Grace: a full replicated write either way).
 */
function etcdScenario(): { scenario: Scenario; sent: () => number } {
  let seq = 0
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  const scenario: Scenario = {
    id: 'etcd-put',
    title: 'etcd put',
    requests: () => [
      {
        method: 'POST',
        path: '/v3/kv/put',
        headers: JSON_HEADERS,
        setupRequest: (request) => {
          const body = instanceBody(seq++ % DISTINCT_INSTANCES)
          return { ...request, body: JSON.stringify({ key: b64(`${ETCD_PREFIX}${body.ip}:${body.port}`), value: b64(JSON.stringify(body)) }) }
        },
      },
    ],
  }
  return { scenario, sent: () => seq }
}

// ---- the run -------------------------------------------------------------------------------

const rows: Row[] = []
const fsyncBefore = diskSync(tmp)
progress(`write + fdatasync of 100 bytes on ${fsyncBefore.fsType} (${tmp}): p50 ${fixed(fsyncBefore.p50Ms, 2)} ms, p99 ${fixed(fsyncBefore.p99Ms, 2)} ms`)
let fsyncAfter: ReturnType<typeof diskSync> | undefined
let grace: Cluster | undefined
let etcd: Cluster | undefined
let floor: Cluster | undefined
let quietWaitedS = 0
const endState: { graceExit: string; etcdExit: string; floorExit: string; graceLogBytes: number; etcdLogBytes: number; etcdWarnings: Record<string, number>; graceStderr: string; stored: string[] } = {
  graceExit: 'not stopped',
  etcdExit: 'not stopped',
  floorExit: 'not stopped',
  graceLogBytes: 0,
  etcdLogBytes: 0,
  etcdWarnings: {},
  graceStderr: '',
  stored: [],
}
try {
  ;[grace, etcd, floor] = await Promise.all([startGrace(), startEtcd(), startFloor()])
  const all = [...grace.members, ...etcd.members, ...floor.members].map((m) => m.server)
  // The kernel's word that the pinning took, not only that taskset was asked.
  if (pinning.serverCpu !== undefined) {
    for (const server of all) {
      const cpus = server.cpus()
      if (cpus?.length !== 1 || cpus[0] !== pinning.serverCpu) {
        pinning.note += `; but ${server.name} may run on CPUs ${cpus?.join(',') ?? 'unknown'}`
        progress(`warning: ${server.name} is not pinned to CPU ${pinning.serverCpu} (allowed: ${cpus?.join(',') ?? 'unknown'})`)
      }
    }
  }
  progress(`Grace leader ${(await grace.leader()).id}, etcd leader ${(await etcd.leader()).id}`)
  // Each cluster once, before anything is measured (measure.ts, prewarm): the first row, at one
  // connection, found a freshly started Grace leader spending a quarter of its CPU in V8's
  // optimizing compiler. etcd, compiled ahead of time, gets the same load.
  if (prewarmS > 0) {
    for (const cluster of [grace, etcd, floor]) {
      const leader = await cluster.leader()
      const got = await prewarm(leader.server.url, cluster.scenario.requests, PREWARM_CONNECTIONS, prewarmS)
      progress(`prewarm ${cluster.label}: ${int(got.responses)} writes in ${prewarmS} s at ${PREWARM_CONNECTIONS} connections`)
      if (got.non2xx > 0 || got.errors > 0) throw new Error(`${cluster.label} failed ${got.non2xx} writes (non-2xx) and ${got.errors} connections during the prewarm`)
    }
  }

  for (const connections of connectionCounts) rows.push(await measureRow(connections, grace, etcd, connections === FLOOR_CONNECTIONS ? floor : undefined, all))

  // The writes are real: each system holds as many distinct instances/keys as were sent.
  for (const cluster of [grace, etcd, floor]) {
    const expected = Math.min(cluster.sent(), DISTINCT_INSTANCES)
    let stored = Number.NaN
    try {
      stored = await cluster.stored()
    } catch (err) {
      progress(`warning: counting ${cluster.label}'s data: ${(err as Error).message}`)
    }
    // A request in flight when a run (warmup or measured) ends may or may not have been applied:
    // at most one per connection per run.
    const cutOff = connectionCounts.reduce((a, c) => a + c, 0) * pairs * 2 + (prewarmS > 0 ? PREWARM_CONNECTIONS : 0)
    const ok = stored <= expected && stored >= expected - cutOff
    const line = `${cluster.label} holds ${int(stored)} distinct ${cluster.name === 'etcd' ? 'keys' : 'instances'} of ${int(expected)} sent`
    endState.stored.push(ok ? line : `${line}: MISMATCH`)
    progress(ok ? line : `warning: ${line}`)
  }
  fsyncAfter = diskSync(tmp)
  progress(`write + fdatasync after the runs: p50 ${fixed(fsyncAfter.p50Ms, 2)} ms, p99 ${fixed(fsyncAfter.p99Ms, 2)} ms`)
  for (const m of grace.members) endState.graceLogBytes += statSync(join(tmp, `${m.id}.log`)).size
  for (const m of etcd.members) {
    const text = readFileSync(join(tmp, `${m.id}.log`), 'utf8')
    endState.etcdLogBytes += Buffer.byteLength(text)
    // Which warnings, not only how many: slow applies and late heartbeats say the core was short.
    for (const line of text.split('\n')) {
      if (!line.includes('"level":"warn"')) continue
      let msg = 'unparsed warning'
      try {
        msg = (JSON.parse(line) as { msg?: string }).msg ?? msg
      } catch {}
      endState.etcdWarnings[msg] = (endState.etcdWarnings[msg] ?? 0) + 1
    }
  }
  endState.graceExit = exits(await Promise.all(grace.members.map((m) => m.server.stop())))
  // etcd re-raises SIGTERM after its clean shutdown, so "signal SIGTERM" is its normal exit.
  endState.etcdExit = exits(await Promise.all(etcd.members.map((m) => m.server.stop())))
  endState.floorExit = exits(await Promise.all(floor.members.map((m) => m.server.stop())))
  // Grace writes to stderr only when something is off (warnings, crashes): say so.
  endState.graceStderr = grace.members
    .map((m) => readFileSync(join(tmp, `${m.id}.stderr.log`), 'utf8'))
    .join('')
    .slice(0, 4000)
  if (endState.graceStderr) progress(`warning: Grace wrote to stderr:\n${endState.graceStderr.trimEnd()}`)
} finally {
  await cleanup()
}

const info = {
  ...runInfoBase('npm run bench:cp', { durationS, warmupS, pairs, pinning: pinning.note, quietWaitedS, quietWaitS, loadBefore }),
  prewarmS,
  grace: graceVersion(),
  etcd: etcdVersion,
  fsyncBefore,
  fsyncAfter,
  ...endState,
}
console.log(resultsTable(rows))
console.log()
console.log(floorTable(rows))
console.log()
console.log(verdictTable(rows))
const jsonPath = join(ROOT, 'bench-results', `cp-${info.date.replace(/[:.]/g, '-')}.json`)
mkdirSync(join(ROOT, 'bench-results'), { recursive: true })
writeFileSync(jsonPath, JSON.stringify({ ...info, rows: rows.map((r) => ({ ...r, failures: failures(r) })), targets: verdicts(rows) }, null, 2) + '\n')
// The published section is for complete runs only.
if (connectionCounts.join() === DEFAULT_CONNECTIONS.join()) {
  writeDocsSection(join(ROOT, 'docs/benchmarks.md'), docsSection(), 'cp')
  progress(`wrote docs/benchmarks.md and ${jsonPath}`)
} else {
  progress(`wrote ${jsonPath}; docs/benchmarks.md left as it was (--connections)`)
}
// A FAILED cell fails the command, so a script or CI cannot mistake it for a result.
// So does a system that holds fewer or more writes than it acknowledged.
if (rows.some((r) => failures(r).length > 0) || info.stored.some((line) => line.endsWith('MISMATCH'))) process.exitCode = 1

async function measureRow(connections: number, grace: Cluster, etcd: Cluster, floor: Cluster | undefined, all: RunningServer[]): Promise<Row> {
  const row: Row = { connections, pairs: [], problems: [] }
  for (let i = 1; i <= pairs; i++) {
    quietWaitedS += await waitQuiet(all, quietWaitS, progress)
    const label = `c=${connections} pair ${i}/${pairs}`
    const pair: Pair = { grace: await runOnce(grace, connections, row, label), etcd: await runOnce(etcd, connections, row, label) }
    if (floor) pair.floor = await runOnce(floor, connections, row, label)
    row.pairs.push(pair)
    const g = pair.grace.m
    const e = pair.etcd.m
    progress(
      `  Grace ${Math.round(g.reqPerSec)} req/s p50 ${fixed(g.p50Ms, 2)} ms (cluster cpu ${Math.round(g.serverCpuPct)}%, ${Math.round(g.serverCpuUsPerReq)} µs/req), ` +
        `etcd ${Math.round(e.reqPerSec)} req/s p50 ${fixed(e.p50Ms, 2)} ms (cluster cpu ${Math.round(e.serverCpuPct)}%, ${Math.round(e.serverCpuUsPerReq)} µs/req): ` +
        `req/s ×${fixed(tputRatio(pair), 2)}, p50 ×${fixed(p50Ratio(pair), 2)}; ` +
        `autocannon cpu ${Math.round(g.clientCpuPct)}% / ${Math.round(e.clientCpuPct)}%, other cpu ${Math.round(g.otherCpuPct)}% / ${Math.round(e.otherCpuPct)}% (steal ${Math.round(g.stealCpuPct)}% / ${Math.round(e.stealCpuPct)}%)`,
    )
    const f = pair.floor?.m
    if (f) progress(`  floor ${Math.round(f.reqPerSec)} req/s p50 ${fixed(f.p50Ms, 2)} ms (cluster cpu ${Math.round(f.serverCpuPct)}%, ${Math.round(f.serverCpuUsPerReq)} µs/req): p50 ×${fixed(f.p50Ms / e.p50Ms, 2)} of etcd's`)
  }
  const failed = failures(row)
  progress(
    `  => c=${connections}: Grace/etcd req/s ${fixed(rowRatio(row, tputRatio), 2)}, p50 ${fixed(rowRatio(row, p50Ratio), 2)}` +
      (failed.length ? `  FAILED: ${failed.join('; ')}` : ''),
  )
  return row
}

async function runOnce(cluster: Cluster, connections: number, row: Row, label: string): Promise<Run> {
  const leader = await cluster.leader()
  progress(`${label}: ${cluster.label} (leader ${leader.id})`)
  const cpu = () => sumDefined(cluster.members.map((m) => m.server.cpuSeconds()))
  const m = await measure(leader.server.url, cluster.scenario.requests, { connections, warmupS, durationS }, cpu)
  for (const member of cluster.members) {
    const exited = member.server.exited()
    if (exited !== undefined) throw new Error(`${member.server.name} exited (${exited}) during ${label}${member.server.tails()}`)
  }
  const notes: string[] = []
  const after = await cluster.leader()
  if (after.id !== leader.id) {
    notes.push(`${cluster.label} leader moved from ${leader.id} to ${after.id}`)
    progress(`  warning: ${notes[0]} during the run`)
  }
  // One sample answer per row says what the failing requests got; more would repeat it.
  if (m.non2xx > 0 && !row.problems.some((p) => p.startsWith(`${cluster.label}:`))) {
    await sampleAnswer(after.server.url, cluster.scenario).then(
      (answer) => row.problems.push(`${cluster.label}: e.g. ${answer}`),
      () => {},
    )
  }
  return { m, leader: leader.id, notes }
}

// ---- the clusters --------------------------------------------------------------------------

/** Starts members together (each waits for the others to form a cluster); on failure stops the rest. */
async function startMembers(specs: { spec: ServerSpec; port: number; id: string }[]): Promise<Member[]> {
  const settled = await Promise.allSettled(specs.map(({ spec, port }) => startServer(spec, port)))
  const failedStarts = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected')
  if (failedStarts.length > 0) {
    await Promise.all(settled.map((s) => (s.status === 'fulfilled' ? s.value.stop() : undefined)))
    throw new Error(failedStarts.map((f) => (f.reason as Error).message).join('\n'))
  }
  return settled.map((s, i) => ({ id: specs[i].id, server: (s as PromiseFulfilledResult<RunningServer>).value }))
}

async function startGrace(): Promise<Cluster> {
  const ids = ['n1', 'n2', 'n3']
  const ports = await allocate(ids)
  const members = ids.map((id) => `${id}=127.0.0.1:${ports[id].peer}`).join(',')
  // A fresh secret per run; peers authenticate with it (there is no default).
  const secret = randomBytes(24).toString('base64url')
  const specs = ids.map((id) => ({
    id,
    port: ports[id].client,
    spec: {
      name: `grace ${id}`,
      // Log level info, Grace's default, as in the HTTP benchmark: each request's line is paid for.
      args: [
        join(ROOT, 'bin/grace.js'),
        ...['--host', '127.0.0.1', '--port', String(ports[id].client), '--data-dir', join(tmp, 'grace', id)],
        ...['--node-id', id, '--members', members, '--cluster-secret', secret, '--log-level', 'info'],
      ],
      stdoutFile: join(tmp, `${id}.log`),
      stderrFile: join(tmp, `${id}.stderr.log`),
      pinning,
    } satisfies ServerSpec,
  }))
  const started = await startMembers(specs)
  const { scenario, sent } = graceScenario()
  return {
    name: 'grace',
    label: 'Grace',
    members: started,
    scenario,
    sent,
    leader: () =>
      untilLeader('Grace', async () => {
        const statuses = await Promise.all(started.map((m) => getJson(`${m.server.url}/v1/cluster/status`) as Promise<{ id: string; role: string; leaderId: string | null }>))
        const leaderId = statuses[0].leaderId
        if (!leaderId || statuses.some((s) => s.leaderId !== leaderId)) return undefined
        const leader = started.find((m) => m.id === leaderId)
        return leader && statuses[started.indexOf(leader)].role === 'leader' ? leader : undefined
      }),
    stored: async () => {
      const list = (await getJson(`${started[0].server.url}/v1/ns/instances?service=${SERVICE}`)) as { instances?: unknown[] }
      return list.instances?.length ?? 0
    },
  }
}

async function startEtcd(): Promise<Cluster> {
  const ids = ['e1', 'e2', 'e3']
  const ports = await allocate(ids)
  const initialCluster = ids.map((id) => `${id}=http://127.0.0.1:${ports[id].peer}`).join(',')
  const specs = ids.map((id) => ({
    id,
    port: ports[id].client,
    spec: {
      name: `etcd ${id}`,
      program: etcdBin,
      // Defaults otherwise: fsync of the WAL on every commit, snapshot every 100,000 entries,
      // no auto-compaction. zap at info (the default level) to a file; etcd logs no line per request.
      args: [
        ...['--name', id, '--data-dir', join(tmp, 'etcd', id)],
        ...['--listen-client-urls', `http://127.0.0.1:${ports[id].client}`, '--advertise-client-urls', `http://127.0.0.1:${ports[id].client}`],
        ...['--listen-peer-urls', `http://127.0.0.1:${ports[id].peer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${ports[id].peer}`],
        ...['--initial-cluster', initialCluster, '--initial-cluster-state', 'new', '--initial-cluster-token', `bench-cp-${process.pid}`],
        ...['--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'info'],
      ],
      // etcd serves its client port only once the cluster has a leader; /health then answers 200.
      readyPath: '/health',
      stderrFile: join(tmp, `${id}.log`),
      pinning,
    } satisfies ServerSpec,
  }))
  const started = await startMembers(specs)
  const { scenario, sent } = etcdScenario()
  const b64 = (s: string) => Buffer.from(s).toString('base64')
  return {
    name: 'etcd',
    label: 'etcd',
    members: started,
    scenario,
    sent,
    leader: () =>
      untilLeader('etcd', async () => {
        const statuses = await Promise.all(
          started.map((m) => postJson(`${m.server.url}/v3/maintenance/status`, {}) as Promise<{ header: { member_id: string }; leader: string }>),
        )
        const leader = statuses[0].leader
        if (!leader || leader === '0' || statuses.some((s) => s.leader !== leader)) return undefined
        const i = statuses.findIndex((s) => s.header.member_id === leader)
        return i >= 0 ? started[i] : undefined
      }),
    stored: async () => {
      // range_end: the prefix with its last byte incremented ('/' + 1 = '0').
      const answer = (await postJson(`${started[0].server.url}/v3/kv/range`, { key: b64(ETCD_PREFIX), range_end: b64('bench-cp0'), count_only: true })) as { count?: string }
      return Number(answer.count ?? 0)
    },
  }
}

/**
 * The replication floor (replication-floor.ts): three processes that do only what any replicated,
 * fsynced write must (HTTP in and out, two messages out and back, three durable appends). f1
 * leads; its followers listen for frames on their peer ports.
 */
async function startFloor(): Promise<Cluster> {
  const ids = ['f1', 'f2', 'f3']
  const ports = await allocate(ids)
  const script = fileURLToPath(new URL('./replication-floor.js', import.meta.url))
  const spec = (id: string, role: string[]): ServerSpec => ({
    name: `floor ${id}`,
    args: [script, '--port', String(ports[id].client), '--file', join(tmp, 'floor', `${id}.log`), ...role],
    stderrFile: join(tmp, `${id}.stderr.log`),
    pinning,
  })
  mkdirSync(join(tmp, 'floor'), { recursive: true })
  const followers = await startMembers(ids.slice(1).map((id) => ({ id, port: ports[id].client, spec: spec(id, ['--role', 'follower', '--peer-port', String(ports[id].peer)]) })))
  const [leader] = await startMembers([{ id: 'f1', port: ports.f1.client, spec: spec('f1', ['--role', 'leader', '--followers', ids.slice(1).map((id) => `127.0.0.1:${ports[id].peer}`).join(',')]) }]).catch(async (err: Error) => {
    await Promise.all(followers.map((m) => m.server.stop()))
    throw err
  })
  const { scenario, sent } = graceScenario()
  return {
    name: 'floor',
    label: 'floor',
    members: [leader, ...followers],
    scenario,
    sent,
    leader: async () => leader,
    stored: async () => ((await getJson(`${leader.server.url}/stored`)) as { count: number }).count,
  }
}

async function allocate(ids: string[]): Promise<Record<string, { client: number; peer: number }>> {
  const out: Record<string, { client: number; peer: number }> = {}
  for (const id of ids) out[id] = { client: await freePort(), peer: await freePort() }
  return out
}

async function untilLeader(label: string, probe: () => Promise<Member | undefined>): Promise<Member> {
  const deadline = Date.now() + 30_000
  let last = 'no agreement'
  while (Date.now() < deadline) {
    try {
      const leader = await probe()
      if (leader) return leader
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(200)
  }
  throw new Error(`${label}: no leader all members agree on after 30 s (${last})`)
}

async function getJson(url: string): Promise<unknown> {
  return answerJson(await fetch(url, { signal: AbortSignal.timeout(30_000) }), `GET ${url}`)
}

async function postJson(url: string, body: object): Promise<unknown> {
  return answerJson(await fetch(url, { method: 'POST', headers: JSON_HEADERS, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) }), `POST ${url}`)
}

async function answerJson(res: Response, what: string): Promise<unknown> {
  const text = await res.text()
  if (res.status < 200 || res.status > 299) throw new Error(`${what} answered ${res.status}: ${text.slice(0, 300)}`)
  return JSON.parse(text)
}

// ---- versions and the machine --------------------------------------------------------------

/** The etcd version, or a message on how to install it and exit 1: nothing is measured without it. */
function probeEtcd(bin: string): { version: string; go: string } {
  let probe: SpawnSyncReturns<string>
  try {
    probe = spawnSync(bin, ['--version'], { encoding: 'utf8', timeout: 10_000 })
  } catch (err) {
    probe = { error: err as Error } as SpawnSyncReturns<string>
  }
  const version = /etcd Version:\s*(\S+)/.exec(probe.stdout ?? '')?.[1]
  if (probe.error || probe.status !== 0 || !version) {
    const why = probe.error ? ((probe.error as NodeJS.ErrnoException).code ?? probe.error.message) : `exit ${probe.status}: ${(probe.stderr ?? '').trim().slice(0, 200)}`
    process.stderr.write(
      `bench:cp needs etcd 3.4 to compare with, and \`${bin} --version\` failed (${why}).\n` +
        'Install it (Debian or Ubuntu, as root) with:\n\n' +
        `  ${INSTALL_ETCD}\n\n` +
        'or pass another binary with --etcd PATH. Nothing was measured.\n',
    )
    process.exit(1)
  }
  if (!version.startsWith('3.4.')) progress(`warning: etcd ${version} is not 3.4; this benchmark was written for etcd 3.4's JSON gateway at /v3/`)
  return { version, go: /Go Version:\s*(\S+)/.exec(probe.stdout)?.[1] ?? 'unknown' }
}

function graceVersion(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
  const git = (args: string[]) => spawnSync('git', ['-C', ROOT, ...args], { encoding: 'utf8' })
  const head = git(['rev-parse', '--short', 'HEAD']).stdout?.trim()
  const dirty = git(['status', '--porcelain', '--', 'src']).stdout?.trim()
  return head ? `${pkg.version} (${head}${dirty ? ', with uncommitted changes in src/' : ''})` : pkg.version
}

/**
 * What one small appending write + fdatasync costs on the data directories' disk: the floor under
 * both systems' write latency. Measured before and after the runs; other processes' writes to the
 * same filesystem can make it much slower (ext4 commits their dirty data with ours).
 */
function diskSync(dir: string): { fsType: string; p50Ms: number; p99Ms: number } {
  const fsType = spawnSync('df', ['-PT', dir], { encoding: 'utf8' }).stdout?.split('\n')[1]?.split(/\s+/)[1] ?? 'unknown filesystem'
  const path = join(dir, 'fsync-probe')
  const fd = openSync(path, 'w')
  const times: number[] = []
  const data = Buffer.alloc(100, 'x')
  try {
    for (let i = 0; i < 300; i++) {
      const start = performance.now()
      writeSync(fd, data, 0, data.length, i * data.length)
      fdatasyncSync(fd)
      times.push(performance.now() - start)
    }
  } finally {
    closeSync(fd)
    rmSync(path, { force: true })
  }
  times.sort((a, b) => a - b)
  return { fsType, p50Ms: times[Math.ceil(0.5 * times.length) - 1], p99Ms: times[Math.ceil(0.99 * times.length) - 1] }
}

// ---- the report ----------------------------------------------------------------------------

function tputRatio(pair: Pair): number {
  return pair.etcd.m.reqPerSec > 0 ? pair.grace.m.reqPerSec / pair.etcd.m.reqPerSec : Number.NaN
}

function p50Ratio(pair: Pair): number {
  return pair.etcd.m.p50Ms > 0 ? pair.grace.m.p50Ms / pair.etcd.m.p50Ms : Number.NaN
}

/** A row's ratio: the median of its per-pair ratios (each compares two runs seconds apart). */
function rowRatio(row: Row, of: (pair: Pair) => number): number {
  return median(row.pairs.map(of))
}

function ratioRange(row: Row, of: (pair: Pair) => number): string {
  const v = row.pairs.map(of).filter(Number.isFinite)
  return v.length > 1 ? ` (${fixed(Math.min(...v), 2)}–${fixed(Math.max(...v), 2)})` : ''
}

function med(row: Row, side: SystemName, key: keyof Measurement): number {
  return median(row.pairs.map((p) => (p[side]?.m[key] as number | undefined) ?? Number.NaN))
}

/** Every reason a row must be read as FAILED; empty when it is fine. */
function failures(row: Row): string[] {
  const out: string[] = []
  row.pairs.forEach((pair, i) => {
    const where = row.pairs.length > 1 ? `pair ${i + 1} ` : ''
    const runs: [string, Measurement][] = [['Grace', pair.grace.m], ['etcd', pair.etcd.m]]
    if (pair.floor) runs.push(['floor', pair.floor.m])
    for (const [side, m] of runs) {
      if (m.responses === 0) out.push(`${where}${side}: no responses`)
      if (m.non2xx > 0 || m.errors > 0) {
        const codes = Object.entries(m.statusCodes)
          .filter(([code]) => !code.startsWith('2'))
          .map(([code, count]) => `${code}×${count}`)
          .join(', ')
        out.push(`${where}${side}: ${m.non2xx} non-2xx${codes ? ` (${codes})` : ''}, ${m.errors} errors (${m.timeouts} timeouts)`)
      }
    }
  })
  return out.concat(row.problems)
}

function notes(row: Row): string[] {
  return row.pairs.flatMap((p, i) => [...p.grace.notes, ...p.etcd.notes, ...(p.floor?.notes ?? [])].map((n) => `pair ${i + 1}: ${n}`))
}

function noisy(row: Row): number {
  return row.pairs.filter((p) => p.grace.m.otherCpuPct > NOISY_OTHER_CPU_PCT || p.etcd.m.otherCpuPct > NOISY_OTHER_CPU_PCT).length
}

function resultsTable(list: Row[]): string {
  const lines = [
    '| Conns | Grace req/s | etcd req/s | Grace/etcd req/s | Grace p50 / p99 ms | etcd p50 / p99 ms | Grace/etcd p50 | Cluster CPU µs/req Grace / etcd | Cluster CPU % Grace / etcd | autocannon CPU % Grace / etcd | Other CPU % max | Status |',
    '|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|',
  ]
  for (const row of list) {
    const failed = failures(row)
    const extra = [...notes(row), ...(noisy(row) ? [`${noisy(row)} of ${row.pairs.length} pairs noisy`] : [])]
    const status = failed.length ? `**FAILED**: ${cell(failed.join('; '))}` : extra.length ? `ok; ${cell(extra.join('; '))}` : 'ok'
    const otherMax = Math.max(...row.pairs.flatMap((p) => [p.grace.m.otherCpuPct, p.etcd.m.otherCpuPct]))
    const both = (key: keyof Measurement) => `${int(med(row, 'grace', key))} / ${int(med(row, 'etcd', key))}`
    const lat = (side: SystemName) => `${fixed(med(row, side, 'p50Ms'), 2)} / ${fixed(med(row, side, 'p99Ms'), 2)}`
    lines.push(
      `| ${row.connections} | ${int(med(row, 'grace', 'reqPerSec'))} | ${int(med(row, 'etcd', 'reqPerSec'))} ` +
        `| ${fixed(rowRatio(row, tputRatio), 2)}${ratioRange(row, tputRatio)} | ${lat('grace')} | ${lat('etcd')} ` +
        `| ${fixed(rowRatio(row, p50Ratio), 2)}${ratioRange(row, p50Ratio)} | ${both('serverCpuUsPerReq')} | ${both('serverCpuPct')} ` +
        `| ${both('clientCpuPct')} | ${int(otherMax)} | ${status} |`,
    )
  }
  return lines.join('\n')
}

/** The floor's row, with the two ratios that matter for the latency target; empty if not measured. */
function floorTable(list: Row[]): string {
  const row = list.find((r) => r.connections === FLOOR_CONNECTIONS && r.pairs.every((p) => p.floor))
  if (!row) return ''
  const ofEtcd = (p: Pair) => p.floor!.m.p50Ms / p.etcd.m.p50Ms
  const graceOf = (p: Pair) => p.grace.m.p50Ms / p.floor!.m.p50Ms
  return [
    '| Conns | Floor req/s | Floor p50 / p99 ms | Floor/etcd p50 | Grace/floor p50 | Cluster CPU µs/req floor / Grace / etcd |',
    '|--:|--:|--:|--:|--:|--:|',
    `| ${row.connections} | ${int(med(row, 'floor', 'reqPerSec'))} | ${fixed(med(row, 'floor', 'p50Ms'), 2)} / ${fixed(med(row, 'floor', 'p99Ms'), 2)} ` +
      `| ${fixed(rowRatio(row, ofEtcd), 2)}${ratioRange(row, ofEtcd)} | ${fixed(rowRatio(row, graceOf), 2)}${ratioRange(row, graceOf)} ` +
      `| ${int(med(row, 'floor', 'serverCpuUsPerReq'))} / ${int(med(row, 'grace', 'serverCpuUsPerReq'))} / ${int(med(row, 'etcd', 'serverCpuUsPerReq'))} |`,
  ].join('\n')
}

interface Verdict {
  target: string
  measured: string
  met: boolean | undefined
}

function verdicts(list: Row[]): Verdict[] {
  const out: Verdict[] = []
  const check = (connections: number, target: string, of: (pair: Pair) => number, met: (ratio: number) => boolean) => {
    const row = list.find((r) => r.connections === connections)
    if (!row) return out.push({ target, measured: 'not measured', met: undefined })
    const failed = failures(row).length > 0
    const ratio = rowRatio(row, of)
    out.push({ target, measured: `${fixed(ratio, 2)}${ratioRange(row, of)}${failed ? ' (run FAILED)' : ''}`, met: !failed && met(ratio) })
  }
  check(TARGET_THROUGHPUT.connections, `${TARGET_THROUGHPUT.connections} conn: Grace req/s ≥ ${TARGET_THROUGHPUT.min.toFixed(1)}× etcd's`, tputRatio, (r) => r >= TARGET_THROUGHPUT.min)
  check(TARGET_P50.connections, `${TARGET_P50.connections} conn: Grace p50 ≤ ${TARGET_P50.max}× etcd's`, p50Ratio, (r) => r <= TARGET_P50.max)
  return out
}

function verdictTable(list: Row[]): string {
  const lines = ['| Target | Grace/etcd | Met |', '|---|--:|:-:|']
  for (const v of verdicts(list)) lines.push(`| ${v.target} | ${v.measured} | ${v.met === undefined ? '–' : v.met ? 'met' : '**not met**'} |`)
  return lines.join('\n')
}

function docsSection(): string {
  const m: Machine = info.machine
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`
  return [
    '## Replicated writes: a Grace cluster against an etcd cluster',
    '',
    '`npm run bench:cp` builds Grace and starts two 3-node clusters on 127.0.0.1, each member in its',
    'own process with its own fresh data directory: Grace (`bin/grace.js --node-id … --members …',
    '--cluster-secret <random>`, log level `info`, its default, so its JSON line per request is written',
    'to a file and paid for) and etcd 3.4 (the Debian package `etcd-server`; defaults, so the WAL is',
    'fsynced on every commit; zap logger at `info`, its default level, which writes no line per',
    'request). Grace always fsyncs. autocannon, in the benchmark process, sends distinct replicated',
    'writes to the leader of one cluster at a time (found with `GET /v1/cluster/status` on Grace and',
    '`POST /v3/maintenance/status` on each etcd member): Grace registers persistent instances',
    '(`POST /v1/ns/instances`, `{"service":"bench-cp","ip":…,"port":…,"ephemeral":false}`, about',
    '70 bytes); etcd puts a key through its JSON gateway (`POST /v3/kv/put`, key',
    '`bench-cp/<ip>:<port>`, value the same JSON Grace is sent, both base64). Both write at most',
    `${int(DISTINCT_INSTANCES)} distinct instances/keys, then write them again (a full replicated write either way).`,
    '',
    '- **Pinning.** autocannon on CPU 0; all server processes (three Grace, three etcd, and the three',
    '  of the replication floor below, the idle ones included) on CPU 1. Each cluster so gets one core',
    '  for its three members, the same budget for both (etcd\'s Go runtime sees one CPU and sets',
    '  GOMAXPROCS to 1; a Grace node is one event loop',
    '  plus libuv threads for LevelDB), and the numbers say how much replicated, fsynced writing each',
    '  system gets out of a core. The client needs only a fraction of its core at these rates, so the',
    '  servers could have been given both cores; but then the client and six servers share them as the',
    '  scheduler likes (Go\'s runtime spreading over both, three node processes landing where they land),',
    '  and the same run measured twice differs more. A real cluster gives each member machine its own',
    '  cores; neither layout is that.',
    '- **Alternating pairs.** Per connection count, N pairs of runs, Grace then etcd (`--pairs N`),',
    '  each run after its own warmup (`--warmup S`) and measured for `--duration S` seconds. Grace/etcd',
    '  is the median of the per-pair ratios (range in brackets); the other numbers are medians over',
    '  the pairs. The leader is looked up before every run and again after it; a run during which it',
    '  moved is flagged in the status.',
    `- **Prewarm.** Once, after the clusters have started and before the first row: \`--prewarm S\``,
    `  seconds (default 10) of writes to each cluster at ${PREWARM_CONNECTIONS} connections, not measured. A freshly`,
    '  started Node process goes on compiling its hot paths for tens of seconds at one connection:',
    "  5–11 s after start, a Grace leader's profile had V8's optimizing compiler at a quarter of its",
    '  CPU (177 µs per write), which the first row, at one connection, paid for. etcd, compiled ahead',
    '  of time, and the floor get the same load.',
    '- **Checks.** Any non-2xx answer or connection error of either system marks the row FAILED and',
    '  the command exits with 1. At the end each system is asked how many distinct instances/keys it',
    '  holds, which must match the writes sent.',
    '- **What is fsynced.** Each Grace node makes one synced LevelDB write per Raft round: the round\'s',
    '  log entries (and a new term or vote), with the state machine writes it applied since its last',
    '  write riding along; writes that arrive while the leader\'s last batch is uncommitted join the',
    '  next round (docs/architecture.md). etcd fsyncs its WAL once per raft Ready, and commits its',
    '  bbolt backend (with an fsync) in batches, every 100 ms by default.',
    '- **Caveat.** etcd is reached through its grpc-gateway, which turns each JSON request into a gRPC',
    '  call inside the etcd process; etcd\'s own clients speak gRPC and would skip that work. The',
    '  comparison is HTTP/JSON to HTTP/JSON, as a registry client of either would see it.',
    '',
    `Last run ${info.date} with \`${info.command}\`: ${plural(info.pairs, 'pair')} per connection count, each run after a ` +
      `${info.warmupS} s warmup and measured for ${info.durationS} s, pipelining 1; ` +
      (info.prewarmS > 0 ? `each cluster prewarmed once for ${info.prewarmS} s at ${PREWARM_CONNECTIONS} connections.` : 'no prewarm.'),
    `Versions: Grace ${info.grace}, etcd ${info.etcd.version} (Go ${info.etcd.go}), Node ${m.node}.`,
    `Machine: ${m.cores} × ${m.cpuModel}, ${m.memoryGiB} GiB, ${m.os}; data on ${info.fsyncBefore.fsType}, where one appending ` +
      `100-byte write + fdatasync took ${fixed(info.fsyncBefore.p50Ms, 2)} ms before the runs and ${fixed(info.fsyncAfter?.p50Ms ?? Number.NaN, 2)} ms after ` +
      `(p50; p99 ${fixed(info.fsyncBefore.p99Ms, 2)} and ${fixed(info.fsyncAfter?.p99Ms ?? Number.NaN, 2)} ms). ` +
      `1-minute load ${info.loadBefore} before, ${info.loadAfter} after.`,
    `Pinning: ${info.pinning}. Waited ${Math.round(info.quietWaitedS)} s in all for other processes to quiet down before pairs (at most ${info.quietWaitS} s each).`,
    `Grace wrote ${(info.graceLogBytes / 2 ** 20).toFixed(1)} MiB of log and exited with ${info.graceExit}; ` +
      `etcd wrote ${(info.etcdLogBytes / 2 ** 20).toFixed(1)} MiB of log (${warnings(info.etcdWarnings)}) and exited with ${info.etcdExit} (its normal exit on SIGTERM). ` +
      `${info.stored.join('; ')}.`,
    '',
    resultsTable(rows),
    '',
    'Cluster CPU is the three members of the measured cluster together (all threads, from /proc): % of',
    'one core over the run, and µs per response. autocannon runs in the benchmark process. "Other" is',
    'the most the rest of the machine (the idle cluster included) used during any run of the row; a',
    `pair with a run above ${NOISY_OTHER_CPU_PCT} % counts as noisy.`,
    '',
    '### Targets',
    '',
    verdictTable(rows),
    '',
    ...floorParagraph(rows),
    ...(info.graceStderr ? ['', 'Grace wrote to stderr during the run:', '', '```', info.graceStderr.trimEnd(), '```'] : []),
  ].join('\n')
}

/**
 * What the replication floor says about the 1-connection target, with this run's numbers: at one
 * connection the three members take turns on one core, so a lone write's latency is close to the
 * cluster's whole CPU for it, and the floor is the least any design pays for that.
 */
function floorParagraph(list: Row[]): string[] {
  const table = floorTable(list)
  if (!table) return []
  const row = list.find((r) => r.connections === FLOOR_CONNECTIONS)!
  const ofEtcd = rowRatio(row, (p) => p.floor!.m.p50Ms / p.etcd.m.p50Ms)
  return [
    '',
    `**The replication floor at ${FLOOR_CONNECTIONS} connection.** How close a replicated, fsynced write can come to`,
    'the target on this layout is measured, not guessed: in each pair of the row, after Grace and',
    'etcd, a third 3-process cluster is measured the same way (`test/bench/replication-floor.ts`, on',
    'the same core and disk). Its leader takes the same request through the same fastify, appends it',
    'to its own file and sends it to both followers over TCP; each follower appends it and answers;',
    'the leader answers once two of the three copies, its own included, are durable (each append one',
    "write to an O_DSYNC file; Grace waits for its own and one follower's, which is stricter). It has",
    'no log index, terms, state machine, storage engine, validation or request log, so no real system',
    "can be faster. At one connection the members take turns on one core, so a lone write's latency",
    "is close to the whole cluster's CPU for it (the CPU columns).",
    '',
    table,
    '',
    `The floor's p50 was ${fixed(ofEtcd, 2)}× etcd's: the target (${TARGET_P50.max}×) asks Grace's whole stack,`,
    'Raft, LevelDB, the naming state machine, validation and the request log, to cost ' +
      (ofEtcd >= TARGET_P50.max ? 'less than this floor does.' : `no more than ${fixed(TARGET_P50.max / ofEtcd, 1)}× this floor.`),
  ]
}

// ---- small things --------------------------------------------------------------------------

/** How the members exited: one entry when all agree. */
function exits(list: string[]): string {
  return new Set(list).size === 1 ? `${list[0]} (all ${list.length})` : list.join(', ')
}

function warnings(counts: Record<string, number>): string {
  const list = Object.entries(counts).sort((a, b) => b[1] - a[1])
  const total = list.reduce((n, [, c]) => n + c, 0)
  return total === 0 ? 'no warnings' : `${total} warnings: ${list.map(([msg, c]) => `"${cell(msg)}" ×${c}`).join(', ')}`
}

function sumDefined(values: (number | undefined)[]): number | undefined {
  return values.some((v) => v === undefined) ? undefined : values.reduce((a: number, b) => a + (b as number), 0)
}

