// The naming API through HTTP (fastify inject), on a real LevelDB and a ManualClock.

import t, { type Test } from 'tap'
import { grace } from '../../src/gen/proto.js'
import { type TestNode, startTestNode } from '../helpers/node.js'

const PB = 'application/x-protobuf'

async function withNode(t: Test, fn: (n: TestNode) => Promise<void>): Promise<void> {
  const n = await startTestNode()
  t.teardown(() => n.close())
  await fn(n)
}

async function list(n: TestNode, query: string) {
  const res = await n.call('GET', `/v1/ns/instances?${query}`)
  if (res.statusCode !== 200) throw new Error(`list ${query}: ${res.statusCode} ${res.body}`)
  return res.json() as { revision: number; checksum: string; instances: { ip: string; port: number; healthy: boolean; enabled: boolean; weight: number; cluster: string; metadata: Record<string, string>; ephemeral: boolean; clientId: string }[] }
}

t.test('register, discover and deregister an ephemeral instance with the defaults', (t) =>
  withNode(t, async (n) => {
    const empty = await list(n, 'service=orders')
    t.same(empty.instances, [])
    const res = await n.call('POST', '/v1/ns/instances', { service: 'orders', ip: '10.0.0.1', port: 8080, metadata: { zone: 'a' } })
    t.equal(res.statusCode, 200, res.body)
    t.same(res.json(), { ok: true })
    const one = await list(n, 'service=orders')
    t.equal(one.instances.length, 1)
    t.match(one.instances[0], { ip: '10.0.0.1', port: 8080, weight: 1, enabled: true, healthy: true, ephemeral: true, cluster: 'DEFAULT', metadata: { zone: 'a' }, clientId: '10.0.0.1:8080' })
    t.match(one, { namespace: 'public', group: 'DEFAULT_GROUP', service: 'orders' })
    t.not(one.revision, empty.revision, 'revision changes')
    t.not(one.checksum, empty.checksum, 'checksum changes')
    t.equal((await list(n, 'service=orders')).revision, one.revision, 'no change, same revision')

    const del = await n.call('DELETE', '/v1/ns/instances?service=orders&ip=10.0.0.1&port=8080')
    t.same(del.json(), { ok: true, deleted: true })
    const again = await n.call('DELETE', '/v1/ns/instances?service=orders&ip=10.0.0.1&port=8080')
    t.same(again.json(), { ok: true, deleted: false }, 'deleting twice is not an error')
    t.same((await list(n, 'service=orders')).instances, [])
  }),
)

t.test('persistent instances are written through the CP log and survive a restart', (t) =>
  withNode(t, async (n) => {
    for (let port = 1; port <= 5; port++) {
      const res = await n.call('POST', '/v1/ns/instances', { service: 'pay', ip: '10.0.0.2', port, ephemeral: false, weight: port })
      t.equal(res.statusCode, 200, res.body)
    }
    await n.call('POST', '/v1/ns/instances', { service: 'eph', ip: '10.0.0.9', port: 1 })
    // Names beyond U+FFFF sort after the BMP in UTF-8; they must be inside the key range loaded.
    await n.call('POST', '/v1/ns/instances', { service: 'rocket-\u{1F680}', ip: '10.0.0.7', port: 7, ephemeral: false })
    const before = await list(n, 'service=pay')
    n.clock.advance(1000) // a restart takes time; revisions restart from the clock
    const restarted = await n.reopen()
    t.teardown(() => restarted.close())
    const after = await list(restarted, 'service=pay')
    t.same(after.instances, before.instances, 'every persistent instance is back')
    t.equal(after.checksum, before.checksum)
    t.ok(after.revision > before.revision, 'revisions keep growing across restarts')
    t.same((await list(restarted, 'service=eph')).instances, [], 'ephemeral instances are not persisted')
    t.equal((await list(restarted, `service=${encodeURIComponent('rocket-\u{1F680}')}`)).instances.length, 1)
  }),
)

