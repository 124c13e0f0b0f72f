// The real probes against real sockets on loopback: TCP and HTTP targets that are up, down,
// answer the wrong status, or never answer.

import { type Server as HttpServer, createServer as createHttpServer } from 'node:http'
import { type Server, type Socket, createServer } from 'node:net'
import t from 'tap'
import { httpProbe, probe, tcpProbe } from '../../../src/naming/probe-io.js'

async function listen(server: Server | HttpServer, port = 0): Promise<number> {
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve))
  return (server.address() as { port: number }).port
}

async function close(server: Server | HttpServer): Promise<void> {
  await new Promise((resolve) => server.close(resolve))
}

t.test('tcp: up, down, up again on the same port', async (t) => {
  const sockets = new Set<Socket>()
  let server = createServer((s) => {
    sockets.add(s)
    s.on('error', () => {})
  })
  const port = await listen(server)
  t.match(await tcpProbe('127.0.0.1', port, 1000), { ok: true })
  await new Promise((r) => setTimeout(r, 20))
  t.equal(sockets.size, 1, 'the target saw the connection')
  for (const s of sockets) s.destroy()
  await close(server)
  const down = await tcpProbe('127.0.0.1', port, 1000)
  t.match(down, { ok: false, detail: 'ECONNREFUSED' })
  server = createServer((s) => s.on('error', () => {}))
  await listen(server, port)
  t.match(await probe('127.0.0.1', port, { type: 'tcp', intervalMs: 1000, timeoutMs: 500, port: 0 }), { ok: true })
  await close(server)
})

t.test('tcp: an address that never answers fails within the timeout', async (t) => {
  // TEST-NET-1 (RFC 5737) is never routed: the connect either hangs (timeout) or fails at once.
  const started = Date.now()
  const outcome = await tcpProbe('192.0.2.1', 9, 300)
  t.equal(outcome.ok, false, outcome.detail)
  t.ok(Date.now() - started < 1000, `settled in ${Date.now() - started} ms`)
})

t.test('http: the expected status is healthy; another status, no server, or no answer is not', async (t) => {
  let status = 200
  const paths: string[] = []
  const held: { end(): void }[] = []
  const server = createHttpServer((req, res) => {
    paths.push(req.url ?? '')
    if (req.url === '/hang') {
      held.push(res)
      return
    }
    res.statusCode = status
    res.end('x'.repeat(100_000))
  })
  const port = await listen(server)
  t.match(await httpProbe('127.0.0.1', port, '/health?deep=1', 200, 1000), { ok: true, detail: 'status 200' })
  t.equal(paths.at(-1), '/health?deep=1', 'the path and query are sent as given')
  status = 503
  t.match(await httpProbe('127.0.0.1', port, '/health', 200, 1000), { ok: false, detail: 'status 503, expected 200' })
  status = 204
  t.match(await httpProbe('127.0.0.1', port, '/health', 204, 1000), { ok: true }, 'the expected status is the check\'s')
  const started = Date.now()
  t.match(await httpProbe('127.0.0.1', port, '/hang', 200, 300), { ok: false, detail: /no answer within 300 ms/ })
  t.ok(Date.now() - started < 1000, 'a server that never answers fails at the timeout')
  for (const res of held) res.end()
  server.closeAllConnections()
  await close(server)
  t.match(await probe('127.0.0.1', port, { type: 'http', intervalMs: 1000, timeoutMs: 500, port: 0, path: '/', expectedStatus: 200 }), { ok: false, detail: 'ECONNREFUSED' })
})

t.test('http: a target that accepts and closes without answering fails', async (t) => {
  const server = createServer((s) => s.destroy())
  const port = await listen(server)
  const outcome = await httpProbe('127.0.0.1', port, '/', 200, 1000)
  t.equal(outcome.ok, false, outcome.detail)
  await close(server)
})
