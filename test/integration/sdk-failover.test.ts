// The SDK on a real 3-node cluster, configured with one node only: it learns the others from
// GET /v1/cluster/members, and when that node dies its watch and its heartbeats move to another,
// so subscriptions keep hearing changes and its instance stays registered.

import t from 'tap'
import { NamingClient, type ServiceChangeEvent, silentSdkLogger } from '../../src/sdk/index.js'
import { cluster } from '../helpers/cluster.js'
import { request } from '../helpers/process.js'

async function until(what: string, probe: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('one seed server: members are learned, and the watch and heartbeats fail over when it dies', async (t) => {
  const c = await cluster(t)
  await c.leader()
  const url = (id: string) => c.servers.get(id)!.url
  const client = new NamingClient({ servers: [url('n1')], logger: silentSdkLogger, cacheDir: false, memberRefreshMs: 200, deregisterOnExit: false, requestTimeoutMs: 1000 })
  t.teardown(() => client.close({ deregister: false }))
  const failovers: unknown[] = []
  client.events.on('failover', (e) => failovers.push(e))
  await until('the other members to be learned', () => client.session.transport.knownServers().length === 3)
  t.same([...client.session.transport.knownServers()].sort(), [url('n1'), url('n2'), url('n3')].sort())

  await client.registerInstance('survivor', { ip: '10.7.0.1', port: 1, metadata: { 'preserved.heart.beat.interval': '500' } })
  const seen: ServiceChangeEvent[] = []
  await client.subscribe('watched', (e) => seen.push(e))
  const n1 = url('n1')
  await c.kill('n1')
  // A change through another node reaches the subscriber once its watch has moved.
  await request(`${url('n2')}/v1/ns/instances`, 'POST', { service: 'watched', ip: '10.7.0.2', port: 2 })
  await until('the change after the failover', () => seen.some((e) => e.instances.length === 1), 20_000)
  t.ok(failovers.length >= 1, 'the client moved to another server')
  t.not(client.session.transport.currentServer(), n1)
  // Heartbeats go to whichever server answers now. (Proving they keep the lease past the 15 s
  // timeout would take too long here; the nodes that remain must at least list the instance.)
  await new Promise((r) => setTimeout(r, 2000))
  for (const id of ['n2', 'n3']) {
    const list = await request(`${url(id)}/v1/ns/instances?service=survivor&healthyOnly=true`, 'GET')
    t.equal(list.body.instances.length, 1, `${id} lists the client's instance as healthy`)
  }
})
