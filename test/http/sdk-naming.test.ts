// The naming client against a real node listening on loopback (fastify on a free port, a ManualClock
// for the server's leases): registration, heartbeats and re-registration, lookups, balancers,
// push, failover and the disk cache.

import { spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { NamingClient, type ServiceChangeEvent, silentSdkLogger, GraceClientError } from '../../src/sdk/index.js'
import { freePort } from '../helpers/cluster.js'
import { type TestNode, startTestNode } from '../helpers/node.js'

async function serve(t: Test): Promise<{ n: TestNode; url: string }> {
  const n = await startTestNode()
  const url = await n.node.app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => n.close())
  return { n, url }
}

/** The finished files of a disk cache (not the temporary ones being written). */
function cacheFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile() && !e.name.endsWith('.tmp')).map((e) => e.name)
}

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sdk-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function eventually(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function client(t: Test, opts: ConstructorParameters<typeof NamingClient>[0] & object): NamingClient {
  const c = new NamingClient({ logger: silentSdkLogger, deregisterOnExit: false, memberRefreshMs: 0, ...opts })
  t.teardown(() => c.close({ deregister: false }))
  return c
}

t.test('register (ephemeral and persistent), look up, pick, deregister', async (t) => {
  const { url } = await serve(t)
  const c = client(t, { servers: [url], cacheDir: tmp(t), cluster: 'east', metadata: { app: 'demo' } })
  await c.registerInstance('orders', { ip: '10.0.0.1', port: 8080, weight: 3 })
  await c.registerInstance('orders', { ip: '10.0.0.2', port: 8080, cluster: 'west' })
  await c.registerInstance('billing-db', { ip: '10.0.0.9', port: 5432, ephemeral: false })

  const all = await c.getAllInstances('orders')
  t.same(all.map((i) => `${i.cluster}/${i.ip}`), ['east/10.0.0.1', 'west/10.0.0.2'])
  t.match(all[0], { weight: 3, ephemeral: true, metadata: { app: 'demo' }, clientId: c.clientId })
  t.equal((await c.selectInstances('orders', { clusters: ['west'] })).length, 1)
  const db = await c.getAllInstances('billing-db')
  t.match(db, [{ ephemeral: false, ip: '10.0.0.9' }])

  const one = await c.selectOneHealthyInstance('orders', { balancer: 'clusterAffinity' })
  t.equal(one.cluster, 'east', 'cluster affinity prefers the client\'s cluster')
  const picks = new Set<string>()
  for (let i = 0; i < 20; i++) picks.add((await c.selectOneHealthyInstance('orders', { balancer: 'roundRobin' })).ip)
  t.same([...picks].sort(), ['10.0.0.1', '10.0.0.2'])

  t.equal(await c.deregisterInstance('orders', { ip: '10.0.0.2', port: 8080, cluster: 'west' }), true)
  await eventually('the cache to follow the deregistration', async () => (await c.getAllInstances('orders')).length === 1)
  await t.rejects(c.selectOneHealthyInstance('nobody'), { code: 'NO_INSTANCE' })
  t.ok(GraceClientError)
  await t.rejects(c.registerInstance('orders', { ip: 'not-an-ip', port: 1 }), { code: 'INVALID_IP', status: 400 })
  // A refused service is not followed, so the watch of the others goes on.
  await t.rejects(c.getAllInstances('bad@@name'), { code: 'INVALID_NAME' })
  await c.registerInstance('orders', { ip: '10.0.0.3', port: 8080 })
  await eventually('the watch to go on after a refused service', async () => (await c.getAllInstances('orders')).length === 2)
})

t.test('subscribe: the listener hears the current list, then every change, by push', async (t) => {
  const { n, url } = await serve(t)
  const c = client(t, { servers: [url], cacheDir: false, refreshIntervalMs: 600_000 })
  const events: ServiceChangeEvent[] = []
  await c.subscribe('web', (e) => events.push(e))
  t.equal(events.length, 1)
  t.same(events[0]!.instances, [])
  const started = Date.now()
  await n.call('POST', '/v1/ns/instances', { service: 'web', ip: '10.1.1.1', port: 80 })
  await eventually('the push', () => events.length === 2)
  t.ok(Date.now() - started < 1000, `pushed in ${Date.now() - started} ms, with the periodic refresh at 10 minutes`)
  t.equal(events[1]!.instances[0]!.ip, '10.1.1.1')
  // A second service joins the same watch.
  const other: ServiceChangeEvent[] = []
  const listener = (e: ServiceChangeEvent) => other.push(e)
  await c.subscribe('api', listener)
  await n.call('POST', '/v1/ns/instances', { service: 'api', ip: '10.1.1.2', port: 80 })
  await eventually('the push of the second service', () => other.length === 2)
  // An answered watch is sent again right after its answer is read: until it arrives, none is held.
  await eventually('the watch to be held again', () => n.node.push.size > 0)
  t.equal(n.node.push.size, 1, 'one watch carries both services')
  t.equal(n.node.push.watchedServices, 2, 'and it follows both')
  c.unsubscribe('api', listener)
  await n.call('POST', '/v1/ns/instances', { service: 'api', ip: '10.1.1.3', port: 80 })
  await new Promise((r) => setTimeout(r, 100))
  t.equal(other.length, 2, 'no calls after unsubscribe')
})

t.test('heartbeats keep the lease; a beat answered "not registered" registers everything again', async (t) => {
  const { n, url } = await serve(t)
  const c = client(t, { servers: [url], cacheDir: false })
  const again: unknown[] = []
  c.events.on('reregistered', (e) => again.push(e))
  // The server asks for a beat every 100 ms for this instance.
  await c.registerInstance('beaty', { ip: '10.2.0.1', port: 1, metadata: { 'preserved.heart.beat.interval': '100' } })
  await c.registerInstance('beaty', { ip: '10.2.0.2', port: 1 })
  // The server loses the client (as after a restart): both instances go.
  await n.call('DELETE', '/v1/ns/instances?service=beaty&ip=10.2.0.1&port=1')
  await n.call('DELETE', '/v1/ns/instances?service=beaty&ip=10.2.0.2&port=1')
  await eventually('the re-registration', () => again.length > 0, 8000)
  const list = (await n.call('GET', '/v1/ns/instances?service=beaty')).json()
  t.same(list.instances.map((i: { ip: string }) => i.ip), ['10.2.0.1', '10.2.0.2'])
  t.ok(list.instances.every((i: { clientId: string }) => i.clientId === c.clientId), 'one lease for the process')
})

t.test('failover: a dead server is passed over; the disk cache answers when none answers', async (t) => {
  const { n, url } = await serve(t)
  const dead = `127.0.0.1:${await freePort()}`
  const cacheDir = tmp(t)
  const c = client(t, { servers: [dead, url], cacheDir, maxAttempts: 2 })
  const failovers: unknown[] = []
  c.events.on('failover', (e) => failovers.push(e))
  await n.call('POST', '/v1/ns/instances', { service: 'cached', ip: '10.3.0.1', port: 1 })
  for (let i = 0; i < 3; i++) t.equal((await c.getAllInstances('cached', { subscribe: false })).length, 1)
  t.ok(failovers.length <= 1, 'moved once, then stays on the server that answers')
  await c.getAllInstances('cached')
  // The cache is written in the background (a temporary file, then renamed into place).
  await eventually('the disk cache to be written', () => cacheFiles(cacheDir).length > 0, 5000)

  // A new client (a restarted application) while no server answers.
  const dead2 = `127.0.0.1:${await freePort()}`
  const offline = client(t, { servers: [dead, dead2], cacheDir, requestTimeoutMs: 500 })
  const cacheEvents: unknown[] = []
  const unreachable: unknown[] = []
  offline.events.on('cache', (e) => cacheEvents.push(e))
  offline.events.on('unreachable', (e) => unreachable.push(e))
  const list = await offline.getAllInstances('cached')
  t.same(list.map((i) => i.ip), ['10.3.0.1'], 'served from the disk cache')
  t.equal(cacheEvents.length, 1)
  t.equal(unreachable.length, 1)
  await t.rejects(offline.getAllInstances('never-seen'), { code: 'NO_SERVER' })
})

t.test('close deregisters what the client registered', async (t) => {
  const { n, url } = await serve(t)
  const c = new NamingClient({ servers: [url], logger: silentSdkLogger, cacheDir: false, memberRefreshMs: 0 })
  await c.registerInstance('bye', { ip: '10.4.0.1', port: 1 })
  await c.registerInstance('bye-db', { ip: '10.4.0.2', port: 1, ephemeral: false })
  t.equal(process.listenerCount('SIGTERM') > 0, true, 'deregisterOnExit installs a SIGTERM handler')
  await c.close()
  t.same((await n.call('GET', '/v1/ns/instances?service=bye')).json().instances, [])
  t.same((await n.call('GET', '/v1/ns/instances?service=bye-db')).json().instances, [])
  await t.rejects(c.getAllInstances('bye'), { code: 'CLOSED' })
})

t.test('SIGTERM: the SDK deregisters everything, then the process exits as the signal would have it', async (t) => {
  const { n, url } = await serve(t)
  const dir = tmp(t)
  const script = join(dir, 'app.mjs')
  const sdk = join(import.meta.dirname, '..', '..', 'src', 'sdk', 'index.js')
  writeFileSync(
    script,
    `import { NamingClient } from ${JSON.stringify(sdk)}\n` +
      `const c = new NamingClient({ servers: [${JSON.stringify(url)}], cacheDir: false, memberRefreshMs: 0 })\n` +
      `await c.registerInstance('sig', { ip: '10.5.0.1', port: 1 })\n` +
      `await c.registerInstance('sig', { ip: '10.5.0.2', port: 1 })\n` +
      `console.log('registered')\n` +
      `setInterval(() => {}, 1000)\n`,
  )
  // Without tap's process-info hook, which tap adds to every node it sees spawned (through
  // NODE_OPTIONS): the hook listens to SIGTERM in the child, and a process where something else
  // listens to the signal is left to exit by itself (docs/sdk.md). `exec` keeps the pid.
  const child = spawn('/bin/sh', ['-c', 'exec env -u NODE_OPTIONS "$0" "$1"', process.execPath, script], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => void child.kill('SIGKILL'))
  const exited = new Promise<string | number>((r) => child.on('close', (code, signal) => r(signal ?? code ?? -1)))
  await new Promise<void>((resolve) => child.stdout!.on('data', (d) => String(d).includes('registered') && resolve()))
  t.equal((await n.call('GET', '/v1/ns/instances?service=sig')).json().instances.length, 2)
  child.kill('SIGTERM')
  t.equal(await exited, 'SIGTERM', 'the process ends by the signal, as without the SDK')
  t.same((await n.call('GET', '/v1/ns/instances?service=sig')).json().instances, [], 'deregistered before it exited')
})
