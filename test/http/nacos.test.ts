// The Nacos 1.x adapter (/nacos/v1/...) through fastify's inject: parameters in the query string
// and in form bodies as Nacos clients send them, Nacos's answer shapes, beats and leases, config
// listeners in the Listening-Configs format, and bad requests answered 4xx with nothing changed.

import { createHash } from 'node:crypto'
import t from 'tap'
import { type TestNode, startTestNode } from '../helpers/node.js'

const FORM = { 'content-type': 'application/x-www-form-urlencoded' }
const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex')
const qs = (p: Record<string, string>): string => new URLSearchParams(p).toString()

async function node(t: { teardown(fn: () => unknown): void }): Promise<TestNode> {
  const n = await startTestNode()
  t.teardown(() => n.close())
  return n
}

const form = (n: TestNode, method: 'POST' | 'PUT' | 'DELETE' | 'PATCH', path: string, p: Record<string, string>) => n.call(method, path, qs(p), FORM)
const get = (n: TestNode, path: string, p: Record<string, string> = {}) => n.call('GET', `${path}?${qs(p)}`)

async function list(n: TestNode, serviceName: string, extra: Record<string, string> = {}) {
  const res = await get(n, '/nacos/v1/ns/instance/list', { serviceName, ...extra })
  return { status: res.statusCode, body: res.json() }
}

/** Everything the registry and config store hold, to prove a bad request changed nothing. */
async function snapshot(n: TestNode): Promise<string> {
  const services = await n.call('GET', '/v1/ns/services?pageSize=1000')
  const parts = [services.body]
  for (const s of services.json().services) {
    parts.push((await n.call('GET', `/v1/ns/instances?${qs({ namespace: s.namespace, group: s.group, service: s.service, includeDisabled: 'true' })}`)).body)
  }
  parts.push((await n.call('GET', '/v1/cs/configs?dataId=app.yaml')).body)
  return parts.join('\n').replace(/"revision":\d+/g, '')
}

t.test('register (form body and query string), list, detail, deregister', async (t) => {
  const n = await node(t)
  let res = await form(n, 'POST', '/nacos/v1/ns/instance', {
    serviceName: 'orders',
    ip: '10.0.0.1',
    port: '8080',
    weight: '2.0',
    metadata: '{"zone":"a","n":1}',
    clusterName: 'east',
  })
  t.equal(res.statusCode, 200)
  t.equal(res.body, 'ok')
  // The Node.js client sends every parameter in the query string, with 'enable'.
  res = await n.call('POST', `/nacos/v1/ns/instance?${qs({ serviceName: 'DEFAULT_GROUP@@orders', groupName: 'DEFAULT_GROUP', ip: '10.0.0.2', port: '8080', enable: 'true', ephemeral: 'true', metadata: '{}' })}`)
  t.equal(res.statusCode, 200)

  const l = await list(n, 'orders')
  t.equal(l.status, 200)
  t.equal(l.body.name, 'DEFAULT_GROUP@@orders')
  t.equal(l.body.groupName, 'DEFAULT_GROUP')
  t.equal(l.body.clusters, '')
  t.equal(l.body.cacheMillis, 3000)
  t.equal(typeof l.body.checksum, 'string')
  t.equal(typeof l.body.lastRefTime, 'number')
  t.equal(l.body.hosts.length, 2)
  const h = l.body.hosts.find((x: { ip: string }) => x.ip === '10.0.0.1')
  t.match(h, {
    instanceId: '10.0.0.1#8080#east#DEFAULT_GROUP@@orders',
    port: 8080,
    weight: 2,
    healthy: true,
    enabled: true,
    ephemeral: true,
    clusterName: 'east',
    serviceName: 'DEFAULT_GROUP@@orders',
    metadata: { zone: 'a', n: '1' },
    instanceHeartBeatInterval: 5000,
    instanceHeartBeatTimeOut: 15000,
    ipDeleteTimeout: 30000,
  })

  const east = await list(n, 'DEFAULT_GROUP@@orders', { clusters: 'east' })
  t.equal(east.body.clusters, 'east', 'clusters echoed as sent')
  t.same(east.body.hosts.map((x: { ip: string }) => x.ip), ['10.0.0.1'])

  res = await get(n, '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1', port: '8080', cluster: 'east' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { service: 'DEFAULT_GROUP@@orders', ip: '10.0.0.1', port: 8080, clusterName: 'east', weight: 2 })
  res = await get(n, '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.9', port: '8080' })
  t.equal(res.statusCode, 404)
  t.match(res.body, /^caused: /)

  res = await n.call('DELETE', `/nacos/v1/ns/instance?${qs({ serviceName: 'orders', ip: '10.0.0.1', port: '8080', clusterName: 'east' })}`)
  t.equal(res.body, 'ok')
  res = await n.call('DELETE', `/nacos/v1/ns/instance?${qs({ serviceName: 'orders', ip: '10.0.0.1', port: '8080', clusterName: 'east' })}`)
  t.equal(res.statusCode, 200, 'deleting what is gone is ok, as in Nacos')
  t.equal((await list(n, 'orders')).body.hosts.length, 1)

  // An unknown service lists no hosts, with the echo.
  const none = await list(n, 'GRP@@nothing', { clusters: 'a,b' })
  t.match(none.body, { name: 'GRP@@nothing', groupName: 'GRP', clusters: 'a,b', hosts: [] })
})

