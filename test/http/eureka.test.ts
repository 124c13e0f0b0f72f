// The Eureka adapter (/eureka/apps, /eureka/v2/apps) through fastify's inject: register (204),
// heartbeat (200, 404 when unknown), full and delta fetches in Eureka's JSON, status overrides,
// metadata, deregister, lease timeouts from leaseInfo, and bad input answered 4xx with nothing
// changed.

import t from 'tap'
import { type TestNode, startTestNode } from '../helpers/node.js'

async function node(t: { teardown(fn: () => unknown): void }): Promise<TestNode> {
  const n = await startTestNode()
  t.teardown(() => n.close())
  return n
}

function body(app: string, host: string, port: number, extra: Record<string, unknown> = {}) {
  return {
    instance: {
      instanceId: `${host}:${app.toLowerCase()}:${port}`,
      hostName: host,
      app,
      ipAddr: '10.0.0.' + host.slice(-1),
      vipAddress: app.toLowerCase(),
      status: 'UP',
      port: { $: port, '@enabled': 'true' },
      dataCenterInfo: { '@class': 'com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo', name: 'MyOwn' },
      leaseInfo: { renewalIntervalInSecs: 5, durationInSecs: 15 },
      metadata: { zone: 'a' },
      ...extra,
    },
  }
}

async function apps(n: TestNode, path = '/eureka/apps/') {
  const res = await n.call('GET', path, undefined, { accept: 'application/json' })
  return res.json().applications
}

t.test('register, fetch, heartbeat, override, metadata, deregister', async (t) => {
  const n = await node(t)
  let res = await n.call('POST', '/eureka/apps/orders', body('ORDERS', 'host1', 8080))
  t.equal(res.statusCode, 204)
  res = await n.call('POST', '/eureka/v2/apps/ORDERS', body('ORDERS', 'host2', 8080))
  t.equal(res.statusCode, 204)

  let a = await apps(n)
  t.equal(a.versions__delta, '1')
  t.equal(a.apps__hashcode, 'UP_2_')
  t.equal(a.application.length, 1)
  t.equal(a.application[0].name, 'ORDERS')
  const i = a.application[0].instance.find((x: { hostName: string }) => x.hostName === 'host1')
  t.match(i, {
    instanceId: 'host1:orders:8080',
    app: 'ORDERS',
    ipAddr: '10.0.0.1',
    status: 'UP',
    overriddenstatus: 'UNKNOWN',
    port: { $: 8080, '@enabled': 'true' },
    vipAddress: 'orders',
    leaseInfo: { renewalIntervalInSecs: 5, durationInSecs: 15 },
    metadata: { zone: 'a' },
    dataCenterInfo: { name: 'MyOwn' },
  })
  t.same(Object.keys(i.metadata), ['zone'], 'Grace-internal metadata is hidden')
  t.same(await apps(n, '/eureka/v2/apps'), a, 'both prefixes, with and without the slash')

  // The same instance through the native API: an ephemeral instance with Eureka's lease timings.
  const native = (await n.call('GET', '/v1/ns/instances?service=ORDERS')).json()
  t.equal(native.instances.length, 2)
  t.equal(native.instances[0].metadata['preserved.heart.beat.timeout'], '15000')

  res = await n.call('GET', '/eureka/apps/orders')
  t.equal(res.json().application.instance.length, 2)
  res = await n.call('GET', '/eureka/apps/ORDERS/host1:orders:8080')
  t.equal(res.json().instance.hostName, 'host1')
  res = await n.call('GET', '/eureka/apps/NOPE')
  t.equal(res.statusCode, 404)

  res = await n.call('PUT', '/eureka/apps/ORDERS/host1:orders:8080?status=UP&lastDirtyTimestamp=1')
  t.equal(res.statusCode, 200)
  res = await n.call('PUT', '/eureka/apps/ORDERS/unknown')
  t.equal(res.statusCode, 404, 'heartbeat of an unknown instance')

  res = await n.call('PUT', '/eureka/apps/ORDERS/host1:orders:8080/status?value=OUT_OF_SERVICE')
  t.equal(res.statusCode, 200)
  a = await apps(n)
  t.equal(a.apps__hashcode, 'OUT_OF_SERVICE_1_UP_1_')
  t.equal((await n.call('GET', '/v1/ns/instances?service=ORDERS')).json().instances.length, 1, 'out of service: hidden from Grace and Nacos queries')
  // A registration again keeps the override.
  await n.call('POST', '/eureka/apps/ORDERS', body('ORDERS', 'host1', 8080))
  t.equal((await apps(n)).apps__hashcode, 'OUT_OF_SERVICE_1_UP_1_')
  res = await n.call('DELETE', '/eureka/apps/ORDERS/host1:orders:8080/status?value=UP')
  t.equal(res.statusCode, 200)
  t.equal((await apps(n)).apps__hashcode, 'UP_2_')

  res = await n.call('PUT', '/eureka/apps/ORDERS/host1:orders:8080/metadata?version=2')
  t.equal(res.statusCode, 200)
  t.same((await n.call('GET', '/eureka/apps/ORDERS/host1:orders:8080')).json().instance.metadata, { zone: 'a', version: '2' })

  res = await n.call('DELETE', '/eureka/apps/ORDERS/host1:orders:8080')
  t.equal(res.statusCode, 200)
  res = await n.call('DELETE', '/eureka/apps/ORDERS/host1:orders:8080')
  t.equal(res.statusCode, 404)
  t.equal((await apps(n)).apps__hashcode, 'UP_1_')
})

