// The config routes through fastify's inject (and, for disconnects, a real socket): JSON and
// protobuf both ways, every kind of bad input rejected with its code and nothing changed, and
// long-poll listens answered on change, on timeout, and released when the client goes away.

import { createHash } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance, InjectOptions } from 'fastify'
import t from 'tap'
import { type Clock, ManualClock, SystemClock } from '../../src/core/clock.js'
import { LIMITS } from '../../src/core/limits.js'
import type { ConfigService } from '../../src/config/service.js'
import { grace } from '../../src/gen/proto.js'
import { buildApp } from '../../src/http/app.js'
import { type ConfigStore, type Teardown, openConfigStore, settle, tempDb } from '../helpers/config-store.js'

const PB = 'application/x-protobuf'
const md5 = (s: string): string => createHash('md5').update(s, 'utf8').digest('hex')
const KEY = { namespace: 'public', group: 'DEFAULT_GROUP', dataId: 'app.yaml' }
const KEY_QS = 'dataId=app.yaml'

interface Harness extends ConfigStore {
  readonly app: FastifyInstance
}

/** The app with the config routes, not yet ready. Naming is never called here. */
function configApp(service: ConfigService): FastifyInstance {
  return buildApp({ naming: {} as never, config: service, clusterStatus: () => ({}) as never })
}

/** A fresh store on a temporary LevelDB behind a ready app. */
async function harness(t: Teardown, clock: Clock = new ManualClock(), maxListeners?: number): Promise<Harness> {
  const tdb = await tempDb(t)
  const store = await openConfigStore(tdb, clock, maxListeners === undefined ? {} : { maxListeners })
  const app = configApp(store.service)
  await app.ready()
  tdb.beforeClose(() => app.close())
  return { app, ...store }
}

function pb(type: { encode(m: never): { finish(): Uint8Array } }, value: object): Buffer {
  return Buffer.from(type.encode(value as never).finish())
}

