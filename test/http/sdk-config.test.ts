// The config client, client options and member discovery against a real node on loopback.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { ConfigClient, type ConfigChangeEvent, contentMd5, loadClientOptions, resolveOptions, silentSdkLogger } from '../../src/sdk/index.js'
import { Transport } from '../../src/sdk/transport.js'
import { freePort } from '../helpers/cluster.js'
import { type TestNode, startTestNode } from '../helpers/node.js'

async function serve(t: Test): Promise<{ n: TestNode; url: string }> {
  const n = await startTestNode()
  const url = await n.node.app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => n.close())
  return { n, url }
}

function tmp(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'grace-sdk-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function eventually(what: string, probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

t.test('get, publish with compare-and-set, remove, and listeners that follow changes', async (t) => {
  const { url } = await serve(t)
  const c = new ConfigClient({ servers: [url], logger: silentSdkLogger, cacheDir: tmp(t), memberRefreshMs: 0 })
  t.teardown(() => c.close())
  t.equal(await c.getConfig('app.yaml'), null)
  const first = await c.publishConfig('app.yaml', 'a: 1\n', { type: 'yaml', casMd5: '' })
  t.equal(first.md5, contentMd5('a: 1\n'))
  t.equal(await c.getConfig('app.yaml'), 'a: 1\n')
  await t.rejects(c.publishConfig('app.yaml', 'a: 2\n', { casMd5: '' }), { code: 'CAS_MISMATCH', status: 409 })
  await t.rejects(c.publishConfig('app.yaml', 'a: 2\n', { casMd5: contentMd5('other') }), { code: 'CAS_MISMATCH' })

  const events: ConfigChangeEvent[] = []
  t.equal(await c.addListener('app.yaml', (e) => events.push(e)), 'a: 1\n', 'addListener answers the current content')
  await c.publishConfig('app.yaml', 'a: 2\n', { casMd5: first.md5 })
  await eventually('the change', () => events.length === 1)
  t.match(events[0], { dataId: 'app.yaml', group: 'DEFAULT_GROUP', content: 'a: 2\n', md5: contentMd5('a: 2\n') })
  t.equal(await c.removeConfig('app.yaml'), true)
  await eventually('the removal', () => events.length === 2)
  t.equal(events[1]!.content, null)
  t.equal(await c.removeConfig('app.yaml'), false)
  await t.rejects(c.getConfig('bad\u0000id'), { code: 'INVALID_NAME' })
})

t.test('the local snapshot answers when no server does', async (t) => {
  const { url } = await serve(t)
  const cacheDir = tmp(t)
  const c = new ConfigClient({ servers: [url], logger: silentSdkLogger, cacheDir, memberRefreshMs: 0 })
  t.teardown(() => c.close())
  await c.publishConfig('db.json', '{"pool":4}')
  t.equal(await c.getConfig('db.json'), '{"pool":4}')
  await new Promise((r) => setTimeout(r, 200))
  const down = new ConfigClient({ servers: [`127.0.0.1:${await freePort()}`], logger: silentSdkLogger, cacheDir, memberRefreshMs: 0, requestTimeoutMs: 500 })
  t.teardown(() => down.close())
  const snapshots: unknown[] = []
  down.events.on('snapshot', (e) => snapshots.push(e))
  t.equal(await down.getConfig('db.json'), '{"pool":4}')
  t.equal(snapshots.length, 1)
  await t.rejects(down.getConfig('never.json'), { code: 'NO_SERVER' })
})

t.test('options from code, grace.json and YAML; bad options are refused with a reason', async (t) => {
  const dir = tmp(t)
  const json = join(dir, 'grace.json')
  writeFileSync(json, JSON.stringify({ servers: '10.0.0.1:8848, 10.0.0.2:8848', namespace: 'dev', cluster: 'east', weight: 2, ephemeral: false, requestTimeoutMs: 1000, cacheDir: join(dir, 'c') }))
  const fromJson = resolveOptions(await loadClientOptions(json))
  t.same(fromJson.servers, ['http://10.0.0.1:8848', 'http://10.0.0.2:8848'])
  t.match(fromJson, { namespace: 'dev', cluster: 'east', weight: 2, ephemeral: false, requestTimeoutMs: 1000, group: 'DEFAULT_GROUP' })
  const yaml = join(dir, 'grace.yaml')
  writeFileSync(yaml, 'grace:\n  servers:\n    - http://127.0.0.1:8848\n    - https://grace.example:443\n  group: payments\n  metadata:\n    version: "1.2"\n  deregisterOnExit: false\n  balancer: consistentHash\n')
  const fromYaml = resolveOptions(await loadClientOptions(yaml))
  t.same(fromYaml.servers, ['http://127.0.0.1:8848', 'https://grace.example'])
  t.match(fromYaml, { group: 'payments', metadata: { version: '1.2' }, deregisterOnExit: false, balancer: 'consistentHash' })
  t.same(await loadClientOptions(join(dir, 'missing-dir-is-fine-only-without-path', '..', 'nope.json')).catch((e) => e.code), 'BAD_OPTIONS', 'a named file that is missing is an error')

  const bad: [object, RegExp][] = [
    [{ servrs: ['x'] }, /unknown option "servrs"/],
    [{ servers: [] }, /names no server/],
    [{ servers: ['http://h:1/path'] }, /only a scheme, host and port/],
    [{ weight: -1 }, /weight/],
    [{ metadata: { a: 1 } }, /metadata/],
    [{ requestTimeoutMs: 0 }, /requestTimeoutMs/],
    [{ balancer: 'fastest' }, /balancer must be one of/],
    [{ ephemeral: 'no' }, /ephemeral/],
  ]
  for (const [opts, message] of bad) t.throws(() => resolveOptions(opts as never), { code: 'BAD_OPTIONS', message }, JSON.stringify(opts))
  writeFileSync(join(dir, 'broken.yaml'), 'servers: [unclosed\n')
  await t.rejects(loadClientOptions(join(dir, 'broken.yaml')), { code: 'BAD_OPTIONS', message: /not valid YAML/ })
})

t.test('member discovery: today\'s answer keeps the list; a members list with client addresses extends it', async (t) => {
  let answer: unknown = { voters: ['n1', 'n2'], learners: [], addresses: { n1: '127.0.0.1:9848', n2: '127.0.0.1:9858' } }
  const server = createServer((_req, res) => {
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify(answer))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise((r) => server.close(r)))
  const seed = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  const transport = new Transport({ servers: [seed], maxAttempts: 2, logger: silentSdkLogger })
  t.teardown(() => transport.destroy())
  t.same(await transport.refreshMembers(1000), [seed], 'peer addresses are not client addresses: nothing learned')
  answer = {
    voters: ['n1', 'n2', 'n3', 'n4'],
    learners: [],
    addresses: {},
    members: [
      { id: 'n1', state: 'UP', ready: true, clientAddress: '127.0.0.1:8848', peerAddress: '127.0.0.1:9848' },
      { id: 'n2', clientUrl: 'http://127.0.0.1:8858' },
      { id: 'n3', state: 'DOWN', ready: true, clientAddress: '127.0.0.1:8868' },
      { id: 'n4', state: 'UP', ready: false, clientAddress: '127.0.0.1:8878' },
      { id: 'n5', clientAddress: null, peerAddress: 'x' },
      'junk',
    ],
  }
  t.same(await transport.refreshMembers(1000), [seed, 'http://127.0.0.1:8848', 'http://127.0.0.1:8858'], 'UP and ready members (or of unknown state) only')
  answer = { members: [{ id: 'n2', clientAddress: '127.0.0.1:8858' }] }
  t.same(await transport.refreshMembers(1000), [seed, 'http://127.0.0.1:8858'], 'learned servers that left are dropped; seeds stay')
})
