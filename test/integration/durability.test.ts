// The real server process: every acknowledged persistent write survives SIGKILL, and SIGTERM
// shuts down cleanly.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { connect } from 'node:net'
import { join } from 'node:path'
import t from 'tap'
import { request, startServer } from '../helpers/process.js'

t.test('every acknowledged persistent write survives SIGKILL', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-kill-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const server = await startServer(dir)
  t.teardown(() => server.child.kill('SIGKILL'))

  await request(`${server.url}/v1/ns/services`, 'POST', { service: 'svc-meta', ephemeral: false, metadata: { owner: 'a' } })
  const acked: number[] = []
  const ackedConfigs = new Map<string, string>()
  let next = 1
  let killed = false
  // 16 writers register persistent instances and publish configs until the server dies under them.
  const writer = async () => {
    while (!killed) {
      const n = next++
      try {
        if (n % 2 === 0) {
          const res = await request(`${server.url}/v1/ns/instances`, 'POST', { service: 'durable', ip: '10.1.0.1', port: n, ephemeral: false })
          if (res.status === 200) acked.push(n)
        } else {
          const dataId = `cfg-${n % 50}`
          const content = `version ${n}`
          const res = await request(`${server.url}/v1/cs/configs`, 'POST', { dataId, content })
          // Writers of one dataId may race; the last acknowledged wins only if it was also the last applied.
          if (res.status === 200) ackedConfigs.set(`${dataId}#${res.body.revision}`, content)
        }
      } catch {
        return // the connection died with the server: this write's outcome is unknown
      }
    }
  }
  const writers = Array.from({ length: 16 }, writer)
  while (acked.length < 200 || ackedConfigs.size < 200) await new Promise((r) => setTimeout(r, 5))
  killed = true
  server.child.kill('SIGKILL')
  await server.exited
  await Promise.all(writers)

  const restarted = await startServer(dir)
  t.teardown(() => restarted.child.kill('SIGKILL'))
  const list = await request(`${restarted.url}/v1/ns/instances?service=durable`, 'GET')
  const present = new Set(list.body.instances.map((i: { port: number }) => i.port))
  const lost = acked.filter((p) => !present.has(p))
  t.same(lost, [], `all ${acked.length} acknowledged registrations are present (found ${present.size})`)
  t.match((await request(`${restarted.url}/v1/ns/services?service=svc-meta`, 'GET')).body, { ephemeral: false, metadata: { owner: 'a' } })

  // Every acknowledged publish is in its config's history, and each config holds the newest one.
  const newest = new Map<string, { revision: number; content: string }>()
  for (const [k, content] of ackedConfigs) {
    const [dataId, rev] = k.split('#') as [string, string]
    if ((newest.get(dataId)?.revision ?? 0) < Number(rev)) newest.set(dataId, { revision: Number(rev), content })
  }
  let missing = 0
  for (const [dataId, { revision, content }] of newest) {
    const cfg = await request(`${restarted.url}/v1/cs/configs?dataId=${dataId}`, 'GET')
    if (cfg.status !== 200 || cfg.body.revision < revision) missing++
    else if (cfg.body.revision === revision) t.equal(cfg.body.content, content)
    const history = await request(`${restarted.url}/v1/cs/configs/history?dataId=${dataId}&pageSize=100`, 'GET')
    const ids = new Set(history.body.items.map((h: { id: number }) => h.id))
    for (const [k] of ackedConfigs) if (k.startsWith(`${dataId}#`) && !ids.has(Number(k.split('#')[1]))) missing++
  }
  t.equal(missing, 0, `all ${ackedConfigs.size} acknowledged publishes are present`)
})

t.test('SIGTERM stops the server cleanly, and it restarts on the same data', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-term-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const server = await startServer(dir)
  for (const port of [1, 2]) await request(`${server.url}/v1/ns/instances`, 'POST', { service: 'kept', ip: '10.1.0.1', port, ephemeral: false })
  // A long-poll held when the signal comes is answered (empty) rather than cut or waited out.
  const held = request(`${server.url}/v1/cs/configs/listen`, 'POST', { items: [{ dataId: 'nothing', md5: '' }], timeoutMs: 60_000 })
  // A connection that never sends a request (a port scan, a balancer's TCP check) does not keep
  // the server up: node counts it neither idle nor busy, and no timeout applies to it.
  const silent = connect(Number(new URL(server.url).port), '127.0.0.1')
  silent.on('error', () => {})
  await new Promise((r) => silent.on('connect', r))
  const silentClosed = new Promise((r) => silent.on('close', r))
  await new Promise((r) => setTimeout(r, 200))
  const started = Date.now()
  server.child.kill('SIGTERM')
  t.same((await held).body, { changed: [] })
  t.equal(await server.exited, 0, 'exit code 0')
  t.ok(Date.now() - started < 5000, `stopped in ${Date.now() - started} ms`)
  await silentClosed
  t.pass('the silent connection was closed by the server')
  t.ok(server.logs.some((l) => l.msg === 'stopped'), 'logged its stop')
  const requestLines = server.logs.filter((l) => l.msg === 'request')
  t.ok(requestLines.length >= 2, 'one log line per request')
  t.notOk(requestLines.some((l) => JSON.stringify(l).includes('10.1.0.1')), 'request lines carry no request data')

  const again = await startServer(dir)
  t.teardown(() => again.child.kill('SIGKILL'))
  const list = await request(`${again.url}/v1/ns/instances?service=kept`, 'GET')
  t.same(list.body.instances.map((i: { port: number }) => i.port), [1, 2])
})