/** What a client can observe of KEY: GET's status and body, and the history count. */
async function observe(app: FastifyInstance): Promise<unknown> {
  const got = await app.inject({ method: 'GET', url: `/v1/cs/configs?${KEY_QS}` })
  const history = await app.inject({ method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}` })
  return { status: got.statusCode, body: got.json(), historyCount: history.json().count }
}

t.test('JSON: publish, get, history, delete', async (t) => {
  const { app } = await harness(t)
  const published = await app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: 'a: 1', type: 'yaml' } })
  t.equal(published.statusCode, 200)
  t.match(published.headers['content-type'], /^application\/json/)
  const { md5: sum, revision } = published.json()
  t.equal(sum, md5('a: 1'))
  t.type(revision, 'number')

  const got = await app.inject({ method: 'GET', url: `/v1/cs/configs?namespace=public&group=DEFAULT_GROUP&${KEY_QS}` })
  t.equal(got.statusCode, 200)
  const config = got.json()
  t.same({ ...config, modifiedAt: 0 }, { ...KEY, content: 'a: 1', type: 'yaml', md5: sum, revision, modifiedAt: 0 })
  t.equal(config.modifiedAt, 1_700_000_000_000, 'the time of the ManualClock the log stamped')

  const second = await app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: 'a: 2', casMd5: sum } })
  t.equal(second.statusCode, 200)
  t.ok(second.json().revision > revision)

  const history = await app.inject({ method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}` })
  t.same(
    history.json().items.map((i: { op: string; content: string; type: string }) => [i.op, i.content, i.type]),
    [
      ['publish', 'a: 2', 'text'],
      ['publish', 'a: 1', 'yaml'],
    ],
  )

  const deleted = await app.inject({ method: 'DELETE', url: `/v1/cs/configs?${KEY_QS}` })
  t.same(deleted.json(), { ok: true, deleted: true })
  const again = await app.inject({ method: 'DELETE', url: `/v1/cs/configs?${KEY_QS}` })
  t.same(again.json(), { ok: true, deleted: false })
  const gone = await app.inject({ method: 'GET', url: `/v1/cs/configs?${KEY_QS}` })
  t.equal(gone.statusCode, 404)
  t.equal(gone.json().code, 'CONFIG_NOT_FOUND')
  t.equal((await app.inject({ method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}` })).json().count, 3, 'history outlives the config')
})

t.test('protobuf in and out on every route', async (t) => {
  const { app } = await harness(t)
  const headers = { 'content-type': PB, accept: PB }
  const key = { namespace: 'dev', group: 'G', dataId: 'db.properties' }
  const qs = 'namespace=dev&group=G&dataId=db.properties'

  // casMd5 '' survives protobuf (proto3 optional keeps presence): create only.
  const created = await app.inject({ method: 'POST', url: '/v1/cs/configs', headers, payload: pb(grace.v1.Config, { ...key, content: 'url=x', type: 'properties', casMd5: '' }) })
  t.equal(created.statusCode, 200)
  t.equal(created.headers['content-type'], PB)
  const result = grace.v1.PublishConfigResponse.decode(created.rawPayload)
  t.equal(result.md5, md5('url=x'))
  const again = await app.inject({ method: 'POST', url: '/v1/cs/configs', headers, payload: pb(grace.v1.Config, { ...key, content: 'url=y', casMd5: '' }) })
  t.equal(again.statusCode, 409)
  t.same(grace.v1.Error.decode(again.rawPayload).code, 'CAS_MISMATCH', 'errors are protobuf too')

  const got = await app.inject({ method: 'GET', url: `/v1/cs/configs?${qs}`, headers: { accept: PB } })
  const config = grace.v1.Config.decode(got.rawPayload)
  t.same({ ...key, content: config.content, type: config.type, md5: config.md5, revision: config.revision }, { ...key, content: 'url=x', type: 'properties', md5: result.md5, revision: result.revision })
  t.equal(config.dataId, 'db.properties')

  const listened = await app.inject({
    method: 'POST',
    url: '/v1/cs/configs/listen',
    headers,
    payload: pb(grace.v1.ListenRequest, { items: [{ ...key, md5: '' }, { ...key, dataId: 'other', md5: '' }], timeoutMs: 0 }),
  })
  t.equal(listened.statusCode, 200)
  t.same(grace.v1.ListenResponse.toObject(grace.v1.ListenResponse.decode(listened.rawPayload)), { changed: [key] })

  const history = await app.inject({ method: 'GET', url: `/v1/cs/configs/history?${qs}`, headers: { accept: PB } })
  const page = grace.v1.ConfigHistory.decode(history.rawPayload)
  t.equal(page.count, 1)
  t.equal(page.items[0]!.content, 'url=x')
  t.equal(page.items[0]!.op, 'publish')

  const deleted = await app.inject({ method: 'DELETE', url: '/v1/cs/configs', headers, payload: pb(grace.v1.Config, { ...key, casMd5: result.md5 }) })
  t.equal(deleted.statusCode, 200)
  t.same(grace.v1.Ack.toObject(grace.v1.Ack.decode(deleted.rawPayload)), { ok: true, deleted: true })
})

t.test('bad input is rejected with its code and changes nothing', async (t) => {
  const { app } = await harness(t)
  const good = await app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: 'v1' } })
  t.equal(good.statusCode, 200)
  const before = await observe(app)
  t.match(before, { status: 200, body: { content: 'v1', md5: md5('v1') }, historyCount: 1 })

  const publish = (payload: unknown, headers: Record<string, string> = {}): InjectOptions => ({
    method: 'POST',
    url: '/v1/cs/configs',
    headers,
    payload: payload as InjectOptions['payload'],
  })
  const json = { 'content-type': 'application/json' }
  const cases: [string, InjectOptions, number, string][] = [
    ['missing dataId', publish({ content: 'v2' }), 400, 'INVALID_NAME'],
    ['empty dataId', publish({ dataId: '', content: 'v2' }), 400, 'INVALID_NAME'],
    ['blank dataId', publish({ dataId: '  ', content: 'v2' }), 400, 'INVALID_NAME'],
    ['dataId not a string', publish({ dataId: ['app.yaml'], content: 'v2' }), 400, 'INVALID_NAME'],
    ['dataId over 512 bytes', publish({ dataId: 'd'.repeat(513), content: 'v2' }), 400, 'INVALID_NAME'],
    ['control character in dataId', publish({ dataId: 'app.yaml\n', content: 'v2' }), 400, 'INVALID_NAME'],
    ['control character in group', publish({ ...KEY, group: 'DEFAULT_GROUP\u0000', content: 'v2' }), 400, 'INVALID_NAME'],
    ['control character in namespace', publish({ ...KEY, namespace: 'public\u001b', content: 'v2' }), 400, 'INVALID_NAME'],
    ["'@@' in group", publish({ ...KEY, group: 'A@@B', content: 'v2' }), 400, 'INVALID_NAME'],
    ['group over 512 bytes', publish({ ...KEY, group: 'g'.repeat(513), content: 'v2' }), 400, 'INVALID_NAME'],
    ['lone surrogate in dataId', publish(`{"dataId":"app.yaml\\ud800","content":"v2"}`, json), 400, 'INVALID_NAME'],
    ['missing content', publish({ ...KEY }), 400, 'INVALID_ARGUMENT'],
    ['empty content', publish({ ...KEY, content: '' }), 400, 'INVALID_ARGUMENT'],
    ['content not a string', publish({ ...KEY, content: { a: 1 } }), 400, 'INVALID_ARGUMENT'],
    ['type over the limit', publish({ ...KEY, content: 'v2', type: 't'.repeat(LIMITS.maxConfigTypeBytes + 1) }), 400, 'INVALID_ARGUMENT'],
    ['malformed casMd5', publish({ ...KEY, content: 'v2', casMd5: 'abc' }), 400, 'INVALID_ARGUMENT'],
    ['content over 1 MiB', publish({ ...KEY, content: 'x'.repeat(LIMITS.maxConfigContentBytes + 1) }), 413, 'CONTENT_TOO_LARGE'],
    ['content over 1 MiB in UTF-8 bytes', publish({ ...KEY, content: 'é'.repeat(LIMITS.maxConfigContentBytes / 2 + 1) }), 413, 'CONTENT_TOO_LARGE'],
    ['content over 1 MiB, protobuf', publish(pb(grace.v1.Config, { ...KEY, content: 'x'.repeat(LIMITS.maxConfigContentBytes + 1) }), { 'content-type': PB }), 413, 'CONTENT_TOO_LARGE'],
    ['body over the route limit', publish(`{"dataId":"app.yaml","content":"${'x'.repeat(LIMITS.maxConfigBodyBytes)}"}`, json), 413, 'BODY_TOO_LARGE'],
    ['malformed JSON', publish('{"dataId":"app.yaml","content":', json), 400, 'INVALID_JSON'],
    ['JSON that is not an object', publish('["app.yaml"]', json), 400, 'INVALID_ARGUMENT'],
    ['garbage protobuf', publish(Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01]), { 'content-type': PB }), 400, 'INVALID_PROTOBUF'],
    ['unknown content type', publish('dataId=app.yaml&content=v2', { 'content-type': 'application/x-www-form-urlencoded' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['text/plain', publish('v2', { 'content-type': 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['CAS mismatch', publish({ ...KEY, content: 'v2', casMd5: md5('v0') }), 409, 'CAS_MISMATCH'],
    ['create-only on an existing config', publish({ ...KEY, content: 'v2', casMd5: '' }), 409, 'CAS_MISMATCH'],
    ['unacceptable Accept', publish({ ...KEY, content: 'v2' }, { accept: 'text/html' }), 406, 'NOT_ACCEPTABLE'],
    ['delete with CAS mismatch', { method: 'DELETE', url: `/v1/cs/configs?${KEY_QS}&casMd5=${md5('v0')}` }, 409, 'CAS_MISMATCH'],
    ['delete with a malformed casMd5', { method: 'DELETE', url: `/v1/cs/configs?${KEY_QS}&casMd5=zz` }, 400, 'INVALID_ARGUMENT'],
    ['delete without dataId', { method: 'DELETE', url: '/v1/cs/configs?group=DEFAULT_GROUP' }, 400, 'INVALID_NAME'],
    ['delete naming the config twice', { method: 'DELETE', url: `/v1/cs/configs?${KEY_QS}`, payload: { dataId: 'other' } }, 400, 'INVALID_ARGUMENT'],
    ['delete with garbage protobuf', { method: 'DELETE', url: '/v1/cs/configs', headers: { 'content-type': PB }, payload: Buffer.from([0xff, 0xff]) }, 400, 'INVALID_PROTOBUF'],
    ['delete with malformed JSON', { method: 'DELETE', url: '/v1/cs/configs', headers: json, payload: '{' }, 400, 'INVALID_JSON'],
    ['get with a repeated dataId', { method: 'GET', url: `/v1/cs/configs?${KEY_QS}&dataId=b` }, 400, 'INVALID_NAME'],
    ['get with a control character', { method: 'GET', url: '/v1/cs/configs?dataId=a%0Ab' }, 400, 'INVALID_NAME'],
    ['get with no dataId', { method: 'GET', url: '/v1/cs/configs' }, 400, 'INVALID_NAME'],
    ['history pageSize 0', { method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}&pageSize=0` }, 400, 'INVALID_ARGUMENT'],
    ['history pageSize over the limit', { method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}&pageSize=${LIMITS.maxPageSize + 1}` }, 400, 'INVALID_ARGUMENT'],
    ['history pageNo not a number', { method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}&pageNo=two` }, 400, 'INVALID_ARGUMENT'],
  ]
  for (const [what, options, status, code] of cases) {
    const res = await app.inject(options)
    t.equal(res.statusCode, status, `${what}: status`)
    t.equal(res.json().code, code, `${what}: code`)
    t.same(await observe(app), before, `${what}: nothing changed`)
  }
})

