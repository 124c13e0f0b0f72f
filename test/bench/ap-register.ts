// `node --expose-gc dist/test/bench/ap-register.js [--clients N] [--warmup N] [--per-window N] [--reps N] [--update] [--against DIR]`
//
// What an ephemeral registration costs a 3-node cluster, in one process, steady where the
// wall-clock benchmark (ap-bench.ts) is not on a shared machine: three nodes wired as
// createGraceNode wires them (naming service, view and push log, leases with self-preservation,
// EphemeralCluster and its Distro store) over an in-memory transport that copies every payload
// and answers on a later turn, as a socket would. Each registration is the AP benchmark's body
// (registerScenario: a new address each, service bench-ap-eph), parsed from JSON as the HTTP
// route parses it, sent to the next node in turn, so two in three are forwarded to their owner;
// `--per-window` of them (default 128, about what 64 connections bring in a sync interval) go
// out together, then the clock moves by one sync interval so the batches reach the peers.
//
// --update: the clients are registered before, and each measured registration changes one
// (another weight), as most of bench:ap's do once its addresses come round again.
//
// Answers per registration, all three nodes together: process CPU (every thread: V8's GC helpers
// included), main-thread CPU, GC pause time (main thread), and the heap each client keeps on
// the three nodes after a full GC. Medians over --reps fresh clusters.
//
// --against DIR: also loads another checkout's build (DIR/dist, built) and alternates the two in
// one process, rep by rep, so that a change is compared with the code before it under the same
// conditions (the machine's load, the heap of the process).

import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PerformanceObserver } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { MemoryNet } from './memory-net.js'

const { values: opts } = parseArgs({
  options: {
    clients: { type: 'string', default: '30000' },
    warmup: { type: 'string', default: '5000' },
    'per-window': { type: 'string', default: '128' },
    reps: { type: 'string', default: '5' },
    against: { type: 'string' },
    update: { type: 'boolean', default: false },
  },
})
const CLIENTS = Number(opts.clients)
const WARMUP = Number(opts.warmup)
const PER_WINDOW = Number(opts['per-window'])
const REPS = Number(opts.reps)
/** What the heap figure is per: a new client keeps a record; a changed one only replaces it. */
const HEAP_PER = opts.update ? 'changed registration (growth)' : 'client'
const gc = (globalThis as { gc?: () => void }).gc
if (!gc) throw new Error('run with node --expose-gc')

/** This build's root (the directory holding dist/). */
const HERE = fileURLToPath(new URL('../../../', import.meta.url))

/* eslint-disable @typescript-eslint/no-explicit-any -- modules of either build, loaded by path */
interface Build {
  readonly name: string
  readonly m: Record<string, any>
}

async function loadBuild(root: string, name: string): Promise<Build> {
  const mod = (p: string) => import(pathToFileURL(resolve(root, 'dist/src', p)).href)
  const parts = await Promise.all(
    ['core/clock.js', 'core/logger.js', 'consistency/ephemeral-cluster.js', 'consistency/proxy.js', 'naming/service.js', 'naming/view.js', 'naming/push.js', 'naming/validate.js', 'naming/self-preservation.js', 'ap/node/distro-node.js'].map(mod),
  )
  return { name, m: Object.assign({}, ...parts) }
}

function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(f[11]) + Number(f[12])) / 100) * 1000
}

function cpuMs(): number {
  const u = process.cpuUsage()
  return (u.user + u.system) / 1000
}

let gcMs = 0
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration
}).observe({ entryTypes: ['gc'] })

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

interface Result {
  cpuUs: number
  mainUs: number
  gcUs: number
  heapBytes: number
}

