// One measurement: a warmup run whose numbers are dropped (JIT, connection setup, first
// allocations), then the measured run, both driven by autocannon in this process.

import autocannon from 'autocannon'
import { machineBusySeconds, machineStealSeconds } from './machine.js'

export interface RunSettings {
  connections: number
  warmupS: number
  durationS: number
}

export interface Measurement {
  connections: number
  durationS: number
  responses: number
  reqPerSec: number
  /** Over every response, 2xx or not; sub-millisecond resolution. */
  p50Ms: number
  p99Ms: number
  non2xx: number
  /** Connection errors, timeouts included. */
  errors: number
  timeouts: number
  statusCodes: Record<string, number>
  bytesPerResponse: number
  /** Percent of one core over the measured run: which side was the bottleneck. */
  serverCpuPct: number
  /**
   * Server CPU time (all threads) per response, in µs. Unlike req/s it does not depend on how
   * much of its core the server got, so it is the steadier measure of the work per request.
   */
  serverCpuUsPerReq: number
  /** The part of serverCpuUsPerReq spent on the server's main thread (NaN when not measured). */
  serverMainCpuUsPerReq: number
  clientCpuPct: number
  /** What other processes on the machine used meanwhile: high means the numbers are noisy. */
  otherCpuPct: number
  /** The part of otherCpuPct the hypervisor took from this VM (steal): noise from outside. */
  stealCpuPct: number
  warmup: { responses: number; non2xx: number; errors: number }
}

export async function measure(
  /** Several URLs: autocannon opens connection i to url[i % n] (connections split across servers). */
  url: string | string[],
  requests: () => autocannon.Request[],
  settings: RunSettings,
  serverCpuSeconds: () => number | undefined,
  serverMainCpuSeconds: () => number | undefined = () => undefined,
): Promise<Measurement> {
  const warm = await run(url, requests(), settings.connections, settings.warmupS)
  const wallStart = performance.now()
  const clientStart = process.cpuUsage()
  const serverStart = serverCpuSeconds()
  const mainStart = serverMainCpuSeconds()
  const machineStart = machineBusySeconds()
  const stealStart = machineStealSeconds()
  const main = await run(url, requests(), settings.connections, settings.durationS)
  const wallS = (performance.now() - wallStart) / 1000
  const client = process.cpuUsage(clientStart)
  const serverEnd = serverCpuSeconds()
  const mainEnd = serverMainCpuSeconds()
  const machineEnd = machineBusySeconds()
  const stealEnd = machineStealSeconds()
  const r = main.result
  const pct = (start: number | undefined, end: number | undefined) =>
    start === undefined || end === undefined ? Number.NaN : (100 * (end - start)) / wallS
  const serverCpuPct = pct(serverStart, serverEnd)
  const perReq = (start: number | undefined, end: number | undefined) =>
    start === undefined || end === undefined || r.requests.total === 0 ? Number.NaN : ((end - start) * 1e6) / r.requests.total
  const serverCpuUsPerReq = perReq(serverStart, serverEnd)
  const clientCpuPct = (100 * (client.user + client.system)) / 1e6 / wallS
  const sorted = main.latencies.sort()
  return {
    connections: settings.connections,
    durationS: r.duration,
    responses: r.requests.total,
    reqPerSec: r.duration > 0 ? r.requests.total / r.duration : 0,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    statusCodes: Object.fromEntries(Object.entries(r.statusCodeStats).map(([code, s]) => [code, s.count])),
    bytesPerResponse: r.requests.total > 0 ? r.throughput.total / r.requests.total : 0,
    serverCpuPct,
    serverCpuUsPerReq,
    serverMainCpuUsPerReq: perReq(mainStart, mainEnd),
    clientCpuPct,
    otherCpuPct: Math.max(0, pct(machineStart, machineEnd) - serverCpuPct - clientCpuPct),
    stealCpuPct: pct(stealStart, stealEnd),
    warmup: { responses: warm.result.requests.total, non2xx: warm.result.non2xx, errors: warm.result.errors },
  }
}

/** Connections of the one-time prewarm: enough to exercise a server's batching paths too. */
export const PREWARM_CONNECTIONS = 64

/**
 * Unmeasured load on a server that has just started, before its first measured run. The per-run
 * warmup (a couple of seconds) covers connection setup and first allocations; a fresh Node process
 * also goes on compiling its hot paths (V8's optimizing compiler, on threads that share the
 * server's core) for tens of seconds at a few hundred requests a second, which a first run at one
 * connection would otherwise pay for. Answers what the load got, so that a failing server is
 * noticed before anything is measured.
 */
export async function prewarm(url: string | string[], requests: () => autocannon.Request[], connections: number, durationS: number): Promise<{ responses: number; non2xx: number; errors: number }> {
  const { result } = await run(url, requests(), connections, durationS)
  return { responses: result.requests.total, non2xx: result.non2xx, errors: result.errors }
}

interface Run {
  result: autocannon.Result
  latencies: Float64Array
}

/**
 * autocannon's own latency histogram holds whole milliseconds, too coarse for a 1 ms target, so
 * each response time (float ms from process.hrtime) is also kept here.
 */
function run(url: string | string[], requests: autocannon.Request[], connections: number, durationS: number): Promise<Run> {
  let latencies = new Float64Array(1 << 16)
  let n = 0
  return new Promise((resolve, reject) => {
    const instance = autocannon({ url, connections, pipelining: 1, duration: durationS, requests }, (err, result) => {
      if (err) reject(err)
      else resolve({ result, latencies: latencies.subarray(0, n) })
    })
    instance.on('response', (_client, _status, _bytes, ms) => {
      if (n === latencies.length) {
        const bigger = new Float64Array(latencies.length * 2)
        bigger.set(latencies)
        latencies = bigger
      }
      latencies[n++] = ms
    })
  })
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]
}