t.test('groups and namespaces: GROUP@@service and namespaceId', async (t) => {
  const n = await node(t)
  await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'pay', groupName: 'G1', namespaceId: 'dev', ip: '10.0.0.1', port: '1' })
  t.equal((await list(n, 'G1@@pay', { namespaceId: 'dev' })).body.hosts.length, 1)
  t.equal((await list(n, 'pay', { groupName: 'G1', namespaceId: 'dev' })).body.hosts.length, 1)
  t.equal((await list(n, 'pay', { namespaceId: 'dev' })).body.hosts.length, 0, 'another group')
  t.equal((await list(n, 'G1@@pay')).body.hosts.length, 0, 'another namespace')
  const native = await n.call('GET', '/v1/ns/instances?namespace=dev&group=G1&service=pay')
  t.equal(native.json().instances.length, 1, 'the same instance through the native API')
  const ns = await n.call('GET', '/nacos/v1/console/namespaces')
  t.match(ns.json(), { code: 200, data: [{ namespace: '', namespaceShowName: 'public', type: 0 }, { namespace: 'dev', namespaceShowName: 'dev' }] })
})

t.test('beats: interval, re-registration from a full beat, 20404 for an unknown light beat, expiry', async (t) => {
  const n = await node(t)
  await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1', port: '8080', metadata: '{"preserved.heart.beat.interval":"2000","preserved.heart.beat.timeout":"6000","preserved.ip.delete.timeout":"9000"}' })
  // A light beat (the Java client after lightBeatEnabled).
  let res = await n.call('PUT', `/nacos/v1/ns/instance/beat?${qs({ serviceName: 'DEFAULT_GROUP@@orders', ip: '10.0.0.1', port: '8080', clusterName: 'DEFAULT' })}`)
  t.same(res.json(), { clientBeatInterval: 2000, code: 10200, lightBeatEnabled: true })

  n.clock.advance(7000)
  t.equal((await list(n, 'orders')).body.hosts[0].healthy, false, 'unhealthy after the timeout')
  res = await form(n, 'PUT', '/nacos/v1/ns/instance/beat', { serviceName: 'DEFAULT_GROUP@@orders', beat: JSON.stringify({ serviceName: 'DEFAULT_GROUP@@orders', ip: '10.0.0.1', port: 8080, cluster: 'DEFAULT' }) })
  t.equal(res.json().code, 10200)
  t.equal((await list(n, 'orders')).body.hosts[0].healthy, true, 'a beat makes it healthy again')
  n.clock.advance(10_000)
  t.equal((await list(n, 'orders')).body.hosts.length, 0, 'removed after the delete timeout')

  res = await n.call('PUT', `/nacos/v1/ns/instance/beat?${qs({ serviceName: 'DEFAULT_GROUP@@orders', ip: '10.0.0.1', port: '8080' })}`)
  t.same(res.json(), { clientBeatInterval: 5000, code: 20404, lightBeatEnabled: true }, 'unknown: the client must register again')

  // What the Node.js client sends: a full beat, which registers the instance again.
  const beat = { serviceName: 'DEFAULT_GROUP@@orders', ip: '10.0.0.1', port: 8080, cluster: 'DEFAULT', weight: 3, metadata: { v: '1' }, scheduled: false }
  res = await n.call('PUT', `/nacos/v1/ns/instance/beat?${qs({ beat: JSON.stringify(beat), namespaceId: 'public', serviceName: 'DEFAULT_GROUP@@orders' })}`)
  t.equal(res.json().code, 10200)
  t.match((await list(n, 'orders')).body.hosts, [{ ip: '10.0.0.1', weight: 3, metadata: { v: '1' } }])
})