t.test('a service is ephemeral or persistent; registering the other kind is a 409 that names the kind', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'e', ip: '10.0.0.1', port: 1 })
    await n.call('POST', '/v1/ns/instances', { service: 'p', ip: '10.0.0.1', port: 1, ephemeral: false })
    const a = await n.call('POST', '/v1/ns/instances', { service: 'e', ip: '10.0.0.2', port: 1, ephemeral: false })
    t.equal(a.statusCode, 409)
    t.equal(a.json().code, 'SERVICE_KIND_CONFLICT')
    t.match(a.json().message, /service e is ephemeral/)
    const b = await n.call('POST', '/v1/ns/instances', { service: 'p', ip: '10.0.0.2', port: 1 })
    t.equal(b.statusCode, 409)
    t.match(b.json().message, /service p is persistent/)
    t.equal((await list(n, 'service=e')).instances.length, 1, 'nothing added')
    t.equal((await list(n, 'service=p')).instances.length, 1, 'nothing added')
    // An explicitly created persistent service refuses ephemeral instances before it has any.
    await n.call('POST', '/v1/ns/services', { service: 'db', ephemeral: false })
    const c = await n.call('POST', '/v1/ns/instances', { service: 'db', ip: '10.0.0.3', port: 1 })
    t.equal(c.statusCode, 409)
  }),
)

t.test('update weight, enabled and metadata; disabled and unhealthy instances are filtered', (t) =>
  withNode(t, async (n) => {
    for (const ephemeral of [true, false]) {
      const service = ephemeral ? 'e' : 'p'
      await n.call('POST', '/v1/ns/instances', { service, ip: '10.0.0.1', port: 1, ephemeral, metadata: { a: '1' } })
      await n.call('POST', '/v1/ns/instances', { service, ip: '10.0.0.2', port: 1, ephemeral, cluster: 'east' })
      const res = await n.call('PATCH', '/v1/ns/instances', { service, ip: '10.0.0.1', port: 1, weight: 7.5, enabled: false, metadata: { b: '2' } })
      t.equal(res.statusCode, 200, res.body)
      t.same((await list(n, `service=${service}`)).instances.map((i) => i.ip), ['10.0.0.2'], 'a disabled instance is not handed out')
      const all = await list(n, `service=${service}&includeDisabled=true`)
      t.match(all.instances.find((i) => i.ip === '10.0.0.1'), { weight: 7.5, enabled: false, metadata: { b: '2' } })
      t.notOk('a' in all.instances.find((i) => i.ip === '10.0.0.1')!.metadata, 'metadata is replaced')
      t.same((await list(n, `service=${service}&clusters=east&includeDisabled=true`)).instances.map((i) => i.ip), ['10.0.0.2'])
      t.same((await list(n, `service=${service}&clusters=DEFAULT,east&includeDisabled=true`)).instances.length, 2)
      t.same((await list(n, `service=${service}&clusters=east,&includeDisabled=true`)).instances.map((i) => i.ip), ['10.0.0.2'], 'an empty entry names no cluster')
      const missing = await n.call('PATCH', '/v1/ns/instances', { service, ip: '10.0.0.9', port: 1, weight: 1 })
      t.equal(missing.statusCode, 404)
      t.equal(missing.json().code, 'INSTANCE_NOT_FOUND')
      const nothing = await n.call('PATCH', '/v1/ns/instances', { service, ip: '10.0.0.1', port: 1 })
      t.equal(nothing.statusCode, 400)
    }
  }),
)