async function rep(b: Build): Promise<Result> {
  const { ManualClock, silentLogger, EphemeralCluster, ConsistencyProxy, NamingService, NamingView, NamingPush, parseInstance, SELF_PRESERVATION_DEFAULTS, SYNC_INTERVAL_MS } = b.m
  const clock = new ManualClock(Date.now())
  const net = new MemoryNet()
  const ids = ['n1', 'n2', 'n3']
  const noLog = { propose: () => Promise.reject(new Error('no CP log here')), readBarrier: () => Promise.resolve() }
  const nodes = ids.map((id) => {
    const view = new NamingView(clock.now() * 1000, () => clock.now())
    new NamingPush(view, { clock })
    const cluster = new EphemeralCluster({ self: id, transport: net.transport(id), clock, random: Math.random, logger: silentLogger, members: () => ids, isUp: () => true })
    const leases = cluster.createLeases(clock)
    cluster.store.subscribe((_id: string, prev: any, next: any) => view.applyClientChange(_id, prev?.instances ?? [], next?.instances ?? []))
    cluster.store.setBulkApply((apply: () => void) => view.batch(apply))
    leases.configure({ selfPreservation: SELF_PRESERVATION_DEFAULTS, applyBulk: (apply: () => void) => view.batch(apply) })
    const naming = new NamingService(new ConsistencyProxy(noLog, cluster.store), view, leases, clock, cluster)
    cluster.attach(naming, leases)
    return { cluster, leases, naming }
  })
  await Promise.all(nodes.map((n) => n.cluster.start()))
  for (const n of nodes) n.leases.start()
  const settle = async () => {
    for (let s = 0; s < 8; s++) await new Promise((r) => setImmediate(r))
  }
  let k = 0
  let held = 0
  const register = async (count: number, weight = 1): Promise<void> => {
    for (let done = 0; done < count; ) {
      const waits: Promise<unknown>[] = []
      for (let j = 0; j < PER_WINDOW && done < count; j++, done++, k++) {
        const body = JSON.stringify({ service: 'bench-ap-eph', ip: `10.0.${(k >> 8) & 255}.${k & 255}`, port: 20_000 + (k >> 16), weight, ephemeral: true })
        const pending = nodes[k % 3]!.naming.registerNow(parseInstance(JSON.parse(body)))
        if (pending) waits.push(pending)
      }
      await Promise.all(waits)
      clock.advance(SYNC_INTERVAL_MS)
      await settle()
    }
    held = Math.max(held, k)
    // Every sync delivered.
    for (let r = 0; r < 20 && nodes.some((n) => n.cluster.store.queuedSyncs() > 0 || n.cluster.store.size() !== held); r++) {
      clock.advance(SYNC_INTERVAL_MS)
      await settle()
    }
  }
  await register(WARMUP)
  if (opts.update) {
    // The clients exist already and each registration changes one (another weight), as in
    // bench:ap once its addresses come round again: the warmup clients once, then the measured.
    await register(CLIENTS)
    k = 0
    await register(WARMUP, 2)
  }
  gc!()
  const heap0 = process.memoryUsage().heapUsed
  const gc0 = gcMs
  const main0 = mainThreadCpuMs()
  const cpu0 = cpuMs()
  await register(CLIENTS, opts.update ? 2 : 1)
  const cpu = cpuMs() - cpu0
  const main = mainThreadCpuMs() - main0
  const pauses = gcMs - gc0
  gc!()
  const heap = process.memoryUsage().heapUsed - heap0
  for (const n of nodes) {
    if (n.cluster.store.size() !== WARMUP + CLIENTS) throw new Error(`a node holds ${n.cluster.store.size()} clients, not ${WARMUP + CLIENTS}`)
    n.leases.stop()
    n.cluster.stop()
  }
  return { cpuUs: (cpu * 1000) / CLIENTS, mainUs: (main * 1000) / CLIENTS, gcUs: (pauses * 1000) / CLIENTS, heapBytes: heap / CLIENTS }
}

const builds = [await loadBuild(HERE, 'this build')]
if (opts.against) builds.push(await loadBuild(resolve(opts.against), opts.against))
const results = new Map<Build, Result[]>(builds.map((b) => [b, []]))
for (let r = 0; r < REPS; r++) {
  for (const b of r % 2 === 0 ? builds : [...builds].reverse()) {
    const x = await rep(b)
    results.get(b)!.push(x)
    console.log(`rep ${r + 1} ${b.name}: ${x.cpuUs.toFixed(1)} µs CPU (main ${x.mainUs.toFixed(1)}, GC pauses ${x.gcUs.toFixed(1)}) per registration, ${x.heapBytes.toFixed(0)} B of heap per ${HEAP_PER} (3 nodes)`)
    gc()
  }
}
for (const b of builds) {
  const xs = results.get(b)!
  const med = (f: (x: Result) => number) => median(xs.map(f))
  console.log(
    `${b.name}: median ${med((x) => x.cpuUs).toFixed(1)} µs CPU per registration (main thread ${med((x) => x.mainUs).toFixed(1)}, GC pauses ${med((x) => x.gcUs).toFixed(1)}), heap ${med((x) => x.heapBytes).toFixed(0)} B per ${HEAP_PER} over 3 nodes; ${CLIENTS} ${opts.update ? 'changed' : 'new'} registrations after ${WARMUP}, ${PER_WINDOW} per sync window`,
  )
}
