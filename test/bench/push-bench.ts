// `npm run bench:push [-- --changes N] [--interval MS] [--subscribers N] [--idle-watchers N] [--no-capacity]`
//
// Push latency on a real 3-node cluster (issue 7, item 1): how long after a change is sent to
// one node a subscriber connected to any node hears of it, through the SDK (one watch per client,
// POST /v1/ns/watch). And capacity: one node holds 10,000 concurrent watches, and the next one
// is refused with 429 TOO_MANY_WATCHERS.
//
// Method: three nodes (bin/grace.js) on 127.0.0.1; `--subscribers` SDK naming clients per node
// (default 2), each subscribed to one service; `--idle-watchers` raw watches per node on other
// services (default 1000), so that the node's watch table is not empty; a writer registers
// `--changes` instances (default 300), one every `--interval` ms (default 30), each through the
// next node in turn. A change's latency, for one subscriber, is from just before its POST was
// sent to the subscriber's listener seeing that instance, all in this process (one clock).
// The result goes to docs/benchmarks.md (section bench:push) and stdout.

import { mkdtempSync, rmSync } from 'node:fs'
import { Agent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NamingClient, silentSdkLogger } from '../../src/sdk/index.js'
import { freePort } from '../helpers/cluster.js'
import { type ServerProcess, request, startServer } from '../helpers/process.js'
import { describeMachine, load1 } from './machine.js'
import { writeDocsSection } from './report.js'

const ROOT = join(import.meta.dirname, '..', '..', '..')
const SECRET = 'bench-push-secret-0123456789abcdef'

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? Number(process.argv[i + 1]) : dflt
}
const CHANGES = arg('changes', 300)
const INTERVAL = arg('interval', 30)
const SUBSCRIBERS = arg('subscribers', 2)
const IDLE = arg('idle-watchers', 1000)
const CAPACITY = !process.argv.includes('--no-capacity')

const progress = (m: string) => process.stderr.write(`bench:push: ${m}\n`)

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
}

let lastWatchError = ''