t.test('heartbeats renew the client; silence makes instances unhealthy at 15 s and removes them at 30 s', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 's', ip: '10.0.0.1', port: 1 })
    await n.call('POST', '/v1/ns/instances', { service: 's', ip: '10.0.0.2', port: 1, clientId: 'proc-2' })
    await n.call('POST', '/v1/ns/instances', { service: 't', ip: '10.0.0.2', port: 2, clientId: 'proc-2' })
    n.clock.advance(14_000)
    t.same((await list(n, 'service=s')).instances.map((i) => i.healthy), [true, true])
    const beat = await n.call('PUT', '/v1/ns/instances/beat', { clientId: 'proc-2' })
    t.same(beat.json(), { clientBeatInterval: 5000, registered: true })
    n.clock.advance(2_000)
    const s = await list(n, 'service=s')
    t.same(s.instances.map((i) => [i.ip, i.healthy]), [['10.0.0.1', false], ['10.0.0.2', true]], 'unhealthy after 15 s of silence')
    t.same((await list(n, 'service=s&healthyOnly=true')).instances.map((i) => i.ip), ['10.0.0.2'])
    // A beat naming the instance finds its client and makes it healthy again at once.
    const back = await n.call('PUT', '/v1/ns/instances/beat', { service: 's', ip: '10.0.0.1', port: 1 })
    t.same(back.json(), { clientBeatInterval: 5000, registered: true })
    t.same((await list(n, 'service=s')).instances.map((i) => i.healthy), [true, true])
    n.clock.advance(31_000)
    t.same((await list(n, 'service=s')).instances, [], 'removed after 30 s of silence')
    t.same((await list(n, 'service=t')).instances, [], 'one lease covers every instance of the client')
    const gone = await n.call('PUT', '/v1/ns/instances/beat', { clientId: 'proc-2' })
    t.same(gone.json(), { clientBeatInterval: 5000, registered: false }, 'a forgotten client is told to register again')
  }),
)

t.test('per-instance beat timing from the preserved.* metadata keys', (t) =>
  withNode(t, async (n) => {
    const metadata = { 'preserved.heart.beat.interval': '1000', 'preserved.heart.beat.timeout': '3000', 'preserved.ip.delete.timeout': '6000' }
    await n.call('POST', '/v1/ns/instances', { service: 'fast', ip: '10.0.0.1', port: 1, metadata })
    const beat = await n.call('PUT', '/v1/ns/instances/beat', { service: 'fast', ip: '10.0.0.1', port: 1 })
    t.equal(beat.json().clientBeatInterval, 1000)
    n.clock.advance(4_000)
    t.same((await list(n, 'service=fast')).instances.map((i) => i.healthy), [false])
    n.clock.advance(3_000)
    t.same((await list(n, 'service=fast')).instances, [])
    const bad = await n.call('POST', '/v1/ns/instances', { service: 'fast', ip: '10.0.0.1', port: 1, metadata: { 'preserved.heart.beat.timeout': 'soon' } })
    t.equal(bad.statusCode, 400)
    t.equal(bad.json().code, 'INVALID_METADATA')
  }),
)

t.test('a client beats at the shortest interval its instances ask for, defaulting to 5 s', (t) =>
  withNode(t, async (n) => {
    const slow = { 'preserved.heart.beat.interval': '20000', 'preserved.heart.beat.timeout': '60000', 'preserved.ip.delete.timeout': '90000' }
    await n.call('POST', '/v1/ns/instances', { service: 'slow', ip: '10.0.0.1', port: 1, clientId: 'c', metadata: slow })
    t.equal((await n.call('PUT', '/v1/ns/instances/beat', { clientId: 'c' })).json().clientBeatInterval, 20000)
    n.clock.advance(20_000)
    t.same((await list(n, 'service=slow')).instances.map((i) => i.healthy), [true], 'its own timeout, not 15 s')
    await n.call('POST', '/v1/ns/instances', { service: 'slow', ip: '10.0.0.1', port: 2, clientId: 'c' })
    t.equal((await n.call('PUT', '/v1/ns/instances/beat', { clientId: 'c' })).json().clientBeatInterval, 5000)
  }),
)

t.test('persistent health is set by hand with PATCH; ephemeral health only by beats', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'p', ip: '10.0.0.1', port: 1, ephemeral: false, healthy: false })
    t.same((await list(n, 'service=p')).instances.map((i) => i.healthy), [false])
    t.equal((await n.call('PATCH', '/v1/ns/instances', { service: 'p', ip: '10.0.0.1', port: 1, healthy: true })).statusCode, 200)
    t.same((await list(n, 'service=p')).instances.map((i) => i.healthy), [true])
    await n.call('POST', '/v1/ns/instances', { service: 'e', ip: '10.0.0.1', port: 1 })
    const res = await n.call('PATCH', '/v1/ns/instances', { service: 'e', ip: '10.0.0.1', port: 1, healthy: false })
    t.equal(res.statusCode, 409)
    t.equal(res.json().code, 'HEALTH_NOT_MANUAL')
    t.same((await list(n, 'service=e')).instances.map((i) => i.healthy), [true])
  }),
)