t.test('one lease per instance: two services on one address beat separately', async (t) => {
  const n = await node(t)
  await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'a', ip: '10.0.0.1', port: '80' })
  await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'b', ip: '10.0.0.1', port: '80' })
  for (let s = 0; s < 4; s++) {
    n.clock.advance(5000)
    await n.call('PUT', `/nacos/v1/ns/instance/beat?${qs({ serviceName: 'a', ip: '10.0.0.1', port: '80' })}`)
  }
  t.equal((await list(n, 'a')).body.hosts[0].healthy, true)
  t.equal((await list(n, 'b')).body.hosts[0].healthy, false, 'b sent no beats')
})

t.test('persistent instances, update, services, metrics, servers', async (t) => {
  const n = await node(t)
  let res = await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'db', ip: '10.0.0.5', port: '5432', ephemeral: 'false', healthy: 'false' })
  t.equal(res.body, 'ok')
  t.match((await list(n, 'db')).body.hosts, [{ ephemeral: false, healthy: false }])
  res = await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'db', ip: '10.0.0.6', port: '5432' })
  t.equal(res.statusCode, 409, 'an ephemeral instance in a persistent service')
  t.match(res.body, /persistent/)

  res = await form(n, 'PUT', '/nacos/v1/ns/instance', { serviceName: 'db', ip: '10.0.0.5', port: '5432', weight: '5', metadata: 'role=primary,dc=1' })
  t.equal(res.body, 'ok')
  t.match((await list(n, 'db')).body.hosts, [{ weight: 5, enabled: true, metadata: { role: 'primary', dc: '1' } }])
  res = await form(n, 'PATCH', '/nacos/v1/ns/instance', { serviceName: 'db', ip: '10.0.0.5', port: '5432', enabled: 'false' })
  t.equal(res.body, 'ok')
  t.equal((await list(n, 'db')).body.hosts.length, 0, 'disabled instances are not listed')
  res = await get(n, '/nacos/v1/ns/instance', { serviceName: 'db', ip: '10.0.0.5', port: '5432' })
  t.match(res.json(), { weight: 5, enabled: false })
  res = await form(n, 'PUT', '/nacos/v1/ns/instance', { serviceName: 'db', ip: '10.0.0.7', port: '5432' })
  t.equal(res.statusCode, 404, 'updating an unknown instance')

  res = await form(n, 'POST', '/nacos/v1/ns/service', { serviceName: 'pay', protectThreshold: '0.5', metadata: '{"owner":"x"}' })
  t.equal(res.body, 'ok')
  res = await form(n, 'POST', '/nacos/v1/ns/service', { serviceName: 'pay' })
  t.equal(res.statusCode, 409)
  res = await form(n, 'PUT', '/nacos/v1/ns/service', { serviceName: 'pay', protectThreshold: '0.3' })
  t.equal(res.body, 'ok')
  res = await get(n, '/nacos/v1/ns/service', { serviceName: 'pay' })
  t.match(res.json(), { namespaceId: 'public', groupName: 'DEFAULT_GROUP', name: 'pay', protectThreshold: 0.3, metadata: { owner: 'x' }, clusters: [] })
  res = await get(n, '/nacos/v1/ns/service', { serviceName: 'db' })
  t.match(res.json(), { name: 'db', clusters: [{ name: 'DEFAULT' }] })
  res = await get(n, '/nacos/v1/ns/service/list', { pageNo: '1', pageSize: '10' })
  t.same(res.json(), { count: 2, doms: ['db', 'pay'] })
  res = await n.call('DELETE', '/nacos/v1/ns/service?serviceName=pay')
  t.equal(res.body, 'ok')
  res = await n.call('DELETE', '/nacos/v1/ns/service?serviceName=pay')
  t.equal(res.statusCode, 404)
  res = await get(n, '/nacos/v1/ns/service', { serviceName: 'pay' })
  t.equal(res.statusCode, 404)

  res = await get(n, '/nacos/v1/ns/operator/metrics')
  t.match(res.json(), { status: 'UP', serviceCount: 1, instanceCount: 1 })
  res = await get(n, '/nacos/v1/ns/operator/servers')
  t.equal(res.statusCode, 200)
  t.ok(Array.isArray(res.json().servers))
})