/** A raw watch held open: resolves with the status when answered (or the socket closes). */
function rawWatch(agent: Agent, url: string, service: string, timeoutMs: number): { done: Promise<number>; abort: () => void } {
  const u = new URL(`${url}/v1/ns/watch`)
  const body = JSON.stringify({ items: [{ service, checksum: 'd41d8cd98f00b204e9800998ecf8427e' }], timeoutMs })
  let req: ReturnType<typeof httpRequest> | undefined
  const done = new Promise<number>((resolve) => {
    req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', (err: NodeJS.ErrnoException) => {
      lastWatchError = err.code ?? err.message
      resolve(-1)
    })
    req.end(body)
  })
  return { done, abort: () => req?.destroy() }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'grace-push-bench-'))
  const ids = ['n1', 'n2', 'n3']
  const peers = await Promise.all(ids.map(() => freePort()))
  const members = ids.map((id, i) => `${id}=127.0.0.1:${peers[i]}`).join(',')
  const servers: ServerProcess[] = []
  const clients: NamingClient[] = []
  const loadBefore = load1()
  try {
    progress('starting 3 nodes')
    // Each kept as soon as it runs, so that one failing to start does not leave the others behind.
    const byId = await Promise.all(ids.map((id) => startServer(join(dir, id), ['--node-id', id, '--members', members, '--cluster-secret', SECRET]).then((s) => (servers.push(s), s))))
    const urls = byId.map((s) => s.url)
    for (let i = 0; i < 100; i++) {
      const roles = await Promise.all(urls.map(async (u) => (await request(`${u}/v1/cluster/status`, 'GET')).body.role))
      if (roles.includes('leader')) break
      await new Promise((r) => setTimeout(r, 100))
    }
    // Let Distro see every member before writing.
    await new Promise((r) => setTimeout(r, 1500))

    const idleAgent = new Agent({ keepAlive: true, maxSockets: Infinity })
    const idle: { abort: () => void }[] = []
    for (const url of urls) for (let i = 0; i < IDLE; i++) idle.push(rawWatch(idleAgent, url, `idle-${i}`, 120_000))
    progress(`${IDLE} idle watches per node`)

    const service = 'bench-push'
    const sentAt = new Map<number, number>()
    const latencies: { node: number; ms: number }[] = []
    for (let node = 0; node < 3; node++) {
      for (let s = 0; s < SUBSCRIBERS; s++) {
        const c = new NamingClient({ servers: [urls[node]!], logger: silentSdkLogger, cacheDir: false, deregisterOnExit: false, memberRefreshMs: 0, refreshIntervalMs: 600_000 })
        clients.push(c)
        const seen = new Set<number>()
        await c.subscribe(service, (e) => {
          const now = performance.now()
          for (const i of e.instances) {
            if (seen.has(i.port)) continue
            seen.add(i.port)
            const at = sentAt.get(i.port)
            if (at !== undefined) latencies.push({ node, ms: now - at })
          }
        })
      }
    }
    progress(`${SUBSCRIBERS} SDK subscribers per node; writing ${CHANGES} changes every ${INTERVAL} ms`)

    const writer = new Agent({ keepAlive: true })
    const post = (url: string, body: object) =>
      new Promise<number>((resolve, reject) => {
        const u = new URL(`${url}/v1/ns/instances`)
        const text = JSON.stringify(body)
        const req = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: writer, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
          res.resume()
          res.on('end', () => resolve(res.statusCode ?? 0))
        })
        req.on('error', reject)
        req.end(text)
      })
    let failedWrites = 0
    for (let i = 0; i < CHANGES; i++) {
      const port = 10_000 + i
      sentAt.set(port, performance.now())
      const status = await post(urls[i % 3]!, { service, ip: '10.9.0.1', port, clientId: `bench-writer-${i % 7}` })
      if (status !== 200) failedWrites++
      await new Promise((r) => setTimeout(r, INTERVAL))
    }
    const expected = CHANGES * 3 * SUBSCRIBERS
    const deadline = Date.now() + 5000
    while (latencies.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    const missed = expected - latencies.length
    for (const w of idle) w.abort()

    const all = latencies.map((l) => l.ms).sort((a, b) => a - b)
    const perNode = [0, 1, 2].map((n) => {
      const xs = latencies.filter((l) => l.node === n).map((l) => l.ms).sort((a, b) => a - b)
      return { node: ids[n]!, p50: pct(xs, 50), p99: pct(xs, 99), max: xs[xs.length - 1]! }
    })
    const summary = { count: all.length, missed, failedWrites, p50: pct(all, 50), p90: pct(all, 90), p99: pct(all, 99), max: all[all.length - 1]! }
    progress(`latency ms: p50 ${summary.p50.toFixed(1)} p90 ${summary.p90.toFixed(1)} p99 ${summary.p99.toFixed(1)} max ${summary.max.toFixed(1)} (${summary.count} deliveries, ${missed} missed)`)

    let capacity: { held: number; status: number; ms: number; early: string } | undefined
    if (CAPACITY) {
      progress('capacity: 10,000 watches on n1')
      const agent = new Agent({ keepAlive: true, maxSockets: Infinity })
      const started = performance.now()
      let answered = 0
      const statuses = new Map<number, number>()
      const held: { abort: () => void }[] = []
      // In batches, so the listen backlog does not overflow (a refused connect is not a watch).
      const open = (i: number): void => {
        const w = rawWatch(agent, urls[0]!, `cap-${i % 500}`, 60_000)
        held.push(w)
        void w.done.then((st) => {
          answered++
          statuses.set(st, (statuses.get(st) ?? 0) + 1)
          // A connection that failed (not an answer) is opened again, a few times at most.
          if (st === -1 && retries++ < 1000) open(i)
        })
      }
      let retries = 0
      for (let i = 0; i < 10_000; i++) {
        open(i)
        if (i % 200 === 199) await new Promise((r) => setTimeout(r, 20))
      }
      // Once the node has taken them all in, one more is refused. Until then it is held for
      // 1 ms and answered 200: ask again.
      let status = 0
      const until = Date.now() + 30_000
      while (Date.now() < until) {
        status = await rawWatch(new Agent(), urls[0]!, 'cap-extra', 1).done
        if (status === 429) break
        await new Promise((r) => setTimeout(r, 200))
      }
      capacity = { held: held.length - answered, status, ms: performance.now() - started, early: [...statuses].filter(([st]) => st !== -1).map(([st, n]) => `${n} × ${st} (retried connections that found the table full)`).join(', ') }
      progress(`${capacity.held} watches held; the next one answered ${status} after ${Math.round(capacity.ms)} ms; answered early: ${JSON.stringify([...statuses])} (last error ${lastWatchError || 'none'})`)
      for (const w of held) w.abort()
      agent.destroy()
    }

    const machine = describeMachine()
    const target = summary.p99 <= 100 && missed === 0
    const lines = [
      '## Push latency (bench:push)',
      '',
      `Last run ${new Date().toISOString()} with \`npm run bench:push\` (${CHANGES} changes, one every ${INTERVAL} ms, ${SUBSCRIBERS} SDK subscribers per node, ${IDLE} idle watches per node).`,
      `Machine: ${machine.cores} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.os}, Node ${machine.node}; 1-minute load ${loadBefore} before, ${load1()} after. Nodes, writer and subscribers share the machine.`,
      '',
      'A 3-node cluster on 127.0.0.1; each change is one ephemeral registration sent to the next node in turn; each subscriber follows the service through one node (its SDK client holds one watch there). Latency: from just before the registration is sent until the subscriber\'s listener sees the instance.',
      '',
      '| deliveries | missed | p50 ms | p90 ms | p99 ms | max ms | target p99 ≤ 100 ms |',
      '|--:|--:|--:|--:|--:|--:|---|',
      `| ${summary.count} | ${missed} | ${summary.p50.toFixed(1)} | ${summary.p90.toFixed(1)} | ${summary.p99.toFixed(1)} | ${summary.max.toFixed(1)} | ${target ? 'met' : 'NOT met'} |`,
      '',
      '| subscribers via | p50 ms | p99 ms | max ms |',
      '|---|--:|--:|--:|',
      ...perNode.map((p) => `| ${p.node} | ${p.p50.toFixed(1)} | ${p.p99.toFixed(1)} | ${p.max.toFixed(1)} |`),
      '',
      capacity
        ? `Capacity: 10,000 watches opened on n1 at once (in batches of 200; a connection the listen backlog reset is opened again); ${capacity.held.toLocaleString('en')} were still held when a further watch was answered ${capacity.status}${capacity.status === 429 ? ' (TOO_MANY_WATCHERS)' : ''}${capacity.early ? `; answered early: ${capacity.early}` : ''}.`
        : 'Capacity check skipped (--no-capacity).',
    ]
    const section = lines.join('\n')
    const defaults = CHANGES === 300 && INTERVAL === 30 && SUBSCRIBERS === 2 && IDLE === 1000 && CAPACITY
    if (defaults) {
      writeDocsSection(join(ROOT, 'docs/benchmarks.md'), section, 'push')
      progress('wrote docs/benchmarks.md')
    }
    console.log(section)
    if (!target || failedWrites > 0) process.exitCode = 1
  } finally {
    await Promise.allSettled(clients.map((c) => c.close({ deregister: false })))
    for (const s of servers) s.child.kill('SIGKILL')
    await Promise.all(servers.map((s) => s.exited))
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