t.test('writes that change nothing leave no log entry', (t) =>
  withNode(t, async (n) => {
    const before = n.node.log.status().commitIndex
    t.same((await n.call('DELETE', '/v1/ns/instances?service=none&ip=10.9.9.9&port=1')).json(), { ok: true, deleted: false })
    t.equal((await n.call('PATCH', '/v1/ns/instances', { service: 'none', ip: '10.9.9.9', port: 1, weight: 2 })).statusCode, 404)
    t.same((await n.call('DELETE', '/v1/ns/services?service=none')).json(), { ok: true, deleted: false })
    t.equal(n.node.log.status().commitIndex, before)
  }),
)

t.test('protection threshold: when too few are healthy, a healthyOnly query lists all and says so', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/services', { service: 'guarded', protectThreshold: 0.5 })
    for (let port = 1; port <= 4; port++) await n.call('POST', '/v1/ns/instances', { service: 'guarded', ip: '10.0.0.1', port, clientId: `c${port}` })
    n.clock.advance(10_000)
    for (const c of ['c1', 'c2']) await n.call('PUT', '/v1/ns/instances/beat', { clientId: c })
    n.clock.advance(6_000)
    // Two of four healthy: 0.5, at the threshold.
    const protectedList = await list(n, 'service=guarded&healthyOnly=true')
    t.equal(protectedList.instances.length, 4, 'all four are handed out')
    t.equal((protectedList as unknown as { protectThresholdReached: boolean }).protectThresholdReached, true)
    t.same(protectedList.instances.map((i) => i.healthy), [true, true, false, false], 'health stays true to the facts')
    await n.call('PUT', '/v1/ns/instances/beat', { clientId: 'c3' })
    const normal = await list(n, 'service=guarded&healthyOnly=true')
    t.equal(normal.instances.length, 3, 'three of four healthy: above the threshold, only the healthy')
    t.equal((normal as unknown as { protectThresholdReached: boolean }).protectThresholdReached, false)
  }),
)

t.test('a beat for a persistent instance is refused', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'p', ip: '10.0.0.1', port: 1, ephemeral: false })
    const res = await n.call('PUT', '/v1/ns/instances/beat', { service: 'p', ip: '10.0.0.1', port: 1 })
    t.equal(res.statusCode, 400)
    t.equal(res.json().code, 'NOT_EPHEMERAL')
    const none = await n.call('PUT', '/v1/ns/instances/beat', {})
    t.equal(none.statusCode, 400)
  }),
)

