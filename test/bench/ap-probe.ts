// `node dist/test/bench/ap-probe.js [--scenarios register,beat,register-owned,beat-owned] [--conns 64] [--warmup S] [--duration S] [--rounds N] [--node-args "..."] [--keep-logs]`
//
// Where a 3-node cluster's time goes under the AP benchmark's load (ap-bench.ts: the same
// pinning, settings and requests, autocannon in this process on CPU 0, the nodes on CPU 1), to
// find what stalls the event loop and what each request costs: per measured window, req/s and
// autocannon's p50/p99, the cluster's CPU per request split by thread (the main threads, V8's
// helpers: GC and compilers, libuv's pool), and per node the event-loop delay and GC pauses
// (ap-loop-probe.ts, preloaded). --node-args passes V8/node flags to the nodes, to compare
// settings in one sitting. Not a benchmark of record: it writes no report.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, readdirSync, rmSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import autocannon from 'autocannon'
import { responsibleNode } from '../../src/ap/distro/ownership.js'
import { BEAT_METADATA } from '../../src/naming/model.js'
import { percentile } from './measure.js'
import { pinSelf } from './pinning.js'
import { DISTINCT_INSTANCES, instanceAddress, registerScenario } from './scenarios.js'
import { type RunningServer, freePort, startServer, stopAll } from './servers.js'

const { values: opts } = parseArgs({
  options: {
    scenarios: { type: 'string', default: 'register,beat' },
    conns: { type: 'string', default: '64' },
    warmup: { type: 'string', default: '2' },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    'node-args': { type: 'string', default: '' },
    profile: { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
  },
})
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const PROBE = pathToFileURL(fileURLToPath(new URL('./ap-loop-probe.js', import.meta.url))).href
const tmp = mkdtempSync(join(tmpdir(), 'grace-ap-probe-'))
process.env.GRACE_LOOP_PROBE_DIR = tmp
if (opts.profile) process.env.GRACE_LOOP_PROBE_PROFILE = opts.profile
const pinning = pinSelf()
console.log(`pinning: ${pinning.note}`)
const JSON_HEADERS = { 'content-type': 'application/json' }
const BEAT_CLIENTS = 1000
const LONG_LEASE = { [BEAT_METADATA.unhealthyAfterMs]: '3600000', [BEAT_METADATA.removeAfterMs]: '3600000' }

/** Calls fn with each thread's id and the text of its /proc file `file` (stat, status); threads gone meanwhile are skipped. */
function eachThread(pid: number, file: string, fn: (tid: string, text: string) => void): void {
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let text: string
    try {
      text = readFileSync(`/proc/${pid}/task/${tid}/${file}`, 'utf8')
    } catch {
      continue
    }
    fn(tid, text)
  }
}

/** CPU seconds per thread kind of one process, from /proc/PID/task/TID/stat. */
function threadCpu(pid: number): Record<string, number> {
  const out: Record<string, number> = {}
  eachThread(pid, 'stat', (tid, stat) => {
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const kind = tid === String(pid) ? 'main' : comm.startsWith('V8') || comm.startsWith('DedicatedWork') ? 'v8' : comm.startsWith('libuv') ? 'libuv' : 'other'
    out[kind] = (out[kind] ?? 0) + (Number(f[11]) + Number(f[12])) / 100
  })
  return out
}

/** Context switches of one process, every thread: voluntary (it slept: a wakeup each) and involuntary (preempted). */
function switches(pid: number): Record<string, number> {
  const out: Record<string, number> = { vol: 0, invol: 0 }
  eachThread(pid, 'status', (_tid, status) => {
    out.vol! += Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0)
    out.invol! += Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(status)?.[1] ?? 0)
  })
  return out
}

function add(a: Record<string, number>, b: Record<string, number>, sign = 1): Record<string, number> {
  const out = { ...a }
  for (const [k, v] of Object.entries(b)) out[k] = (out[k] ?? 0) + sign * v
  return out
}

async function call(url: string, method: string, path: string, body: unknown): Promise<unknown> {
  const res = await fetch(url + path, { method, headers: JSON_HEADERS, body: JSON.stringify(body) })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return JSON.parse(text)
}

