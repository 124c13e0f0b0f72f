// Naming push through HTTP: POST /v1/ns/watch (multiplexed long poll) and GET /v1/ns/delta.

import t, { type Test } from 'tap'
import { grace } from '../../src/gen/proto.js'
import { type TestNode, startTestNode } from '../helpers/node.js'

const EMPTY = 'd41d8cd98f00b204e9800998ecf8427e'

async function withNode(t: Test, fn: (n: TestNode) => Promise<void>): Promise<void> {
  const n = await startTestNode()
  t.teardown(() => n.close())
  await fn(n)
}

async function heldBy(n: TestNode, count: number): Promise<void> {
  for (let i = 0; i < 200 && n.node.push.size !== count; i++) await new Promise((r) => setImmediate(r))
  if (n.node.push.size !== count) throw new Error(`expected ${count} held watches, have ${n.node.push.size}`)
}

const register = (n: TestNode, body: object) => n.call('POST', '/v1/ns/instances', { ip: '10.0.0.1', port: 8080, ...body })

t.test('a watch with no copy is answered at once with the lists', (t) =>
  withNode(t, async (n) => {
    await register(n, { service: 'orders', weight: 2 })
    const res = await n.call('POST', '/v1/ns/watch', { items: [{ service: 'orders' }, { service: 'missing' }] })
    t.equal(res.statusCode, 200, res.body)
    const { changed } = res.json()
    t.equal(changed.length, 2, '"" holds nothing: both lists come, the missing service\'s empty')
    t.match(changed[1], { service: 'missing', checksum: EMPTY, instances: [], revision: 0 })
    t.match(changed[0], { service: 'orders', complete: true, clusters: [], healthyOnly: false, instances: [{ ip: '10.0.0.1', port: 8080, weight: 2 }] })
    const direct = (await n.call('GET', '/v1/ns/instances?service=orders')).json()
    t.equal(changed[0].checksum, direct.checksum, 'the same checksum as GET')
  }),
)

t.test('a held watch wakes on a change to any service it follows, with that list only', (t) =>
  withNode(t, async (n) => {
    await register(n, { service: 'a' })
    await register(n, { service: 'b', port: 9090 })
    const a = (await n.call('GET', '/v1/ns/instances?service=a')).json()
    const b = (await n.call('GET', '/v1/ns/instances?service=b')).json()
    const watching = n.call('POST', '/v1/ns/watch', { items: [{ service: 'a', checksum: a.checksum }, { service: 'b', checksum: b.checksum }, { service: 'c', checksum: EMPTY }] })
    await heldBy(n, 1)
    await register(n, { service: 'b', port: 9091 })
    const res = await watching
    t.equal(res.statusCode, 200)
    const { changed } = res.json()
    t.equal(changed.length, 1)
    t.equal(changed[0].service, 'b')
    t.same(changed[0].instances.map((i: { port: number }) => i.port), [9090, 9091])
    await heldBy(n, 0)
    t.equal(n.node.push.watchedServices, 0, 'nothing left in the index')
  }),
)

t.test('a change the filter leaves out does not wake the watch; the timeout answers []', (t) =>
  withNode(t, async (n) => {
    await register(n, { service: 'web', cluster: 'east' })
    const east = (await n.call('GET', '/v1/ns/instances?service=web&clusters=east')).json()
    const watching = n.call('POST', '/v1/ns/watch', { items: [{ service: 'web', clusters: ['east'], checksum: east.checksum }], timeoutMs: 5000 })
    await heldBy(n, 1)
    await register(n, { service: 'web', cluster: 'west', port: 1 })
    await new Promise((r) => setImmediate(r))
    t.equal(n.node.push.size, 1, 'still held after a change in west')
    n.clock.advance(5000)
    const res = await watching
    t.same(res.json(), { changed: [] })
  }),
)

t.test('a healthyOnly watch follows health; clusters as a comma-separated string work too', (t) =>
  withNode(t, async (n) => {
    await register(n, { service: 'api', cluster: 'x' })
    const list = (await n.call('GET', '/v1/ns/instances?service=api&clusters=x&healthyOnly=true')).json()
    const watching = n.call('POST', '/v1/ns/watch', { items: [{ service: 'api', clusters: 'x', healthyOnly: true, checksum: list.checksum }] })
    await heldBy(n, 1)
    // No beats: 15 s later the instance turns unhealthy and leaves the healthyOnly list.
    n.clock.advance(16_000)
    const res = await watching
    const { changed } = res.json()
    t.equal(changed.length, 1)
    t.same(changed[0].instances, [])
    t.equal(changed[0].healthyOnly, true)
  }),
)

t.test('protobuf watch', (t) =>
  withNode(t, async (n) => {
    await register(n, { service: 'orders' })
    const body = Buffer.from(grace.v1.WatchRequest.encode({ items: [{ service: 'orders' }], timeoutMs: 0 }).finish())
    const res = await n.call('POST', '/v1/ns/watch', body, { 'content-type': 'application/x-protobuf', accept: 'application/x-protobuf' })
    t.equal(res.statusCode, 200)
    const decoded = grace.v1.WatchResponse.decode(res.rawPayload)
    t.equal(decoded.changed.length, 1)
    t.equal(decoded.changed[0]!.instances?.[0]?.port, 8080)
    t.equal(decoded.changed[0]!.complete, true)
  }),
)