t.test('services: create, read, list with paging, update, delete', (t) =>
  withNode(t, async (n) => {
    const created = await n.call('POST', '/v1/ns/services', { service: 'orders', protectThreshold: 0.5, metadata: { owner: 'team-a' } })
    t.equal(created.statusCode, 200, created.body)
    const dup = await n.call('POST', '/v1/ns/services', { service: 'orders' })
    t.equal(dup.statusCode, 409)
    t.equal(dup.json().code, 'SERVICE_ALREADY_EXISTS')
    const got = await n.call('GET', '/v1/ns/services?service=orders')
    t.same(got.json(), { namespace: 'public', group: 'DEFAULT_GROUP', service: 'orders', ephemeral: true, protectThreshold: 0.5, metadata: { owner: 'team-a' }, instanceCount: 0, healthyInstanceCount: 0 })
    for (let i = 0; i < 5; i++) await n.call('POST', '/v1/ns/instances', { service: `svc-${i}`, ip: '10.0.0.1', port: 1, group: 'g2' })
    const page = await n.call('GET', '/v1/ns/services?group=g2&pageNo=2&pageSize=2')
    t.match(page.json(), { count: 5, pageNo: 2, pageSize: 2 })
    t.same(page.json().services.map((s: { service: string }) => s.service), ['svc-2', 'svc-3'])
    t.equal((await n.call('GET', '/v1/ns/services')).json().count, 6)
    t.equal((await n.call('GET', '/v1/ns/services?namespace=other')).json().count, 0)

    const patched = await n.call('PATCH', '/v1/ns/services', { service: 'orders', protectThreshold: 0.8 })
    t.equal(patched.statusCode, 200, patched.body)
    t.match((await n.call('GET', '/v1/ns/services?service=orders')).json(), { protectThreshold: 0.8, metadata: { owner: 'team-a' } })
    // An implicit service (instances only) can be given metadata.
    t.equal((await n.call('PATCH', '/v1/ns/services', { service: 'svc-0', group: 'g2', metadata: { x: 'y' } })).statusCode, 200)
    t.same((await n.call('GET', '/v1/ns/services?service=svc-0&group=g2')).json().metadata, { x: 'y' })
    const kind = await n.call('PATCH', '/v1/ns/services', { service: 'svc-0', group: 'g2', ephemeral: false })
    t.equal(kind.statusCode, 409)

    await n.call('POST', '/v1/ns/instances', { service: 'orders', ip: '10.0.0.1', port: 1 })
    const busy = await n.call('DELETE', '/v1/ns/services?service=orders')
    t.equal(busy.statusCode, 409)
    t.equal(busy.json().code, 'SERVICE_NOT_EMPTY')
    await n.call('DELETE', '/v1/ns/instances?service=orders&ip=10.0.0.1&port=1')
    t.same((await n.call('DELETE', '/v1/ns/services?service=orders')).json(), { ok: true, deleted: true })
    const gone = await n.call('GET', '/v1/ns/services?service=orders')
    t.equal(gone.statusCode, 404)
    t.equal(gone.json().code, 'SERVICE_NOT_FOUND')
    t.same((await n.call('DELETE', '/v1/ns/services?service=orders')).json(), { ok: true, deleted: false }, 'deleting twice is not an error')
    t.equal((await n.call('PATCH', '/v1/ns/services', { service: 'orders', protectThreshold: 0.1 })).statusCode, 404)
  }),
)

t.test('service metadata survives a restart', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/services', { service: 'kept', ephemeral: false, metadata: { k: 'v' } })
    const r = await n.reopen()
    t.teardown(() => r.close())
    t.match((await r.call('GET', '/v1/ns/services?service=kept')).json(), { ephemeral: false, metadata: { k: 'v' } })
  }),
)