t.test('config: publish, get, listen, history, delete', async (t) => {
  const n = await node(t)
  let res = await get(n, '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP' })
  t.equal(res.statusCode, 404)
  t.equal(res.body, 'config data not exist')

  res = await form(n, 'POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: 'a: 1', type: 'yaml', appName: 'x', tenant: '' })
  t.equal(res.statusCode, 200)
  t.equal(res.body, 'true')
  res = await get(n, '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', tenant: '' })
  t.equal(res.body, 'a: 1')
  t.equal(res.headers['config-type'], 'yaml')
  t.equal(res.headers['content-md5'], md5('a: 1'))
  t.match(res.headers['content-type'], /^text\/plain/)
  res = await get(n, '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', show: 'all' })
  t.match(res.json(), { dataId: 'app.yaml', content: 'a: 1', md5: md5('a: 1'), tenant: '', type: 'yaml' })

  const W = '\u0002'
  const L = '\u0001'
  // A probe (no Long-Pulling-Timeout) answers at once: the md5 differs.
  res = await form(n, 'POST', '/nacos/v1/cs/configs/listener', { 'Listening-Configs': `app.yaml${W}DEFAULT_GROUP${W}${L}` })
  t.equal(decodeURIComponent(res.body), `app.yaml${W}DEFAULT_GROUP${L}`)
  res = await form(n, 'POST', '/nacos/v1/cs/configs/listener', { 'Listening-Configs': `app.yaml${W}DEFAULT_GROUP${W}${md5('a: 1')}${L}` })
  t.equal(res.body, '', 'nothing changed')

  // Held, then woken by a publish; with a tenant, the tenant comes back.
  const held = n.call('POST', '/nacos/v1/cs/configs/listener', qs({ 'Listening-Configs': `app.yaml${W}DEFAULT_GROUP${W}${md5('a: 1')}${L}other${W}G${W}${W}dev${L}` }), { ...FORM, 'long-pulling-timeout': '30000' })
  await new Promise((r) => setTimeout(r, 20))
  await form(n, 'POST', '/nacos/v1/cs/configs', { dataId: 'other', group: 'G', content: 'x', tenant: 'dev' })
  res = await held
  t.equal(decodeURIComponent(res.body), `other${W}G${W}dev${L}`)

  // Held until the timeout (less Nacos's 500 ms), answered empty.
  const timing = n.call('POST', '/nacos/v1/cs/configs/listener', qs({ 'Listening-Configs': `app.yaml${W}DEFAULT_GROUP${W}${md5('a: 1')}${L}` }), { ...FORM, 'long-pulling-timeout': '1500' })
  await new Promise((r) => setTimeout(r, 20))
  n.clock.advance(1000)
  res = await timing
  t.equal(res.statusCode, 200)
  t.equal(res.body, '')

  await form(n, 'POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: 'a: 2' })
  res = await n.call('DELETE', `/nacos/v1/cs/configs?${qs({ dataId: 'app.yaml', group: 'DEFAULT_GROUP' })}`)
  t.equal(res.body, 'true')
  res = await get(n, '/nacos/v1/cs/history', { search: 'accurate', dataId: 'app.yaml', group: 'DEFAULT_GROUP', pageNo: '1', pageSize: '10' })
  const h = res.json()
  t.equal(h.totalCount, 3)
  t.same(h.pageItems.map((i: { opType: string }) => i.opType), ['D', 'U', 'I'])
  t.same(h.pageItems.map((i: { content: string }) => i.content), ['a: 2', 'a: 2', 'a: 1'])
  res = await get(n, '/nacos/v1/cs/history', { search: 'accurate', dataId: 'app.yaml', group: 'DEFAULT_GROUP', pageNo: '2', pageSize: '2' })
  t.same(res.json().pageItems.map((i: { opType: string }) => i.opType), ['I'])
})

