// Health through HTTP on a node with a ManualClock and the real probes: cluster health checks,
// TCP and HTTP targets that go down and come back (the verdicts go through the log and survive a
// restart), manual health, the PUT alias of PATCH, empty services, and what /v1/cluster/status
// shows.

import { type Server as HttpServer, createServer as createHttpServer } from 'node:http'
import t, { type Test } from 'tap'
import { grace } from '../../src/gen/proto.js'
import { type TestNode, startTestNode } from '../helpers/node.js'
import { tcpTarget } from '../helpers/tcp-target.js'

const PB = 'application/x-protobuf'

async function withNode(t: Test, fn: (n: TestNode) => Promise<void>): Promise<void> {
  const n = await startTestNode()
  t.teardown(() => n.close())
  await fn(n)
}

/** Moves the node's clock in probe ticks, letting each tick's probes and verdicts finish. */
async function probeFor(n: TestNode, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 200) {
    n.clock.advance(200)
    await n.node.prober.settled()
  }
}

async function healthOf(n: TestNode, service: string, port: number): Promise<boolean | undefined> {
  const res = await n.call('GET', `/v1/ns/instances?service=${service}`)
  return (res.json().instances as { port: number; healthy: boolean }[]).find((i) => i.port === port)?.healthy
}

async function persistentService(n: TestNode, service: string, healthCheck: object): Promise<void> {
  const created = await n.call('POST', '/v1/ns/services', { service, ephemeral: false })
  if (created.statusCode !== 200) throw new Error(created.body)
  const res = await n.call('PUT', '/v1/ns/clusters', { service, healthCheck })
  if (res.statusCode !== 200) throw new Error(res.body)
}

t.test('a TCP target that goes down is marked unhealthy after 3 failed probes, through the log, and healthy when it is back', (t) =>
  withNode(t, async (n) => {
    const target = await tcpTarget(t)
    await persistentService(n, 'db', { type: 'tcp', intervalMs: 1000, timeoutMs: 500 })
    await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '127.0.0.1', port: target.port, ephemeral: false })
    await probeFor(n, 5000)
    t.equal(await healthOf(n, 'db', target.port), true, 'up: healthy')
    const probes = n.node.prober.status().probes
    t.ok(probes >= 4, `${probes} probes in 5 s at a 1 s interval`)

    await target.down()
    const commit = n.node.log.status().commitIndex
    await probeFor(n, 1800)
    t.equal(await healthOf(n, 'db', target.port), true, 'one or two failures are not enough')
    await probeFor(n, 3000)
    t.equal(await healthOf(n, 'db', target.port), false, 'unhealthy after three')
    t.equal(n.node.log.status().commitIndex, commit + 1, 'one log entry for the flip')
    t.same((await n.call('GET', '/v1/ns/instances?service=db&healthyOnly=true')).json().instances, [], 'no longer handed out to healthyOnly')

    await target.up()
    await probeFor(n, 5000)
    t.equal(await healthOf(n, 'db', target.port), true, 'healthy again')
    t.equal(n.node.prober.status().flips, 2)

    await target.down()
    await probeFor(n, 5000)
    t.equal(await healthOf(n, 'db', target.port), false)
    await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '127.0.0.1', port: target.port, ephemeral: false, weight: 2 })
    t.equal(await healthOf(n, 'db', target.port), false, 'registering again does not undo what the probes found')
    const restarted = await n.reopen()
    t.teardown(() => restarted.close())
    t.equal(await healthOf(restarted, 'db', target.port), false, 'the verdict is durable')
  }),
)