const long = 'x'.repeat(513)
const BAD_REGISTRATIONS: [string, Record<string, unknown>, number, string][] = [
  ['missing service', { ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['empty service', { service: '', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['blank group', { service: 's', group: '  ', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['cluster with a leading space', { service: 's', cluster: ' west', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['service over 512 bytes', { service: long, ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['multi-byte name over 512 bytes', { service: 'é'.repeat(257), ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['control character', { service: 'a\nb', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['unpaired surrogate', { service: 'a\ud800b', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['clientId with a control character', { service: 's', ip: '10.0.0.1', port: 1, clientId: 'c\u0000' }, 400, 'INVALID_NAME'],
  ['cluster with a comma', { service: 's', cluster: 'a,b', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['service with @@', { service: 'g@@s', ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['number as name', { service: 12, ip: '10.0.0.1', port: 1 }, 400, 'INVALID_NAME'],
  ['bad IPv4', { service: 's', ip: '10.0.0.256', port: 1 }, 400, 'INVALID_IP'],
  ['bad IPv6', { service: 's', ip: '2001:db8::g', port: 1 }, 400, 'INVALID_IP'],
  ['hostname', { service: 's', ip: 'example.com', port: 1 }, 400, 'INVALID_IP'],
  ['missing ip', { service: 's', port: 1 }, 400, 'INVALID_IP'],
  ['port 0', { service: 's', ip: '10.0.0.1', port: 0 }, 400, 'INVALID_PORT'],
  ['port 65536', { service: 's', ip: '10.0.0.1', port: 65536 }, 400, 'INVALID_PORT'],
  ['port as a word', { service: 's', ip: '10.0.0.1', port: 'http' }, 400, 'INVALID_PORT'],
  ['port as an array', { service: 's', ip: '10.0.0.1', port: [80] }, 400, 'INVALID_PORT'],
  ['fractional port', { service: 's', ip: '10.0.0.1', port: 80.5 }, 400, 'INVALID_PORT'],
  ['negative weight', { service: 's', ip: '10.0.0.1', port: 1, weight: -1 }, 400, 'INVALID_WEIGHT'],
  ['weight over 10000', { service: 's', ip: '10.0.0.1', port: 1, weight: 10000.5 }, 400, 'INVALID_WEIGHT'],
  ['weight as string', { service: 's', ip: '10.0.0.1', port: 1, weight: 'NaN' }, 400, 'INVALID_WEIGHT'],
  ['metadata not a map', { service: 's', ip: '10.0.0.1', port: 1, metadata: ['a'] }, 400, 'INVALID_METADATA'],
  ['metadata with a number', { service: 's', ip: '10.0.0.1', port: 1, metadata: { a: 1 } }, 400, 'INVALID_METADATA'],
  ['metadata with an unpaired surrogate', { service: 's', ip: '10.0.0.1', port: 1, metadata: { a: '\udc00' } }, 400, 'INVALID_METADATA'],
  ['metadata over 16 KiB', { service: 's', ip: '10.0.0.1', port: 1, metadata: { a: 'x'.repeat(16 * 1024) } }, 400, 'INVALID_METADATA'],
  ['enabled as string', { service: 's', ip: '10.0.0.1', port: 1, enabled: 'yes' }, 400, 'INVALID_ARGUMENT'],
]

t.test('bad registrations get a 4xx with a code and store nothing', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 's', ip: '10.0.0.1', port: 1 })
    const before = await list(n, 'service=s')
    for (const [what, body, status, code] of BAD_REGISTRATIONS) {
      const res = await n.call('POST', '/v1/ns/instances', body)
      t.equal(res.statusCode, status, `${what}: status`)
      t.equal(res.json().code, code, `${what}: code`)
      t.type(res.json().message, 'string')
    }
    const nan = await n.call('POST', '/v1/ns/instances', '{"service":"s","ip":"10.0.0.1","port":1,"weight":NaN}')
    t.equal(nan.json().code, 'INVALID_JSON', 'NaN is not JSON')
    const raw: [string, string, Record<string, string>, number, string][] = [
      ['malformed JSON', '{"service":', {}, 400, 'INVALID_JSON'],
      ['a JSON array', '[1,2]', {}, 400, 'INVALID_ARGUMENT'],
      ['proto poisoning', '{"service":"s","ip":"10.0.0.1","port":1,"__proto__":{"x":1}}', {}, 400, 'INVALID_JSON'],
      ['unknown content type', 'service=s', { 'content-type': 'application/x-www-form-urlencoded' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['text/plain', 'hello', { 'content-type': 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['garbage protobuf', '\xff\xff\xff\xff\xff', { 'content-type': PB }, 400, 'INVALID_PROTOBUF'],
      ['body over the limit', JSON.stringify({ service: 's', ip: '10.0.0.1', port: 1, metadata: { a: 'x'.repeat(70_000) } }), {}, 413, 'BODY_TOO_LARGE'],
    ]
    for (const [what, payload, headers, status, code] of raw) {
      const res = await n.call('POST', '/v1/ns/instances', what === 'garbage protobuf' ? Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]) : payload, headers)
      t.equal(res.statusCode, status, `${what}: status (${res.body})`)
      t.equal(res.json().code, code, `${what}: code`)
    }
    const after = await list(n, 'service=s')
    t.equal(after.revision, before.revision, 'no bad request changed the service')
    t.equal((await n.call('GET', '/v1/ns/services')).json().count, 1, 'no bad request created a service')
    const accept = await n.call('GET', '/v1/ns/instances?service=s', undefined, { accept: 'text/html' })
    t.equal(accept.statusCode, 406)
    t.equal(accept.json().code, 'NOT_ACCEPTABLE')
    const route = await n.call('GET', '/v1/nope')
    t.equal(route.statusCode, 404)
    t.equal(route.json().code, 'NOT_FOUND')
    for (const q of ['ip=10.0.0.1&port=1', 'service=s&ip=1.2.3&port=1', 'service=s&ip=10.0.0.1&port=x']) {
      const res = await n.call('DELETE', `/v1/ns/instances?${q}`)
      t.equal(res.statusCode, 400, `delete ${q}`)
    }
    t.equal((await list(n, 'service=s')).instances.length, 1)
    t.equal((await n.call('GET', '/v1/ns/instances?service=s&healthyOnly=maybe')).statusCode, 400)
    t.equal((await n.call('GET', '/v1/ns/instances?service=s&clusters=,')).statusCode, 400, 'a cluster list of nothing')
    const mixed = await n.call('DELETE', '/v1/ns/instances?service=s&ip=10.0.0.1&port=1', { service: 'other', ip: '10.0.0.2', port: 2 })
    t.equal(mixed.statusCode, 400, 'fields in both the query string and the body')
    t.equal((await list(n, 'service=s')).instances.length, 1, 'and nothing was deleted')
    const emptyJson = await n.call('DELETE', '/v1/ns/instances?service=s&ip=10.0.0.9&port=1', '', { 'content-type': 'application/json' })
    t.same(emptyJson.json(), { ok: true, deleted: false }, 'an empty JSON body means the query string')
    t.equal((await n.call('GET', '/v1/ns/services?pageSize=100000')).statusCode, 400)
  }),
)

t.test('protobuf in and out', (t) =>
  withNode(t, async (n) => {
    const body = Buffer.from(grace.v1.Instance.encode({ service: 'pb', ip: '::1', port: 9000, weight: 2, metadata: { a: 'b' }, ephemeral: false }).finish())
    const res = await n.call('POST', '/v1/ns/instances', body, { 'content-type': PB, accept: PB })
    t.equal(res.statusCode, 200)
    t.equal(res.headers['content-type'], PB)
    t.same(grace.v1.Ack.toObject(grace.v1.Ack.decode(res.rawPayload)), { ok: true })
    const listed = await n.call('GET', '/v1/ns/instances?service=pb', undefined, { accept: PB })
    const msg = grace.v1.InstanceList.decode(listed.rawPayload)
    t.equal(msg.instances.length, 1)
    t.match(msg.instances[0], { ip: '::1', port: 9000, weight: 2, ephemeral: false, metadata: { a: 'b' } })
    t.equal(msg.checksum, (await list(n, 'service=pb')).checksum, 'the same answer as JSON')
    // Absent optional fields take their defaults, as in JSON.
    const minimal = Buffer.from(grace.v1.Instance.encode({ service: 'pb2', ip: '10.0.0.1', port: 1 }).finish())
    t.equal((await n.call('POST', '/v1/ns/instances', minimal, { 'content-type': PB })).statusCode, 200)
    t.match((await list(n, 'service=pb2')).instances[0], { weight: 1, enabled: true, ephemeral: true })
    // Errors come back as grace.v1.Error when protobuf was asked for.
    const bad = Buffer.from(grace.v1.Instance.encode({ service: 'pb', ip: 'nope', port: 1 }).finish())
    const err = await n.call('POST', '/v1/ns/instances', bad, { 'content-type': PB, accept: PB })
    t.equal(err.statusCode, 400)
    t.same(grace.v1.Error.toObject(grace.v1.Error.decode(err.rawPayload)), { code: 'INVALID_IP', message: 'ip "nope" is not an IPv4 or IPv6 address' })
    // PATCH metadata travels in a StringMap, so that an empty map can clear it.
    const patch = Buffer.from(grace.v1.UpdateInstanceRequest.encode({ service: 'pb', ip: '::1', port: 9000, metadata: { entries: {} } }).finish())
    t.equal((await n.call('PATCH', '/v1/ns/instances', patch, { 'content-type': PB })).statusCode, 200)
    t.same((await list(n, 'service=pb')).instances[0]!.metadata, {})
    const svc = await n.call('GET', '/v1/ns/services?service=pb', undefined, { accept: PB })
    t.match(grace.v1.Service.toObject(grace.v1.Service.decode(svc.rawPayload)), { service: 'pb', ephemeral: false, instanceCount: 1 })
  }),
)

t.test('cluster status: a standalone node is the leader of a group of one', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'p', ip: '10.0.0.1', port: 1, ephemeral: false })
    const status = (await n.call('GET', '/v1/cluster/status')).json()
    t.match(status, { id: 'n1', role: 'leader', term: 1, leaderId: 'n1', membership: { voters: ['n1'], learners: [] } })
    t.ok(status.commitIndex >= 2 && status.appliedIndex === status.commitIndex, 'the write is committed and applied')
  }),
)

t.test('stale reads are an explicit opt-in, and answer the same on a single node', (t) =>
  withNode(t, async (n) => {
    await n.call('POST', '/v1/ns/instances', { service: 'p', ip: '10.0.0.1', port: 1, ephemeral: false })
    t.same((await list(n, 'service=p&stale=true')).instances, (await list(n, 'service=p')).instances)
    t.equal((await n.call('GET', '/v1/ns/services?service=p&stale=true')).statusCode, 200)
    t.equal((await n.call('GET', '/v1/ns/instances?service=p&stale=maybe')).statusCode, 400)
  }),
)

t.test('health endpoints', (t) =>
  withNode(t, async (n) => {
    t.same((await n.call('GET', '/healthz')).json(), { status: 'UP' })
    t.same((await n.call('GET', '/readyz')).json(), { status: 'READY' })
  }),
)

t.test("one client's instances are bounded in bytes, so its record always fits a peer frame", (t) =>
  withNode(t, async (n) => {
    // Control characters take six bytes each in JSON: the cheapest way to a large record.
    const metadata = { blob: '\u0001'.repeat(10_000) }
    let refused: { statusCode: number; body: string } | undefined
    let held = 0
    for (let i = 0; i < 400 && !refused; i++) {
      const res = await n.call('POST', '/v1/ns/instances', { service: 'big', ip: '10.0.0.1', port: 1000 + i, clientId: 'big-client', metadata })
      if (res.statusCode === 200) held++
      else refused = res
    }
    t.ok(refused, 'a registration past the bound is refused')
    t.equal(refused?.statusCode, 429)
    t.match(JSON.parse(refused!.body), { code: 'LIMIT_EXCEEDED' })
    const bytesPerInstance = 6 * 10_000
    t.ok(held * bytesPerInstance <= 8 * 1024 * 1024 && (held + 2) * bytesPerInstance > 8 * 1024 * 1024, `${held} instances of ~60 KB were taken, then the 8 MiB bound refused the next`)
    t.equal((await list(n, 'service=big')).instances.length, held, 'the refusal changed nothing')
    const other = await n.call('POST', '/v1/ns/instances', { service: 'big', ip: '10.0.0.2', port: 1, metadata })
    t.equal(other.statusCode, 200, 'another client is not affected')
  }),
)

t.test('registering an ephemeral instance again exactly as it is renews its lease and changes nothing else; any difference is a change', (t) =>
  withNode(t, async (n) => {
    const body = { service: 'orders', ip: '10.0.0.7', port: 8080, weight: 2, metadata: { zone: 'a', v: '1' } }
    t.equal((await n.call('POST', '/v1/ns/instances', body)).statusCode, 200)
    const first = await list(n, 'service=orders')
    // Close to the unhealthy timeout, the same registration (metadata in another key order) renews the lease.
    n.clock.advance(14_000)
    t.equal((await n.call('POST', '/v1/ns/instances', { ...body, metadata: { v: '1', zone: 'a' } })).statusCode, 200)
    const same = await list(n, 'service=orders&healthyOnly=false')
    t.equal(same.revision, first.revision, 'no new revision for an identical registration')
    n.clock.advance(14_000)
    t.equal((await list(n, 'service=orders&healthyOnly=false')).instances[0]!.healthy, true, 'healthy 28 s after the first registration: the second renewed the lease')

    for (const change of [{ weight: 3 }, { metadata: { zone: 'a' } }, { metadata: { zone: 'a', v: '2' } }, { enabled: false }, { clientId: 'other' }]) {
      const before = await list(n, 'service=orders&healthyOnly=false')
      t.equal((await n.call('POST', '/v1/ns/instances', { ...body, ...change })).statusCode, 200)
      const after = await list(n, 'service=orders&healthyOnly=false')
      t.ok(after.revision > before.revision, `${JSON.stringify(change)} is a change`)
    }
  }),
)