t.test('listen rejects bad requests with 400', async (t) => {
  const { app, service } = await harness(t)
  const listen = (payload: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/cs/configs/listen', headers, payload: payload as InjectOptions['payload'] })
  const item = { dataId: 'app.yaml', md5: '' }
  const cases: [string, unknown, string, Record<string, string>?][] = [
    ['no items', {}, 'INVALID_ARGUMENT'],
    ['empty items', { items: [] }, 'INVALID_ARGUMENT'],
    ['items not an array', { items: item }, 'INVALID_ARGUMENT'],
    ['too many items', { items: Array.from({ length: LIMITS.maxListenItems + 1 }, (_, i) => ({ dataId: `d${i}` })) }, 'INVALID_ARGUMENT'],
    ['an item without dataId', { items: [{ group: 'g' }] }, 'INVALID_NAME'],
    ['a malformed md5', { items: [{ dataId: 'a', md5: 'nope' }] }, 'INVALID_ARGUMENT'],
    ['a negative timeout', { items: [item], timeoutMs: -1 }, 'INVALID_ARGUMENT'],
    ['a timeout over the limit', { items: [item], timeoutMs: LIMITS.maxListenTimeoutMs + 1 }, 'INVALID_ARGUMENT'],
    ['malformed JSON', '{"items":', 'INVALID_JSON', { 'content-type': 'application/json' }],
    ['garbage protobuf', Buffer.from([0x0a, 0x05, 0x0a]), 'INVALID_PROTOBUF', { 'content-type': PB }],
  ]
  for (const [what, payload, code, headers] of cases) {
    const res = await listen(payload, headers)
    t.equal(res.statusCode, 400, `${what}: status`)
    t.equal(res.json().code, code, `${what}: code`)
  }
  // A bad Accept fails before the hold, not 30 s later.
  const accept = await listen({ items: [item] }, { accept: 'text/html' })
  t.equal(accept.statusCode, 406)
  t.equal(service.listenerCount(), 0)
})

t.test('history pages newest first', async (t) => {
  const { app } = await harness(t)
  for (let i = 1; i <= 5; i++) await app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: `v${i}` } })
  const page = async (pageNo: number) =>
    (await app.inject({ method: 'GET', url: `/v1/cs/configs/history?${KEY_QS}&pageNo=${pageNo}&pageSize=2` })).json()
  const first = await page(1)
  t.match(first, { count: 5, pageNo: 1, pageSize: 2 })
  t.same(
    first.items.map((i: { content: string }) => i.content),
    ['v5', 'v4'],
  )
  t.ok(first.items[0].id > first.items[1].id, 'ids fall')
  t.same(
    (await page(3)).items.map((i: { content: string }) => i.content),
    ['v1'],
  )
  t.same((await page(4)).items, [], 'past the end: empty')
  const none = await app.inject({ method: 'GET', url: '/v1/cs/configs/history?dataId=never' })
  t.equal(none.statusCode, 200)
  t.same(none.json(), { count: 0, pageNo: 1, pageSize: 100, items: [] })
})

