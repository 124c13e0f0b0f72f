// The real server process: every acknowledged persistent write survives SIGKILL, and SIGTERM
// shuts down cleanly.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
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
  let next = 1
  let killed = false
  // 16 writers register persistent instances until the server dies under them.
  const writer = async () => {
    while (!killed) {
      const port = next++
      try {
        const res = await request(`${server.url}/v1/ns/instances`, 'POST', { service: 'durable', ip: '10.1.0.1', port, ephemeral: false })
        if (res.status === 200) acked.push(port)
      } catch {
        return // the connection died with the server: this write's outcome is unknown
      }
    }
  }
  const writers = Array.from({ length: 16 }, writer)
  while (acked.length < 300) await new Promise((r) => setTimeout(r, 5))
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
})

t.test('SIGTERM stops the server cleanly, and it restarts on the same data', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'grace-term-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const server = await startServer(dir)
  for (const port of [1, 2]) await request(`${server.url}/v1/ns/instances`, 'POST', { service: 'kept', ip: '10.1.0.1', port, ephemeral: false })
  server.child.kill('SIGTERM')
  t.equal(await server.exited, 0, 'exit code 0')
  t.ok(server.logs.some((l) => l.msg === 'stopped'), 'logged its stop')
  const requestLines = server.logs.filter((l) => l.msg === 'request')
  t.ok(requestLines.length >= 2, 'one log line per request')
  t.notOk(requestLines.some((l) => JSON.stringify(l).includes('10.1.0.1')), 'request lines carry no request data')

  const again = await startServer(dir)
  t.teardown(() => again.child.kill('SIGKILL'))
  const list = await request(`${again.url}/v1/ns/instances?service=kept`, 'GET')
  t.same(list.body.instances.map((i: { port: number }) => i.port), [1, 2])
})
