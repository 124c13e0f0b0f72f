// The SDK examples (examples/provider.mjs, examples/consumer.mjs) against a real 3-node cluster:
// the provider registers through one node, the consumer follows the service through another,
// finds the provider and calls it; the provider shuts down gracefully (SIGTERM: deregister, drain,
// exit) and the consumer stops calling it within a second, with no failed call.

import { type ChildProcess, spawn } from 'node:child_process'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import t from 'tap'
import { cluster } from '../helpers/cluster.js'

const EXAMPLES = join(import.meta.dirname, '..', '..', '..', 'examples')

interface Proc {
  child: ChildProcess
  lines: Record<string, any>[]
  exited: Promise<number | string>
}

function run(script: string, env: Record<string, string>): Proc {
  const child = spawn(process.execPath, [join(EXAMPLES, script)], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  const lines: Record<string, any>[] = []
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      lines.push(JSON.parse(line))
    } catch {
      // not ours
    }
  })
  child.stderr!.on('data', () => {})
  const exited = new Promise<number | string>((resolve) => child.on('close', (code, signal) => resolve(code ?? signal ?? -1)))
  return { child, lines, exited }
}

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = probe()
    if (v !== undefined) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

t.test('provider and consumer on a 3-node cluster: found, called, and dropped within a second of a graceful stop', async (t) => {
  const c = await cluster(t)
  await c.leader()
  const url = (id: string) => c.servers.get(id)!.url
  const provider = run('provider.mjs', { GRACE_SERVERS: url('n1'), SERVICE: 'example-hello' })
  const consumer = run('consumer.mjs', { GRACE_SERVERS: url('n3'), SERVICE: 'example-hello', INTERVAL_MS: '25' })
  t.teardown(async () => {
    for (const p of [provider, consumer]) p.child.kill('SIGKILL')
    await Promise.all([provider.exited, consumer.exited])
  })
  const registered = await until('the provider to register', () => provider.lines.find((l) => l.event === 'registered'))
  await until('the consumer to call the provider', () => consumer.lines.find((l) => l.event === 'call' && l.ok && l.port === registered.port))
  // A few more calls, then the graceful stop.
  await new Promise((r) => setTimeout(r, 300))
  const stopAt = Date.now()
  provider.child.kill('SIGTERM')
  t.equal(await provider.exited, 0, 'the provider exits cleanly')
  const deregistered = provider.lines.find((l) => l.event === 'deregistered')
  t.ok(deregistered, 'the provider deregistered before exiting')
  // Let the consumer run on past the one-second mark.
  await new Promise((r) => setTimeout(r, Math.max(0, stopAt + 1500 - Date.now())))
  consumer.child.kill('SIGTERM')
  await consumer.exited

  const calls = consumer.lines.filter((l) => l.event === 'call' && l.port === registered.port)
  const okCalls = calls.filter((l) => l.ok)
  t.ok(okCalls.length >= 5, `the consumer called the provider (${okCalls.length} calls)`)
  t.same(calls.filter((l) => !l.ok), [], 'no call failed: the provider left the registry before it stopped serving')
  const last = calls[calls.length - 1]!
  t.ok(last.t < stopAt + 1000, `the last call came ${last.t - stopAt} ms after SIGTERM (limit 1000)`)
  const dropped = consumer.lines.find((l) => l.event === 'instances' && l.count === 0 && l.t >= stopAt)
  t.ok(dropped, 'the consumer heard of the deregistration by push')
  if (dropped && deregistered) t.comment(`push: the consumer (via n3) heard ${dropped.t - deregistered.t} ms after the deregistration (via n1)`)
})