t.test('delete takes its fields from a JSON body too', async (t) => {
  const { app } = await harness(t)
  const { md5: sum } = (await app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: 'v1' } })).json()
  const res = await app.inject({ method: 'DELETE', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', casMd5: sum } })
  t.same(res.json(), { ok: true, deleted: true })
  t.equal((await app.inject({ method: 'GET', url: `/v1/cs/configs?${KEY_QS}` })).statusCode, 404)
})

t.test('a held listen answers on publish, on timeout, and on releaseAll', async (t) => {
  const clock = new ManualClock()
  const { app, service } = await harness(t, clock)
  const listen = (timeoutMs?: number) =>
    app.inject({ method: 'POST', url: '/v1/cs/configs/listen', payload: { items: [{ dataId: 'app.yaml', md5: '' }], ...(timeoutMs === undefined ? {} : { timeoutMs }) } })

  const onPublish = listen(60_000)
  const onTimeout = listen(1_000)
  const onRelease = listen()
  await waitFor(() => service.listenerCount() === 3)

  await app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: 'v1' } })
  const published = await onPublish
  t.same(published.json(), { changed: [KEY] })
  // The other two were waiting on the same key, so they were answered too.
  t.same((await onTimeout).json(), { changed: [KEY] })
  t.same((await onRelease).json(), { changed: [KEY] })

  const current = { items: [{ dataId: 'app.yaml', md5: md5('v1') }] }
  const timedOut = app.inject({ method: 'POST', url: '/v1/cs/configs/listen', payload: { ...current, timeoutMs: 1_000 } })
  const released = app.inject({ method: 'POST', url: '/v1/cs/configs/listen', payload: current })
  await waitFor(() => service.listenerCount() === 2)
  clock.advance(1_000)
  t.same((await timedOut).json(), { changed: [] })
  t.equal(service.listenerCount(), 1)
  service.releaseAll()
  const res = await released
  t.equal(res.statusCode, 200)
  t.same(res.json(), { changed: [] })
  t.equal(service.listenerCount(), 0)
})