/** Response times (ms, float) of the runs since the last take(): autocannon's own are whole ms. */
const responseMs: number[] = []
function takePercentiles(): string {
  const v = Float64Array.from(responseMs.splice(0)).sort()
  const at = (p: number) => percentile(v, p)
  return `p50 ${at(0.5).toFixed(3)} p90 ${at(0.9).toFixed(3)} p95 ${at(0.95).toFixed(3)} p98 ${at(0.98).toFixed(3)} p99 ${at(0.99).toFixed(3)} p99.9 ${at(0.999).toFixed(2)} ms`
}

function run(urls: string[], conns: number, durationS: number, requests: autocannon.Request[]): Promise<autocannon.Result> {
  return new Promise((resolve, reject) => {
    const instance = autocannon({ url: urls, connections: conns, pipelining: 1, duration: durationS, requests }, (err, r) => (err ? reject(err) : resolve(r)))
    instance.on('response', (_client, _status, _bytes, ms) => responseMs.push(ms))
  })
}

/**
 * Scenarios register-owned and beat-owned: registrations (beats) that each arrive at their
 * client's owner, so that none is forwarded (one autocannon per node, a third of the connections
 * each), to tell forwarding's cost from the rest. Requests and non-2xx answers are summed.
 */
async function runOwned(ids: string[], urls: string[], conns: number, durationS: number, beat: boolean): Promise<autocannon.Result> {
  const runs = ids.map((id, i) => {
    let k = registrations.next
    let b = 0
    const mine = Array.from({ length: BEAT_CLIENTS }, (_, j) => `bench-ap-beat-${j}`).filter((c) => responsibleNode(c, ids) === id)
    const beats: autocannon.Request[] = [
      { method: 'PUT', path: '/v1/ns/instances/beat', headers: JSON_HEADERS, setupRequest: (r) => ({ ...r, body: JSON.stringify({ clientId: mine[b++ % mine.length] }) }) },
    ]
    const registers: autocannon.Request[] = [
      {
        method: 'POST',
        path: '/v1/ns/instances',
        headers: JSON_HEADERS,
        setupRequest: (r) => {
          for (;;) {
            const { ip, port } = instanceAddress(k % DISTINCT_INSTANCES)
            const weight = 1 + (Math.floor(k++ / DISTINCT_INSTANCES) % 100)
            if (responsibleNode(`${ip}:${port}`, ids) === id) return { ...r, body: JSON.stringify({ service: 'bench-ap-eph', ip, port, weight, ephemeral: true }) }
          }
        },
      },
    ]
    return run([urls[i]!], Math.max(1, Math.round(conns / ids.length)), durationS, beat ? beats : registers).finally(() => {
      registrations.next = Math.max(registrations.next, k)
    })
  })
  const results = await Promise.all(runs)
  const first = results[0]!
  return {
    ...first,
    requests: { ...first.requests, total: results.reduce((a, r) => a + r.requests.total, 0) },
    non2xx: results.reduce((a, r) => a + r.non2xx, 0),
  }
}
/** Shared by the register and register-owned scenarios, so that no round repeats a registration. */
const registrations = { next: 0 }

async function dumpLoops(nodes: RunningServer[]): Promise<Record<string, unknown>[]> {
  for (const n of nodes) rmSync(join(tmp, `loop-${n.pid}.json`), { force: true })
  for (const n of nodes) process.kill(n.pid!, 'SIGUSR2')
  const out: Record<string, unknown>[] = []
  for (const n of nodes) {
    const path = join(tmp, `loop-${n.pid}.json`)
    for (let i = 0; i < 1000 && !existsSync(path); i++) await sleep(20)
    out.push(JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>)
  }
  return out
}

async function distroStats(urls: string[]): Promise<Record<string, number>[]> {
  const out: Record<string, number>[] = []
  for (const url of urls) out.push(((await (await fetch(`${url}/v1/cluster/status`)).json()) as { distro: { stats: Record<string, number> } }).distro.stats)
  return out
}

