// `node dist/test/bench/ap-cpu.js [--requests N] [--conns 1,64] [--prof DIR] [--keep-logs]`
//
// Cluster CPU per ephemeral request, the measure that decides the AP benchmark's throughput when
// the three nodes share one core (ap-bench.ts), and one that stays steady on a busy machine where
// req/s and latencies do not: a 3-node cluster (the bench's settings, log level info), N
// registrations (a new client each) and N heartbeats sent round-robin over the nodes at each
// concurrency, and the three processes' CPU time (/proc, user + system) divided by N. With
// --prof DIR the nodes run under --cpu-prof and write their profiles to DIR when stopped.

import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { setTimeout as sleep } from 'node:timers/promises'
import { type RunningServer, freePort, startServer, stopAll } from './servers.js'

const { values: opts } = parseArgs({
  options: {
    requests: { type: 'string', default: '3000' },
    conns: { type: 'string', default: '1,64' },
    scenarios: { type: 'string', default: 'register,beat' },
    prof: { type: 'string' },
    'keep-logs': { type: 'boolean', default: false },
  },
})
const N = Number(opts.requests)
const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const tmp = mkdtempSync(join(tmpdir(), 'grace-ap-cpu-'))
const agent = new Agent({ keepAlive: true, maxSockets: 256 })

function call(url: string, method: string, path: string, body: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? '' : JSON.stringify(body)
    const req = request(url + path, { method, agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString()
        if (res.statusCode !== 200) reject(new Error(`${method} ${path} on ${url}: ${res.statusCode} ${text}`))
        else resolve(JSON.parse(text))
      })
    })
    req.on('error', reject)
    req.end(data)
  })
}

async function startCluster(): Promise<RunningServer[]> {
  const ids = ['n1', 'n2', 'n3']
  const ports = await Promise.all(ids.map(async () => ({ client: await freePort(), peer: await freePort() })))
  const members = ids.map((id, i) => `${id}=127.0.0.1:${ports[i]!.peer}`).join(',')
  const secret = randomBytes(24).toString('base64url')
  const prof = opts.prof ? ['--cpu-prof', `--cpu-prof-dir=${opts.prof}`] : []
  return Promise.all(
    ids.map((id, i) =>
      startServer(
        {
          name: id,
          args: [
            ...prof,
            join(ROOT, 'bin/grace.js'),
            ...['--host', '127.0.0.1', '--port', String(ports[i]!.client), '--data-dir', join(tmp, id)],
            ...['--node-id', id, '--members', members, '--cluster-secret', secret, '--log-level', 'info'],
          ],
          stdoutFile: join(tmp, `${id}.log`),
          stderrFile: join(tmp, `${id}.stderr.log`),
          pinning: { note: 'not pinned' },
        },
        ports[i]!.client,
      ),
    ),
  )
}

/** Runs `n` requests, `conns` at a time, request k to node k mod 3; answers cluster CPU µs per request. */
async function drive(nodes: RunningServer[], conns: number, n: number, make: (k: number) => [string, string, unknown]): Promise<number> {
  const cpu = () => nodes.reduce((s, x) => s + x.cpuSeconds()!, 0)
  const io = () => nodes.map((x) => readFileSync(`/proc/${x.pid}/io`, 'utf8')).reduce((acc, t) => {
    for (const k of ['syscr', 'syscw'] as const) acc[k] += Number(new RegExp(`${k}: (\\d+)`).exec(t)![1])
    return acc
  }, { syscr: 0, syscw: 0 })
  let next = 0
  const worker = async (w: number) => {
    for (let k = next++; k < n; k = next++) {
      const [method, path, body] = make(k)
      await call(nodes[(w + k) % nodes.length]!.url, method, path, body)
    }
  }
  await sleep(200)
  const stats = async () => {
    let batches = 0
    for (const x of nodes) batches += ((await call(x.url, 'GET', '/v1/cluster/status', undefined)) as { distro: { stats: { syncBatchesSent: number } } }).distro.stats.syncBatchesSent
    return batches
  }
  const b0 = await stats()
  const c0 = cpu()
  const io0 = io()
  await Promise.all(Array.from({ length: conns }, (_, w) => worker(w)))
  const io1 = io()
  const cpuUs = ((cpu() - c0) * 1e6) / n
  console.log(`  sync batches ${((await stats()) - b0) / n} per request`)
  console.log(`  reads ${((io1.syscr - io0.syscr) / n).toFixed(2)}, writes ${((io1.syscw - io0.syscw) / n).toFixed(2)} syscalls per request (cluster)`)
  return cpuUs
}

let seq = 0
const register = (): [string, string, unknown] => {
  const k = seq++
  return ['POST', '/v1/ns/instances', { service: 'bench-ap-eph', ip: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`, port: 8080, ephemeral: true }]
}
const BEAT_CLIENTS = 1000
const beat = (k: number): [string, string, unknown] => ['PUT', '/v1/ns/instances/beat', { clientId: `beat-${k % BEAT_CLIENTS}` }]

try {
  const nodes = await startCluster()
  await sleep(1000)
  const urls = nodes.map((x) => x.url)
  for (let i = 0; i < BEAT_CLIENTS; i++) {
    await call(urls[i % 3]!, 'POST', '/v1/ns/instances', {
      service: 'bench-ap-beat',
      ip: `10.200.${(i >> 8) & 255}.${i & 255}`,
      port: 9000,
      ephemeral: true,
      clientId: `beat-${i}`,
      metadata: { 'preserved.heart.beat.timeout': '3600000', 'preserved.ip.delete.timeout': '3600000' },
    })
  }
  for (const conns of opts.conns.split(',').map(Number)) {
    for (const [name, make] of [['register', register], ['beat', beat]] as const) {
      if (!opts.scenarios.split(',').includes(name)) continue
      await drive(nodes, conns, Math.min(N, 1000), make) // warm up
      const us = await drive(nodes, conns, N, make)
      console.log(`${conns} conn: ${name} ${us.toFixed(0)} µs cluster CPU per request (${N})`)
    }
  }
} finally {
  await stopAll()
  agent.destroy()
  if (opts['keep-logs']) console.log(`logs in ${tmp}`)
  else rmSync(tmp, { recursive: true, force: true })
}