t.test('bad watches get a 400 with a code', (t) =>
  withNode(t, async (n) => {
    const cases: [unknown, string, RegExp][] = [
      [{}, 'INVALID_ARGUMENT', /items is required/],
      [{ items: 'x' }, 'INVALID_ARGUMENT', /must be an array/],
      [{ items: [] }, 'INVALID_ARGUMENT', /must not be empty/],
      [{ items: Array.from({ length: 1001 }, (_, i) => ({ service: `s${i}` })) }, 'INVALID_ARGUMENT', /over the limit of 1000/],
      [{ items: [1] }, 'INVALID_ARGUMENT', /items\[0\] must be an object/],
      [{ items: [{}] }, 'INVALID_NAME', /items\[0\]: service is required/],
      [{ items: [{ service: 'a', checksum: 'zz' }] }, 'INVALID_ARGUMENT', /items\[0\]: checksum/],
      [{ items: [{ service: 'a', clusters: ['a,b'] }] }, 'INVALID_NAME', /cluster/],
      [{ items: [{ service: 'a', clusters: 7 }] }, 'INVALID_ARGUMENT', /clusters must be an array/],
      [{ items: [{ service: 'a', healthyOnly: 'yes' }] }, 'INVALID_ARGUMENT', /healthyOnly/],
      [{ items: [{ service: 'a@@b' }] }, 'INVALID_NAME', /@@/],
      [{ items: [{ service: 'a' }], timeoutMs: 120_001 }, 'INVALID_ARGUMENT', /timeoutMs/],
      [{ items: [{ service: 'a' }], timeoutMs: -1 }, 'INVALID_ARGUMENT', /timeoutMs/],
    ]
    for (const [body, code, message] of cases) {
      const res = await n.call('POST', '/v1/ns/watch', body)
      t.equal(res.statusCode, 400, JSON.stringify(body).slice(0, 80))
      t.equal(res.json().code, code)
      t.match(res.json().message, message)
    }
    const big = await n.call('POST', '/v1/ns/watch', { items: [{ service: 'a', pad: 'x'.repeat(1024 * 1024) }] })
    t.equal(big.statusCode, 413)
    t.equal(big.json().code, 'BODY_TOO_LARGE')
    const notPb = await n.call('POST', '/v1/ns/watch', Buffer.from([0xff, 0xff]), { 'content-type': 'application/x-protobuf' })
    t.equal(notPb.json().code, 'INVALID_PROTOBUF')
    for (const q of ['since=-1', 'since=abc', 'namespace=a%00b']) {
      const res = await n.call('GET', `/v1/ns/delta?${q}`)
      t.equal(res.statusCode, 400, q)
    }
  }),
)

t.test('duplicate items count once; shutdown releases held watches', (t) =>
  withNode(t, async (n) => {
    const watching = n.call('POST', '/v1/ns/watch', { items: [{ service: 'z', checksum: EMPTY }, { service: 'z', checksum: EMPTY }] })
    await heldBy(n, 1)
    t.equal(n.node.push.watchedServices, 1)
    n.node.push.releaseAll()
    t.same((await watching).json(), { changed: [] })
  }),
)

t.test('delta: everything first, then only what changed, removals, and a hash that reconciles', (t) =>
  withNode(t, async (n) => {
    await register(n, { service: 'a' })
    await register(n, { service: 'b' })
    await register(n, { service: 'other', namespace: 'dev' })
    const full = (await n.call('GET', '/v1/ns/delta')).json()
    t.equal(full.full, true)
    t.same(full.services.map((s: { service: string }) => s.service).sort(), ['a', 'b'])
    t.same(full.removed, [])
    // A mirror built from it, with the client's hash.
    const mirror = new Map<string, string>(full.services.map((s: { group: string; service: string; checksum: string }) => [`${s.group}\u001f${s.service}`, s.checksum]))
    const hashOf = async () => {
      const { createHash } = await import('node:crypto')
      const lines = [...mirror].map(([k, c]) => `${k}\u001f${c}\n`).sort()
      const h = createHash('md5')
      for (const l of lines) h.update(l)
      return h.digest('hex')
    }
    t.equal(await hashOf(), full.hash, 'the client computes the same hash')

    await register(n, { service: 'c' })
    await n.call('DELETE', '/v1/ns/instances?service=a&ip=10.0.0.1&port=8080')
    const delta = (await n.call('GET', `/v1/ns/delta?since=${full.revision}`)).json()
    t.equal(delta.full, false)
    t.same(delta.services.map((s: { service: string }) => s.service), ['c'])
    t.same(delta.removed, [{ namespace: 'public', group: 'DEFAULT_GROUP', service: 'a' }])
    for (const s of delta.services) mirror.set(`${s.group}\u001f${s.service}`, s.checksum)
    for (const r of delta.removed) mirror.delete(`${r.group}\u001f${r.service}`)
    t.equal(await hashOf(), delta.hash, 'after applying the delta the hashes agree')

    const none = (await n.call('GET', `/v1/ns/delta?since=${delta.revision}`)).json()
    t.same([none.full, none.services, none.removed], [false, [], []])
    t.equal((await n.call('GET', '/v1/ns/delta?since=1')).json().full, true, 'a revision from before this node: everything')
    t.equal((await n.call('GET', `/v1/ns/delta?since=${delta.revision + 1000}`)).json().full, true, 'a revision this node never made: everything')
    const dev = (await n.call('GET', '/v1/ns/delta?namespace=dev')).json()
    t.same(dev.services.map((s: { service: string }) => s.service), ['other'])
  }),
)