t.test('an HTTP target is healthy while it answers the expected status on the path', (t) =>
  withNode(t, async (n) => {
    let status = 200
    const seen: string[] = []
    const server: HttpServer = createHttpServer((req, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['user-agent']}`)
      res.statusCode = req.url === '/ready' ? status : 404
      res.end()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    t.teardown(() => new Promise((r) => server.close(r)))
    const port = (server.address() as { port: number }).port
    await persistentService(n, 'api', { type: 'http', path: '/ready', intervalMs: 1000, timeoutMs: 500 })
    await n.call('POST', '/v1/ns/instances', { service: 'api', ip: '127.0.0.1', port, ephemeral: false })
    await probeFor(n, 3000)
    t.match(seen[0], /^GET \/ready grace-health-check/)
    status = 500
    await probeFor(n, 4000)
    t.equal(await healthOf(n, 'api', port), false, '500 three times: unhealthy')
    status = 200
    await probeFor(n, 4000)
    t.equal(await healthOf(n, 'api', port), true)
    // A check on another port: the instance's own port is not what is probed.
    await n.call('PUT', '/v1/ns/clusters', { service: 'api', healthCheck: { type: 'http', path: '/ready', port: 1, intervalMs: 1000, timeoutMs: 500 } })
    await probeFor(n, 5000)
    t.equal(await healthOf(n, 'api', port), false, 'port 1 has nothing listening')
  }),
)

t.test('cluster settings: set, read, replace, remove; every bad one is a 4xx with a code', (t) =>
  withNode(t, async (n) => {
    t.equal((await n.call('PUT', '/v1/ns/clusters', { service: 'nope', healthCheck: { type: 'tcp' } })).json().code, 'SERVICE_NOT_FOUND')
    await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '10.0.0.1', port: 5432, ephemeral: false })
    const put = await n.call('PUT', '/v1/ns/clusters', { service: 'db', cluster: 'east', healthCheck: { type: 'TCP' } })
    t.equal(put.statusCode, 200, put.body)
    t.same((await n.call('GET', '/v1/ns/clusters?service=db')).json(), {
      namespace: 'public',
      group: 'DEFAULT_GROUP',
      service: 'db',
      clusters: [{ namespace: 'public', group: 'DEFAULT_GROUP', service: 'db', cluster: 'east', healthCheck: { type: 'tcp', intervalMs: 5000, timeoutMs: 2000, port: 0 } }],
    })
    await n.call('PUT', '/v1/ns/clusters', { service: 'db', healthCheck: { type: 'http', path: '/health', expectedStatus: 204 } })
    const both = (await n.call('GET', '/v1/ns/clusters?service=db')).json()
    t.same(both.clusters.map((c: { cluster: string }) => c.cluster), ['DEFAULT', 'east'])
    t.same(both.clusters[0].healthCheck, { type: 'http', intervalMs: 5000, timeoutMs: 2000, port: 0, path: '/health', expectedStatus: 204 })
    t.same((await n.call('GET', '/v1/ns/clusters?service=db&cluster=east')).json().clusters.length, 1)
    t.same((await n.call('GET', '/v1/ns/clusters?service=db&cluster=west')).json().clusters, [])
    // The service now has a record: it is kept when its instances go.
    t.match((await n.call('GET', '/v1/ns/services?service=db')).json(), { ephemeral: false, instanceCount: 1 })
    t.same((await n.call('DELETE', '/v1/ns/clusters?service=db&cluster=east')).json(), { ok: true, deleted: true })
    t.same((await n.call('DELETE', '/v1/ns/clusters?service=db&cluster=east')).json(), { ok: true, deleted: false }, 'twice is not an error')
    t.same((await n.call('GET', '/v1/ns/clusters?service=db')).json().clusters.map((c: { cluster: string }) => c.cluster), ['DEFAULT'])
    // Protobuf in and out.
    const body = Buffer.from(grace.v1.ClusterSettings.encode({ service: 'db', cluster: 'pb', healthCheck: { type: 'tcp', intervalMs: 2000 } }).finish())
    t.equal((await n.call('PUT', '/v1/ns/clusters', body, { 'content-type': PB })).statusCode, 200)
    const listed = grace.v1.ClusterList.decode((await n.call('GET', '/v1/ns/clusters?service=db&cluster=pb', undefined, { accept: PB })).rawPayload)
    t.match(listed.clusters[0], { cluster: 'pb', healthCheck: { type: 'tcp', intervalMs: 2000, timeoutMs: 2000 } })

    await n.call('POST', '/v1/ns/instances', { service: 'eph', ip: '10.0.0.1', port: 1 })
    const commit = n.node.log.status().commitIndex
    const long = '/' + 'a'.repeat(1024)
    const bad: [string, object, number, string][] = [
      ['no healthCheck', { service: 'db' }, 400, 'INVALID_HEALTH_CHECK'],
      ['healthCheck not an object', { service: 'db', healthCheck: 'tcp' }, 400, 'INVALID_HEALTH_CHECK'],
      ['unknown type', { service: 'db', healthCheck: { type: 'mysql' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['interval too short', { service: 'db', healthCheck: { type: 'tcp', intervalMs: 999 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['interval over an hour', { service: 'db', healthCheck: { type: 'tcp', intervalMs: 3_600_001 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['timeout too short', { service: 'db', healthCheck: { type: 'tcp', timeoutMs: 99 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['timeout over 30 s', { service: 'db', healthCheck: { type: 'tcp', intervalMs: 60_000, timeoutMs: 30_001 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['timeout over the interval', { service: 'db', healthCheck: { type: 'tcp', intervalMs: 1000, timeoutMs: 1500 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['fractional timeout', { service: 'db', healthCheck: { type: 'tcp', timeoutMs: 500.5 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['timeout as text', { service: 'db', healthCheck: { type: 'tcp', timeoutMs: '500' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['port out of range', { service: 'db', healthCheck: { type: 'tcp', port: 65536 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['path on a tcp check', { service: 'db', healthCheck: { type: 'tcp', path: '/x' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['timing on none', { service: 'db', healthCheck: { type: 'none', intervalMs: 5000 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['unknown field', { service: 'db', healthCheck: { type: 'http', headers: {} } }, 400, 'INVALID_HEALTH_CHECK'],
      ['relative path', { service: 'db', healthCheck: { type: 'http', path: 'health' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['path with a space', { service: 'db', healthCheck: { type: 'http', path: '/a b' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['path with a control character', { service: 'db', healthCheck: { type: 'http', path: '/a\r\nHost: x' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['path not ASCII', { service: 'db', healthCheck: { type: 'http', path: '/é' } }, 400, 'INVALID_HEALTH_CHECK'],
      ['path over 1024 bytes', { service: 'db', healthCheck: { type: 'http', path: long } }, 400, 'INVALID_HEALTH_CHECK'],
      ['status out of range', { service: 'db', healthCheck: { type: 'http', expectedStatus: 600 } }, 400, 'INVALID_HEALTH_CHECK'],
      ['bad cluster name', { service: 'db', cluster: 'a,b', healthCheck: { type: 'tcp' } }, 400, 'INVALID_NAME'],
      ['no service', { healthCheck: { type: 'tcp' } }, 400, 'INVALID_NAME'],
      ['an ephemeral service', { service: 'eph', healthCheck: { type: 'tcp' } }, 409, 'SERVICE_KIND_CONFLICT'],
    ]
    for (const [what, body, status, code] of bad) {
      const res = await n.call('PUT', '/v1/ns/clusters', body)
      t.equal(res.statusCode, status, `${what}: ${res.body}`)
      t.equal(res.json().code, code, what)
    }
    const created = await n.call('POST', '/v1/ns/services', { service: 'eph-made', ephemeral: true })
    t.equal(created.statusCode, 200)
    t.equal((await n.call('PUT', '/v1/ns/clusters', { service: 'eph-made', healthCheck: { type: 'tcp' } })).json().code, 'SERVICE_KIND_CONFLICT', 'a service created ephemeral')
    t.equal(n.node.log.status().commitIndex, commit + 1, 'no refused request wrote anything (the one write is the service created)')
    t.equal((await n.call('GET', '/v1/ns/clusters?service=missing')).json().code, 'SERVICE_NOT_FOUND')
    t.equal((await n.call('GET', '/v1/ns/clusters?service=db&cluster=a,b')).json().code, 'INVALID_NAME')
    // A service with checks cannot turn ephemeral underneath them.
    await n.call('POST', '/v1/ns/services', { service: 'empty-db', ephemeral: false })
    await n.call('PUT', '/v1/ns/clusters', { service: 'empty-db', healthCheck: { type: 'tcp' } })
    t.equal((await n.call('PATCH', '/v1/ns/services', { service: 'empty-db', ephemeral: true })).json().code, 'SERVICE_KIND_CONFLICT')
  }),
)

t.test('manual health: PUT /v1/ns/instances/health where no probe runs, refused where one does', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '10.0.0.1', port: 1, ephemeral: false })
    await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '10.0.0.1', port: 2, ephemeral: false, cluster: 'probed' })
    await n.call('PUT', '/v1/ns/clusters', { service: 'db', cluster: 'probed', healthCheck: { type: 'tcp' } })
    await n.call('POST', '/v1/ns/instances', { service: 'eph', ip: '10.0.0.1', port: 3 })
    const commit = n.node.log.status().commitIndex
    const res = await n.call('PUT', '/v1/ns/instances/health', { service: 'db', ip: '10.0.0.1', port: 1, healthy: false })
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json(), { ok: true })
    t.equal(await healthOf(n, 'db', 1), false)
    t.equal(n.node.log.status().commitIndex, commit + 1, 'written through the log')
    t.equal((await n.call('PUT', '/v1/ns/instances/health', { service: 'db', ip: '10.0.0.1', port: 1, healthy: false })).statusCode, 200)
    t.equal(n.node.log.status().commitIndex, commit + 1, 'the health it has already: no log entry')
    t.equal((await n.call('PUT', '/v1/ns/instances/health?service=db&ip=10.0.0.1&port=1&healthy=true')).statusCode, 200, 'from the query string')
    t.equal(await healthOf(n, 'db', 1), true)
    const pb = Buffer.from(grace.v1.InstanceHealthRequest.encode({ service: 'db', ip: '10.0.0.1', port: 1, healthy: false }).finish())
    t.equal((await n.call('PUT', '/v1/ns/instances/health', pb, { 'content-type': PB })).statusCode, 200, 'from protobuf')
    t.equal(await healthOf(n, 'db', 1), false)
    // The cluster "none" explicitly is manual too.
    await n.call('PUT', '/v1/ns/clusters', { service: 'db', healthCheck: { type: 'none' } })
    t.equal((await n.call('PUT', '/v1/ns/instances/health', { service: 'db', ip: '10.0.0.1', port: 1, healthy: true })).statusCode, 200)

    const probed = await n.call('PUT', '/v1/ns/instances/health', { service: 'db', cluster: 'probed', ip: '10.0.0.1', port: 2, healthy: false })
    t.equal(probed.statusCode, 409)
    t.equal(probed.json().code, 'HEALTH_NOT_MANUAL')
    t.match(probed.json().message, /probed by the server/)
    const patched = await n.call('PATCH', '/v1/ns/instances', { service: 'db', cluster: 'probed', ip: '10.0.0.1', port: 2, healthy: false })
    t.equal(patched.json().code, 'HEALTH_NOT_MANUAL', 'PATCH healthy follows the same rule')
    t.equal((await n.call('PATCH', '/v1/ns/instances', { service: 'db', cluster: 'probed', ip: '10.0.0.1', port: 2, weight: 3 })).statusCode, 200, 'other fields can still change')
    const eph = await n.call('PUT', '/v1/ns/instances/health', { service: 'eph', ip: '10.0.0.1', port: 3, healthy: false })
    t.equal(eph.statusCode, 409)
    t.equal(eph.json().code, 'HEALTH_NOT_MANUAL')
    const bad: [string, string, object | undefined, number, string][] = [
      ['unknown instance', '', { service: 'db', ip: '10.0.0.9', port: 1, healthy: false }, 404, 'INSTANCE_NOT_FOUND'],
      ['no healthy', '', { service: 'db', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_ARGUMENT'],
      ['healthy as text in JSON', '', { service: 'db', ip: '10.0.0.1', port: 1, healthy: 'false' }, 400, 'INVALID_ARGUMENT'],
      ['healthy not a boolean in a query', '?service=db&ip=10.0.0.1&port=1&healthy=maybe', undefined, 400, 'INVALID_ARGUMENT'],
      ['bad ip', '', { service: 'db', ip: 'host', port: 1, healthy: false }, 400, 'INVALID_IP'],
      ['both query and body', '?service=db', { service: 'db', ip: '10.0.0.1', port: 1, healthy: false }, 400, 'INVALID_ARGUMENT'],
    ]
    for (const [what, qs, body, status, code] of bad) {
      const r = await n.call('PUT', `/v1/ns/instances/health${qs}`, body)
      t.equal(r.statusCode, status, `${what}: ${r.body}`)
      t.equal(r.json().code, code, what)
    }
  }),
)

t.test('PUT /v1/ns/instances changes weight, enabled and metadata like PATCH; disabled instances are not handed out', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 's', ip: '10.0.0.1', port: 1 })
    await n.call('POST', '/v1/ns/instances', { service: 's', ip: '10.0.0.2', port: 1 })
    const res = await n.call('PUT', '/v1/ns/instances', { service: 's', ip: '10.0.0.1', port: 1, weight: 3, enabled: false, metadata: { v: '2' } })
    t.equal(res.statusCode, 200, res.body)
    t.same((await n.call('GET', '/v1/ns/instances?service=s')).json().instances.map((i: { ip: string }) => i.ip), ['10.0.0.2'], 'disabled: left out')
    t.match((await n.call('GET', '/v1/ns/instances?service=s&includeDisabled=true')).json().instances[0], { weight: 3, enabled: false, metadata: { v: '2' } })
    await n.call('PUT', '/v1/ns/instances', { service: 's', ip: '10.0.0.1', port: 1, enabled: true })
    t.equal((await n.call('GET', '/v1/ns/instances?service=s')).json().instances.length, 2, 'enabled again, without registering again')
    t.equal((await n.call('PUT', '/v1/ns/instances', { service: 's', ip: '10.0.0.9', port: 1, weight: 1 })).json().code, 'INSTANCE_NOT_FOUND')
    t.equal((await n.call('PUT', '/v1/ns/instances', { service: 's', ip: '10.0.0.1', port: 1, weight: -1 })).json().code, 'INVALID_WEIGHT')
  }),
)

t.test('a service without a record is cleaned up 60 s after its last instance; one with metadata is kept', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'tmp', ip: '10.0.0.1', port: 1 })
    await n.call('POST', '/v1/ns/instances', { service: 'tmp-p', ip: '10.0.0.1', port: 1, ephemeral: false })
    await n.call('POST', '/v1/ns/services', { service: 'kept', metadata: { owner: 'a' } })
    await n.call('POST', '/v1/ns/instances', { service: 'kept', ip: '10.0.0.1', port: 1 })
    for (const s of ['tmp', 'tmp-p', 'kept']) await n.call('DELETE', `/v1/ns/instances?service=${s}&ip=10.0.0.1&port=1`)
    t.match((await n.call('GET', '/v1/ns/services?service=tmp')).json(), { ephemeral: true, instanceCount: 0 }, 'still listed, empty')
    t.match((await n.call('GET', '/v1/ns/services?service=tmp-p')).json(), { ephemeral: false, instanceCount: 0 }, 'with the kind it had')
    n.clock.advance(55_000)
    t.equal((await n.call('GET', '/v1/ns/services?service=tmp')).statusCode, 200)
    n.clock.advance(10_000)
    t.equal((await n.call('GET', '/v1/ns/services?service=tmp')).json().code, 'SERVICE_NOT_FOUND', 'gone after 60 s')
    t.equal((await n.call('GET', '/v1/ns/services?service=tmp-p')).statusCode, 404)
    t.match((await n.call('GET', '/v1/ns/services?service=kept')).json(), { metadata: { owner: 'a' }, instanceCount: 0 }, 'a service with metadata stays')
    t.same((await n.call('GET', '/v1/ns/services')).json().services.map((s: { service: string }) => s.service), ['kept'])
  }),
)

t.test('/v1/cluster/status shows self-preservation and the probes of this node', (t) =>
  withNode(t, async (n) => {
    await persistentService(n, 'db', { type: 'tcp', intervalMs: 1000, timeoutMs: 500 })
    await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '127.0.0.1', port: 1, ephemeral: false })
    for (let i = 0; i < 20; i++) await n.call('POST', '/v1/ns/instances', { service: 'e', ip: '10.0.0.1', port: i + 1, clientId: `c${i}` })
    await probeFor(n, 1200)
    const status = (await n.call('GET', '/v1/cluster/status')).json()
    t.match(status, { role: 'leader', health: { selfPreservation: { enabled: true, active: false, share: 0.5, windowMs: 60_000, minClients: 10 }, probes: { prober: true, targets: 1, concurrency: 64 } } })
    // Every client falls silent at once: expiry pauses before any is marked.
    await probeFor(n, 12_000)
    const paused = (await n.call('GET', '/v1/cluster/status')).json().health.selfPreservation
    t.match(paused, { active: true, clients: 20 })
    t.equal((await n.call('GET', '/v1/ns/instances?service=e&healthyOnly=true')).json().instances.length, 20, 'every instance still handed out')
    for (let i = 0; i < 20; i++) await n.call('PUT', '/v1/ns/instances/beat', { clientId: `c${i}` })
    await probeFor(n, 1200)
    t.match((await n.call('GET', '/v1/cluster/status')).json().health.selfPreservation, { active: false, since: null })
  }),
)