t.test('listeners over the limit get 429', async (t) => {
  const clock = new ManualClock()
  const { app, service } = await harness(t, clock, 1)
  const payload = { items: [{ dataId: 'app.yaml', md5: '' }], timeoutMs: 100 }
  const held = app.inject({ method: 'POST', url: '/v1/cs/configs/listen', payload })
  await waitFor(() => service.listenerCount() === 1)
  const refused = await app.inject({ method: 'POST', url: '/v1/cs/configs/listen', payload })
  t.equal(refused.statusCode, 429)
  t.equal(refused.json().code, 'TOO_MANY_LISTENERS')
  clock.advance(100)
  t.same((await held).json(), { changed: [] })
})

t.test('with a real clock, a held listen answers within 50 ms of the apply', async (t) => {
  const { app, service, sm } = await harness(t, new SystemClock())
  const answer = app.inject({ method: 'POST', url: '/v1/cs/configs/listen', payload: { items: [{ dataId: 'app.yaml', md5: '' }], timeoutMs: 10_000 } })
  await waitFor(() => service.listenerCount() === 1)
  let appliedAt = 0
  sm.onChange(() => (appliedAt = performance.now()))
  const published = app.inject({ method: 'POST', url: '/v1/cs/configs', payload: { dataId: 'app.yaml', content: 'v1' } })
  const res = await answer
  const answeredAt = performance.now()
  t.same(res.json(), { changed: [KEY] })
  t.ok(appliedAt > 0, 'the write was applied before the answer')
  t.ok(answeredAt - appliedAt < 50, `answered ${(answeredAt - appliedAt).toFixed(1)} ms after the apply`)
  t.equal((await published).statusCode, 200)
})

t.test('a client that goes away frees its listener', async (t) => {
  const { app, service } = await harness(t, new ManualClock())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const body = JSON.stringify({ items: [{ dataId: 'app.yaml', md5: '' }], timeoutMs: 60_000 })
  for (let i = 0; i < 3; i++) {
    const req = httpRequest({ port, host: '127.0.0.1', method: 'POST', path: '/v1/cs/configs/listen', headers: { 'content-type': 'application/json' } })
    req.on('error', () => {})
    req.end(body)
    await waitFor(() => service.listenerCount() === 1)
    req.destroy()
    await waitFor(() => service.listenerCount() === 0)
    t.equal(service.listenerCount(), 0, `round ${i}: released on disconnect, with the timer still far off`)
  }
  // The server still answers normally afterwards.
  const res = await fetch(`http://127.0.0.1:${port}/v1/cs/configs/listen`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items: [{ dataId: 'x', md5: 'ffffffffffffffffffffffffffffffff' }] }) })
  t.same(await res.json(), { changed: [{ ...KEY, dataId: 'x' }] })
})

t.test('releaseAll in a preClose hook lets the server close at once, answering held listens', async (t) => {
  const tdb = await tempDb(t)
  const { service } = await openConfigStore(tdb, new ManualClock())
  const app = configApp(service)
  // The wiring the composition root is meant to use.
  app.addHook('preClose', (done) => {
    service.releaseAll()
    done()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const answer = fetch(`http://127.0.0.1:${port}/v1/cs/configs/listen`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ items: [{ dataId: 'app.yaml', md5: '' }], timeoutMs: 60_000 }),
  })
  await waitFor(() => service.listenerCount() === 1)
  const started = performance.now()
  await app.close()
  t.ok(performance.now() - started < 1_000, 'closed without waiting for the 60 s hold')
  const res = await answer
  t.equal(res.status, 200)
  t.same(await res.json(), { changed: [] })
})

/** Polls until cond holds; fails the test after 2 s rather than hanging. */
async function waitFor(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 2_000
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met within 2 s')
    await settle()
  }
}