try {
  const ids = ['n1', 'n2', 'n3']
  const ports: { client: number; peer: number }[] = []
  for (const _ of ids) ports.push({ client: await freePort(), peer: await freePort() })
  const members = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]!.peer}`).join(',')
  const secret = randomBytes(24).toString('base64url')
  const extra = opts['node-args'].split(' ').filter((s) => s !== '')
  const nodes = await Promise.all(
    ids.map((id, i) =>
      startServer(
        {
          name: id,
          args: [
            ...extra,
            '--import',
            PROBE,
            join(ROOT, 'bin/grace.js'),
            ...['--host', '127.0.0.1', '--port', String(ports[i]!.client), '--data-dir', join(tmp, id)],
            ...['--node-id', id, '--members', members, '--cluster-secret', secret, '--log-level', 'info'],
          ],
          stdoutFile: join(tmp, `${id}.log`),
          stderrFile: join(tmp, `${id}.stderr.log`),
          pinning,
        },
        ports[i]!.client,
      ),
    ),
  )
  const urls = nodes.map((n) => n.url)
  for (let i = 0; i < BEAT_CLIENTS; i++) {
    const body = { service: 'bench-ap-beat', ip: `10.2.${(i >> 8) & 255}.${i & 255}`, port: 9000, ephemeral: true, clientId: `bench-ap-beat-${i}`, metadata: LONG_LEASE }
    await call(urls[i % 3]!, 'POST', '/v1/ns/instances', body)
  }
  const register = registerScenario('register', 'register', 'bench-ap-eph', true, registrations)
  let beatSeq = 0
  const beat = (): autocannon.Request[] => [
    { method: 'PUT', path: '/v1/ns/instances/beat', headers: JSON_HEADERS, setupRequest: (r) => ({ ...r, body: JSON.stringify({ clientId: `bench-ap-beat-${beatSeq++ % BEAT_CLIENTS}` }) }) },
  ]
  for (let round = 1; round <= Number(opts.rounds); round++) {
    for (const conns of opts.conns.split(',').map(Number)) {
      for (const name of opts.scenarios.split(',')) {
        const requests = name === 'beat' ? beat : () => register.requests()
        const target = conns === 1 ? [urls[round % 3]!] : urls
        const go = (s: number) => (name.endsWith('-owned') ? runOwned(ids, urls, conns, s, name === 'beat-owned') : run(target, conns, s, requests()))
        await go(Number(opts.warmup))
        takePercentiles()
        await dumpLoops(nodes)
        const stats0 = await distroStats(urls)
        const cpu0 = nodes.map((n) => threadCpu(n.pid!)).reduce((a, b) => add(a, b), {})
        const sw0 = nodes.map((n) => switches(n.pid!)).reduce((a, b) => add(a, b), {})
        const own0 = switches(process.pid)
        const r = await go(Number(opts.duration))
        const cpu1 = nodes.map((n) => threadCpu(n.pid!)).reduce((a, b) => add(a, b), {})
        const sw = add(nodes.map((n) => switches(n.pid!)).reduce((a, b) => add(a, b), {}), sw0, -1)
        const own = add(switches(process.pid), own0, -1)
        const loops = await dumpLoops(nodes)
        const stats1 = await distroStats(urls)
        const d = add(cpu1, cpu0, -1)
        const total = r.requests.total
        const per = Object.entries(d).map(([k, v]) => `${k} ${Math.round((v * 1e6) / total)}`).join(', ')
        const sum = Object.values(d).reduce((a, b) => a + b, 0)
        console.log(
          `round ${round} ${name} c=${conns}: ${Math.round(total / r.duration)} req/s, ${takePercentiles()}, non2xx ${r.non2xx}; cluster CPU ${Math.round((sum * 1e6) / total)} µs/req (${per})`,
        )
        const perReq = (n: number) => (n / total).toFixed(2)
        console.log(`   context switches per request: nodes ${perReq(sw.vol!)} voluntary, ${perReq(sw.invol!)} involuntary; this process (autocannon) ${perReq(own.vol!)} / ${perReq(own.invol!)}`)
        for (const [i, l] of loops.entries()) {
          const dl = l.delay as Record<string, number>
          const gc = Object.entries(l.gc as Record<string, { count: number; ms: number; maxMs: number }>)
            .map(([k, s]) => `${k} ${s.count}× ${s.ms.toFixed(0)} ms (max ${s.maxMs.toFixed(1)})`)
            .join(', ')
          const ds = Object.entries(stats1[i]!).filter(([k, v]) => v !== stats0[i]![k]).map(([k, v]) => `${k} +${v - stats0[i]![k]!}`).join(', ')
          console.log(`   ${ids[i]} distro: ${ds}`)
          console.log(`   ${ids[i]} loop delay p50 ${dl.p50} p99 ${dl.p99} p99.9 ${dl.p999} max ${dl.max} ms; gc ${gc}; gc ≥5 ms: ${(l.gcLong as number[]).join(' ')}`)
        }
      }
    }
  }
} finally {
  await stopAll()
  if (opts['keep-logs']) console.log(`logs in ${tmp}`)
  else rmSync(tmp, { recursive: true, force: true })
}