t.test('bad requests: 4xx in Nacos style, nothing stored changes', async (t) => {
  const n = await node(t)
  await form(n, 'POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1', port: '8080' })
  await form(n, 'POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: 'a: 1' })
  const before = await snapshot(n)
  const bad: Array<[string, string, Record<string, string> | string, Record<string, string>?]> = [
    ['POST', '/nacos/v1/ns/instance', { ip: '10.0.0.2', port: '1' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: 'nope', port: '1' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '70000' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', weight: 'heavy' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', weight: '-1' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', ephemeral: 'maybe' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', metadata: '{bad' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', metadata: '{"a":{"b":1}}' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', metadata: 'novalue' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', metadata: '{"preserved.heart.beat.timeout":"1"}' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: '@@orders', ip: '10.0.0.2', port: '1' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'G@@a@@b', ip: '10.0.0.2', port: '1' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', clusterName: 'a,b' }],
    ['POST', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.2', port: '1', namespaceId: 'x\u0001' }],
    ['POST', '/nacos/v1/ns/instance', 'serviceName=a&serviceName=b&ip=10.0.0.2&port=1'],
    ['POST', '/nacos/v1/ns/instance', '{"serviceName":"orders","ip":"10.0.0.2","port":1}', { 'content-type': 'application/json' }],
    ['POST', '/nacos/v1/ns/instance', 'serviceName=orders&ip=10.0.0.2&port=1', { 'content-type': 'text/plain' }],
    ['PUT', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1', port: '8080', weight: 'x' }],
    ['PUT', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1', port: '8080', enabled: 'yes' }],
    ['PATCH', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1', port: '8080' }],
    ['DELETE', '/nacos/v1/ns/instance', { serviceName: 'orders', ip: '10.0.0.1' }],
    ['DELETE', '/nacos/v1/ns/instance', { serviceName: 'orders', port: '8080' }],
    ['PUT', '/nacos/v1/ns/instance/beat', { serviceName: 'orders', beat: '{nope' }],
    ['PUT', '/nacos/v1/ns/instance/beat', { serviceName: 'orders', beat: '[1]' }],
    ['PUT', '/nacos/v1/ns/instance/beat', { serviceName: 'orders', beat: '{"ip":"10.0.0.3","port":1,"metadata":"x"}' }],
    ['PUT', '/nacos/v1/ns/instance/beat', { serviceName: 'orders', beat: '{"ip":"10.0.0.3","port":0}' }],
    ['PUT', '/nacos/v1/ns/instance/beat', { serviceName: 'orders' }],
    ['POST', '/nacos/v1/ns/service', { serviceName: 'pay', protectThreshold: '2' }],
    ['POST', '/nacos/v1/ns/service', { serviceName: 'orders' }],
    ['PUT', '/nacos/v1/ns/service', { serviceName: 'orders' }],
    ['DELETE', '/nacos/v1/ns/service', { serviceName: 'orders' }],
    ['POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP' }],
    ['POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: '' }],
    ['POST', '/nacos/v1/cs/configs', { group: 'DEFAULT_GROUP', content: 'x' }],
    ['POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'A@@B', content: 'x' }],
    ['POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: 'x', casMd5: 'zz' }],
    ['POST', '/nacos/v1/cs/configs', { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: 'x', casMd5: md5('other') }],
    ['DELETE', '/nacos/v1/cs/configs', { group: 'DEFAULT_GROUP' }],
    ['DELETE', '/nacos/v1/cs/configs', { delType: 'ids', ids: '1' }],
    ['POST', '/nacos/v1/cs/configs/listener', {}],
    ['POST', '/nacos/v1/cs/configs/listener', { 'Listening-Configs': 'justone' }],
    ['POST', '/nacos/v1/cs/configs/listener', { 'Listening-Configs': `a\u0002b\u0002nothex\u0001` }],
    ['POST', '/nacos/v1/cs/configs/listener', { 'Listening-Configs': `a\u0002b\u0002\u0001` }, { 'long-pulling-timeout': 'soon' }],
    ['GET', '/nacos/v1/cs/history', { dataId: 'app.yaml', search: 'blur' }],
    ['GET', '/nacos/v1/cs/history', { nid: '3' }],
    ['GET', '/nacos/v1/cs/history', { dataId: 'app.yaml', pageNo: '0' }],
    ['GET', '/nacos/v1/ns/instance/list', {}],
    ['GET', '/nacos/v1/ns/instance/list', { serviceName: 'orders', healthyOnly: 'perhaps' }],
    ['GET', '/nacos/v1/ns/instance/list', { serviceName: 'orders', udpPort: '-1' }],
    ['GET', '/nacos/v1/ns/service/list', { pageNo: 'x' }],
    ['GET', '/nacos/v1/ns/nothing', {}],
    ['POST', '/nacos/v1/auth/login', { username: 'nacos', password: 'nacos' }],
  ]
  for (const [method, path, p, headers] of bad) {
    const body = typeof p === 'string' ? p : qs(p)
    const res = method === 'GET' ? await n.call('GET', `${path}?${body}`) : await n.call(method as 'POST', path, body, headers ?? FORM)
    const label = `${method} ${path} ${body}`
    t.ok(res.statusCode >= 400 && res.statusCode < 500, `${label}: ${res.statusCode} ${res.body}`)
    t.match(res.headers['content-type'], /^text\/plain/, label)
    t.match(res.body, /^caused: [\s\S]*;$/, label)
  }
  t.equal(await snapshot(n), before, 'nothing changed')
})
