// Sync lag of the AP layer, sample by sample: register one new ephemeral instance on a random node
// of the cluster, and from the moment its acknowledgement arrives poll every node in a tight loop
// (one GET in flight per node, the next sent as soon as the previous answer is read) until each
// lists it. A sample's lag is the time from the acknowledgement to the answer that showed the
// instance on the last node to list it: an upper bound, by at most one poll round trip.
//
// Runs in a worker thread (runLagWorker) so that autocannon, driving load from the main thread of
// the benchmark process at the same time, does not delay the sampler's own timing; the thread
// inherits the process's CPU pinning.

import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'

export interface LagOptions {
  urls: string[]
  /** Samples to take at most. */
  samples: number
  /** Stop taking samples after this many ms (a bound on the whole run). */
  maxMs: number
  /** A sample not visible everywhere after this many ms counts as a timeout. */
  timeoutMs: number
  /** Each sample registers into its own service `${prefix}-${i}` (small answers to poll). */
  prefix: string
  /** Instance metadata (long lease timeouts, so no sample expires during the benchmark). */
  metadata: Record<string, string>
}

export interface LagResult {
  /** Per sample: ms from the acknowledgement to visible on every node. */
  lagsMs: number[]
  /** Per sample: ms the registration took (request sent to acknowledgement read). */
  ackMs: number[]
  /** Samples still not visible everywhere after timeoutMs. */
  timeouts: number
  /** Polls answered, in all (the load the sampler put on the cluster). */
  polls: number
  /** The first few failures (non-2xx, connection errors), with a count of all. */
  errors: string[]
  errorCount: number
  durationMs: number
}

const JSON_HEADERS = { 'content-type': 'application/json' }

export async function sampleLag(o: LagOptions): Promise<LagResult> {
  const out: LagResult = { lagsMs: [], ackMs: [], timeouts: 0, polls: 0, errors: [], errorCount: 0, durationMs: 0 }
  const fail = (what: string) => {
    out.errorCount++
    if (out.errors.length < 5) out.errors.push(what)
  }
  const started = performance.now()
  for (let i = 0; i < o.samples && performance.now() - started < o.maxMs; i++) {
    const service = `${o.prefix}-${i}`
    const node = Math.floor(Math.random() * o.urls.length)
    const body = JSON.stringify({ service, ip: `10.3.${(i >> 8) & 255}.${i & 255}`, port: 7000, ephemeral: true, metadata: o.metadata })
    const sent = performance.now()
    let acked: number
    try {
      const res = await fetch(`${o.urls[node]}/v1/ns/instances`, { method: 'POST', headers: JSON_HEADERS, body, signal: AbortSignal.timeout(10_000) })
      const text = await res.text()
      acked = performance.now()
      if (!res.ok) {
        fail(`register on node ${node + 1} answered ${res.status}: ${text.slice(0, 200)}`)
        continue
      }
    } catch (err) {
      fail(`register on node ${node + 1}: ${(err as Error).message}`)
      continue
    }
    out.ackMs.push(acked - sent)
    const deadline = acked + o.timeoutMs
    const seen = await Promise.all(o.urls.map((url) => pollUntilListed(url, service, deadline, out, fail)))
    if (seen.some((t) => t === undefined)) {
      out.timeouts++
      continue
    }
    out.lagsMs.push(Math.max(...(seen as number[])) - acked)
  }
  out.durationMs = performance.now() - started
  return out
}

/** performance.now() of the answer that first listed the service's instance, or undefined at the deadline. */
async function pollUntilListed(url: string, service: string, deadline: number, out: LagResult, fail: (what: string) => void): Promise<number | undefined> {
  const target = `${url}/v1/ns/instances?service=${encodeURIComponent(service)}&stale=true`
  for (;;) {
    try {
      const res = await fetch(target, { signal: AbortSignal.timeout(5_000) })
      const text = await res.text()
      const at = performance.now()
      out.polls++
      if (!res.ok) fail(`GET on ${url} answered ${res.status}: ${text.slice(0, 200)}`)
      else if ((JSON.parse(text) as { instances?: unknown[] }).instances?.length) return at
    } catch (err) {
      fail(`GET on ${url}: ${(err as Error).message}`)
    }
    if (performance.now() > deadline) return undefined
  }
}

/** Runs sampleLag in a worker thread of this process. */
export function runLagWorker(o: LagOptions): Promise<LagResult> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL(import.meta.url), { workerData: o })
    let result: LagResult | undefined
    worker.once('message', (r: LagResult) => (result = r))
    worker.once('error', reject)
    worker.once('exit', (code) => (result ? resolve(result) : reject(new Error(`lag sampler exited with code ${code} and no result`))))
  })
}

if (!isMainThread && parentPort && (workerData as LagOptions | undefined)?.urls) {
  const port = parentPort
  void sampleLag(workerData as LagOptions).then((r) => port.postMessage(r))
}