t.test('services registered through Nacos or Grace appear as applications', async (t) => {
  const n = await node(t)
  await n.call('POST', '/v1/ns/instances', { service: 'billing', ip: '10.0.0.9', port: 9000 })
  const a = await apps(n)
  t.match(a.application, [{ name: 'BILLING', instance: [{ app: 'BILLING', ipAddr: '10.0.0.9', hostName: '10.0.0.9', status: 'UP', port: { $: 9000 }, vipAddress: 'billing' }] }])
})

t.test('delta: added, modified, deleted within the window', async (t) => {
  const n = await node(t)
  await n.call('POST', '/eureka/apps/A', body('A', 'host1', 1))
  let d = (await n.call('GET', '/eureka/apps/delta')).json().applications
  t.same(d.application, [], 'the first look records no changes')
  await n.call('POST', '/eureka/apps/A', body('A', 'host2', 2))
  await n.call('PUT', '/eureka/apps/A/host1:a:1/status?value=OUT_OF_SERVICE')
  d = (await n.call('GET', '/eureka/apps/delta')).json().applications
  t.equal(d.apps__hashcode, 'OUT_OF_SERVICE_1_UP_1_')
  const actions = Object.fromEntries(d.application[0].instance.map((i: { hostName: string; actionType: string }) => [i.hostName, i.actionType]))
  t.same(actions, { host1: 'MODIFIED', host2: 'ADDED' })
  await n.call('DELETE', '/eureka/apps/A/host2:a:2')
  d = (await n.call('GET', '/eureka/apps/delta')).json().applications
  const again = Object.fromEntries(d.application[0].instance.map((i: { hostName: string; actionType: string }) => [i.hostName, i.actionType]))
  t.same(again, { host1: 'MODIFIED', host2: 'DELETED' })
})

t.test('leases: evicted after durationInSecs without a heartbeat; 404 makes the client register again', async (t) => {
  const n = await node(t)
  await n.call('POST', '/eureka/apps/A', body('A', 'host1', 1))
  n.clock.advance(10_000)
  t.equal((await n.call('PUT', '/eureka/apps/A/host1:a:1')).statusCode, 200)
  n.clock.advance(14_000)
  t.equal((await apps(n)).apps__hashcode, 'UP_1_', 'renewed by the heartbeat')
  n.clock.advance(2_000)
  t.equal((await apps(n)).apps__hashcode, '', 'evicted 15 s after the last heartbeat')
  t.equal((await n.call('PUT', '/eureka/apps/A/host1:a:1')).statusCode, 404)
  t.equal((await n.call('POST', '/eureka/apps/A', body('A', 'host1', 1))).statusCode, 204)
  t.equal((await n.call('PUT', '/eureka/apps/A/host1:a:1')).statusCode, 200)
})

t.test('bad requests: 4xx, nothing stored changes', async (t) => {
  const n = await node(t)
  await n.call('POST', '/eureka/apps/A', body('A', 'host1', 1))
  const before = (await n.call('GET', '/eureka/apps/')).body
  const good = body('A', 'host2', 2).instance
  const bad: Array<[string, string, unknown, Record<string, string>?]> = [
    ['POST', '/eureka/apps/A', undefined],
    ['POST', '/eureka/apps/A', '{nope'],
    ['POST', '/eureka/apps/A', []],
    ['POST', '/eureka/apps/A', { instance: 'x' }],
    ['POST', '/eureka/apps/A', { instance: { ...good, hostName: undefined } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, ipAddr: undefined } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, ipAddr: 'not-an-ip' } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, app: 'B' } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, port: { $: 'x' } } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, port: { $: 70000 } } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, port: undefined } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, status: 'SLEEPY' } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, leaseInfo: { durationInSecs: 0 } } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, leaseInfo: [] } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, metadata: { a: { b: 1 } } } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, metadata: { 'eureka.status': 'UP' } } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, metadata: { big: 'x'.repeat(20_000) } } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, vipAddress: 5 } }],
    ['POST', '/eureka/apps/A', { instance: { ...good, dataCenterInfo: 'aws' } }],
    ['POST', '/eureka/apps/A', '<instance/>', { 'content-type': 'application/xml' }],
    ['POST', '/eureka/apps/A%01', { instance: { ...good, app: undefined } }],
    ['PUT', '/eureka/apps/A/host1:a:1?status=SLEEPY', undefined],
    ['PUT', '/eureka/apps/A/host1:a:1/status', undefined],
    ['PUT', '/eureka/apps/A/host1:a:1/status?value=BAD', undefined],
    ['PUT', '/eureka/apps/A/nobody/status?value=DOWN', undefined],
    ['PUT', '/eureka/apps/A/host1:a:1/metadata', undefined],
    ['PUT', '/eureka/apps/A/host1:a:1/metadata?eureka.status=DOWN', undefined],
    ['PUT', '/eureka/apps/A/host1:a:1/metadata?k=1&k=2', undefined],
    ['DELETE', '/eureka/apps/A/nobody', undefined],
    ['GET', '/eureka/apps/A/nobody', undefined],
    ['GET', '/eureka/nothing', undefined],
  ]
  for (const [method, path, payload, headers] of bad) {
    const res = await n.call(method as 'POST', path, payload, headers ?? {})
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `${method} ${path} ${JSON.stringify(payload)?.slice(0, 80)}: ${res.statusCode} ${res.body.slice(0, 100)}`)
  }
  t.equal((await n.call('GET', '/eureka/apps/')).body, before, 'nothing changed')
})
