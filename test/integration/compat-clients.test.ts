// The real clients against a real 3-node cluster: nacos-sdk-nodejs (npm `nacos`: naming and
// config) and eureka-js-client. Register, discover, subscribe and see a change, heartbeats,
// a config listener, deregister; and failover when the node each client uses first is killed.

import { mkdtempSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { cluster } from '../helpers/cluster.js'
import { request } from '../helpers/process.js'

const require = createRequire(import.meta.url)
// CommonJS packages without (complete) types: used through their documented APIs only.
// DataClient is the config client that NacosConfigClient wraps in cluster-client (which shares
// one client among the processes of a machine through a leader on a local port): the same HTTP
// calls, without the leader election a test does not want.
const { NacosNamingClient, DataClient } = require('nacos') as { NacosNamingClient: any; DataClient: any }
const { Eureka } = require('eureka-js-client') as { Eureka: any }

const noop = (): void => {}
const silent = { info: noop, warn: noop, error: noop, debug: noop, log: noop }

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await probe()
    if (v !== undefined && v !== false) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

t.test('nacos and eureka clients on a 3-node cluster, through a node failure', { timeout: 120_000 }, async (t) => {
  const clients: Array<() => unknown> = []
  const cacheDir = mkdtempSync(join(tmpdir(), 'grace-nacos-cache-'))
  t.teardown(async () => {
    for (const close of clients) await close()
    rmSync(cacheDir, { recursive: true, force: true })
  })
  const c = await cluster(t)
  await c.leader()
  // n1 first everywhere: the config and Eureka clients use the first address until it fails.
  const addresses = c.ids.map((id) => c.servers.get(id)!.url.replace('http://', ''))
  const urls = c.ids.map((id) => c.servers.get(id)!.url)

  // --- Nacos naming: one client registers, another subscribes.
  const registrar = new NacosNamingClient({ logger: silent, serverList: addresses.join(','), namespace: 'public' })
  const watcher = new NacosNamingClient({ logger: silent, serverList: addresses.join(','), namespace: 'public' })
  clients.push(() => registrar.close(), () => watcher.close())
  // Clients report failed calls (to the killed node) as 'error' events.
  for (const client of [registrar, watcher]) client.on('error', noop)
  await Promise.all([registrar.ready(), watcher.ready()])
  const seen: Array<Array<{ ip: string; port: number; healthy: boolean }>> = []
  watcher.subscribe('orders', (hosts: Array<{ ip: string; port: number; healthy: boolean }>) => seen.push(hosts))
  // Beats every second (the server tells the client so after its first beat, which this client
  // sends up to 10 s after it starts); unhealthy after 12 s without one.
  const lease = { 'preserved.heart.beat.interval': '1000', 'preserved.heart.beat.timeout': '12000', 'preserved.ip.delete.timeout': '15000' }
  await registrar.registerInstance('orders', { ip: '10.1.0.1', port: 8080, metadata: { v: '1', ...lease } })
  await until('the subscriber to see the instance', () => seen.some((hosts) => hosts.some((h) => h.ip === '10.1.0.1')))
  // AP: the node a query lands on may not have the registration for a few milliseconds.
  const all = await until('getAllInstances to find it', async () => {
    const hosts = await registrar.getAllInstances('orders')
    return hosts.length > 0 ? hosts : undefined
  })
  t.match(all, [{ ip: '10.1.0.1', port: 8080, healthy: true, metadata: { v: '1' } }], 'discovered')
  for (const url of urls) {
    const l = await until(`${url} to list the instance`, async () => {
      const r = await request(`${url}/nacos/v1/ns/instance/list?serviceName=orders`, 'GET')
      return r.body.hosts.length === 1 ? r.body : undefined
    })
    t.equal(l.name, 'DEFAULT_GROUP@@orders')
  }

  // --- Nacos config: a listener hears a publish.
  const config = new DataClient({ serverAddr: addresses.join(','), namespace: '', cacheDir, requestTimeout: 6000, logger: silent })
  clients.push(() => {
    // close() drops the worker's listeners while a long poll may still be out; when that poll
    // fails (the cluster is killed next), the worker's 'error' would crash the process.
    const worker = config.getClient()
    config.close()
    worker.on('error', noop)
  })
  config.on('error', noop)
  await config.ready()
  const contents: string[] = []
  config.subscribe({ dataId: 'app.yaml', group: 'DEFAULT_GROUP' }, (content: string) => contents.push(content))
  await sleep(500)
  t.equal(await config.publishSingle('app.yaml', 'DEFAULT_GROUP', 'v: 1'), true)
  await until('the config listener to hear v: 1', () => contents.includes('v: 1'))
  t.equal(await config.getConfig('app.yaml', 'DEFAULT_GROUP'), 'v: 1')

  // --- Eureka: one client registers and heartbeats, another fetches (with deltas).
  let heartbeats = 0
  const eurekaConfig = (register: boolean) => ({
    logger: silent,
    instance: {
      app: 'PAYMENTS',
      instanceId: 'pay-1',
      hostName: 'pay-1.local',
      ipAddr: '10.2.0.1',
      statusPageUrl: 'http://10.2.0.1:9090/info',
      port: { $: 9090, '@enabled': true },
      vipAddress: 'payments',
      dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
      leaseInfo: { renewalIntervalInSecs: 1, durationInSecs: 10 },
    },
    eureka: {
      serviceUrls: { default: urls.map((u) => `${u}/eureka/apps/`) },
      heartbeatInterval: 1000,
      registryFetchInterval: 1000,
      maxRetries: 6,
      requestRetryDelay: 100,
      registerWithEureka: register,
      fetchRegistry: true,
      shouldUseDelta: !register,
    },
  })
  const eureka = new Eureka(eurekaConfig(true))
  eureka.on('heartbeat', () => heartbeats++)
  const eurekaReader = new Eureka(eurekaConfig(false))
  for (const client of [eureka, eurekaReader]) client.on('error', noop)
  await new Promise<void>((resolve, reject) => eureka.start((err: Error | null) => (err ? reject(err) : resolve())))
  clients.push(() => new Promise((r) => eureka.stop(r)))
  await new Promise<void>((resolve, reject) => eurekaReader.start((err: Error | null) => (err ? reject(err) : resolve())))
  clients.push(() => new Promise((r) => eurekaReader.stop(r)))
  const found = await until('the Eureka reader to see PAYMENTS', () => {
    const list = eurekaReader.getInstancesByAppId('PAYMENTS')
    return list.length > 0 ? list : undefined
  })
  t.match(found, [{ instanceId: 'pay-1', ipAddr: '10.2.0.1', status: 'UP', vipAddress: 'payments', port: { $: 9090 } }], 'Eureka discovery')
  t.equal(eurekaReader.getInstancesByVipAddress('payments').length, 1)
  await until('Eureka heartbeats', () => heartbeats >= 2)
  // Services registered through Nacos are Eureka applications too.
  await until('ORDERS in the Eureka registry', () => eurekaReader.getInstancesByAppId('ORDERS').length === 1 || undefined)

  // --- Kill n1: the node the config and Eureka clients use, and a third of the naming calls.
  await c.kill('n1')
  const killedAt = Date.now()
  const liveUrls = urls.slice(1)
  const beatsAtKill = heartbeats

  // A config change published on a surviving node reaches the listener (its long poll on n1
  // failed; it moves to the next node).
  await until('a publish on n2 (after a new leader if n1 led)', async () => {
    const r = await fetch(`${liveUrls[0]}/v1/cs/configs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ dataId: 'app.yaml', content: 'v: 2' }) })
    return r.status === 200 || undefined
  })
  await until('the config listener to hear v: 2 after failover', () => contents.includes('v: 2'), 30_000)

  // A new registration and the subscriber both work without n1.
  await registrar.registerInstance('orders', { ip: '10.1.0.2', port: 8080, metadata: lease })
  await until('the subscriber to see the second instance', () => seen.some((hosts) => hosts.length === 2), 20_000)

  // Heartbeats keep both leases alive past their timeouts (a lease the dead node held is taken
  // over with one full timeout of grace, so only beats explain the instances living longer).
  await sleep(Math.max(0, killedAt + 14_000 - Date.now()))
  t.ok(heartbeats > beatsAtKill + 3, `Eureka heartbeats continued on the other nodes (${heartbeats - beatsAtKill} since the kill)`)
  for (const url of liveUrls) {
    const l = await request(`${url}/nacos/v1/ns/instance/list?serviceName=orders`, 'GET')
    t.same(
      l.body.hosts.map((h: { ip: string; healthy: boolean }) => [h.ip, h.healthy]),
      [
        ['10.1.0.1', true],
        ['10.1.0.2', true],
      ],
      `${url}: both Nacos instances alive and healthy`,
    )
    const e = await request(`${url}/eureka/apps/PAYMENTS`, 'GET')
    t.equal(e.body.application.instance[0].status, 'UP', `${url}: the Eureka instance alive`)
  }

  // --- Deregister.
  await registrar.deregisterInstance('orders', { ip: '10.1.0.1', port: 8080 })
  await until('the subscriber to see one instance left', () => {
    const last = seen[seen.length - 1]!
    return (last.length === 1 && last[0]!.ip === '10.1.0.2') || undefined
  }, 20_000)
  // The Node.js client ignores an empty host list (its push-empty protection), so the last
  // deregistration is checked on the servers.
  await registrar.deregisterInstance('orders', { ip: '10.1.0.2', port: 8080 })
  for (const url of liveUrls) {
    await until(`${url} to list no instances`, async () => (await request(`${url}/nacos/v1/ns/instance/list?serviceName=orders`, 'GET')).body.hosts.length === 0 || undefined)
  }
  await new Promise<void>((resolve, reject) => eureka.stop((err: Error | null) => (err ? reject(err) : resolve())))
  await until('the Eureka reader to see PAYMENTS gone', () => eurekaReader.getInstancesByAppId('PAYMENTS').length === 0 || undefined, 20_000)
  t.equal(await config.remove('app.yaml', 'DEFAULT_GROUP'), true)
  for (const url of liveUrls) {
    t.equal((await fetch(`${url}/eureka/apps/PAYMENTS`)).status, 404, `${url}: PAYMENTS deregistered`)
  }
})

t.test('endpoint mode: the Nacos naming client gets its server list from /nacos/serverlist', { timeout: 60_000 }, async (t) => {
  const c = await cluster(t)
  await c.leader()
  const endpoint = c.servers.get('n2')!.url.replace('http://', '')
  // The list is the client addresses of the members that are UP: all three, once heartbeats ran.
  const expected = c.ids.map((id) => c.servers.get(id)!.url.replace('http://', '')).sort()
  await until('the server list to name every node', async () => {
    const text = await (await fetch(`http://${endpoint}/nacos/serverlist`)).text()
    return JSON.stringify(text.split('\r\n').sort()) === JSON.stringify(expected) || undefined
  })
  // vipSrvRefInterMillis: its refresh loop checks for close() this often (default 30 s).
  const client = new NacosNamingClient({ logger: silent, endpoint, namespace: 'public', vipSrvRefInterMillis: 500 })
  client.on('error', noop)
  t.teardown(async () => {
    await client.close()
    // The naming client's close() leaves its endpoint refresh loop (a 30 s sleep) running.
    await client._serverProxy.close()
  })
  await client.ready()
  await client.registerInstance('via-endpoint', { ip: '10.3.0.1', port: 1 })
  // Each call goes to a node of the list at random: the read may reach a node the registration
  // has not synced to yet (ephemeral data is AP), so it is retried until it shows.
  const hosts = await until('getAllInstances to find it', async () => {
    const found = await client.getAllInstances('via-endpoint')
    return found.length > 0 ? found : undefined
  })
  t.match(hosts, [{ ip: '10.3.0.1', port: 1 }])
  await client.deregisterInstance('via-endpoint', { ip: '10.3.0.1', port: 1 })
})
